"""What every on-disk dataset shares: listing and pairing files, reading images and label maps with mode checks,
mapping raw label values to channels with a range check, and the sample loop (:class:`LabelFolderDataset`).

Every problem is raised as a :class:`SampleError` (a :class:`~semsynth.errors.DataError`) whose message names the
file, what is wrong and what to set; nothing malformed reaches ``one_hot_label`` or a GPU scatter.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError, DataError
from .base import DatasetInfo
from .transforms import LabelMapping, Preprocess, apply_to_ids, apply_to_image, ids_to_tensor, image_to_tensor

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
LABEL_EXTS = (".png", ".bmp", ".tif", ".tiff")  # lossless only
LOSSY_EXTS = (".jpg", ".jpeg", ".webp")
# What decoding an untrusted file may raise. PIL's plugins raise more than OSError on malformed data (EOFError,
# struct.error, zlib.error, IndexError, ...), and each of them means "this file cannot be read": the reads below
# catch everything inside their few lines of PIL calls and report the file as unreadable.
_READ_ERRORS = (Exception,)
# semsynth's own temporaries (``.<name>.tmp<pid>``, utils/files.py): skipped without a word.
_TEMPORARY = re.compile(r"^\..+\.tmp\d+$")


@dataclass
class Problem:
    """One finding: ``kind`` (a short id such as ``unpaired-image``), a plain-words message, the files
    concerned, the fix, and whether it stops training (``error``) or is only worth knowing (``warning``)."""

    kind: str
    message: str
    files: list[str] = field(default_factory=list)
    fix: str = ""
    severity: str = "error"

    def text(self, max_files: int = 5) -> str:
        s = self.message
        if self.files:
            more = f" (+{len(self.files) - max_files} more)" if len(self.files) > max_files else ""
            s += ": " + ", ".join(self.files[:max_files]) + more
        if self.fix:
            s += f". Fix: {self.fix}"
        return s


class SampleError(DataError):
    """A problem with one file, raised while loading it; ``kind`` and ``path`` say which."""

    def __init__(self, kind: str, path: str | os.PathLike | None = None, message: str | None = None,
                 fix: str = "") -> None:
        if path is None and message is None:  # rebuilt from its text (DataLoader workers re-raise that way)
            self.kind, self.path, self.fix, self.detail = "data", "", "", kind
            super().__init__(kind)
            return
        self.kind, self.path, self.fix, self.detail = kind, str(path), fix, message
        super().__init__(f"{path}: {message}" + (f". Fix: {fix}" if fix else ""))


# -- lenient indexing (used by `semsynth data check`) ---------------------------------------------------------

_LENIENT: contextvars.ContextVar[bool] = contextvars.ContextVar("semsynth_lenient_index", default=False)


@contextlib.contextmanager
def lenient_index() -> Iterator[None]:
    """Within this block datasets record listing problems in ``index_problems`` instead of raising."""
    token = _LENIENT.set(True)
    try:
        yield
    finally:
        _LENIENT.reset(token)


def is_lenient() -> bool:
    return _LENIENT.get()


# -- listing and pairing --------------------------------------------------------------------------------------


class FileList(list):
    """The files :func:`list_files` found (a sorted ``list[Path]``), and what it left out that a user should
    hear about: ``broken`` symbolic links (to nothing, or in a loop) and ``hidden`` files that look like images
    (``.x.png``, macOS ``._x.png``)."""

    def __init__(self, files: list[Path] = (), broken: list[Path] = (), hidden: list[Path] = ()) -> None:
        super().__init__(sorted(files))
        self.broken, self.hidden = sorted(broken), sorted(hidden)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _looks_like_data(name: str) -> bool:
    """A name that looks like a sample's file: an image extension, and not one of semsynth's temporaries."""
    return Path(name).suffix.lower() in IMAGE_EXTS + LABEL_EXTS and not _TEMPORARY.match(name)


def list_files(folder: Path, recursive: bool = False) -> FileList:
    """Regular, non-hidden files of ``folder`` (and its subfolders when ``recursive``), sorted.

    Hidden entries (names starting with ``.``) are skipped, hidden folders are not entered; hidden files with an
    image extension are kept in ``.hidden`` so that callers can say they were skipped. Symbolic links to nothing
    (or in a loop) are kept in ``.broken``.
    """
    out: list[Path] = []
    broken: list[Path] = []
    hidden: list[Path] = []
    stack = [folder]
    seen: set[str] = set()  # real paths of the folders listed: a link to an ancestor must not loop forever
    while stack:
        d = stack.pop()
        real = os.path.realpath(d)
        if real in seen:
            continue
        seen.add(real)
        with os.scandir(d) as it:
            for e in it:
                if e.name in ("Thumbs.db", "desktop.ini"):
                    continue
                if _is_hidden(e.name):
                    if _looks_like_data(e.name) and not _is_dir(e):
                        hidden.append(Path(e.path))
                    continue
                is_dir, is_file = _is_dir(e), _is_file(e)
                if is_dir:
                    if recursive:
                        stack.append(Path(e.path))
                elif is_file:
                    out.append(Path(e.path))
                elif e.is_symlink():
                    broken.append(Path(e.path))
    return FileList(out, broken, hidden)


def _is_dir(e: os.DirEntry) -> bool:
    try:
        return e.is_dir()
    except OSError:
        return False


def link_target(path: Path) -> str:
    """Where the symbolic link ``path`` points (as written in the link)."""
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def is_broken_link(path: Path) -> bool:
    """True when ``path`` is a symbolic link whose target does not exist (or loops)."""
    try:
        if not path.is_symlink():
            return False
        os.stat(path)
    except OSError:
        return True
    return False


def listing_problems(files: list[Path], folder: Path) -> list[Problem]:
    """``broken-link`` (an error for names with an image extension, else a warning) and ``hidden-file``
    (warning) problems for what :func:`list_files` left out."""
    probs = []
    broken = getattr(files, "broken", [])
    hidden = getattr(files, "hidden", [])
    # a broken link named like an image or label map is a missing sample (error); any other only worth knowing
    for links, severity in (([b for b in broken if _looks_like_data(b.name)], "error"),
                            ([b for b in broken if not _looks_like_data(b.name)], "warning")):
        if links:
            probs.append(Problem("broken-link", f"{len(links)} file(s) in {folder} are symbolic links to nothing "
                                 "(their target does not exist)",
                                 [f"{n} -> {link_target(p)}" for n, p in zip(_rel(links, folder), links, strict=True)],
                                 "repair or remove the link", severity))
    if hidden:
        probs.append(Problem("hidden-file", f"{len(hidden)} hidden file(s) in {folder} (names starting with '.') "
                             "are skipped", _rel(hidden, folder),
                             "rename them without the leading '.' to use them, or delete them (macOS '._*' files "
                             "are Finder metadata, not images)", "warning"))
    return probs


def require_dir(path: Path, what: str, layout: str) -> Problem | None:
    """A ``missing-folder`` problem when ``path`` is not a directory."""
    if path.is_dir():
        return None
    return Problem("missing-folder", f"{what} folder {path} does not exist", [],
                   f"check data.root; the expected layout is {layout}")


def index_files(paths: list[Path], key_of: Callable[[Path], str | None], exts: tuple[str, ...], what: str,
                folder: Path, lossy_is_error: bool = False) -> tuple[dict[str, Path], list[Problem]]:
    """Map key -> file for the files of one kind; report duplicates, lossy label files and foreign files.

    ``key_of`` returns ``None`` for files that belong to another kind (e.g. ``*_color.png`` next to
    ``*_labelIds.png``), which are skipped silently. When ``paths`` comes from :func:`list_files`, the broken
    links and hidden files it left out are reported too (:func:`listing_problems`).
    """
    found: dict[str, Path] = {}
    dups, lossy, foreign = [], [], []
    for p in paths:
        key = key_of(p)
        if key is None:
            continue
        ext = p.suffix.lower()
        if ext not in exts:
            (lossy if lossy_is_error and ext in LOSSY_EXTS else foreign).append(p)
            continue
        if key in found:
            dups.append(p)
        else:
            found[key] = p
    probs = listing_problems(paths, folder)
    if lossy:
        probs.append(Problem("wrong-extension", f"{len(lossy)} {what} file(s) in {folder} are lossy "
                             f"({', '.join(sorted({p.suffix for p in lossy}))}); JPEG/WebP compression changes class "
                             "ids along every edge", _rel(lossy, folder),
                             f"export the {what}s as PNG (8-bit, one channel of class ids)"))
    if foreign:
        probs.append(Problem("wrong-extension", f"{len(foreign)} file(s) in {folder} are not {what}s "
                             f"({'/'.join(exts)}) and are ignored", _rel(foreign, folder),
                             "remove them or give them the right extension", "warning"))
    if dups:
        probs.append(Problem("duplicate", f"{len(dups)} {what}(s) in {folder} share a name with another file "
                             "(same stem, different extension)", _rel(dups, folder), "keep one file per sample"))
    return found, probs


def _rel(paths: list[Path], base: Path) -> list[str]:
    out = []
    for p in paths:
        try:
            out.append(str(p.relative_to(base)))
        except ValueError:
            out.append(str(p))
    return out


def pair_problems(labels: Mapping[str, Path], others: Mapping[str, Path], what: str, folder: Path,
                  label_folder: Path) -> list[Problem]:
    """Count-mismatch and unpaired-file problems between label maps and ``others`` (images or instances)."""
    probs = []
    no_label = sorted(set(others) - set(labels))
    no_other = sorted(set(labels) - set(others))
    if len(others) != len(labels) and what == "image":
        probs.append(Problem("count-mismatch", f"{folder} holds {len(others)} images but {label_folder} holds "
                             f"{len(labels)} label maps", [], "every image needs a label map with the same name"))
    if no_label and what == "image":
        probs.append(Problem("unpaired-image", f"{len(no_label)} image(s) have no label map in {label_folder}",
                             _rel([others[k] for k in no_label], folder),
                             "add the missing label maps or remove these images"))
    if no_other:
        kind = "unpaired-label" if what == "image" else "missing-instance"
        fix = ("add the missing images, remove these label maps, or set data.images=false for label-only use"
               if what == "image" else "add the instance maps, or set data.use_instance=false")
        probs.append(Problem(kind, f"{len(no_other)} label map(s) have no {what} in {folder}",
                             _rel([labels[k] for k in no_other], label_folder), fix))
    return probs


# -- reading files --------------------------------------------------------------------------------------------


@dataclass
class LabelRead:
    """A label map as read: ``values`` ``[H, W]`` (or ``[H, W, 3]`` colours when the dataset decodes them),
    the PIL mode, and ``(kind, message)`` warnings worth reporting (palette mode, 16-bit, grey RGB)."""

    values: np.ndarray
    mode: str
    warnings: list[tuple[str, str]] = field(default_factory=list)


def _not_found(path: Path, what: str) -> SampleError:
    """``broken-link`` for a symbolic link to nothing, else ``missing-file``."""
    if is_broken_link(path):
        return SampleError("broken-link", path, f"{what} file is a symbolic link to {link_target(path)}, which does "
                           "not exist", "repair or remove the link")
    return SampleError("missing-file", path, f"{what} file not found")


def _open(path: Path, what: str) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError as e:
        raise _not_found(path, what) from e
    except _READ_ERRORS as e:
        if is_broken_link(path):  # a link in a loop
            raise _not_found(path, what) from e
        raise SampleError("unreadable", path, f"cannot read this {what} (corrupt, truncated or not an image: {e})",
                          "replace the file; `semsynth data check` lists every unreadable file") from e
    return img


def image_size(path: Path) -> tuple[int, int]:
    """``(w, h)`` from the file header only (fast)."""
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError as e:
        raise _not_found(path, "image") from e
    except _READ_ERRORS as e:
        if is_broken_link(path):
            raise _not_found(path, "image") from e
        raise SampleError("unreadable", path, f"cannot read this image (corrupt or not an image: {e})",
                          "replace the file") from e


def read_image(path: Path) -> Image.Image:
    """An RGB image (greyscale, CMYK, RGBA and palette images converted, as SPADE does)."""
    img = _open(path, "image")
    return img if img.mode == "RGB" else img.convert("RGB")


def read_label(path: Path, colours: bool = False, colour_rgb: bool = False,
               image: Image.Image | None = None) -> LabelRead:
    """Read a label map of class ids; with ``colours=True`` RGB/palette maps come back as ``[H, W, 3]`` colours.

    Accepted: 8-bit greyscale (``L``, and ``LA`` whose alpha is ignored), 1-bit, palette (``P``/``PA``: its
    indices are the ids, as PASCAL VOC), 16/32-bit greyscale (values are the ids), and RGB(A) whose three channels
    are equal. A colour RGB(A) map raises ``rgb-label``, or, with ``colour_rgb=True`` (``semsynth generate``, which
    decodes colours with the model's palette), comes back as ``[H, W, 3]`` colours. Any other mode (CMYK, YCbCr,
    float ``F``, ...) raises ``unsupported-mode``. Datasets and ``semsynth generate`` both read label files here.
    ``image``: an image already opened and decoded (an upload of ``semsynth serve``); ``path`` then only names it.
    """
    img = _open(path, "label map") if image is None else image
    mode, warns = img.mode, []
    if colours and mode in ("RGB", "RGBA", "P", "PA", "LA", "L", "1"):
        return LabelRead(np.asarray(img.convert("RGB")), mode)
    if colours and (mode in ("I", "F") or mode.startswith("I;16")):
        raise SampleError("unsupported-mode", path, f"label map has PIL mode {mode!r} (16/32-bit or float "
                          "greyscale), but colour label maps are expected (decoded with the palette)",
                          "save colour label maps as 8-bit RGB PNGs, or set label_format: ids for class-id files")
    if mode == "L":
        return LabelRead(np.asarray(img), mode)
    if mode == "1":
        return LabelRead(np.asarray(img, dtype=np.uint8), mode)
    if mode in ("P", "PA"):
        warns.append(("palette-mode", "palette-mode (P) PNG: its palette indices are read as class ids, its colours "
                      "are ignored"))
        return LabelRead(np.asarray(img if mode == "P" else img.getchannel(0)), mode, warns)
    if mode == "LA":
        return LabelRead(np.asarray(img.getchannel(0)), mode)
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(img)
        a = a.astype(np.int32 if a.dtype != np.uint16 else np.uint16, copy=False)
        warns.append(("16-bit", f"{'16' if mode.startswith('I;16') else '32'}-bit PNG: values are read as class ids"
                      " (8-bit greyscale is the usual format)"))
        return LabelRead(a, mode, warns)
    if mode in ("RGB", "RGBA"):
        a = np.asarray(img)[..., :3]
        if np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2]):
            warns.append(("rgb-gray", "stored as RGB with three equal channels; read as class ids"))
            return LabelRead(np.ascontiguousarray(a[..., 0]), mode, warns)
        if colour_rgb:
            return LabelRead(np.ascontiguousarray(a), mode)
        n = len(np.unique(a.reshape(-1, 3), axis=0))
        raise SampleError(
            "rgb-label", path, f"label map is a colour (RGB) image with {n} distinct colours, but class ids are "
            "expected (one channel, pixel value = class id)",
            "convert it to class ids, or use data.name=custom with a palette file mapping each colour to a class "
            "(data.palette=palette.yaml); `semsynth data check` prints the colours found")
    raise SampleError("unsupported-mode", path, f"label map has PIL mode {mode!r}; class ids must be integers",
                      "save it as an 8-bit single-channel PNG of class ids")


def colour_table(colours: Sequence[Sequence[int]]) -> dict[int, int]:
    """A palette as ``{0xRRGGBB: class id}``; a colour listed twice decodes to its first class."""
    out: dict[int, int] = {}
    for i, c in enumerate(colours):
        out.setdefault((int(c[0]) << 16) | (int(c[1]) << 8) | int(c[2]), i)
    return out


def match_colours(rgb: np.ndarray, table: Mapping[int, int]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Colours ``[H, W, 3]`` -> (class ids ``[H, W]`` int64, ``[(pixels, 0xRRGGBB)]`` of the colours that are not
    in ``table``, most pixels first). Pixels of unknown colours hold -1. Used by the custom dataset's palette
    decoding and by ``semsynth generate``'s."""
    a = np.asarray(rgb)
    packed = (a[..., 0].astype(np.int64) << 16) | (a[..., 1].astype(np.int64) << 8) | a[..., 2].astype(np.int64)
    uniq, inv = np.unique(packed.ravel(), return_inverse=True)
    ids = np.array([table.get(int(c), -1) for c in uniq], np.int64)
    unknown: list[tuple[int, int]] = []
    if (ids < 0).any():
        counts = np.bincount(inv.ravel(), minlength=len(uniq))
        unknown = sorted(((int(counts[i]), int(uniq[i])) for i in np.flatnonzero(ids < 0)), reverse=True)
    return ids[inv.ravel()].reshape(packed.shape), unknown


