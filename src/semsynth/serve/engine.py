"""The models a server holds: each an exported model directory, prepared once for fast single-image answers.

A :class:`ServedModel` wraps a :class:`semsynth.inference.Synthesizer` (the same label reading, the same latents
as ``semsynth generate``) and keeps a fast copy of its generator:

* eval mode, run under ``torch.inference_mode``;
* prepared for inference as ``semsynth generate`` does (:func:`semsynth.inference_prep.prepare_for_inference`:
  spectral and batch norm folded, SPADE's modulation by exact algebra on piecewise-constant layouts; the outputs
  equal the eager model's to ~1e-6). A generator that cannot be prepared that way falls back to the export's
  preparation (:func:`semsynth.portable.prepare_generator`) or, failing that (SIMS, which reads its memory bank at
  run time), runs as loaded;
* bfloat16 autocast where it pays (:func:`choose_precision`): only on a CPU with native bf16
  (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``), only when the bf16 images stay within
  :data:`BF16_MAX_ABS` / :data:`BF16_MEAN_ABS` of the fp32 ones on probe layouts, and only when it is measurably
  faster (:data:`BF16_MIN_SPEEDUP`); fp32 otherwise.

Re-sampling a region (:attr:`ServedModel.resample_mode`):

* ``local-noise``: generators that take z per pixel (``oasis``): the noise inside the mask is the new seed's, the
  noise outside the previous seed's (:meth:`Synthesizer.local_noise`, OASIS Sec. 3.3);
* ``composite``: generators that take one latent vector per image (SC-GAN, SPADE/CC-FPSE with a VAE): the picture
  of the new seed is pasted inside the mask over the picture of the previous seed; outside the mask the picture is
  the previous one, pixel for pixel (blended over the mask's inner edge, one pixel wide);
* ``none``: deterministic generators (no z): nothing to re-sample.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import SemsynthError
from ..inference import MAX_SEED, Synthesizer, seed_noise
from ..utils.runtime import cpu_bf16_supported

ASSETS = Path(__file__).resolve().parents[1] / "assets"

PRECISIONS = ("auto", "fp32", "bf16")
# bf16 is used only if its images stay this close to fp32's on the probe layouts ([-1, 1] scale: 0.03 is about
# 4 grey levels of 255, 0.005 about 0.6) and it is at least this much faster.
BF16_MAX_ABS = 0.03
BF16_MEAN_ABS = 0.005
BF16_MIN_SPEEDUP = 1.1

RESAMPLE_LOCAL, RESAMPLE_COMPOSITE, RESAMPLE_NONE = "local-noise", "composite", "none"
RESAMPLE_EXPLAINED = {
    RESAMPLE_LOCAL: "new noise inside the region, the previous seed's noise elsewhere (the generator takes noise "
                    "per pixel); the rest of the picture changes only slightly, through the generator's receptive "
                    "field",
    RESAMPLE_COMPOSITE: "this generator draws one latent vector for the whole picture, so a region cannot get noise "
                        "of its own: the region is taken from the picture of a new seed and pasted over the "
                        "current picture, whose other pixels stay exactly as they were",
    RESAMPLE_NONE: "this model is deterministic (it takes no noise): every seed gives the same picture, so there is "
                   "nothing to re-sample",
}
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


# example layouts of a built-in world: its validation layouts 0 .. EXAMPLES - 1 (the model never trained on them)
EXAMPLES = 1000


class RequestError(SemsynthError):
    """A request the server refuses: ``status`` (4xx) and a message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass
class Job:
    """One decoded request: channel ids ``[H, W]`` (any size; resized nearest to the model's resolution), the seed,
    an optional style image ``[3, h, w]`` in [-1, 1] at the model's resolution (with its digest, for the cache), an
    optional re-sampling mask
    ``[H, W]`` bool with the seed of the picture to keep, an optional instance map ``[H, W]``."""

    labels: torch.Tensor
    seed: int = 0
    style: torch.Tensor | None = None
    style_key: str | None = None
    mask: torch.Tensor | None = None
    previous_seed: int | None = None
    instances: torch.Tensor | None = None


@dataclass
class Rendered:
    png: bytes
    generation_s: float  # the generator's forward pass(es)
    mode: str  # "sample", "style", "local-noise", "composite"


