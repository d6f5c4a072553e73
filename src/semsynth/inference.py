"""Synthesis from an exported model: label maps in, images out; seeds, style images and interpolation.

>>> syn = Synthesizer.from_pretrained("runs/00000-scgan-synthetic-faces/model")
>>> label = syn.read_label("layout.png")                 # [H, W] channel ids, validated
>>> images = syn.generate(label[None], seeds=[0, 1, 2])   # [3, 3, H, W] in [-1, 1]
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .data import DatasetInfo
from .errors import DataError, SemsynthError
from .layers import semantic_input
from .utils.runtime import select_device


def seed_noise(seed: int, z_dim: int) -> torch.Tensor:
    """The latent of a seed: z ~ N(0, I) from a generator seeded with ``seed`` (the same on every device)."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(z_dim, generator=g)


class Synthesizer:
    """An exported generator (+ optional style encoder) with its dataset facts."""

    def __init__(self, G: torch.nn.Module, E: torch.nn.Module | None, info: DatasetInfo, config: dict,
                 device: torch.device) -> None:
        self.G, self.E, self.info, self.config, self.device = G.eval(), E, info, config, device
        gcfg = config["generator"]
        if getattr(G, "translates_images", False):  # scgan-unpaired: images in, not label maps
            raise SemsynthError(f"the model is an image-translation model ({gcfg.get('name')!r}): it translates "
                                f"images and does not synthesise from label maps; use 'semsynth translate --model "
                                f"DIR --images DIR --out DIR' (docs/unpaired.md)")
        self.z_dim = int(getattr(G, "latent_dim", 0))  # the size of z the generator takes (0: none)
        self.multimodal = self.z_dim > 0
        self.resolution = tuple(getattr(G, "resolution", info.resolution))
        table = config.get("label_values")  # raw file value -> channel, as the training data mapped it
        self.label_table = {int(k): int(v) for k, v in table.items()} if table else None

    @classmethod
    def from_pretrained(cls, model_dir: str | os.PathLike, device: str = "auto", *, threads: int | None = None,
                        tune_allocator: bool = True) -> Synthesizer:
        """Load an exported model directory. ``threads``: CPU threads for torch (``torch.set_num_threads``,
        process-wide; None leaves PyTorch's default). ``tune_allocator``: apply the glibc malloc settings the CLI
        uses (:func:`semsynth.utils.runtime.tune_malloc`: large tensors stay in the heap instead of a fresh mmap
        per allocation, whose page faults cost 13-35 % of a step on CPU; process-wide, Linux/glibc only)."""
        from .training.checkpoint import load_model
        from .utils.runtime import tune_malloc

        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
                raise SemsynthError(f"threads = {threads!r}; give a positive number of CPU threads, or None")
            torch.set_num_threads(threads)
        if tune_allocator:
            tune_malloc()
        dev = select_device(device)
        G, E, info, config = load_model(model_dir, dev)
        return cls(G, E, info, config, dev)

    def prepare_for_inference(self) -> bool:
        """Prepare the generator in place for inference (:func:`semsynth.inference_prep.prepare_for_inference`:
        spectral norm and batch norm folded, exact rewrites, equal outputs within float rounding), once; ``self.G``
        is then inference-only (no training, no checkpoint from it). Returns whether it was prepared (a generator
        the preparation does not apply to is left as it is). ``semsynth generate`` calls it.

        On the CPU only: its rewrites are made for oneDNN (channels-last kernels, packed kernels, Winograd, look-ups
        on the label layout in place of convolutions), and on a GPU they cost more than they save. On an NVIDIA
        H200 (batch 8, 256x256, benchmarks/bench_cuda.py) the prepared SC-GAN took 59 ms against 31 ms as loaded,
        SPADE 176 ms against 40 ms. Elsewhere the model runs as loaded (False); the function itself
        (:func:`semsynth.inference_prep.prepare_for_inference`) still prepares a model on any device."""
        from .inference_prep import PrepareError, prepare_for_inference

        if getattr(self.G, "prepared_for_inference", False):
            return True
        if self.device.type != "cpu":
            return False
        try:
            self.G = prepare_for_inference(self.G, copy=False)
        except PrepareError:
            return False
        return True

    # -- inputs ------------------------------------------------------------------------------------------------

    def read_label(self, path: str | os.PathLike, image: Image.Image | None = None) -> torch.Tensor:
        """A label file -> ``[H, W]`` channel ids, read exactly as the datasets read theirs
        (:func:`semsynth.data.folder.read_label`: the same accepted modes, the same messages, which name the file).
        Class-id files hold the dataset's raw values, mapped as in training (the model's ``label_values``);
        colour RGB(A) files, which a dataset of class ids rejects, are decoded with the model's palette (exact
        colours). Every problem raises a :class:`~semsynth.data.folder.SampleError` (a ``DataError``).
        ``image``: an image already opened and decoded (``semsynth serve``'s uploads); ``path`` then only names it."""
        from .data.folder import read_label

        path = Path(path)
        read = read_label(path, colour_rgb=True, image=image)
        if read.values.ndim == 3:
            return torch.from_numpy(self._decode_colours(read.values, path))
        return torch.from_numpy(self._map_raw(read.values, path))

    def _map_raw(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Raw file values -> channel ids (int64) through the model's ``label_values`` table (identity
        ``0..num_classes-1`` without one), as :class:`~semsynth.data.transforms.LabelMapping` maps training data;
        any other value raises ``out-of-range`` naming the file and the values."""
        from .data.folder import SampleError
        from .data.transforms import LabelMapping

        n = self.info.num_classes
        mapping = getattr(self, "_label_mapping", None)
        if mapping is None:
            table = self.label_table if self.label_table is not None else {v: v for v in range(n)}
            wrong = sorted(k for k, v in table.items() if not 0 <= v < n)
            if wrong or not table:
                raise DataError(f"{self.info.name}: the model's label_values (config.json) map "
                                f"{', '.join(f'{k} -> {table[k]}' for k in wrong[:5]) or 'nothing'}, but its "
                                f"channels are 0..{n - 1}; the model files are inconsistent: export the model again")
            valid = sorted(table)
            mapping = LabelMapping(table, n, f"{valid[0]}..{valid[-1]}")
            self._label_mapping = mapping
        mapped, bad = mapping.split(raw)
        if bad:
            shown = sorted(bad)[:10]
            if self.label_table is None:
                msg, fix = (f"label values {shown} are outside the model's classes 0..{n - 1} ({self.info.name})",
                            "check that the layout was made for this model (class ids 0.."
                            f"{n - 1}, or colours of its palette as RGB)")
            else:
                valid = sorted(self.label_table)
                msg, fix = (f"label values {shown} are not label values of {self.info.name} (valid: "
                            f"{valid[0]}..{valid[-1]}, as in its label files)",
                            "use the dataset's own label values, as in its label files (docs/synthesis.md)")
            px = sum(bad.values())
            raise SampleError("out-of-range", path, f"{msg}; {px:,} pixel(s)", fix)
        return mapped.astype(np.int64)

    def _decode_colours(self, rgb: np.ndarray, path: Path) -> np.ndarray:
        """Colours ``[H, W, 3]`` -> channel ids (int64) with the model's palette, exact colours only (a colour the
        palette lists twice is its first class); others raise ``unknown-colour`` naming the file and colours."""
        from .data.folder import SampleError, colour_table, match_colours

        table = getattr(self, "_colour_table", None)
        if table is None:
            table = self._colour_table = colour_table(self.info.palette)
        ids, unknown = match_colours(rgb, table)
        if unknown:
            colours = sorted([[c >> 16, (c >> 8) & 255, c & 255] for _, c in unknown])[:5]
            raise SampleError("unknown-colour", path, f"colours {colours} are not in the {self.info.name} palette",
                              "paint layouts with the palette colours (semsynth models / the dataset docs list them), "
                              "or save class ids as an 8-bit greyscale PNG")
        return ids

    def read_image(self, path: str | os.PathLike) -> torch.Tensor:
        """An RGB image resized (bicubic) to the model's resolution, ``[3, H, W]`` in ``[-1, 1]``."""
        try:
            img = Image.open(path).convert("RGB")
        except (OSError, SyntaxError, ValueError) as e:
            raise DataError(f"{path}: cannot read this image ({e})") from e
        h, w = self.resolution
        img = img.resize((w, h), Image.BICUBIC)
        return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 127.5 - 1

    def read_instance(self, path: str | os.PathLike, size: tuple[int, int] | None = None,
                      layout: str = "the layout", image: Image.Image | None = None) -> torch.Tensor:
        """An instance-id file -> ``[H, W]`` int64 ids, read as the datasets read theirs
        (:func:`semsynth.data.folder.read_instance`: greyscale ids, RGB colours packed into one id). ``size``:
        the ``(H, W)`` of its ``layout``; a map of another size raises ``size-mismatch`` (a
        :class:`~semsynth.data.folder.SampleError`)."""
        from .data.folder import SampleError, read_instance

        ids = read_instance(Path(path), image=image)
        if size is not None and tuple(ids.shape) != tuple(size):
            raise SampleError("size-mismatch", path, f"instance map is {ids.shape[1]}x{ids.shape[0]} but {layout} is "
                              f"{size[1]}x{size[0]}", "give the instance map of that layout, at its size")
        return torch.from_numpy(ids.astype(np.int64, copy=False))

    def prepare(self, labels: torch.Tensor, instances: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, H, W]`` channel ids (and, for a model with an instance-edge channel, ``[B, H, W]`` instance ids of the
        same size) -> the generator's input at the model's resolution: both resized (nearest) as the layout, the
        edges computed from the resized ids as in training (:func:`semsynth.layers.semantic_input`). A model that
        reads instance edges and gets no instance map sees an empty edge channel (no instance boundaries)."""
        if labels.dim() == 2:
            labels = labels[None]
        if instances is not None:
            if not self.info.has_instance:
                raise SemsynthError(f"this model reads no instance-edge channel ({self.info.name}: "
                                    f"{self.info.num_classes} label channels only); give no instance maps")
            if instances.dim() == 2:
                instances = instances[None]
            if tuple(instances.shape) != tuple(labels.shape):
                raise SemsynthError(f"the instance maps {tuple(instances.shape)} and the layouts "
                                    f"{tuple(labels.shape)} differ in size; give one instance map per layout, at "
                                    f"its size")
        h, w = self.resolution
        if tuple(labels.shape[-2:]) != (h, w):
            labels = F.interpolate(labels[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
            if instances is not None:  # float64 holds every 32-bit id exactly
                instances = F.interpolate(instances[:, None].double(), size=(h, w), mode="nearest")[:, 0].long()
        inst = None
        if self.info.has_instance:
            inst = instances if instances is not None else torch.zeros_like(labels)  # no instance map: no edges
        return semantic_input(labels.to(self.device), self.info.num_classes,
                              inst.to(self.device) if inst is not None else None)

    # -- synthesis -----------------------------------------------------------------------------------------------

    def style_z(self, images: torch.Tensor) -> torch.Tensor:
        """The encoder's mean latent of style images ``[B, 3, H, W]`` (guided synthesis)."""
        if self.E is None:
            raise SemsynthError("this model has no style encoder; --style needs a model trained with an encoder "
                                "(VAE), such as scgan-celeba or scgan-synthetic-faces")
        with torch.no_grad():
            mu, _ = self.E(images.to(self.device))
        return mu

    def check_multimodal(self, what: str) -> None:
        if not self.multimodal:
            raise SemsynthError(f"{what} needs a multi-modal model; this one is deterministic (generator "
                                f"{self.config['generator'].get('name')!r} takes no latent z): every seed gives the "
                                f"same image")

    @torch.no_grad()
    def generate(self, labels: torch.Tensor, seeds: Sequence[int] | None = None, z: torch.Tensor | None = None,
                 batch_size: int = 8, instances: torch.Tensor | None = None) -> torch.Tensor:
        """Images for ``labels`` ``[B, H, W]`` (and their ``instances``, see :meth:`prepare`): one per label (``z``
        [B, z_dim] or seed 0), or, with ``seeds``, one per (label, seed) as ``[B, S, 3, H, W]``. The latents of a
        batch are drawn when it runs, so memory is bounded by ``batch_size`` (plus the returned images)."""
        sem = self.prepare(labels, instances)
        if seeds is not None:
            self.check_multimodal("--seeds")
            out = []
            for i in range(sem.shape[0]):
                out.append(torch.cat([img for _, img in self.iter_seeds(sem[i : i + 1], seeds, batch_size)]))
            return torch.stack(out)
        if self.multimodal and z is None:
            z = seed_noise(0, self.z_dim).expand(sem.shape[0], -1)
        return self._run(sem, z, batch_size)

    @torch.no_grad()
    def iter_seeds(self, sem: torch.Tensor, seeds: Sequence[int], batch_size: int = 8):
        """For one prepared layout ``sem`` ``[1, C, H, W]``: yields ``(seeds of the batch, images [b, 3, H, W])``
        batch by batch (a streaming generator: nothing beyond one batch is held)."""
        for a in range(0, len(seeds), batch_size):
            batch = [int(s) for s in seeds[a : a + batch_size]]
            zs = torch.stack([seed_noise(s, self.z_dim) for s in batch])
            yield batch, self._run(sem.expand(len(batch), -1, -1, -1), zs, batch_size)

    def _run(self, sem: torch.Tensor, z: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        outs = []
        for a in range(0, sem.shape[0], batch_size):
            zz = z[a : a + batch_size].to(self.device) if z is not None else None
            outs.append(self.G(sem[a : a + batch_size], zz).float().cpu())
        return torch.cat(outs)

    # -- local re-sampling (OASIS, Sec. 3.3; OASIS#25) -------------------------------------------------------------

    def check_spatial_latent(self) -> None:
        """Local re-sampling needs a generator that takes z per pixel, ``[B, z_dim, H, W]`` (``oasis``)."""
        self.check_multimodal("local re-sampling (--resample-from)")
        if not getattr(self.G, "spatial_latent", False):
            raise SemsynthError(f"local re-sampling needs a generator that takes spatial noise z [B, z_dim, H, W] "
                                f"(such as oasis); generator {self.config['generator'].get('name')!r} takes one "
                                f"latent vector per image, so new noise cannot be put into one region: use --seeds "
                                f"alone for whole new samples")

    def class_ids(self, text: str) -> list[int]:
        """``--resample-class``: comma-separated class names (as ``info.class_names``, case-insensitive) or channel
        ids -> channel ids."""
        names = {n.lower(): i for i, n in reversed(list(enumerate(self.info.class_names)))}
        ids = []
        for part in (p.strip() for p in str(text).split(",")):
            if part.isdigit() and int(part) < self.info.num_classes:
                ids.append(int(part))
            elif part.lower() in names:
                ids.append(names[part.lower()])
            else:
                shown = ", ".join(self.info.class_names[:30]) + (" ..." if self.info.num_classes > 30 else "")
                raise SemsynthError(f"--resample-class {text!r}: {part!r} is not a class of {self.info.name} (give "
                                    f"names or channel ids 0..{self.info.num_classes - 1}, comma-separated): {shown}")
        return ids

    def read_mask(self, path: str | os.PathLike) -> torch.Tensor:
        """``--resample-mask``: a PNG painted at the layout's size; its non-zero pixels (in any channel, alpha
        ignored; palette images: non-zero indices) are the region, ``[H, W]`` bool."""
        try:
            with Image.open(path) as img:
                img.load()
                arr = np.asarray(img if img.mode in ("L", "1", "P", "I", "I;16", "F") else img.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as e:
            raise DataError(f"--resample-mask {path}: cannot read this image ({e}); give a PNG whose non-zero "
                            f"pixels mark the region") from e
        mask = arr != 0 if arr.ndim == 2 else (arr != 0).any(axis=-1)
        return torch.from_numpy(np.ascontiguousarray(mask))

    def _resize_ids(self, labels: torch.Tensor) -> torch.Tensor:
        """``[B, H, W]`` integer maps at the model's resolution (nearest, as :meth:`prepare` resizes layouts)."""
        h, w = self.resolution
        if tuple(labels.shape[-2:]) == (h, w):
            return labels
        return F.interpolate(labels[:, None].float(), size=(h, w), mode="nearest")[:, 0].to(labels.dtype)

    def region_mask(self, labels: torch.Tensor, classes: Sequence[int] | None = None,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
        """The re-sampling region ``[B, H, W]`` (bool, at the model's resolution) of layouts ``[B, H, W]``: their
        pixels of ``classes``, or ``mask`` (``[H, W]`` or ``[B, H, W]`` at the layouts' size)."""
        if labels.dim() == 2:
            labels = labels[None]
        if (classes is None) == (mask is None):
            raise SemsynthError("give the region to re-sample as classes or as a mask (one of them)")
        if mask is None:
            region = torch.isin(labels.long(), torch.tensor(list(classes), dtype=torch.long))
        else:
            mask = mask if mask.dim() == 3 else mask[None].expand(labels.shape[0], -1, -1)
            if tuple(mask.shape[-2:]) != tuple(labels.shape[-2:]):
                raise SemsynthError(f"--resample-mask: the mask is {mask.shape[-1]}x{mask.shape[-2]} (WxH) but the "
                                    f"layout is {labels.shape[-1]}x{labels.shape[-2]}; paint the mask at the layout's "
                                    f"size")
            region = mask.bool()
        return self._resize_ids(region.to(torch.uint8)).bool()

    def local_noise(self, base_seed: int, seed: int, region: torch.Tensor) -> torch.Tensor:
        """Spatial noise ``[B, z_dim, H, W]`` for regions ``[B, H, W]``: seed ``seed``'s latent inside, seed
        ``base_seed``'s everywhere else (each seed's latent is one vector, broadcast over its pixels)."""
        za, zb = seed_noise(base_seed, self.z_dim), seed_noise(seed, self.z_dim)
        inside = region[:, None].to(za.device)
        return torch.where(inside, zb[None, :, None, None], za[None, :, None, None])

    @torch.no_grad()
    def iter_resample(self, sem: torch.Tensor, region: torch.Tensor, base_seed: int, seeds: Sequence[int],
                      batch_size: int = 8):
        """For one prepared layout ``sem`` ``[1, C, H, W]`` and its region ``[1, H, W]``: yields ``(seeds of the
        batch, images [b, 3, H, W])``, the image of ``base_seed`` with each seed's noise inside the region."""
        self.check_spatial_latent()
        for a in range(0, len(seeds), batch_size):
            batch = [int(s) for s in seeds[a : a + batch_size]]
            zs = torch.cat([self.local_noise(base_seed, s, region) for s in batch])
            yield batch, self._run(sem.expand(len(batch), -1, -1, -1), zs, batch_size)

    @torch.no_grad()
    def resample(self, labels: torch.Tensor, base_seed: int, seeds: Sequence[int],
                 classes: Sequence[int] | None = None, mask: torch.Tensor | None = None,
                 batch_size: int = 8, instances: torch.Tensor | None = None) -> torch.Tensor:
        """Local re-sampling: for each layout ``[B, H, W]`` (or one ``[H, W]``) and seed, the image of ``base_seed``
        with the noise inside the region (pixels of ``classes``, or ``mask`` ``[H, W]``) taken from the seed;
        ``[B, S, 3, H, W]``. Outside the region the noise is ``base_seed``'s exactly; the image there changes only
        through the generator's receptive field."""
        self.check_spatial_latent()
        if labels.dim() == 2:
            labels = labels[None]
        region = self.region_mask(labels, classes, mask)
        sem = self.prepare(labels, instances)
        out = []
        for i in range(sem.shape[0]):
            imgs = [img for _, img in self.iter_resample(sem[i : i + 1], region[i : i + 1], base_seed, seeds,
                                                         batch_size)]
            out.append(torch.cat(imgs))
        return torch.stack(out)

    def interpolation_latents(self, seed_a: int, seed_b: int, steps: int) -> torch.Tensor:
        """``[steps, z_dim]`` latents on the straight line between two seeds' latents (paper Fig. 8)."""
        self.check_multimodal("--interpolate")
        if steps < 2:
            raise SemsynthError(f"--steps {steps}: need at least 2 (the two end points)")
        if steps > MAX_STEPS:
            raise SemsynthError(f"--steps {steps}: at most {MAX_STEPS:,} images in one interpolation")
        za, zb = seed_noise(seed_a, self.z_dim), seed_noise(seed_b, self.z_dim)
        t = torch.linspace(0, 1, steps)[:, None]
        return (1 - t) * za + t * zb

    @torch.no_grad()
    def interpolate(self, label: torch.Tensor, seed_a: int, seed_b: int, steps: int,
                    batch_size: int = 8, instance: torch.Tensor | None = None) -> torch.Tensor:
        """``steps`` images along the straight line between the latents of two seeds (paper Fig. 8)."""
        z = self.interpolation_latents(seed_a, seed_b, steps)
        sem = self.prepare(label[None] if label.dim() == 2 else label,
                           instance[None] if instance is not None and instance.dim() == 2 else instance)
        return self._run(sem.expand(steps, -1, -1, -1), z, batch_size)


MAX_SEEDS = 100_000  # seeds in one command (each is an image per layout)
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes 64-bit seeds
MAX_STEPS = 10_000  # images in one interpolation


class Seeds(Sequence):
    """The seeds of ``--seeds`` as ranges, not as a list: ``len``, indexing and slicing without materialising
    them (``Seeds([(0, 99)])`` is 100 seeds)."""

    def __init__(self, ranges: Sequence[tuple[int, int]]) -> None:
        self.ranges = [(int(lo), int(hi)) for lo, hi in ranges]
        self._starts = []
        n = 0
        for lo, hi in self.ranges:
            self._starts.append(n)
            n += hi - lo + 1
        self._len = n

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self._len))]
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(i)
        import bisect

        r = bisect.bisect_right(self._starts, i) - 1
        return self.ranges[r][0] + (i - self._starts[r])

    def __iter__(self):
        for lo, hi in self.ranges:
            yield from range(lo, hi + 1)

    def __eq__(self, other) -> bool:
        return list(self) == list(other) if isinstance(other, (list, tuple, Seeds)) else NotImplemented

    def __repr__(self) -> str:
        return "Seeds(" + ",".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in self.ranges) + ")"