def read_instance(path: Path, image: Image.Image | None = None) -> np.ndarray:
    """Instance ids ``[H, W]``: 8/16/32-bit greyscale as is; RGB colours packed into one id (edges only need
    equality between neighbours). ``image``: already opened (an upload); ``path`` then only names it."""
    img = _open(path, "instance map") if image is None else image
    if img.mode in ("L", "P", "1"):
        return np.asarray(img, dtype=np.uint8) if img.mode == "1" else np.asarray(img)
    if img.mode.startswith("I"):
        return np.asarray(img).astype(np.int32, copy=False)
    if img.mode in ("RGB", "RGBA"):
        a = np.asarray(img)[..., :3].astype(np.int32)
        return (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]
    raise SampleError("unsupported-mode", path, f"instance map has PIL mode {img.mode!r}",
                      "save instance maps as 8- or 16-bit greyscale PNGs of instance ids")


# -- the dataset base -----------------------------------------------------------------------------------------


@dataclass
class SampleFiles:
    """The files of one sample; ``parts`` are (class id, path) masks merged into the label (CelebAMask-HQ)."""

    name: str
    label: Path | None
    image: Path | None = None
    instance: Path | None = None
    parts: tuple[tuple[int, Path], ...] = ()


class LabelFolderDataset(torch.utils.data.Dataset):
    """Samples from files: label map (mapped and range-checked), optional image and instance map, aligned.

    Subclasses set ``info``, ``mapping``, ``pre`` and call :meth:`_finish_index` with the files and the
    problems found while listing. They may override :meth:`read_label_raw` (merging parts, decoding colours).
    """

    info: DatasetInfo
    mapping: LabelMapping
    pre: Preprocess
    images: bool
    root: Path
    split: str
    allow_scaled_image: bool = False  # CelebAMask-HQ: 1024 px images with 512 px masks
    check_args: str = ""

    def _finish_index(self, files: list[SampleFiles], problems: list[Problem]) -> None:
        self.files = files
        self.index_problems = problems
        self.notes: list[str] = getattr(self, "notes", [])
        errors = [p for p in problems if p.severity == "error"]
        if not files and not errors:
            errors.append(Problem("empty-folder", f"no samples found under {self.root} for split {self.split!r}",
                                  [], "check data.root and data.split"))
            problems.append(errors[-1])
        if errors and not is_lenient():
            lines = "\n".join(f"  - [{p.kind}] {p.text()}" for p in errors)
            raise DataError(f"{self.info.name} (root {self.root}, split {self.split}): {len(errors)} problem(s):\n"
                            f"{lines}\nRun `{self.check_command}` for the full report.")

    @property
    def check_command(self) -> str:
        return f"semsynth data check --dataset {self.info.name} --root {self.root} --split {self.split}" \
               + (f" {self.check_args}" if self.check_args else "")

    def __len__(self) -> int:
        return len(self.files)

    # -- reading one sample ----------------------------------------------------------------------------------

    def read_label_raw(self, f: SampleFiles) -> LabelRead:
        """The label map's raw values (before mapping to channels)."""
        assert f.label is not None
        return read_label(f.label)

    def load_channels(self, f: SampleFiles) -> np.ndarray:
        """Channel ids ``[h, w]`` at the file's own size; out-of-range values raise ``out-of-range`` naming the
        file, the values and the fix."""
        read = self.read_label_raw(f)
        mapped, bad = self.mapping.split(read.values)
        if bad:
            msg, fix = self.mapping.explain(bad, read.values, read.mode)
            fix = f"{fix}; `{self.check_command}` scans every file"
            raise SampleError("out-of-range", f.label or f.parts[0][1], msg, fix)
        return mapped

    def check_image_size(self, image_wh: tuple[int, int], label_wh: tuple[int, int], f: SampleFiles) -> None:
        if image_wh == label_wh:
            return
        (iw, ih), (lw, lh) = image_wh, label_wh
        if self.allow_scaled_image and abs(iw * lh - ih * lw) <= max(iw, ih):
            return  # same aspect: the image is resized to the label's geometry
        label_name = Path(f.label or f.parts[0][1]).name
        raise SampleError(
            "size-mismatch", f.image, f"image is {iw}x{ih} but its label map ({label_name}) is {lw}x{lh}",
            "image and label map must have the same size (re-export the label map at the image's size); "
            f"`{self.check_command}` lists every mismatch")

    def __getitem__(self, i: int) -> dict:
        f = self.files[i]
        ids = self.load_channels(f)
        h, w = ids.shape
        image = None
        if self.images:
            image = read_image(f.image)
            self.check_image_size(image.size, (w, h), f)
        inst = None
        if self.info.has_instance:
            if f.instance is None:
                raise SampleError("missing-instance", f.label or f.name, "no instance map for this sample",
                                  "add it, or set data.use_instance=false")
            inst = read_instance(f.instance)
            if inst.shape != ids.shape:
                raise SampleError("size-mismatch", f.instance, f"instance map is {inst.shape[1]}x{inst.shape[0]} "
                                  f"but the label map is {w}x{h}", "re-export the instance map at the label's size")
        plan = self.pre.plan((w, h), str(f.label or f.name))
        out: dict = {}
        if image is not None:
            out["image"] = image_to_tensor(apply_to_image(image, plan))
        out["label"] = ids_to_tensor(apply_to_ids(ids, plan))
        if inst is not None:
            out["instance"] = ids_to_tensor(apply_to_ids(inst, plan))
        out["name"] = f.name
        return out


