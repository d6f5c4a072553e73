"""Writing files so that a crash never leaves a torn file in place of a good one, and reading weights back."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def temporary_for(path: Path) -> Path:
    """A hidden sibling name for a file being written (``.<name>.tmp<pid>``)."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


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


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_for(path)
    torch.save(obj, tmp)
    return commit(tmp, path)


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_for(path)
    tmp.write_text(text, encoding="utf-8")
    return commit(tmp, path)


def atomic_save_safetensors(state: dict[str, torch.Tensor], path: str | os.PathLike) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_for(path)
    save_file(state, str(tmp), metadata={"format": "pt"})
    return commit(tmp, path)


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
