"""SIMS's memory bank: the training set's photos cut into segments, in one safetensors file.

What is stored (``N`` images of ``H x W``, ``S`` segments, grids of ``h x w`` (masks) and ``hc x wc`` (context)
cells, see ``segments.py``):

=================  =====================  =====================================================================
tensor             shape, dtype           what
=================  =====================  =====================================================================
``images``         [N, 3, H, W] uint8     the photos (RGB 0..255)
``components``     [N, H, W] uint8        each photo's component map (0: no segment, k: its segment k)
``layouts``        [N, h, w] int16        each label map's mode grid at mask resolution (recognises a layout)
``contexts``       [N, hc, wc] int16      each label map's mode grid at context resolution (the labels around)
``seg_image``      [S] int32              the photo a segment comes from
``seg_index``      [S] int32              its component id in that photo
``seg_class``      [S] int32              its class (segments are sorted by class)
``seg_area``       [S] float32            its area, a fraction of the image
``seg_colour``     [S, 6] float32         mean and standard deviation of its pixels' RGB (in [-1, 1])
``masks``          [S, h, w] uint8        its coverage of each mask cell (x 255): the shape retrieval compares
``class_offsets``  [C + 1] int64          segments of class c are rows class_offsets[c] .. class_offsets[c+1]
=================  =====================  =====================================================================

and, as JSON in the file's header (key ``semsynth``): the format and version, the dataset's facts and spec,
the grid sizes, ``min_area``, the class depth order (back to front) and where it came from, the photos' names
and a SHA-256 fingerprint of the tensors. Never a pickle: a file that is not this is refused with a message
(:class:`BankError`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SemsynthError
from .ordering import containment_votes, depth_order
from .segments import coverage, find_segments, grid_size, mode_grid

BANK_FORMAT = "semsynth-sims-bank"
BANK_VERSION = 1
BANK_FILENAME = "sims_bank.safetensors"  # its name in a SIMS model directory
TENSORS = {  # name: (dtype, number of dimensions)
    "images": (torch.uint8, 4), "components": (torch.uint8, 3), "layouts": (torch.int16, 3),
    "contexts": (torch.int16, 3), "seg_image": (torch.int32, 1), "seg_index": (torch.int32, 1),
    "seg_class": (torch.int32, 1), "seg_area": (torch.float32, 1), "seg_colour": (torch.float32, 2),
    "masks": (torch.uint8, 3), "class_offsets": (torch.int64, 1),
}
REBUILD = "build it again with 'semsynth sims index --dataset NAME ... --out BANK'"


class BankError(SemsynthError):
    """A memory bank file that is missing, damaged, foreign, or does not fit the model or data."""


class MemoryBank:
    """The tensors above (as attributes) and the header ``meta``. Immutable once built: copies of a generator
    (its EMA) share one bank, and ``on(device)`` keeps one copy per device."""

    def __init__(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.meta = meta
        self.tensors = tensors
        for k, v in tensors.items():
            setattr(self, k, v)
        self._devices: dict[str, MemoryBank] = {}
        self._cache: dict[str, object] = {}

    # -- facts ---------------------------------------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        return int(self.meta["dataset"]["num_classes"])

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["dataset"]["class_names"])

    @property
    def resolution(self) -> tuple[int, int]:
        return tuple(self.meta["image_size"])

    @property
    def mask_size(self) -> tuple[int, int]:
        return tuple(self.meta["mask_size"])

    @property
    def context_size(self) -> tuple[int, int]:
        return tuple(self.meta["context_size"])

    @property
    def order(self) -> list[int]:
        """Classes from back to front."""
        return list(self.meta["order"])

    @property
    def num_images(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_segments(self) -> int:
        return int(self.seg_class.shape[0])

    @property
    def fingerprint(self) -> str:
        return str(self.meta["fingerprint"])

    def depth_rank(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """``[C]`` each class's place in the depth order (0: the back)."""
        rank = torch.zeros(self.num_classes, dtype=torch.float32)
        rank[torch.tensor(self.order)] = torch.arange(self.num_classes, dtype=torch.float32)
        return rank.to(device)

    def mask_rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The masks as float coverages ``[S, h*w]`` and their sums ``[S]`` (made once: S * h * w * 4 bytes)."""
        if "rows" not in self._cache:
            rows = self.masks.flatten(1).float() / 255
            self._cache["rows"] = (rows, rows.sum(1))
        return self._cache["rows"]

    def describe(self) -> str:
        counts = (self.class_offsets[1:] - self.class_offsets[:-1]).tolist()
        names = self.class_names
        missing = [names[c] for c, n in enumerate(counts) if n == 0]
        return (f"{self.num_images} images ({self.resolution[0]}x{self.resolution[1]}) of {self.meta['dataset']['name']}"
                f", {self.num_segments} segments of {sum(n > 0 for n in counts)} classes"
                + (f" (none of {', '.join(missing)})" if missing else "")
                + f"; depth order, back to front ({self.meta['order_source']}): "
                + ", ".join(names[c] for c in self.order))

    # -- devices and copies --------------------------------------------------------------------------------------

    def on(self, device: torch.device | str) -> MemoryBank:
        """This bank with its tensors on ``device`` (made once per device, then reused)."""
        device = torch.device(device)
        if all(t.device == device for t in self.tensors.values()):
            return self
        key = str(device)
        if key not in self._devices:
            self._devices[key] = MemoryBank(self.meta, {k: v.to(device) for k, v in self.tensors.items()})
        return self._devices[key]

    def __deepcopy__(self, memo) -> MemoryBank:  # immutable: a copied generator shares its bank
        return self

    # -- files -----------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write the bank (atomically: a crash never leaves a torn file in place of a good one)."""
        from safetensors.torch import save_file

        from ..utils.files import atomic_write

        tensors = {k: v.detach().cpu().contiguous() for k, v in self.tensors.items()}
        header = {"semsynth": json.dumps(self.meta)}
        return atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=header))


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a bank file, checked (format, version); reads no tensor."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise BankError(f"memory bank {path} does not exist; {REBUILD}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 - any unreadable file: a pickle, a torn file, an HTML page
        raise BankError(f"memory bank {path} is not a readable safetensors file ({str(e).splitlines()[0][:120]}); it "
                        f"should be a file written by 'semsynth sims index' (never a pickle); {REBUILD}") from None
    try:
        meta = json.loads(header["semsynth"])
    except (KeyError, TypeError, ValueError):
        raise BankError(f"{path} is a safetensors file but not a SIMS memory bank (its header has no semsynth "
                        f"description; model weights?); give the file 'semsynth sims index --out' wrote") from None
    if not isinstance(meta, dict) or meta.get("format") != BANK_FORMAT:
        raise BankError(f"{path} is not a SIMS memory bank (format {meta.get('format') if isinstance(meta, dict) else meta!r}"
                        f", expected {BANK_FORMAT!r}); give the file 'semsynth sims index --out' wrote")
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BankError(f"{path}: memory bank version {version!r} is not valid; {REBUILD}")
    if version > BANK_VERSION:
        raise BankError(f"{path}: memory bank version {version} was written by a newer semsynth (this one reads "
                        f"version {BANK_VERSION}); upgrade semsynth or {REBUILD}")
    return meta


