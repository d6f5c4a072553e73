"""Unpaired two-domain image data (CycleGAN / MUNIT style), for unpaired translation (``scgan-unpaired``).

Two datasets, one sample format:

* ``unpaired-folder``: two folders of images on disk. Either ``root`` in the CycleGAN layout (``root/trainA``,
  ``root/trainB``, ``root/testA``, ``root/testB``; split ``train`` reads ``*A``/``*B`` of ``train``, ``val`` and
  ``test`` read ``testA``/``testB``), or ``root_a`` and ``root_b``: the two domains' image folders themselves, used
  for every split (each overrides the folder ``root`` would give). Images of any size and mode: each is converted to
  RGB and, with ``preprocess=resize_and_crop`` (CycleGAN's default), resized to ``load_size`` square, then
  randomly cropped to ``crop_size`` and flipped in training, resized straight to ``crop_size`` otherwise; with
  ``preprocess=none`` every image must have the same size.
* ``synthetic-unpaired``: two domains of a built-in world, generated on the fly (no files): ``synthetic-landscapes``
  scenes filtered by season and/or time of day (``domain_a: summer``, ``domain_b: winter``; ``day``/``dusk``; or
  ``summer+day``). Domain A and B draw from two different seed streams, so the A and B samples of an index are
  different scenes; image ``k`` of a domain is a fixed function of ``(seed, split, k)``.

``serve`` picks what a sample is:

* ``pairs`` (training a translator): ``source`` (a domain-A image ``[3, H, W]`` in [-1, 1]), ``image`` (a domain-B
  image, the target-domain "real" image), ``name``, ``reference_name``, and for synthetic data ``source_label``
  (the source scene's layout, used by the content metric). Sample ``i`` has source ``i mod |A|``; its target image
  is drawn at random in the ``train`` split (a fresh draw each epoch: the training loop seeds every sample) and is
  image ``i mod |B|`` in other splits. No pairing is used. ``dataset.info.num_classes`` is 3: the model's input is
  the source's RGB channels.
* ``domains`` (training a domain classifier with ``semsynth segmenter train``): every image of A and of B (they
  alternate: A0, B0, A1, B1, ..., then the rest of the larger domain), with
  ``label`` a constant map of its domain (0 = A, 1 = B), ``info.class_names`` ``["A: <domain_a>", "B: <domain_b>"]``
  (``["A", "B"]`` for the CycleGAN layout; the folders' names with root_a / root_b).
"""

from __future__ import annotations

import operator
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataError
from . import DATASETS
from .base import DatasetInfo
from .worlds import image_tensor

SERVE = ("pairs", "domains")
IMAGE_CHANNEL_NAMES = ["red", "green", "blue"]
_SPLIT_IDS = ("train", "val", "test")
DOMAIN_PALETTE = [(230, 160, 40), (60, 120, 220)]


def _check_serve(owner: str, serve: str) -> None:
    if serve not in SERVE:
        raise ConfigError(f"{owner}: serve = {serve!r}; valid: pairs (source + target images, for training a "
                          f"translator), domains (images labelled by domain, for a domain classifier)")


def _check_split(owner: str, split: str) -> None:
    if not isinstance(split, str) or split not in _SPLIT_IDS:
        raise ConfigError(f"{owner}: unknown split {split!r}; valid splits are: {', '.join(_SPLIT_IDS)}")


def unpaired_info(name: str, serve: str, resolution: tuple[int, int], domains: tuple[str, str]) -> DatasetInfo:
    """The facts of an unpaired dataset: 3 input channels (pairs) or the 2 domains as classes (domains)."""
    if serve == "pairs":
        return DatasetInfo(name=name, num_classes=3, class_names=list(IMAGE_CHANNEL_NAMES), dontcare_index=None,
                           has_instance=False, palette=[(255, 0, 0), (0, 255, 0), (0, 0, 255)],
                           resolution=tuple(resolution))
    names = [f"{letter}: {d}" if d and d != letter else letter for letter, d in zip("AB", domains)]
    return DatasetInfo(name=name, num_classes=2, class_names=names,
                       dontcare_index=None, has_instance=False, palette=list(DOMAIN_PALETTE),
                       resolution=tuple(resolution))