def parse_seeds(text: str, limit: int = MAX_SEEDS) -> Seeds:
    """``"0-7"``, ``"1,5,9"`` or ``"0-3,10"`` -> :class:`Seeds` (non-negative, no repeats, at most ``limit``)."""
    usage = "expected non-negative seeds like 0-7, 1,5,9 or 0-3,10"
    ranges: list[tuple[int, int]] = []
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise SemsynthError(f"--seeds {text!r}: no seeds given; {usage}")
    for k, part in enumerate(parts):
        if not part:
            where = "a leading" if k == 0 else ("a trailing" if k == len(parts) - 1 else "an empty item between")
            raise SemsynthError(f"--seeds {text!r}: {where} comma{'s' if 'between' in where else ''}; {usage}")
        lo_s, sep, hi_s = part.partition("-")
        if not lo_s.strip().isdigit() or (sep and not hi_s.strip().isdigit()):
            raise SemsynthError(f"--seeds {text!r}: {part!r} is not a seed or a range; {usage}")
        lo, hi = int(lo_s), int(hi_s) if sep else int(lo_s)
        for v in (lo, hi):
            if v > MAX_SEED:
                raise SemsynthError(f"--seeds {text!r}: seed {v} is too large; seeds go from 0 to {MAX_SEED} "
                                    "(2^63 - 1)")
        if hi < lo:
            raise SemsynthError(f"--seeds {text!r}: the range {part} ends before it starts; write {hi}-{lo}")
        ranges.append((lo, hi))
    seeds = Seeds(ranges)
    if len(seeds) > limit:
        raise SemsynthError(f"--seeds {text!r}: {len(seeds):,} seeds, more than the limit of {limit:,} per "
                            f"command (one image per layout and seed); split the range over several commands")
    spans = sorted(ranges)
    for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
        if b0 <= a1:
            raise SemsynthError(f"--seeds {text!r}: seed {b0} is given twice (the images would overwrite each "
                                f"other); list every seed once")
    return seeds