def label_only_root(root: Path, label_dir: Path, exts: tuple[str, ...] = LABEL_EXTS) -> Path:
    """For label-only use: the dataset's label folder if it exists, else ``root`` itself when it directly holds
    label files (a plain folder of label maps in the dataset's convention)."""
    if label_dir.is_dir() or not root.is_dir():
        return label_dir
    with os.scandir(root) as it:
        if any(Path(e.name).suffix.lower() in exts and not _is_hidden(e.name) and _is_file(e) for e in it):
            return root
    return label_dir


def _is_file(e: os.DirEntry) -> bool:
    try:
        return e.is_file()
    except OSError:  # a link in a loop
        return False


def resolve_split(owner: str, split: str, aliases: Mapping[str, str]) -> str:
    """The dataset's own split name for ``split`` (``train``/``val``/``test`` or the dataset's names)."""
    if split not in aliases:
        raise ConfigError(f"{owner}: unknown split {split!r}; valid splits are: {', '.join(aliases)}")
    return aliases[split]


def check_flags(owner: str, **flags: object) -> None:
    """Boolean options must be booleans (YAML ``yes``/``no`` are, the string ``"false"`` is not)."""
    for key, v in flags.items():
        if not isinstance(v, bool):
            raise ConfigError(f"{owner}: {key} must be true or false, got {v!r}")