def _probe_layouts(num_classes: int, resolution: tuple[int, int], n: int = 2) -> torch.Tensor:
    """Blocky random layouts ``[n, H, W]`` (8x8-pixel cells), the same every time."""
    g = torch.Generator().manual_seed(1234)
    h, w = resolution
    coarse = torch.randint(0, num_classes, (n, -(-h // 8), -(-w // 8)), generator=g)
    return coarse.repeat_interleave(8, 1).repeat_interleave(8, 2)[:, :h, :w].contiguous()


def fast_copy(syn: Synthesizer) -> tuple[torch.nn.Module, torch.nn.Module | None, str]:
    """The generator (and encoder) prepared for inference, in eval mode: :func:`semsynth.inference_prep.
    prepare_for_inference` (spectral and batch norm folded, exact piecewise-constant SPADE, what ``semsynth
    generate`` runs), else spectral norm folded and norms as affine maps (the export preparation), else the loaded
    modules, with the reason."""
    from ..inference_prep import PrepareError, prepare_for_inference
    from ..models import build_encoder
    from ..portable import ExportError, fold_spectral_norm, prepare_generator

    try:
        G, note = prepare_for_inference(syn.G, copy=True), "prepared for inference (norms folded)"
    except PrepareError as e:
        try:
            G, note = prepare_generator(syn.G), f"spectral norm folded ({e})"
        except ExportError as e2:
            G, note = syn.G.eval(), f"as loaded ({e2})"
    E = syn.E
    if E is not None and isinstance(getattr(E, "config", None), dict):
        E = build_encoder(E.config)
        E.load_state_dict({k: v.detach().cpu() for k, v in syn.E.state_dict().items()})
        E = E.float().eval()
        fold_spectral_norm(E)
    return G, E, note


def _fastest_times(a, b, runs: int) -> tuple[float, float]:
    """The fastest of ``runs`` timed calls of ``a`` and of ``b``, interleaved (after one untimed call each): the
    minimum is what the CPU can do; on a machine busy with other work, medians mostly measure the other work."""
    a()
    b()
    ta, tb = [], []
    for _ in range(runs):
        for fn, times in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return min(ta), min(tb)


def bf16_supported() -> bool:
    """:func:`semsynth.utils.runtime.cpu_bf16_supported` (a module-level name, replaceable in tests)."""
    return cpu_bf16_supported()


def choose_precision(G: torch.nn.Module, sem: torch.Tensor, z: torch.Tensor | None, requested: str = "auto",
                     runs: int = 5) -> tuple[str, str]:
    """``(precision, why)`` for generator ``G`` on probe inputs ``sem`` (``z``): ``fp32`` or ``bf16`` (CPU autocast).

    ``requested``: ``fp32`` always fp32; ``bf16`` bf16 when the CPU has it (an error otherwise); ``auto`` bf16 only
    when the CPU has it, the images differ from fp32's by at most ``BF16_MAX_ABS`` (max) and ``BF16_MEAN_ABS``
    (mean), and the fastest of ``runs`` passes is ``BF16_MIN_SPEEDUP`` times faster than fp32's fastest."""
    if requested not in PRECISIONS:
        raise SemsynthError(f"--precision {requested}: choose one of {', '.join(PRECISIONS)}")
    if requested == "fp32":
        return "fp32", "fp32 requested"
    if not bf16_supported():
        if requested == "bf16":
            raise SemsynthError("--precision bf16: this CPU has no native bfloat16 "
                                "(torch.ops.mkldnn._is_mkldnn_bf16_supported() is False); use --precision fp32")
        return "fp32", "no native bf16 on this CPU"

    def run(bf16: bool, n: int | None = None) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return G(sem[:n], z[:n] if z is not None else None).float()

    ref, low = run(False), run(True)
    diff = (ref - low).abs()
    dmax, dmean = float(diff.max()), float(diff.mean())
    if requested == "bf16":
        return "bf16", f"bf16 requested (max |bf16 - fp32| {dmax:.4f}, mean {dmean:.4f})"
    if dmax > BF16_MAX_ABS or dmean > BF16_MEAN_ABS:
        return "fp32", (f"bf16 differs from fp32 by {dmax:.4f} (max) / {dmean:.4f} (mean), more than "
                        f"{BF16_MAX_ABS} / {BF16_MEAN_ABS}")
    t32, t16 = _fastest_times(lambda: run(False, 1), lambda: run(True, 1), runs)  # one image, as a request
    speedup = t32 / max(t16, 1e-9)
    if speedup < BF16_MIN_SPEEDUP:
        return "fp32", f"bf16 is not faster here ({speedup:.2f}x; max diff {dmax:.4f})"
    return "bf16", f"bf16 {speedup:.2f}x faster than fp32, max |diff| {dmax:.4f}, mean {dmean:.4f}"


class ServedModel:
    """One model of the server: its name, its facts for the page and the API, and :meth:`render`."""

    def __init__(self, name: str, directory: Path, syn: Synthesizer, precision: str = "auto") -> None:
        self.name, self.directory, self.syn = name, Path(directory), syn
        self.info = syn.info
        self.resolution = tuple(int(v) for v in syn.resolution)
        self.G, self.E, self.prepared = fast_copy(syn)
        self.generator_name = str(syn.config["generator"].get("name"))
        if not syn.multimodal:
            self.resample_mode = RESAMPLE_NONE
        elif getattr(syn.G, "spatial_latent", False):
            self.resample_mode = RESAMPLE_LOCAL
        else:
            self.resample_mode = RESAMPLE_COMPOSITE
        self._style_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self._world = None  # the built-in world of the example layouts, made on the first request
        sem = syn.prepare(_probe_layouts(self.info.num_classes, self.resolution))
        z = torch.stack([seed_noise(s, syn.z_dim) for s in (0, 1)]) if syn.multimodal else None
        self.precision, self.precision_note = choose_precision(self.G, sem, z, precision)
        self._forward(sem[:1], z[:1] if z is not None else None)  # warm-up

    # -- facts ----------------------------------------------------------------------------------------------

    @property
    def background(self) -> int:
        """The class the eraser paints: a class named background/unlabeled/void/other, else don't-care, else 0."""
        names = [n.lower() for n in self.info.class_names]
        for key in ("background", "unlabeled", "unlabelled", "void", "other", "others"):
            if key in names:
                return names.index(key)
        return self.info.dontcare_index if self.info.dontcare_index is not None else 0

    def describe(self) -> dict:
        h, w = self.resolution
        return {
            "name": self.name,
            "generator": self.generator_name,
            "dataset": self.info.name,
            "resolution": [h, w],
            "num_classes": self.info.num_classes,
            "multimodal": self.syn.multimodal,
            "z_dim": self.syn.z_dim,
            "style": self.E is not None,
            "resample": self.resample_mode,
            "resample_explained": RESAMPLE_EXPLAINED[self.resample_mode],
            "has_instance": self.info.has_instance,
            "precision": self.precision,
            "precision_note": self.precision_note,
            "prepared": self.prepared,
            "examples": EXAMPLES if self._world_class() is not None else 0,
        }

    def classes(self) -> dict:
        raw: dict[int, list[int]] = {}
        for value, channel in sorted((self.syn.label_table or {}).items()):
            raw.setdefault(channel, []).append(value)
        palette = [tuple(int(c) for c in rgb) for rgb in self.info.palette]
        colours_unique = len(set(palette)) == len(palette)
        rows = []
        for i, (name, rgb) in enumerate(zip(self.info.class_names, palette)):
            rows.append({"id": i, "name": name, "colour": list(rgb), "hex": "#{:02x}{:02x}{:02x}".format(*rgb),
                         "raw_values": raw.get(i, [i] if self.syn.label_table is None else [])})
        h, w = self.resolution
        return {"model": self.name, "resolution": [h, w], "num_classes": self.info.num_classes,
                "dontcare": self.info.dontcare_index, "background": self.background,
                "colours_unique": colours_unique, "classes": rows}

    # -- example layouts ------------------------------------------------------------------------------------

    def _world_class(self):
        """The built-in procedural world the model was trained on (its dataset class), or None."""
        from ..data.worlds import builtin_worlds

        return builtin_worlds().get(self.info.name)

    def example(self, index: int) -> bytes:
        """Validation layout ``index`` of the model's built-in world as a PNG of class ids, at the painter's
        canvas size (the model's resolution times the largest integer that keeps it within 256 px, rounded to
        the world's resolution step). A model of another dataset has none: 404."""
        cls = self._world_class()
        if cls is None:
            raise RequestError(404, f"model {self.name!r} was trained on {self.info.name!r}, which has no built-in "
                                    f"example layouts (only the procedural worlds do); load a label PNG instead")
        if not 0 <= index < EXAMPLES:
            raise RequestError(400, f"example index {index} is out of range: give 0 to {EXAMPLES - 1}")
        h, w = self.resolution
        step = cls.RESOLUTION_STEP
        size = max(h, w) * max(1, 256 // max(h, w))
        size = max(cls.MIN_RESOLUTION, (size // step) * step)
        with self._lock:
            world = self._world
            if world is None or world.resolution != size:
                seed = int((self.syn.config.get("data") or {}).get("seed", 0) or 0)
                world = self._world = cls(split="val", resolution=size, num_samples=EXAMPLES, seed=seed)
        _, label = world.sample_arrays(index)
        buf = io.BytesIO()
        Image.fromarray(label.astype("uint8")).save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    # -- synthesis --------------------------------------------------------------------------------------------

    def _forward(self, sem: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                    enabled=self.precision == "bf16"):
            return self.G(sem, z).float()

    def style_latent(self, image: torch.Tensor, key: str | None) -> torch.Tensor:
        """The encoder's mean latent of a style image ``[3, H, W]`` at the model's resolution (as
        :meth:`Synthesizer.read_image` reads one), cached by the upload's digest (the page sends the same style
        image with every stroke)."""
        if self.E is None:
            raise RequestError(400, f"model {self.name!r} has no style encoder, so it takes no style image; style "
                                    f"images need a model trained with a VAE encoder (GET /models: \"style\": true)")
        if key is not None:
            with self._lock:
                if key in self._style_cache:
                    self._style_cache.move_to_end(key)
                    return self._style_cache[key]
        with torch.inference_mode():
            mu, _ = self.E(image[None])
        if key is not None:
            with self._lock:
                self._style_cache[key] = mu
                while len(self._style_cache) > 32:
                    self._style_cache.popitem(last=False)
        return mu

    def render(self, job: Job) -> Rendered:
        """The picture of ``job`` as PNG bytes (at the model's resolution)."""
        syn = self.syn
        if job.instances is not None and not self.info.has_instance:
            raise RequestError(400, f"model {self.name!r} reads no instance-edge channel ({self.info.num_classes} "
                                    f"label channels only); send no instance map")
        if job.mask is not None and self.resample_mode == RESAMPLE_NONE:
            raise RequestError(400, f"model {self.name!r} is deterministic (generator {self.generator_name!r} takes "
                                    f"no noise): every seed gives the same picture, so a region cannot be re-sampled; "
                                    f"send no mask")
        if job.style is not None and self.E is None:
            self.style_latent(job.style, None)  # raises the message
        sem = syn.prepare(job.labels[None], job.instances[None] if job.instances is not None else None)
        z_style = self.style_latent(job.style, job.style_key) if job.style is not None else None
        t = time.perf_counter()
        if not syn.multimodal:
            image, mode = self._forward(sem, None), "deterministic"
        elif job.mask is None:
            z = z_style if z_style is not None else seed_noise(job.seed, syn.z_dim)[None]
            image, mode = self._forward(sem, z), "style" if z_style is not None else "sample"
        else:
            region = syn.region_mask(job.labels[None], mask=job.mask)  # [1, H, W] at the model's resolution
            base = z_style if z_style is not None else seed_noise(job.previous_seed, syn.z_dim)[None]
            if self.resample_mode == RESAMPLE_LOCAL:
                za = base[0]
                zb = seed_noise(job.seed, syn.z_dim)
                z = torch.where(region[:, None], zb[None, :, None, None], za[None, :, None, None])
                image, mode = self._forward(sem, z), RESAMPLE_LOCAL
            else:
                z = torch.cat([base, seed_noise(job.seed, syn.z_dim)[None]])
                both = self._forward(sem.expand(2, -1, -1, -1), z)
                alpha = composite_alpha(region)
                image, mode = both[:1] * (1 - alpha) + both[1:] * alpha, RESAMPLE_COMPOSITE
        elapsed = time.perf_counter() - t
        return Rendered(encode_png(image[0]), elapsed, mode)


def composite_alpha(region: torch.Tensor) -> torch.Tensor:
    """``[1, H, W]`` bool -> ``[1, 1, H, W]`` blend weights: 0 outside the region (exactly), 1 inside, the mean of
    the 3x3 neighbourhood on the region's inner edge (a soft seam that never reaches outside the region)."""
    m = region[:, None].float()
    soft = F.avg_pool2d(F.pad(m, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return soft * m


def encode_png(image: torch.Tensor) -> bytes:
    """``[3, H, W]`` in [-1, 1] -> PNG bytes (rounded as :func:`semsynth.utils.images.to_uint8`; fast zlib level)."""
    from ..utils.images import to_uint8

    buf = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


# ------------------------------------------------------------------------------------------------------------
# Which models


def bundled_models() -> list[Path]:
    """The generator models shipped in ``semsynth/assets`` (directories with a semsynth model config and weights;
    the bundled segmenters are not generators)."""
    out = []
    for d in sorted(ASSETS.iterdir()) if ASSETS.is_dir() else []:
        cfg = d / "config.json"
        if not (cfg.is_file() and (d / "model.safetensors").is_file()):
            continue
        try:
            if json.loads(cfg.read_text()).get("format") == "semsynth-model":
                out.append(d)
        except (OSError, ValueError):
            continue
    return out


def parse_model_spec(spec: str) -> tuple[str, Path]:
    """``--model DIR`` or ``--model NAME=DIR`` -> (name, directory). The default name is the directory's name, or,
    for a run's ``<run>/model`` folder, the run's name."""
    path = Path(spec)
    if "=" in spec and not path.exists():
        name, _, rest = spec.partition("=")
        if not name or not set(name) <= NAME_CHARS:
            raise SemsynthError(f"--model {spec}: {name!r} is not a model name (letters, digits, '-', '_', '.'); "
                                f"write --model NAME=DIR or --model DIR")
        path = Path(rest)
    else:
        resolved = path.resolve()
        name = resolved.parent.name if resolved.name == "model" and resolved.parent.name else resolved.name
        name = "".join(c if c in NAME_CHARS else "-" for c in name) or "model"
    if not path.exists():
        raise SemsynthError(f"--model {spec}: {path} does not exist; give an exported model directory "
                            f"(config.json + model.safetensors), e.g. a run's model/ folder")
    if not path.is_dir():
        raise SemsynthError(f"--model {spec}: {path} is a file; give the model directory that holds config.json and "
                            f"model.safetensors")
    return name, path


def model_specs(specs: list[str] | None) -> list[tuple[str, Path]]:
    """``(name, directory)`` of each ``--model`` spec (none: the bundled models), names unique; cheap (nothing is
    loaded), so that ``semsynth serve`` refuses a bad option before it binds its port."""
    pairs = [parse_model_spec(s) for s in specs] if specs else [(d.name, d) for d in bundled_models()]
    if not pairs:
        raise SemsynthError(f"no --model given and no bundled model found in {ASSETS}; give --model DIR")
    seen: dict[str, Path] = {}
    for name, path in pairs:
        if name in seen:
            raise SemsynthError(f"--model: two models are named {name!r} ({seen[name]} and {path}); name them: "
                                f"--model NAME=DIR")
        seen[name] = path
    return pairs


def load_models(specs: list[str] | None, precision: str = "auto", log=None) -> list[ServedModel]:
    """The served models of ``--model`` specs (none: the bundled models), loaded and prepared."""
    if precision not in PRECISIONS:
        raise SemsynthError(f"--precision {precision}: choose one of {', '.join(PRECISIONS)}")
    pairs = model_specs(specs)
    models = []
    for name, path in pairs:
        t = time.perf_counter()
        syn = Synthesizer.from_pretrained(path, "cpu")
        m = ServedModel(name, path, syn, precision)
        models.append(m)
        if log is not None:
            h, w = m.resolution
            log(f"model {name}: {m.generator_name} {w}x{h}, {m.info.num_classes} classes, {m.precision} "
                f"({m.precision_note}), re-sampling: {m.resample_mode}; ready in {time.perf_counter() - t:.1f} s")
    return models


__all__ = ["MAX_SEED", "Job", "RequestError", "ServedModel", "bundled_models", "load_models", "model_specs",
           "parse_model_spec"]