class UnpairedDataset(torch.utils.data.Dataset):
    """What both unpaired datasets share: the two serving modes over ``domain_image(d, k)`` (d = 0 for A, 1 for B).

    Subclasses set ``info``, ``split``, ``serve``, ``domains`` (the two domains' names) and implement
    ``domain_size(d)``, ``domain_image(d, k) -> [3, H, W]`` and ``domain_name(d, k)``; ``domain_label(d, k)`` (the
    scene's layout, ``[H, W]`` int64) where the data has one."""

    info: DatasetInfo
    split: str
    serve: str
    domains: tuple[str, str]

    def domain_size(self, d: int) -> int:
        raise NotImplementedError

    def domain_image(self, d: int, k: int) -> torch.Tensor:
        raise NotImplementedError

    def domain_name(self, d: int, k: int) -> str:
        raise NotImplementedError

    def domain_label(self, d: int, k: int) -> torch.Tensor | None:
        return None

    def __len__(self) -> int:
        a, b = self.domain_size(0), self.domain_size(1)
        return max(a, b) if self.serve == "pairs" else a + b

    def domain_of(self, i: int) -> tuple[int, int]:
        """``domains`` mode: sample ``i`` -> (domain, image): A and B alternate (0 = A0, 1 = B0, 2 = A1, ...) while
        both have images, then the larger domain's remaining images follow (so that any first N are balanced)."""
        m = min(self.domain_size(0), self.domain_size(1))
        if i < 2 * m:
            return i % 2, i // 2
        return (0 if self.domain_size(0) > m else 1), m + (i - 2 * m)

    def reference_index(self, i: int) -> int:
        """The target image of pair ``i``: random in training (torch's RNG, seeded per sample by the training loop),
        else ``i mod |B|``."""
        n = self.domain_size(1)
        if self.split == "train":
            return int(torch.randint(n, ()).item())
        return i % n

    def __getitem__(self, i: int) -> dict:
        i = operator.index(i)
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"{self.info.name} index {i} out of range for {n} samples")
        i %= n
        if self.serve == "domains":
            d, k = self.domain_of(i)
            img = self.domain_image(d, k)
            return {"image": img, "label": torch.full(img.shape[1:], d, dtype=torch.int64),
                    "name": f"{'AB'[d]}_{self.domain_name(d, k)}"}
        a = i % self.domain_size(0)
        b = self.reference_index(i)
        out = {"source": self.domain_image(0, a), "image": self.domain_image(1, b), "name": self.domain_name(0, a),
               "reference_name": self.domain_name(1, b)}
        label = self.domain_label(0, a)
        if label is not None:
            out["source_label"] = label
        return out


# ------------------------------------------------------------------------------------------------------------
# synthetic-unpaired


def _world_domains() -> dict[str, dict[str, list[str]]]:
    """World -> {scene attribute -> its values} for the built-in worlds that have scene attributes."""
    from .synthetic_landscapes import SEASONS, TIMES_OF_DAY

    return {"synthetic-landscapes": {"season": list(SEASONS), "tod": list(TIMES_OF_DAY)}}


def parse_domain(world: str, text: str, which: str) -> dict[str, str]:
    """``"summer"``, ``"dusk"``, ``"summer+day"`` -> ``{"season": "summer", "tod": "day"}`` (scene filters)."""
    attrs = _world_domains()[world]
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"synthetic-unpaired: {which} = {text!r}; give a season and/or a time of day, e.g. summer, "
                          f"dusk or summer+day")
    out: dict[str, str] = {}
    for token in text.split("+"):
        token = token.strip()
        key = next((k for k, values in attrs.items() if token in values), None)
        if key is None:
            valid = "; ".join(f"{k}: {', '.join(v)}" for k, v in attrs.items())
            raise ConfigError(f"synthetic-unpaired: {which} = {text!r}: {token!r} is neither a season nor a time of "
                              f"day of {world} ({valid}); combine one of each with '+', e.g. summer+day")
        if key in out:
            raise ConfigError(f"synthetic-unpaired: {which} = {text!r} names two values of {key} ({out[key]}, "
                              f"{token}); a scene has one")
        out[key] = token
    return out


@DATASETS.register("synthetic-unpaired", "two domains of synthetic-landscapes (e.g. summer vs winter, day vs dusk), "
                                         "unpaired, generated on the fly; for scgan-unpaired")
