"""The built-in procedural worlds (``synthetic-faces``, ``synthetic-landscapes``) and writing one to disk.

A world is a dataset class generated on the fly: it takes ``(split, resolution=, num_samples=, seed=)``,
has ``info`` (:class:`DatasetInfo`), ``sample_arrays(i)`` -> ``(image uint8 [H, W, 3], label uint8 [H, W])``
and the class attributes ``MIN_RESOLUTION`` and ``RESOLUTION_STEP`` (resolutions are multiples of the step).
``semsynth data make NAME`` writes any of them in the standard folder layout that the ``custom`` dataset reads
back.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml

from ..errors import ConfigError
from .base import DatasetInfo

SPLITS = {"train": 0, "val": 1, "test": 2}


class ProceduralWorld(torch.utils.data.Dataset):
    """What every built-in world shares: the checked options, the length and indexing, and one random generator
    per sample drawn from ``(seed, split, index)``, so that a sample never depends on access order or workers.
    A world sets ``NAME``, ``CLASS_NAMES``, ``PALETTE``, ``MIN_RESOLUTION``, ``RESOLUTION_STEP``, keeps its own
    typed constructor (its config, with its defaults) and calls :meth:`_setup` from it."""

    NAME: str
    CLASS_NAMES: list[str]
    PALETTE: list[tuple[int, int, int]]
    MIN_RESOLUTION: int
    RESOLUTION_STEP: int

    def _check_int(self, name: str, value: object, ok: Callable[[int], bool], need: str) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not ok(int(value)):
            raise ConfigError(f"{self.NAME}: {name} must be {need}, got {value!r}")
        return int(value)

    def _setup(self, split: str, resolution: int, num_samples: int, seed: int) -> None:
        if not isinstance(split, str) or split not in SPLITS:
            raise ConfigError(f"{self.NAME}: unknown split {split!r}; valid splits are: {', '.join(SPLITS)}")
        step, low = self.RESOLUTION_STEP, self.MIN_RESOLUTION
        resolution = self._check_int("resolution", resolution, lambda r: r >= low and r % step == 0,
                                     f"a multiple of {step} and >= {low}")
        num_samples = self._check_int("num_samples", num_samples, lambda n: n >= 1, "an integer >= 1")
        seed = self._check_int("seed", seed, lambda n: n >= 0, "an integer >= 0")
        self.split, self.resolution, self.num_samples, self.seed = split, resolution, num_samples, seed
        self.info = DatasetInfo(name=self.NAME, num_classes=len(self.CLASS_NAMES),
                                class_names=list(self.CLASS_NAMES), dontcare_index=None, has_instance=False,
                                palette=list(self.PALETTE), resolution=(resolution, resolution))

    def __len__(self) -> int:
        return self.num_samples

    def _index(self, i: int) -> int:
        i = operator.index(i)
        if not -self.num_samples <= i < self.num_samples:
            raise IndexError(f"{self.NAME} index {i} out of range for {self.num_samples} samples")
        return i % self.num_samples

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, SPLITS[self.split], self._index(i)]))

    def sample_arrays(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The uint8 image ``[H, W, 3]`` and label ``[H, W]`` of sample ``i`` (each world renders its own)."""
        raise NotImplementedError

    def __getitem__(self, i: int) -> dict:
        i = self._index(i)
        image, label = self.sample_arrays(i)
        return {"image": image_tensor(image), "label": torch.from_numpy(label.astype(np.int64)),
                "name": f"{self.split}_{i:06d}"}


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """A uint8 ``[H, W, 3]`` image as ``[3, H, W]`` float32 in [-1, 1]. Converted in numpy: torch's intra-op
    threads cost ~10x more than the work on a busy small CPU."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / 127.5 - 1)


def builtin_worlds() -> dict[str, type]:
    """Registered name -> dataset class of every built-in procedural world."""
    from .synthetic_faces import SyntheticFaces
    from .synthetic_landscapes import SyntheticLandscapes

    return {"synthetic-faces": SyntheticFaces, "synthetic-landscapes": SyntheticLandscapes}


def world_class(name: str) -> type:
    """The dataset class of built-in world ``name``; ConfigError naming the worlds otherwise."""
    worlds = builtin_worlds()
    if name not in worlds:
        raise ConfigError(f"{name!r} is not a built-in world; 'data make' can write: {', '.join(worlds)}")
    return worlds[name]


def default_resolution(cls: type) -> int:
    """The resolution a world's class makes when none is given (its constructor's default)."""
    return inspect.signature(cls).parameters["resolution"].default


def write_world(dataset, out_dir: str | Path, progress: bool = True) -> Path:
    """Write every sample of a built-in world ``dataset`` into ``out_dir``: ``images/<split>_<index>.png``
    (RGB), ``labels/<split>_<index>.png`` (8-bit single-channel class ids) and ``dataset.yaml`` (name,
    num_classes, class_names, palette as lists, dontcare: null). Returns ``out_dir``.

    The files hold exactly ``dataset.sample_arrays(i)`` for ``i < len(dataset)``. ``progress``: show progress
    on stderr (``utils.progress``)."""
    from ..utils.files import atomic_write_text
    from ..utils.images import save_png
    from ..utils.progress import progress_bar

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    num, split, info = len(dataset), dataset.split, dataset.info
    with progress_bar(num, "data make", unit="img", enabled=progress) as bar:
        for i in range(num):
            image, label = dataset.sample_arrays(i)
            name = f"{split}_{i:06d}"
            save_png(image, out / "images" / f"{name}.png")  # atomic: a full disk leaves no torn file
            save_png(label, out / "labels" / f"{name}.png")
            bar.update()
    meta = {"name": info.name, "num_classes": info.num_classes, "class_names": list(info.class_names),
            "palette": [list(c) for c in info.palette], "dontcare": None}
    atomic_write_text(yaml.safe_dump(meta, sort_keys=False), out / "dataset.yaml")
    return out


def class_frequencies(dataset, num: int | None = None) -> dict[str, tuple[float, float]]:
    """Class name -> (share of samples in which the class appears, share of all pixels), over the first
    ``num`` samples of a built-in world (all of them by default)."""
    import numpy as np

    k = dataset.info.num_classes
    num = len(dataset) if num is None else min(num, len(dataset))
    present, pixels = np.zeros(k), np.zeros(k)
    for i in range(num):
        counts = np.bincount(dataset.sample_arrays(i)[1].ravel(), minlength=k)[:k]
        present += counts > 0
        pixels += counts
    return {name: (float(present[c] / num), float(pixels[c] / max(pixels.sum(), 1)))
            for c, name in enumerate(dataset.info.class_names)}