LABEL_EXTS = (".png", ".bmp", ".tif", ".tiff")


def list_labels(path: str | os.PathLike) -> list[Path]:
    """The layout files of ``--labels``: the file itself, or the label files (``LABEL_EXTS``) of a folder, listed
    as the datasets list theirs (:func:`semsynth.data.folder.list_files`). A folder's hidden files (names starting
    with ``.``: editor back-ups, macOS ``._*`` metadata) are skipped with a line on stderr naming them; symbolic
    links to nothing stop the run before anything is generated."""
    from .data.folder import is_broken_link, link_target, list_files

    p = Path(path)
    if p.is_file():
        return [p]
    if is_broken_link(p):
        raise DataError(f"--labels {p}: a symbolic link to {link_target(p)}, which does not exist; repair or remove "
                        "the link")
    if not p.is_dir():
        raise DataError(f"--labels {p}: no such file or directory")
    listed = list_files(p)
    broken = [f for f in listed.broken if f.suffix.lower() in LABEL_EXTS]
    if broken:
        links = ", ".join(f"{f.name} -> {link_target(f)}" for f in broken[:10]) + (" ..." if len(broken) > 10 else "")
        raise DataError(f"--labels {p}: {len(broken)} layout file(s) are symbolic links to nothing (their target "
                        f"does not exist): {links}; repair or remove the link(s)")
    hidden = [f.name for f in listed.hidden if f.suffix.lower() in LABEL_EXTS]
    if hidden:
        names = ", ".join(hidden[:10]) + (" ..." if len(hidden) > 10 else "")
        print(f"semsynth generate: skipped {len(hidden)} hidden file(s) in {p} (names starting with '.'): {names}; "
              "rename them without the leading '.' to generate from them", file=sys.stderr)
    files = [f for f in listed if f.suffix.lower() in LABEL_EXTS]
    others = [f.name for f in listed if f.suffix.lower() not in LABEL_EXTS]
    if others and files:
        names = ", ".join(others[:10]) + (" ..." if len(others) > 10 else "")
        print(f"semsynth generate: skipped {len(others)} file(s) in {p} that are not label maps "
              f"({'/'.join(LABEL_EXTS)}; JPEG would blur the class ids): {names}", file=sys.stderr)
    if not files:
        raise DataError(f"--labels {p}: no label maps ({', '.join(LABEL_EXTS)}) in this folder"
                        + (f" ({len(hidden)} hidden file(s) skipped: rename them without the leading '.')"
                           if hidden else ""))
    return files