class SyntheticUnpaired(UnpairedDataset):
    """Domains A and B of a built-in world: its scenes whose season / time of day match ``domain_a`` / ``domain_b``.

    ``num_samples`` images per domain; ``seed`` picks the scenes (A from stream ``2 seed``, B from ``2 seed + 1``).
    Domain image ``k`` is the ``k``-th matching scene of its stream: scenes are checked in order the first time they
    are asked for (about 4 ms of layout per scene checked at 64x64; a domain of share p checks 1/p scenes per image:
    summer 0.4, winter 0.15, day 0.5, dusk 0.08).
    """

    def __init__(self, split: str = "train", *, world: str = "synthetic-landscapes", domain_a: str = "summer",
                 domain_b: str = "winter", resolution: int = 64, num_samples: int = 1000, seed: int = 0,
                 serve: str = "pairs") -> None:
        self.info = self.describe(split, world=world, domain_a=domain_a, domain_b=domain_b, resolution=resolution,
                                  num_samples=num_samples, seed=seed, serve=serve)
        from .synthetic_landscapes import SyntheticLandscapes

        self.split, self.serve, self.world, self.num_samples, self.seed = split, serve, world, num_samples, seed
        self.domains = (domain_a, domain_b)
        self.filters = (parse_domain(world, domain_a, "domain_a"), parse_domain(world, domain_b, "domain_b"))
        huge = 2**40  # the world's index space: scenes are drawn from it in order
        self.worlds = [SyntheticLandscapes(split, resolution=resolution, num_samples=huge, seed=2 * seed + d)
                       for d in (0, 1)]
        # the scene choices are drawn before any size-dependent work: the smallest size tells them cheaply
        low = SyntheticLandscapes.MIN_RESOLUTION
        self.probes = [SyntheticLandscapes(split, resolution=low, num_samples=huge, seed=2 * seed + d)
                       for d in (0, 1)]
        self._matches: tuple[list[int], list[int]] = ([], [])
        self._scanned = [0, 0]

    @classmethod
    def describe(cls, split: str = "train", *, world: str = "synthetic-landscapes", domain_a: str = "summer",
                 domain_b: str = "winter", resolution: int = 64, num_samples: int = 1000, seed: int = 0,
                 serve: str = "pairs") -> DatasetInfo:
        owner = "synthetic-unpaired"
        _check_split(owner, split)
        _check_serve(owner, serve)
        worlds = _world_domains()
        if world not in worlds:
            raise ConfigError(f"{owner}: world = {world!r}; the built-in worlds with scene attributes to split into "
                              f"domains are: {', '.join(worlds)} (synthetic-faces has none)")
        fa, fb = parse_domain(world, domain_a, "domain_a"), parse_domain(world, domain_b, "domain_b")
        if fa == fb:
            raise ConfigError(f"{owner}: domain_a and domain_b are the same domain ({domain_a!r}); translation needs "
                              f"two, e.g. domain_a=summer domain_b=winter")
        from .synthetic_landscapes import SyntheticLandscapes

        step, low = SyntheticLandscapes.RESOLUTION_STEP, SyntheticLandscapes.MIN_RESOLUTION
        for key, v, ok, need in (("resolution", resolution, lambda r: r >= low and r % step == 0,
                                  f"a multiple of {step} and >= {low}"),
                                 ("num_samples", num_samples, lambda n: n >= 1, "an integer >= 1"),
                                 ("seed", seed, lambda n: 0 <= n < 2**62, "an integer >= 0")):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not ok(int(v)):
                raise ConfigError(f"{owner}: {key} must be {need}, got {v!r}")
        return unpaired_info(owner, serve, (int(resolution), int(resolution)), (domain_a, domain_b))

    def domain_size(self, d: int) -> int:
        return self.num_samples

    def world_index(self, d: int, k: int) -> int:
        """The index, in domain ``d``'s world stream, of its ``k``-th image."""
        if not 0 <= k < self.num_samples:
            raise IndexError(f"synthetic-unpaired: image {k} of domain {'AB'[d]} is out of range "
                             f"(num_samples={self.num_samples})")
        matches, want = self._matches[d], self.filters[d]
        limit = self._scanned[d] + 20000 * (k + 1 - len(matches))
        while len(matches) <= k:
            i = self._scanned[d]
            if i >= limit:
                raise DataError(f"synthetic-unpaired: no scene of {self.world} matched domain "
                                f"{'AB'[d]} = {self.domains[d]!r} in 20000 tries; choose a more common domain")
            self._scanned[d] += 1
            meta = self.probes[d].sample_meta(i)
            if all(meta.get(key) == value for key, value in want.items()):
                matches.append(i)
        return matches[k]

    def domain_arrays(self, d: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The uint8 image ``[H, W, 3]`` and layout ``[H, W]`` of domain ``d``'s image ``k``."""
        return self.worlds[d].sample_arrays(self.world_index(d, k))

    def domain_image(self, d: int, k: int) -> torch.Tensor:
        return image_tensor(self.domain_arrays(d, k)[0])

    def domain_label(self, d: int, k: int) -> torch.Tensor:
        return torch.from_numpy(self.domain_arrays(d, k)[1].astype(np.int64))

    def __getitem__(self, i: int) -> dict:
        if self.serve == "domains":
            return super().__getitem__(i)
        # render the source scene once for its image and its layout
        i = operator.index(i)
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"synthetic-unpaired index {i} out of range for {n} samples")
        i %= n
        a, b = i % self.num_samples, self.reference_index(i)
        image, label = self.domain_arrays(0, a)
        chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / 127.5 - 1
        return {"source": torch.from_numpy(chw), "image": self.domain_image(1, b), "name": self.domain_name(0, a),
                "reference_name": self.domain_name(1, b), "source_label": torch.from_numpy(label.astype(np.int64))}

    def domain_name(self, d: int, k: int) -> str:
        return f"{self.split}_{self.domains[d].replace('+', '-')}_{k:06d}"


