"""Writing files so that a crash never leaves a torn file in place of a good one, and reading weights back.

Every write goes to a hidden temporary beside its target (``.<name>.tmp<pid>``), is flushed and renamed over the
target. When the write fails the temporary is removed, and a full disk (``ENOSPC``, which PyTorch and safetensors
report without an errno) becomes :class:`DiskFullError` naming the folder: the earlier file stays as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from ..errors import SemsynthError


class DiskFullError(SemsynthError, OSError):
    """No space left on the device a file was being written to."""

    def __init__(self, path: str | os.PathLike) -> None:
        path = Path(path)
        self.path = path
        free = free_bytes(path.parent)
        where = path.parent if str(path.parent) not in ("", ".") else Path.cwd()
        self.message = (f"no space left on {where} (writing {path.name}; {_human(free)} free): free some space "
                        f"there or write to another disk; files written before are intact")
        super().__init__(self.message)
        self.errno = errno.ENOSPC

    def __str__(self) -> str:
        return self.message


def free_bytes(folder: str | os.PathLike) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _human(n: int | None) -> str:
    if n is None:
        return "unknown space"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def is_disk_full(exc: BaseException, folder: str | os.PathLike | None = None) -> bool:
    """Whether ``exc`` (an OSError, or the RuntimeError/SafetensorError of torch.save / safetensors, which carry
    no errno) was caused by a full disk."""
    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, DiskFullError):
            return True
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if e is not None and ("No space left on device" in str(e) or "os error 28" in str(e)):
            return True
    if folder is not None and isinstance(exc, RuntimeError):
        # torch.save's zip writer fails with "unexpected pos ... vs ..." or "file write failed"
        free = free_bytes(folder)
        return free is not None and free < 1024 * 1024 and ("write" in str(exc) or "unexpected pos" in str(exc))
    return False


def temporary_for(path: Path) -> Path:
    """A hidden sibling name for a file being written (``.<name>.tmp<pid>``)."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is the name of one of semsynth's write temporaries."""
    name = Path(path).name
    return name.startswith(".") and ".tmp" in name and name.rsplit(".tmp", 1)[1].isdigit()


def commit(tmp: Path, path: Path) -> Path:
    """Flush ``tmp`` to disk, give it ordinary permissions and rename it over ``path`` (atomic on POSIX)."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # some writers (safetensors) create private files
    os.replace(tmp, path)
    try:  # make the rename durable too
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return path


@contextlib.contextmanager
def _cleanup_on_failure(tmp: Path, path: Path) -> Iterator[None]:
    try:
        yield
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if not isinstance(e, DiskFullError) and isinstance(e, Exception) and is_disk_full(e, path.parent):
            raise DiskFullError(path) from e
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` writes the file's content to a temporary path; it is then committed over ``path``. On any
    failure (a full disk, an interrupt) the temporary is removed and ``path`` keeps its old content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_for(path)
    with _cleanup_on_failure(tmp, path):
        write(tmp)
        return commit(tmp, path)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_save_safetensors(state: dict[str, torch.Tensor], path: str | os.PathLike) -> Path:
    from safetensors.torch import save_file

    return atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))


def read_safetensors(path: str | os.PathLike, error: type[Exception] = OSError) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a missing or unreadable file raises ``error`` naming the path."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise error(f"weights file {path} is missing")
    try:
        return load_file(str(path))
    except Exception as e:
        raise error(f"cannot read {path}: {e}") from e


def safe_torch_load(path: str | os.PathLike, what: str, fix: str = "", error: type[Exception] = SemsynthError) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with errors that never suggest the unsafe load.

    A file whose pickle holds code or classes (not only tensors and plain values) is refused without running
    anything; a torn or foreign file gets a short reason. ``what`` says what the file should be ("VGG19 ImageNet
    weights"), ``fix`` what to do. Raises ``error`` (a :class:`SemsynthError` by default)."""
    import pickle
    import warnings

    path = Path(path)
    if not path.is_file():
        raise error(f"{what}: {path} does not exist" + (f"; {fix}" if fix else ""))
    try:
        with warnings.catch_warnings():  # the unpickler's protocol warning would suggest filing an issue
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        head = _head(path)
        if head.startswith(b"PK"):
            reason = ("it holds pickled Python objects other than tensors and plain values (classes or code, e.g. "
                      f"{_unsafe_global(e)}); semsynth reads only tensors from such files and never runs code in them")
        elif head[:1] == b"\x80":
            reason = ("it is a plain Python pickle, not a PyTorch file of tensors; semsynth never unpickles such "
                      "files (they can run code)")
        else:
            reason = "it is not a PyTorch file"
    except Exception as e:  # a torn zip, an HTML error page, a numpy file, ...
        reason = f"it is not a complete PyTorch file ({_first_line(e)})"
    raise error(f"{what}: cannot read {path}: {reason}" + (f"; {fix}" if fix else ""))


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(4)
    except OSError:
        return b""


def _first_line(e: BaseException) -> str:
    """The first line of an error message, without PyTorch's advice to load with ``weights_only=False``."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    text = text.split(". ")[0]
    if "weights_only" in text or "weights only" in text.lower():
        return type(e).__name__
    return text[:200]


def _unsafe_global(e: BaseException) -> str:
    import re

    m = re.search(r"GLOBAL ([\w.]+) ", str(e))
    return m.group(1) if m else "a class torch does not allow"