def instance_names(layout: Path) -> list[str]:
    """The file names an instance map of ``layout`` may have: its own name, its stem with another label extension,
    and Cityscapes' ``*_gtFine_instanceIds`` for a ``*_gtFine_labelIds`` layout."""
    stems = [layout.stem]
    if layout.stem.endswith("_labelIds"):
        stems.append(layout.stem[: -len("_labelIds")] + "_instanceIds")
    names = [layout.name]
    for stem in stems:
        names += [stem + ext for ext in LABEL_EXTS if stem + ext not in names]
    return names


def pair_instances(instances: str | os.PathLike, layouts: list[Path]) -> list[Path]:
    """``--instances``: the instance-id file of each layout (a file for one layout, or a folder holding one per
    layout, named like it: :func:`instance_names`); every layout must have one."""
    p = Path(instances)
    if p.is_file():
        if len(layouts) != 1:
            raise DataError(f"--instances {p}: a single instance map, but --labels gives {len(layouts)} layouts; give "
                            f"a folder of instance maps named like the label files")
        return [p]
    if not p.is_dir():
        raise DataError(f"--instances {p}: no such file or directory")
    out, missing = [], []
    for layout in layouts:
        found = next((p / n for n in instance_names(layout) if (p / n).is_file()), None)
        if found is None:
            missing.append(layout.name)
        out.append(found)
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(f"--instances {p}: no instance map for {len(missing)} layout(s): {shown}; put one per layout "
                        f"in the folder, named like the label file (e.g. {instance_names(layouts[0])[0]})")
    return out