# ------------------------------------------------------------------------------------------------------------
# unpaired-folder

FOLDER_LAYOUT = ("ROOT/trainA, ROOT/trainB, ROOT/testA, ROOT/testB (the CycleGAN layout), or data.root_a and "
                 "data.root_b: the two domains' image folders")


@DATASETS.register("unpaired-folder", "two folders of images (CycleGAN layout trainA/trainB/testA/testB, or "
                                      "root_a/root_b), unpaired; for scgan-unpaired")
class UnpairedFolder(UnpairedDataset):
    """Domain A and B images from disk (see the module docstring for the layout and the size policy).

    Every file with an image extension is checked when the dataset is built (its header is read): a file that is
    not an image, an empty folder, a missing folder and, with ``preprocess=none``, images of different sizes are
    :class:`DataError` s naming the file or folder. Files with other extensions are ignored (``notes`` lists them).
    """

    def __init__(self, split: str = "train", *, root: str | None = None, root_a: str | None = None,
                 root_b: str | None = None, preprocess: str = "resize_and_crop", load_size: int = 286,
                 crop_size: int = 256, flip: bool = True, serve: str = "pairs") -> None:
        from .folder import list_files

        owner = "unpaired-folder"
        self.info = self.describe(split, root=root, root_a=root_a, root_b=root_b, preprocess=preprocess,
                                  load_size=load_size, crop_size=crop_size, flip=flip, serve=serve)
        self.split, self.serve = split, serve
        self.pre = self._preprocess(split, preprocess, load_size, crop_size, flip)
        folders = self.folders(split, root, root_a, root_b)
        self.domains = self.domain_names(root_a, root_b)
        self.files: list[list[Path]] = []
        self.notes: list[str] = []
        sizes: list[dict[tuple[int, int], Path]] = []
        for d, folder in enumerate(folders):
            key = f"data.root_{'ab'[d]}" if (root_a, root_b)[d] is not None else "data.root"
            if not folder.is_dir():
                what = "is a file, not a folder" if folder.exists() else "does not exist"
                raise DataError(f"{owner}: the domain {'AB'[d]} folder {folder} {what}; check {key} (layout: "
                                f"{FOLDER_LAYOUT})")
            files, others = self._list_images(folder, list_files)
            if others:
                self.notes.append(f"{len(others)} file(s) in {folder} are not images and are ignored: "
                                  + ", ".join(p.name for p in others[:5]) + (" ..." if len(others) > 5 else ""))
            if not files:
                extra = (f" ({len(others)} other file(s): {', '.join(p.name for p in others[:3])})" if others else "")
                raise DataError(f"{owner}: no images in the domain {'AB'[d]} folder {folder}{extra}; it needs "
                                f"images ({', '.join(self._exts())}); check {key}")
            sizes.append(self._check_images(files))
            self.files.append(files)
        if preprocess == "none":
            self._check_one_size(sizes)
            (w, h), _ = next(iter(sizes[0].items()))
            self.info.resolution = self.pre.resolution((h, w))

    # -- facts ---------------------------------------------------------------------------------------------------

    @staticmethod
    def _exts() -> tuple[str, ...]:
        from .folder import IMAGE_EXTS

        return IMAGE_EXTS

    @staticmethod
    def _preprocess(split: str, preprocess: str, load_size: int, crop_size: int, flip: bool):
        from .folder import make_preprocess

        return make_preprocess("unpaired-folder", split == "train", preprocess, load_size, crop_size, 1.0, flip)

    @classmethod
    def describe(cls, split: str = "train", *, root: str | None = None, root_a: str | None = None,
                 root_b: str | None = None, preprocess: str = "resize_and_crop", load_size: int = 286,
                 crop_size: int = 256, flip: bool = True, serve: str = "pairs") -> DatasetInfo:
        """The facts without disk access (``preprocess=none``: the nominal ``crop_size``; the built dataset has the
        images' own size)."""
        owner = "unpaired-folder"
        _check_split(owner, split)
        _check_serve(owner, serve)
        from .folder import check_flags

        check_flags(owner, flip=flip)
        cls.folders(split, root, root_a, root_b)  # the root options are checked here
        pre = cls._preprocess(split, preprocess, load_size, crop_size, flip)
        return unpaired_info(owner, serve, pre.resolution(), cls.domain_names(root_a, root_b))

    @staticmethod
    def domain_names(root_a: str | None, root_b: str | None) -> tuple[str, str]:
        """``A`` and ``B`` for the CycleGAN layout (the same in every split), else the folders' names."""
        return tuple(Path(r).expanduser().name or "AB"[d] if r is not None else "AB"[d]
                     for d, r in enumerate((root_a, root_b)))

    @staticmethod
    def folders(split: str, root: str | None, root_a: str | None, root_b: str | None) -> tuple[Path, Path]:
        """The domain folders of ``split``: ``root_a`` / ``root_b``, else ``root/<split>A`` / ``root/<split>B``."""
        for key, v in (("root", root), ("root_a", root_a), ("root_b", root_b)):
            if v is not None and (not isinstance(v, str) or not v.strip()):
                raise ConfigError(f"unpaired-folder: data.{key} = {v!r} should be a folder path (or null)")
        if root is None and (root_a is None or root_b is None):
            missing = " and ".join(f"data.{k}" for k, v in (("root_a", root_a), ("root_b", root_b)) if v is None)
            raise ConfigError(f"unpaired-folder: {missing} not given; give data.root_a and data.root_b (the two "
                              f"domains' image folders), or data.root (a folder with trainA/, trainB/, testA/, testB/, "
                              f"the CycleGAN layout)")
        part = "train" if split == "train" else "test"
        a = Path(root_a).expanduser() if root_a is not None else Path(root).expanduser() / f"{part}A"
        b = Path(root_b).expanduser() if root_b is not None else Path(root).expanduser() / f"{part}B"
        return a, b

    # -- listing and checking --------------------------------------------------------------------------------

    def _list_images(self, folder: Path, list_files) -> tuple[list[Path], list[Path]]:
        files = list_files(folder)
        exts = self._exts()
        images = [p for p in files if p.suffix.lower() in exts]
        others = [p for p in files if p.suffix.lower() not in exts]
        return images, others

    @staticmethod
    def _check_images(files: list[Path]) -> dict[tuple[int, int], Path]:
        """Read every header (a file that is not an image raises, naming it); returns size -> first file."""
        from .folder import image_size

        sizes: dict[tuple[int, int], Path] = {}
        for p in files:
            sizes.setdefault(image_size(p), p)
        return sizes

    @staticmethod
    def _check_one_size(sizes: list[dict[tuple[int, int], Path]]) -> None:
        seen: dict[tuple[int, int], Path] = {}
        for s in sizes:
            for size, path in s.items():
                seen.setdefault(size, path)
        if len(seen) > 1:
            (s1, p1), (s2, p2) = list(seen.items())[:2]
            raise DataError(f"unpaired-folder: images of different sizes with preprocess=none: {p1} is "
                            f"{s1[0]}x{s1[1]}, {p2} is {s2[0]}x{s2[1]} (WxH); resize them to one size, or let the "
                            f"dataset resize them: --set data.preprocess=resize_and_crop (the default)")

    # -- samples -----------------------------------------------------------------------------------------------

    def domain_size(self, d: int) -> int:
        return len(self.files[d])

    def domain_name(self, d: int, k: int) -> str:
        return self.files[d][k].stem

    def domain_image(self, d: int, k: int) -> torch.Tensor:
        from .folder import read_image
        from .transforms import apply_to_image, image_to_tensor

        path = self.files[d][k]
        img = read_image(path)
        plan = self.pre.plan(img.size, str(path))
        return image_to_tensor(apply_to_image(img, plan))


__all__ = ["SERVE", "SyntheticUnpaired", "UnpairedDataset", "UnpairedFolder", "parse_domain", "unpaired_info"]