def load_bank(path: str | os.PathLike, device: torch.device | str = "cpu") -> MemoryBank:
    """Read and check a bank file: every tensor present with its dtype, consistent shapes and indices."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_header(path)
    try:
        tensors = load_file(str(path), device=str(device))
    except Exception as e:  # noqa: BLE001
        raise BankError(f"memory bank {path} is damaged ({str(e).splitlines()[0][:120]}); {REBUILD}") from None
    try:
        check_bank(meta, tensors)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise BankError(f"memory bank {path} is damaged or inconsistent: {e}; {REBUILD}") from None
    return MemoryBank(meta, tensors)


def check_bank(meta: dict[str, Any], t: dict[str, torch.Tensor]) -> None:
    """Raise ValueError/KeyError naming the first inconsistency of a bank's header and tensors."""
    for name, (dtype, dims) in TENSORS.items():
        if name not in t:
            raise KeyError(f"tensor {name!r} is missing")
        if t[name].dtype != dtype or t[name].dim() != dims:
            raise ValueError(f"tensor {name!r} is {t[name].dtype} with {t[name].dim()} dimensions, expected {dtype} "
                             f"with {dims}")
    c = int(meta["dataset"]["num_classes"])
    if len(meta["dataset"]["class_names"]) != c:
        raise ValueError(f"{len(meta['dataset']['class_names'])} class names for {c} classes")
    n, _, h, w = t["images"].shape
    s = t["seg_class"].shape[0]
    expect = {"components": (n, h, w), "layouts": (n, *meta["mask_size"]), "contexts": (n, *meta["context_size"]),
              "seg_image": (s,), "seg_index": (s,), "seg_area": (s,), "seg_colour": (s, 6),
              "masks": (s, *meta["mask_size"]), "class_offsets": (c + 1,)}
    for name, shape in expect.items():
        if tuple(t[name].shape) != tuple(shape):
            raise ValueError(f"tensor {name!r} has shape {list(t[name].shape)}, expected {list(shape)}")
    if [h, w] != list(meta["image_size"]) or t["images"].shape[1] != 3:
        raise ValueError(f"images are {list(t['images'].shape)}, the header says {meta['image_size']}")
    if sorted(meta["order"]) != list(range(c)):
        raise ValueError("the depth order is not a permutation of the classes")
    off = t["class_offsets"]
    counts = torch.bincount(t["seg_class"].long().clamp(0, c), minlength=c + 1)
    if int(off[0]) != 0 or int(off[-1]) != s or bool((off[1:] < off[:-1]).any()) or int(counts[c]) \
            or not torch.equal(off[1:] - off[:-1], counts[:c]) or bool((t["seg_class"] < 0).any()):
        raise ValueError("class_offsets do not match the segments' classes")
    if s and (int(t["seg_image"].min()) < 0 or int(t["seg_image"].max()) >= n or int(t["seg_index"].min()) < 1
              or int(t["seg_index"].max()) > 255):
        raise ValueError("a segment refers to a photo or component that does not exist")
    for name in ("layouts", "contexts"):
        if t[name].numel() and (int(t[name].min()) < 0 or int(t[name].max()) >= c):
            raise ValueError(f"tensor {name!r} holds class ids outside 0..{c - 1}")


def fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().numpy().tobytes())
    return digest.hexdigest()


def build_bank(dataset, *, data_spec: dict[str, Any] | None = None, mask_size: int = 32, context_size: int = 8,
               min_area: float = 0.002, max_images: int | None = None, order: list[int] | None = None,
               progress: bool = False) -> MemoryBank:
    """Cut ``dataset``'s photos into segments (the first ``max_images``). ``mask_size`` / ``context_size``: cells
    on the short side of the mask and context grids; ``min_area``: the smallest segment, as a fraction of the
    image; ``order``: the classes back to front (``None``: learnt, see ``ordering.py``)."""
    from ..data.base import DatasetInfo
    from ..utils.progress import progress_bar

    info: DatasetInfo = dataset.info
    n = len(dataset) if max_images is None else min(len(dataset), max_images)
    if n < 1:
        raise BankError(f"dataset {info.name} has no samples to build a memory bank from")
    h, w = (int(v) for v in info.resolution)
    c = info.num_classes
    msize, csize = grid_size((h, w), mask_size), grid_size((h, w), context_size)
    if msize[0] > h or msize[1] > w or csize[0] > h or csize[1] > w:
        raise BankError(f"--mask-size {mask_size} / --context-size {context_size}: a grid cannot be finer than the "
                        f"images ({h}x{w})")
    min_pixels = max(1, round(min_area * h * w))
    skip = (info.dontcare_index,) if info.dontcare_index is not None else ()
    images = np.zeros((n, 3, h, w), np.uint8)
    components = np.zeros((n, h, w), np.uint8)
    layouts = np.zeros((n, *msize), np.int16)
    contexts = np.zeros((n, *csize), np.int16)
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("image", "index", "class", "area", "colour", "mask")}
    votes = np.zeros((c, c), np.int64)
    names = []
    t0 = time.time()
    with progress_bar(n, "sims index", unit="img", enabled=progress) as bar:
        for i in range(n):
            sample = dataset[i]
            if "image" not in sample:
                raise BankError(f"dataset {info.name} serves label maps only (images: false); a memory bank needs "
                                f"the photos")
            label = sample["label"].numpy()
            if label.shape != (h, w):
                raise BankError(f"dataset {info.name}: sample {i} is {label.shape[0]}x{label.shape[1]}, not "
                                f"{h}x{w}; use a preprocessing that gives every sample one size (e.g. "
                                f"--set data.preprocess=fixed)")
            rgb = sample["image"].numpy()
            names.append(str(sample.get("name", i)))
            images[i] = np.clip(np.round((rgb + 1) * 127.5), 0, 255).astype(np.uint8)
            layouts[i] = mode_grid(label, c, msize)
            contexts[i] = mode_grid(label, c, csize)
            segs = find_segments(label, min_pixels, skip)
            components[i] = segs.components
            k = len(segs)
            votes = containment_votes(label, c, votes, skip)
            if k:
                ids = segs.components.ravel()
                count = np.bincount(ids, minlength=k + 1)[1:].astype(np.float64)
                flat = rgb.reshape(3, -1).astype(np.float64)
                mean = np.stack([np.bincount(ids, flat[j], minlength=k + 1)[1:] for j in range(3)], 1) / count[:, None]
                sq = np.stack([np.bincount(ids, flat[j] ** 2, minlength=k + 1)[1:] for j in range(3)], 1)
                std = np.sqrt(np.maximum(sq / count[:, None] - mean**2, 0))
                rows["image"].append(np.full(k, i, np.int32))
                rows["index"].append(np.arange(1, k + 1, dtype=np.int32))
                rows["class"].append(segs.classes.astype(np.int32))
                rows["area"].append((segs.areas / (h * w)).astype(np.float32))
                rows["colour"].append(np.concatenate([mean, std], 1).astype(np.float32))
                rows["mask"].append(np.round(coverage(segs.components, k, msize) * 255).astype(np.uint8))
            bar.update()
    cat = {k: (np.concatenate(v) if v else None) for k, v in rows.items()}
    if cat["class"] is None:
        empty = {"image": np.int32, "index": np.int32, "class": np.int32, "area": np.float32}
        cat.update({k: np.zeros(0, d) for k, d in empty.items()})
        cat["colour"], cat["mask"] = np.zeros((0, 6), np.float32), np.zeros((0, *msize), np.uint8)
    by_class = np.lexsort((cat["index"], cat["image"], cat["class"]))
    seg_class = cat["class"][by_class]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(seg_class, minlength=c))]).astype(np.int64)
    tensors = {
        "images": torch.from_numpy(images), "components": torch.from_numpy(components),
        "layouts": torch.from_numpy(layouts), "contexts": torch.from_numpy(contexts),
        "seg_image": torch.from_numpy(cat["image"][by_class].copy()),
        "seg_index": torch.from_numpy(cat["index"][by_class].copy()),
        "seg_class": torch.from_numpy(seg_class.copy()),
        "seg_area": torch.from_numpy(cat["area"][by_class].copy()),
        "seg_colour": torch.from_numpy(cat["colour"][by_class].copy()),
        "masks": torch.from_numpy(cat["mask"][by_class].copy()),
        "class_offsets": torch.from_numpy(offsets),
    }
    if order is None:
        order, source = depth_order(votes), f"learnt from containment in {n} label maps"
    else:
        source = "given"
        if sorted(order) != list(range(c)):
            raise BankError(f"the depth order must place each of the {c} classes once")
    meta = {"format": BANK_FORMAT, "version": BANK_VERSION, "dataset": info.to_dict(), "data": data_spec,
            "image_size": [h, w], "mask_size": list(msize), "context_size": list(csize), "min_area": min_area,
            "order": [int(x) for x in order], "order_source": source, "names": names,
            "build_seconds": round(time.time() - t0, 2), "fingerprint": fingerprint(tensors)}
    return MemoryBank(meta, tensors)