GRID_ROWS, GRID_COLUMNS = 32, 16  # the largest --grid: layouts x outputs


def run_generate(model: str | os.PathLike, labels: str | os.PathLike, out: str | os.PathLike,
                 seeds: Sequence[int] | None = None, style: str | os.PathLike | None = None,
                 interpolate: tuple[int, int] | None = None, steps: int = 8, batch_size: int = 8,
                 device: str = "auto", grid: bool = False, progress: bool = True,
                 resample_from: int | None = None, resample_class: str | None = None,
                 resample_mask: str | os.PathLike | None = None,
                 instances: str | os.PathLike | None = None) -> list[Path]:
    """``semsynth generate``: write one image per label map (or per label and seed, style, interpolation step),
    named after the label file, into ``out``; returns the written paths.

    ``instances`` (a file for one layout, or a folder of instance-id maps named like the label files): for a model
    whose input has an instance-edge channel (converted COCO-Stuff and Cityscapes models), the edges are computed
    from them as in training; without, that channel is empty (a line on stderr says so).

    Local re-sampling (``resample_from`` with ``seeds`` and ``resample_class`` or ``resample_mask``): per layout and
    seed, the image of seed ``resample_from`` with that seed's noise inside the region, ``<stem>_seed<from>_
    resample<seed>.png`` (generators that take spatial noise, such as ``oasis``).

    Work streams in batches of ``batch_size``: each batch's latents are drawn, rendered and written before the
    next, so memory does not grow with the number of seeds or layouts. ``--grid`` shows at most the first
    32 layouts and 16 outputs of each (``GRID_ROWS``, ``GRID_COLUMNS``).
    """
    from .data import colorize
    from .utils.images import image_grid, save_png, to_uint8
    from .utils.progress import progress_bar

    if not isinstance(batch_size, int) or batch_size < 1:
        raise SemsynthError(f"--batch-size {batch_size}: must be >= 1")
    if batch_size > 4096:
        raise SemsynthError(f"--batch-size {batch_size}: at most 4096 images per batch")
    if sum(x is not None for x in (seeds, style, interpolate)) > 1:
        raise SemsynthError("choose one of --seeds, --style and --interpolate")
    if interpolate is not None:
        for v in interpolate:
            if not 0 <= int(v) <= MAX_SEED:
                raise SemsynthError(f"--interpolate {interpolate[0]} {interpolate[1]}: seeds go from 0 to {MAX_SEED}")
    if seeds is not None and len(seeds) == 0:
        raise SemsynthError("--seeds: no seeds given")
    if (resample_class is not None or resample_mask is not None) and resample_from is None:
        raise SemsynthError("--resample-class / --resample-mask need --resample-from SEED (the image to change) and "
                            "--seeds (the new noise inside the region)")
    if resample_from is not None:
        if seeds is None:
            raise SemsynthError(f"--resample-from {resample_from} needs --seeds: the seeds whose noise goes inside "
                                f"the region (e.g. --seeds 3 or 1-8)")
        if (resample_class is None) == (resample_mask is None):
            raise SemsynthError(f"--resample-from {resample_from}: give the region to re-sample, either "
                                f"--resample-class CLASS or --resample-mask MASK.png (one of them)")
        if not 0 <= int(resample_from) <= MAX_SEED:
            raise SemsynthError(f"--resample-from {resample_from}: seeds go from 0 to {MAX_SEED}")
    syn = Synthesizer.from_pretrained(model, device)
    syn.prepare_for_inference()
    region_classes = region_file = None
    if resample_from is not None:
        syn.check_spatial_latent()
        region_classes = syn.class_ids(resample_class) if resample_class is not None else None
        region_file = syn.read_mask(resample_mask) if resample_mask is not None else None
    if seeds is not None:
        syn.check_multimodal("--seeds")
    z_interp = syn.interpolation_latents(interpolate[0], interpolate[1], steps) if interpolate is not None else None
    files = list_labels(labels)
    if instances is not None and not syn.info.has_instance:
        raise SemsynthError(f"--instances {instances}: this model reads no instance-edge channel ({syn.info.name}, "
                            f"{syn.info.num_classes} label channels); drop --instances")
    inst_files = pair_instances(instances, files) if instances is not None else None
    if inst_files is None and syn.info.has_instance:
        print(f"semsynth generate: this model reads an instance-edge channel ({syn.info.name}); without --instances "
              f"it is empty (no boundaries between touching objects of one class, as in a layout painted by hand): "
              f"give --instances DIR (instance-id PNGs named like the label files) to use the instance maps",
              file=sys.stderr)
    z_style = None
    if style is not None:
        z_style = syn.style_z(syn.read_image(style)[None])
    for i, f in enumerate(files):  # every layout is read once before anything is written: a bad file stops us early
        label = syn.read_label(f)
        if inst_files is not None:
            syn.read_instance(inst_files[i], tuple(label.shape), f"the layout {f.name}")
        if region_file is not None and tuple(region_file.shape) != tuple(label.shape):
            raise SemsynthError(f"--resample-mask {resample_mask}: the mask is {region_file.shape[1]}x"
                                f"{region_file.shape[0]} (WxH) but the layout {f} is {label.shape[1]}x"
                                f"{label.shape[0]}; paint the mask at the layout's size")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    per_layout = len(seeds) if seeds is not None else (steps if interpolate is not None else 1)
    written: list[Path] = []
    rows: list[list[torch.Tensor]] = []
    with progress_bar(len(files) * per_layout, "generate", unit="img", enabled=progress) as bar:
        for i, f in enumerate(files):
            label = syn.read_label(f)
            stem = f.stem
            inst = syn.read_instance(inst_files[i], tuple(label.shape), f"the layout {f.name}") \
                if inst_files is not None else None
            sem = syn.prepare(label[None], inst[None] if inst is not None else None)
            if interpolate is not None:
                def batches():
                    for a in range(0, steps, batch_size):
                        zz = z_interp[a : a + batch_size]
                        names = [f"{stem}_interp{interpolate[0]}-{interpolate[1]}_{i:02d}.png"
                                 for i in range(a, a + len(zz))]
                        yield names, syn._run(sem.expand(len(zz), -1, -1, -1), zz, batch_size)
            elif resample_from is not None:
                region = syn.region_mask(label[None], region_classes, region_file)
                if not bool(region.any()):
                    print(f"semsynth generate: {f.name}: the region to re-sample is empty (no pixel of "
                          f"{resample_class or resample_mask}); its images equal seed {resample_from}'s",
                          file=sys.stderr)

                def batches():
                    for batch, imgs in syn.iter_resample(sem, region, resample_from, seeds, batch_size):
                        yield [f"{stem}_seed{resample_from}_resample{s}.png" for s in batch], imgs
            elif seeds is not None:
                def batches():
                    for batch, imgs in syn.iter_seeds(sem, seeds, batch_size):
                        yield [f"{stem}_seed{s}.png" for s in batch], imgs
            elif z_style is not None:
                def batches():
                    yield [f"{stem}_style-{Path(style).stem}.png"], syn._run(sem, z_style, batch_size)
            else:
                def batches():
                    z = seed_noise(0, syn.z_dim)[None] if syn.multimodal else None
                    yield [f"{stem}.png"], syn._run(sem, z, batch_size)
            row: list[torch.Tensor] = []
            for names, imgs in batches():
                for img, name in zip(to_uint8(imgs), names):
                    written.append(save_png(img, out / name))
                bar.update(len(names))
                if grid and len(rows) < GRID_ROWS and len(row) < GRID_COLUMNS:
                    row.extend(list(imgs[: GRID_COLUMNS - len(row)]))
            if grid and len(rows) < GRID_ROWS:
                small = F.interpolate(label[None, None].float(), size=syn.resolution, mode="nearest")[0, 0].long()
                rows.append([colorize(small[None], syn.info.palette)[0]] + row)
    if grid and rows:
        if len(files) > GRID_ROWS or per_layout > GRID_COLUMNS:
            print(f"grid.png shows the first {min(len(files), GRID_ROWS)} layouts and "
                  f"{min(per_layout, GRID_COLUMNS)} outputs of each", file=sys.stderr)
        width = max(len(r) for r in rows)
        cols = []
        for j in range(width):
            cols.append(torch.stack([r[j] if j < len(r) else torch.ones_like(r[0]) for r in rows]))
        written.append(save_png(image_grid(cols), out / "grid.png"))
    return written