def make_preprocess(owner: str, split_is_train: bool, preprocess: str, load_size: int, crop_size: int,
                    aspect_ratio: float, flip: bool) -> Preprocess:
    return Preprocess(mode=preprocess, load_size=load_size, crop_size=crop_size, aspect_ratio=aspect_ratio,
                      flip=flip, train=split_is_train, owner=owner)


def _stem(p: Path) -> str:
    return p.stem


def index_folders(*, root: Path, label_dir: Path, image_dir: Path | None, instance_dir: Path | None, layout: str,
                  label_key: Callable[[Path], str | None] = _stem, image_key: Callable[[Path], str | None] = _stem,
                  instance_key: Callable[[Path], str | None] = _stem, recursive: bool = False,
                  label_exts: tuple[str, ...] = LABEL_EXTS,
                  instance_fix: str = "add the instance maps, or set data.use_instance=false",
                  ) -> tuple[list[SampleFiles], list[Problem]]:
    """List a label folder and, when given, an image and an instance folder; pair them by key.

    ``image_dir=None`` means label-only; ``instance_dir=None`` means no instance maps are used. Returns the
    complete samples (sorted by key) and every listing problem (missing or empty folders, unpaired files,
    count mismatch, lossy or foreign files, duplicates).
    """
    if (p := require_dir(root, "dataset root", layout)) is not None:
        return [], [p]
    if (p := require_dir(label_dir, "label", layout)) is not None:
        return [], [p]
    probs: list[Problem] = []
    labels, pr = index_files(list_files(label_dir, recursive), label_key, label_exts, "label map", label_dir, True)
    probs += pr
    if not labels and not any(p.kind == "wrong-extension" and p.severity == "error" for p in pr):
        probs.append(Problem("empty-folder", f"no label maps ({'/'.join(label_exts)}) in {label_dir}", [],
                             "check data.root and data.split"))
    images: dict[str, Path] = {}
    if image_dir is not None:
        if (p := require_dir(image_dir, "image", layout + "; or set data.images=false to use label maps only")):
            probs.append(p)
        else:
            images, pr = index_files(list_files(image_dir, recursive), image_key, IMAGE_EXTS, "image", image_dir)
            if not images:
                probs.append(Problem("empty-folder", f"no images ({'/'.join(IMAGE_EXTS)}) in {image_dir}", [],
                                     "check data.root, or set data.images=false to use label maps only"))
            probs += pr + pair_problems(labels, images, "image", image_dir, label_dir)
    insts: dict[str, Path] = {}
    if instance_dir is not None:
        if not instance_dir.is_dir():
            probs.append(Problem("missing-instance", f"instance folder {instance_dir} does not exist (use_instance "
                                 "is on)", [], instance_fix))
        else:
            insts, pr = index_files(list_files(instance_dir, recursive), instance_key, LABEL_EXTS, "instance map",
                                    instance_dir)
            probs += pr
            probs += [dataclasses.replace(p, fix=instance_fix) if p.kind == "missing-instance" else p
                      for p in pair_problems(labels, insts, "instance map", instance_dir, label_dir)]
    keys = sorted(k for k in labels if (image_dir is None or k in images) and (instance_dir is None or k in insts))
    return [SampleFiles(k, labels[k], images.get(k), insts.get(k)) for k in keys], _unique(probs)


def _unique(probs: list[Problem]) -> list[Problem]:
    """Problems without repeats (a folder listed twice, as Cityscapes' label and instance folder, reports its
    broken links and hidden files once)."""
    seen, out = set(), []
    for p in probs:
        key = (p.kind, p.message, tuple(p.files))
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out
