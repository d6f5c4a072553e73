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
        self.multimodal = gcfg.get("input_mode") == "noise"
        self.z_dim = int(gcfg.get("z_dim", 0)) if self.multimodal else 0
        self.resolution = tuple(getattr(G, "resolution", info.resolution))
        table = config.get("label_values")  # raw file value -> channel, as the training data mapped it
        self.label_table = {int(k): int(v) for k, v in table.items()} if table else None

    @classmethod
    def from_pretrained(cls, model_dir: str | os.PathLike, device: str = "auto") -> Synthesizer:
        from .training.checkpoint import load_model

        dev = select_device(device)
        G, E, info, config = load_model(model_dir, dev)
        return cls(G, E, info, config, dev)

    # -- inputs ------------------------------------------------------------------------------------------------

    def read_label(self, path: str | os.PathLike) -> torch.Tensor:
        """A label PNG -> ``[H, W]`` channel ids. Class-id PNGs hold the dataset's raw values (mapped as in
        training); RGB PNGs are decoded with the dataset's palette (exact colours)."""
        path = Path(path)
        try:
            img = Image.open(path)
            img.load()
        except FileNotFoundError as e:
            raise DataError(f"{path}: label file not found") from e
        except (OSError, SyntaxError, ValueError) as e:
            raise DataError(f"{path}: cannot read this label map ({e})") from e
        if img.mode in ("RGB", "RGBA"):
            rgb = np.asarray(img.convert("RGB"))
            if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
                raw = rgb[..., 0].astype(np.int64)
            else:
                return torch.from_numpy(self._decode_colours(rgb, path))
        elif img.mode in ("L", "P", "I", "I;16", "1"):
            raw = np.asarray(img).astype(np.int64)
        else:
            raise DataError(f"{path}: label map has PIL mode {img.mode!r}; save class ids as an 8-bit greyscale PNG "
                            f"or colours as RGB with the dataset's palette")
        return torch.from_numpy(self._map_raw(raw, path))

    def _map_raw(self, raw: np.ndarray, path: Path) -> np.ndarray:
        n = self.info.num_classes
        if self.label_table is None:
            bad = np.unique(raw[(raw < 0) | (raw >= n)])
            if bad.size:
                raise DataError(f"{path}: label values {bad[:10].tolist()} are outside the model's classes 0..{n - 1} "
                                f"({self.info.name}); check that the layout was made for this model")
            return raw
        lut = np.full(max(int(raw.max()) + 1, max(self.label_table) + 1), -1, dtype=np.int64)
        for k, v in self.label_table.items():
            lut[k] = v
        out = lut[np.clip(raw, 0, None)]
        out[raw < 0] = -1
        if (out < 0).any():
            bad = np.unique(raw[out < 0])
            valid = sorted(self.label_table)
            raise DataError(f"{path}: label values {bad[:10].tolist()} are not label values of {self.info.name} "
                            f"(valid: {valid[0]}..{valid[-1]}, as in its label files)")
        return out

    def _decode_colours(self, rgb: np.ndarray, path: Path) -> np.ndarray:
        pal = np.asarray(self.info.palette, dtype=np.int64)  # [K, 3]
        key = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
        pal_key = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
        order = np.argsort(pal_key)
        idx = np.searchsorted(pal_key[order], key)
        idx = np.clip(idx, 0, len(pal_key) - 1)
        found = pal_key[order][idx] == key
        if not found.all():
            colours = np.unique(rgb[~found].reshape(-1, 3), axis=0)[:5].tolist()
            raise DataError(f"{path}: colours {colours} are not in the {self.info.name} palette; paint layouts "
                            f"with the palette colours (semsynth models / the dataset docs list them), or save "
                            f"class ids as an 8-bit greyscale PNG")
        return order[idx].astype(np.int64)

    def read_image(self, path: str | os.PathLike) -> torch.Tensor:
        """An RGB image resized (bicubic) to the model's resolution, ``[3, H, W]`` in ``[-1, 1]``."""
        try:
            img = Image.open(path).convert("RGB")
        except (OSError, SyntaxError, ValueError) as e:
            raise DataError(f"{path}: cannot read this image ({e})") from e
        h, w = self.resolution
        img = img.resize((w, h), Image.BICUBIC)
        return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 127.5 - 1

    def prepare(self, labels: torch.Tensor) -> torch.Tensor:
        """``[B, H, W]`` channel ids -> the generator's input at the model's resolution (nearest resize)."""
        if labels.dim() == 2:
            labels = labels[None]
        h, w = self.resolution
        if tuple(labels.shape[-2:]) != (h, w):
            labels = F.interpolate(labels[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
        inst = torch.zeros_like(labels) if self.info.has_instance else None  # no instance map: no edges
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
            raise SemsynthError(f"{what} needs a multi-modal model; this one is deterministic "
                                f"(generator input_mode={self.config['generator'].get('input_mode')!r}): every seed "
                                f"gives the same image")

    @torch.no_grad()
    def generate(self, labels: torch.Tensor, seeds: Sequence[int] | None = None, z: torch.Tensor | None = None,
                 batch_size: int = 8) -> torch.Tensor:
        """Images for ``labels`` ``[B, H, W]``: one per label (``z`` [B, z_dim] or seed 0), or, with
        ``seeds``, one per (label, seed) as ``[B, S, 3, H, W]``."""
        sem = self.prepare(labels)
        if seeds is not None:
            if self.multimodal:
                zs = torch.stack([seed_noise(s, self.z_dim) for s in seeds])  # [S, z]
            else:
                self.check_multimodal("--seeds")
            out = []
            for i in range(sem.shape[0]):
                rep = sem[i : i + 1].expand(len(seeds), -1, -1, -1)
                out.append(self._run(rep, zs, batch_size))
            return torch.stack(out)
        if self.multimodal and z is None:
            z = seed_noise(0, self.z_dim).expand(sem.shape[0], -1)
        return self._run(sem, z, batch_size)

    def _run(self, sem: torch.Tensor, z: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        outs = []
        for a in range(0, sem.shape[0], batch_size):
            zz = z[a : a + batch_size].to(self.device) if z is not None else None
            outs.append(self.G(sem[a : a + batch_size], zz).float().cpu())
        return torch.cat(outs)

    @torch.no_grad()
    def interpolate(self, label: torch.Tensor, seed_a: int, seed_b: int, steps: int) -> torch.Tensor:
        """``steps`` images along the straight line between the latents of two seeds (paper Fig. 8)."""
        self.check_multimodal("--interpolate")
        if steps < 2:
            raise SemsynthError(f"--steps {steps}: need at least 2 (the two end points)")
        za, zb = seed_noise(seed_a, self.z_dim), seed_noise(seed_b, self.z_dim)
        t = torch.linspace(0, 1, steps)[:, None]
        z = (1 - t) * za + t * zb
        sem = self.prepare(label[None] if label.dim() == 2 else label)
        return self._run(sem.expand(steps, -1, -1, -1), z, steps)


def parse_seeds(text: str) -> list[int]:
    """``"0-7"``, ``"1,5,9"`` or ``"0-3,10"`` -> a list of non-negative seeds."""
    seeds: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo or lo < 0:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                if int(part) < 0:
                    raise ValueError
                seeds.append(int(part))
    except ValueError:
        raise SemsynthError(f"--seeds {text!r}: expected non-negative seeds like 0-7, 1,5,9 or 0-3,10") from None
    if not seeds:
        raise SemsynthError(f"--seeds {text!r}: no seeds given")
    return seeds


LABEL_EXTS = (".png", ".bmp", ".tif", ".tiff")


def list_labels(path: str | os.PathLike) -> list[Path]:
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise DataError(f"--labels {p}: no such file or directory")
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in LABEL_EXTS and not f.name.startswith("."))
    if not files:
        raise DataError(f"--labels {p}: no label maps ({', '.join(LABEL_EXTS)}) in this folder")
    return files


def run_generate(model: str | os.PathLike, labels: str | os.PathLike, out: str | os.PathLike,
                 seeds: Sequence[int] | None = None, style: str | os.PathLike | None = None,
                 interpolate: tuple[int, int] | None = None, steps: int = 8, batch_size: int = 8,
                 device: str = "auto", grid: bool = False, progress: bool = True) -> list[Path]:
    """``semsynth generate``: write one image per label map (or per label and seed, style, interpolation step),
    named after the label file, into ``out``; returns the written paths."""
    from .data import colorize
    from .utils.images import image_grid, save_png, to_uint8

    if batch_size < 1:
        raise SemsynthError(f"--batch-size {batch_size}: must be >= 1")
    syn = Synthesizer.from_pretrained(model, device)
    files = list_labels(labels)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    z_style = None
    if style is not None:
        z_style = syn.style_z(syn.read_image(style)[None])
    if seeds is not None:
        syn.check_multimodal("--seeds")
    written: list[Path] = []
    rows: list[list[torch.Tensor]] = []
    for k, f in enumerate(files):
        label = syn.read_label(f)
        stem = f.stem
        if interpolate is not None:
            imgs = syn.interpolate(label, interpolate[0], interpolate[1], steps)
            names = [f"{stem}_interp{interpolate[0]}-{interpolate[1]}_{i:02d}.png" for i in range(steps)]
        elif seeds is not None:
            imgs = syn.generate(label[None], seeds=seeds, batch_size=batch_size)[0]
            names = [f"{stem}_seed{s}.png" for s in seeds]
        elif z_style is not None:
            imgs = syn.generate(label[None], z=z_style, batch_size=batch_size)
            names = [f"{stem}_style-{Path(style).stem}.png"]
        else:
            imgs = syn.generate(label[None], batch_size=batch_size)
            names = [f"{stem}.png"]
        for img, name in zip(to_uint8(imgs), names):
            written.append(save_png(img, out / name))
        if grid:
            small = F.interpolate(label[None, None].float(), size=syn.resolution, mode="nearest")[0, 0].long()
            rows.append([colorize(small[None], syn.info.palette)[0]] + list(imgs))
        if progress and sys.stdout.isatty():
            print(f"\r{k + 1}/{len(files)} layouts", end="", flush=True)
    if progress and sys.stdout.isatty():
        print()
    if grid and rows:
        width = max(len(r) for r in rows)
        cols = []
        for j in range(width):
            cols.append(torch.stack([r[j] if j < len(r) else torch.ones_like(r[0]) for r in rows]))
        written.append(save_png(image_grid(cols), out / "grid.png"))
    return written
