"""Portable generators: ONNX and TorchScript files that run without semsynth (``semsynth export --format``).

An export folder is a semsynth model directory (``config.json``, ``model.safetensors`` [+ ``encoder.safetensors``])
plus, per format, ``generator.onnx`` (onnxruntime, or any ONNX runtime) or ``generator.pt`` (``torch.jit.load``),
and ``portable.json``: what a program without semsynth needs to feed the file and read its output (input and
output names, dtypes and shapes, which sizes are dynamic, the class table with names, colours and raw label
values, the resolution, the size of z) and how closely each file reproduced semsynth when it was written.

How a generator is made portable (:func:`prepare_generator`, for every registered generator):

* a fresh copy is built from ``G.config`` with G's weights, in eval mode (G itself is never modified);
* spectral norm is folded into plain weights: each parametrised weight is replaced by its current value
  ``W / sigma`` (eval: the stored u, v, no power iteration), SCC candidates by ``k_i / sigma_i``
  (``SpatiallyConditionalConv2d.fold_spectral_norm_``);
* every BatchNorm2d (running statistics) becomes its per-channel scale and shift, ``x * a + b`` (the form PyTorch
  evaluates it in), and every InstanceNorm2d its formula: the file needs no BatchNormalization or
  InstanceNormalization op, whose ONNX export needs a channel count that a reshape of z into feature maps hides;
* layers with a custom autograd function or an op ONNX cannot hold take their export path while traced
  (``layers/scc.py``: the per-pixel mix as multiply-adds; ``layers/routing.py``: channel pooling as slice means).

The graph then reads the label map itself (:class:`PortableGenerator`): ``label`` int64 ``[B, H, W]`` class ids
-> one-hot (+ the instance-edge channel from ``instance`` int64 ``[B, H, W]`` for instance models), or, with
``input="onehot"``, the float map ``semantic`` ``[B, C, H, W]`` itself; multi-modal generators
(``G.latent_dim > 0``) take ``z`` ``[B, latent_dim]`` as their last input. Output: ``image`` float32
``[B, 3, H, W]`` in [-1, 1]. Batch is always dynamic; height and width are dynamic when the generator takes other
sizes (:func:`probe_geometry`: SC-GAN with ``input_mode="label"`` takes any multiple of 32, one with
``input_mode="noise"`` only its resolution). Every file is run and compared with the eager model before it is
kept (:func:`check_file`). Docs: ``docs/export.md``.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import SemsynthError

FORMATS = ("safetensors", "onnx", "torchscript")
PORTABLE_FORMATS = ("onnx", "torchscript")
FILES = {"onnx": "generator.onnx", "torchscript": "generator.pt"}
PORTABLE_JSON = "portable.json"
PORTABLE_VERSION = 1
INPUT_MODES = ("label", "onehot")
OPSET = 17
# A file is kept only if it reproduces the eager model within this (outputs are images in [-1, 1]).
TOLERANCE = 1e-4


class ExportError(SemsynthError):
    """A model that cannot be written in a portable format, or a file that does not reproduce it."""


# ------------------------------------------------------------------------------------------------------------
# The graph's input encoding


def one_hot_graph(label: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``[B, H, W]`` class ids -> ``[B, C, H, W]`` float one-hot, as a comparison with ``ids`` ``[1, C, 1, 1]``
    (ONNX ``Equal``): the same map as :func:`semsynth.layers.one_hot_label`, except that an id outside ``0..C-1``
    gives an all-zero pixel (a graph cannot raise; map raw label values first, portable.json has the table)."""
    return (label.unsqueeze(1) == ids).to(torch.float32)


def instance_edges_graph(instance: torch.Tensor) -> torch.Tensor:
    """``[B, H, W]`` instance ids -> ``[B, 1, H, W]``, 1 where a 4-neighbour differs (both pixels of a pair): the
    same map as :func:`semsynth.layers.instance_edges`, written with pads and maxima instead of in-place slices."""
    t = instance.unsqueeze(1)
    dx = (t[..., :, 1:] != t[..., :, :-1]).to(torch.float32)
    dy = (t[..., 1:, :] != t[..., :-1, :]).to(torch.float32)
    horizontal = torch.maximum(F.pad(dx, (1, 0)), F.pad(dx, (0, 1)))
    vertical = torch.maximum(F.pad(dy, (0, 0, 1, 0)), F.pad(dy, (0, 0, 0, 1)))
    return torch.maximum(horizontal, vertical)


class PortableGenerator(nn.Module):
    """A prepared generator with its input encoding: ``forward(*inputs)`` in the order of ``input_names``
    (``label`` [, ``instance``] or ``semantic``, then ``z`` for multi-modal generators) -> ``image``."""

    def __init__(self, G: nn.Module, num_classes: int, use_instance: bool, input: str = "label") -> None:
        super().__init__()
        if input not in INPUT_MODES:
            raise ExportError(f"--input {input!r}: choose one of {', '.join(INPUT_MODES)}")
        self.G, self.input = G, input
        self.num_classes, self.use_instance = num_classes, use_instance
        self.latent_dim = int(getattr(G, "latent_dim", 0) or 0)
        self.register_buffer("ids", torch.arange(num_classes).view(1, num_classes, 1, 1), persistent=False)
        names = ["label", "instance"] if use_instance else ["label"]
        self.input_names = (names if input == "label" else ["semantic"]) + (["z"] if self.latent_dim else [])

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = dict(zip(self.input_names, inputs))
        if self.input == "label":
            semantic = one_hot_graph(x["label"], self.ids)
            if self.use_instance:
                semantic = torch.cat([semantic, instance_edges_graph(x["instance"])], dim=1)
        else:
            semantic = x["semantic"]
        return self.G(semantic, x.get("z"))


# ------------------------------------------------------------------------------------------------------------
# Preparing a generator: spectral norm folded, batch norm as scale and shift


class _ChannelAffine(nn.Module):
    """An eval-mode BatchNorm2d as ``x * scale + shift`` per channel."""

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        invstd = 1 / torch.sqrt(bn.running_var + bn.eps)
        scale = invstd * bn.weight.detach() if bn.weight is not None else invstd
        shift = bn.bias.detach() - bn.running_mean * scale if bn.bias is not None else -bn.running_mean * scale
        self.register_buffer("scale", scale.detach().clone().view(1, -1, 1, 1))
        self.register_buffer("shift", shift.detach().clone().view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class _InstanceNormPlain(nn.Module):
    """An InstanceNorm2d without running statistics, written out: ``(x - mean) / sqrt(var + eps)`` over each
    map (biased variance, as PyTorch), then the affine when it has one."""

    def __init__(self, norm: nn.InstanceNorm2d) -> None:
        super().__init__()
        self.eps = norm.eps
        self.affine = norm.affine
        if norm.affine:
            self.register_buffer("weight", norm.weight.detach().clone().view(1, -1, 1, 1))
            self.register_buffer("bias", norm.bias.detach().clone().view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean((2, 3), keepdim=True)
        out = centred / torch.sqrt((centred * centred).mean((2, 3), keepdim=True) + self.eps)
        return out * self.weight + self.bias if self.affine else out


def fold_spectral_norm(module: nn.Module) -> int:
    """Fold every spectral norm in ``module`` (in eval mode) into plain weights; returns how many were folded.

    Handles PyTorch parametrisations (``torch.nn.utils.parametrize``, which ``layers.spectral_norm`` uses), the
    legacy hook-based ``torch.nn.utils.spectral_norm``, and layers with a ``fold_spectral_norm_`` method (SCC)."""
    from torch.nn.utils import parametrize
    from torch.nn.utils.spectral_norm import SpectralNorm as HookSpectralNorm

    from .layers.spectral import SpectralNorm, StackedSpectralNorm

    if module.training:
        raise ExportError("fold_spectral_norm needs a module in eval mode (a training forward would advance the "
                          "power iteration)")
    folded = 0
    for m in list(module.modules()):
        if parametrize.is_parametrized(m):
            for name in list(m.parametrizations.keys()):
                chain = m.parametrizations[name]
                if len(chain) == 1 and isinstance(chain[0], SpectralNorm):  # semsynth's: divided in place
                    chain[0].fold_(chain.original)
                    parametrize.remove_parametrizations(m, name, leave_parametrized=False)
                else:
                    parametrize.remove_parametrizations(m, name, leave_parametrized=True)
                folded += 1
        for hook in list(m._forward_pre_hooks.values()):
            if isinstance(hook, HookSpectralNorm):
                torch.nn.utils.remove_spectral_norm(m, hook.name)
                folded += 1
        fold = getattr(m, "fold_spectral_norm_", None)
        if callable(fold) and getattr(m, "sn", None) is not None:
            fold()
            folded += 1
    left = [name for name, m in module.named_modules() if isinstance(m, StackedSpectralNorm)]
    if left:
        raise ExportError(f"spectral norm of {', '.join(left[:3])} cannot be folded (its layer has no "
                          f"fold_spectral_norm_ method); the exported graph would keep the power-iteration state")
    return folded


def fold_norms(module: nn.Module) -> int:
    """Replace every BatchNorm2d that uses running statistics by its per-channel scale and shift, and every
    InstanceNorm2d without running statistics by its formula; returns how many were replaced.

    ONNX's BatchNormalization and InstanceNormalization need the channel count at export, which a reshape of z
    into feature maps (``z.view(b, -1, h, w)``) hides from the exporter; the replacements need none."""
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm2d) and child.track_running_stats and child.running_mean is not None:
                setattr(parent, name, _ChannelAffine(child))
                count += 1
            elif isinstance(child, nn.InstanceNorm2d) and not child.track_running_stats:
                setattr(parent, name, _InstanceNormPlain(child))
                count += 1
    return count


def check_exportable(G: nn.Module) -> None:
    """Refuse, with the reason, a generator whose output depends on more than its weights and inputs: one that
    reads files beside its weights at run time in Python (``model_files``, e.g. SIMS's memory bank, from which
    it retrieves and composes its canvas), or that says why it cannot be exported (``portable_unsupported``)."""
    name = (getattr(G, "config", None) or {}).get("name", type(G).__name__)
    reason = getattr(G, "portable_unsupported", None)
    files = tuple(getattr(G, "model_files", ()) or ())
    if reason is None and files:
        reason = (f"its output depends on {', '.join(files)}, which it reads beside its weights and uses in Python "
                  f"at run time (a graph holds only tensor operations)")
    if reason:
        raise ExportError(f"generator {name!r} cannot be exported as ONNX or TorchScript: {reason}; use it through "
                          f"semsynth (semsynth generate, or --format safetensors)")


def prepare_generator(G: nn.Module) -> nn.Module:
    """A copy of ``G`` (rebuilt from ``G.config``, same weights, on the CPU, eval mode) with spectral norm folded
    into plain weights, batch norm as scale and shift, instance norm written out. ``G`` is not modified.

    (A ``copy.deepcopy`` would not do: a parametrised module's class is shared with its copies, and removing the
    parametrisation from the copy would remove it from G's class too.)"""
    from .models import build_generator

    check_exportable(G)
    config = getattr(G, "config", None)
    if not isinstance(config, dict) or "name" not in config:
        raise ExportError(f"{type(G).__name__} has no registry config (G.config); build generators with "
                          f"semsynth.models.build_generator or load them with load_model")
    copy = build_generator(config)
    state = {k: v.detach().cpu() for k, v in G.state_dict().items()}
    copy.load_state_dict(state)
    copy = copy.float().eval()
    fold_spectral_norm(copy)
    fold_norms(copy)
    for p in copy.parameters():
        p.requires_grad_(False)
    return copy


# ------------------------------------------------------------------------------------------------------------
# Which sizes a generator takes


@dataclass
class Geometry:
    """The sizes of an export: ``resolution`` (traced), whether height/width are dynamic and their multiple."""

    resolution: tuple[int, int]
    dynamic_size: bool
    size_multiple: int | None
    other_size: tuple[int, int] | None  # a second size the files are checked at (dynamic only)


def _runs(G: nn.Module, channels: int, latent: int, size: tuple[int, int]) -> bool:
    try:
        with torch.no_grad():
            sem = torch.zeros(1, channels, *size)
            sem[:, 0] = 1
            G(sem, torch.zeros(1, latent) if latent else None)
        return True
    except Exception:  # noqa: BLE001 - any refusal (a ShapeError, a kernel larger than the map) means "not this size"
        return False


def probe_geometry(G: nn.Module, channels: int, resolution: tuple[int, int]) -> Geometry:
    """Whether the eager generator takes sizes other than ``resolution``: the smallest power-of-two square size
    ``m`` below the resolution that it takes, then ``m x 2m``, ``2m x m`` and ``2m x 2m`` (no probe is larger
    than the resolution). Height and width are exported as dynamic ("any multiple of m") only when all of them
    run and ``m`` divides the resolution; otherwise they are fixed at the resolution (e.g. a generator that
    reshapes z into a map of a fixed size, or CRN, whose number of refinement modules follows the short side)."""
    latent = int(getattr(G, "latent_dim", 0) or 0)
    h, w = resolution
    m = next((2**k for k in range(13) if 2 ** (k + 1) <= min(h, w) and _runs(G, channels, latent, (2**k, 2**k))),
             None)
    if m is None or h % m or w % m:
        return Geometry(resolution, False, None, None)
    others = [(m, 2 * m), (2 * m, m), (2 * m, 2 * m)]
    if not all(_runs(G, channels, latent, size) for size in others):
        return Geometry(resolution, False, None, None)
    return Geometry(resolution, True, m, others[0] if others[0] != (h, w) else others[1])


# ------------------------------------------------------------------------------------------------------------
# Example inputs


def example_inputs(model: PortableGenerator, batch: int, size: tuple[int, int], seed: int) -> tuple[torch.Tensor, ...]:
    """Random inputs for ``model``: blocky label maps (regions of 4x4 pixels, every class likely), blocky instance
    maps, one-hot maps of such labels, z ~ N(0, I)."""
    g = torch.Generator().manual_seed(seed)
    h, w = size

    def blocky(high: int) -> torch.Tensor:
        coarse = torch.randint(0, high, (batch, -(-h // 4), -(-w // 4)), generator=g)
        return coarse.repeat_interleave(4, 1).repeat_interleave(4, 2)[:, :h, :w].contiguous()

    out = []
    for name in model.input_names:
        if name == "label":
            out.append(blocky(model.num_classes))
        elif name == "instance":
            out.append(blocky(6))
        elif name == "semantic":
            sem = one_hot_graph(blocky(model.num_classes), model.ids)
            if model.use_instance:
                sem = torch.cat([sem, instance_edges_graph(blocky(6))], 1)
            out.append(sem)
        else:
            out.append(torch.randn(batch, model.latent_dim, generator=g))
    return tuple(out)


def reference_output(G: nn.Module, model: PortableGenerator, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """What the eager, unmodified generator gives for ``inputs`` (semsynth's own input encoding)."""
    from .layers import semantic_input

    x = dict(zip(model.input_names, inputs))
    if "semantic" in x:
        sem = x["semantic"]
    else:
        sem = semantic_input(x["label"], model.num_classes, x.get("instance"))
    with torch.no_grad():
        return G(sem, x.get("z")).float()


# ------------------------------------------------------------------------------------------------------------
# Writing and checking the files


@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    """The tracer's warnings about shape checks (they are Python checks, kept out of the graph), the legacy ONNX
    exporter's deprecation notice and its notes on constant folding and shape inference, and TorchScript's
    deprecation notices are expected here; nothing else is silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx\..*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\..*")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\..*")
        yield


def require_onnx() -> tuple[Any, Any]:
    """``(onnx, onnxruntime)``, or an error saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ExportError(f"--format onnx needs the packages onnx and onnxruntime ({e.name} is not installed): "
                          f"pip install 'semsynth[onnx]'") from e
    return onnx, onnxruntime


def _axes(model: PortableGenerator, geometry: Geometry) -> dict[str, dict[int, str]]:
    hw = {1: "height", 2: "width"} if geometry.dynamic_size else {}
    axes: dict[str, dict[int, str]] = {}
    for name in model.input_names:
        if name in ("label", "instance"):
            axes[name] = {0: "batch", **hw}
        elif name == "semantic":
            axes[name] = {0: "batch", **{k + 1: v for k, v in hw.items()}}
        else:
            axes[name] = {0: "batch"}
    axes["image"] = {0: "batch", **{k + 1: v for k, v in hw.items()}}
    return axes


def write_onnx(model: PortableGenerator, path: Path, geometry: Geometry, metadata: dict[str, Any]) -> Path:
    """Trace ``model`` into an ONNX file at ``path`` (written to a temporary, then renamed)."""
    from .utils.files import atomic_write

    onnx, _ = require_onnx()
    example = example_inputs(model, 2, geometry.resolution, seed=0)

    def write(tmp: Path) -> None:
        with _quiet_tracing(), torch.no_grad():
            try:
                torch.onnx.export(model, example, str(tmp), dynamo=False, input_names=model.input_names,
                                  output_names=["image"], dynamic_axes=_axes(model, geometry), opset_version=OPSET,
                                  do_constant_folding=True)
            except Exception as e:  # noqa: BLE001 - the exporter's errors carry the whole graph: keep the cause
                raise ExportError(f"generator {model.G.config.get('name')!r} cannot be written as ONNX: "
                                  f"{_short(e)}") from e
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto)
        entry = proto.metadata_props.add()
        entry.key, entry.value = "semsynth.portable", json.dumps(metadata)
        proto.doc_string = "semsynth generator; portable.json (also in metadata_props) describes inputs and classes"
        onnx.save(proto, str(tmp))

    return atomic_write(path, write)


def write_torchscript(model: PortableGenerator, path: Path, geometry: Geometry, metadata: dict[str, Any]) -> Path:
    """Trace ``model`` into a TorchScript file at ``path`` (``torch.jit.load`` runs it; no semsynth needed)."""
    from .utils.files import atomic_write

    example = example_inputs(model, 2, geometry.resolution, seed=0)
    with _quiet_tracing(), torch.no_grad():
        try:
            traced = torch.jit.trace(model, example, check_trace=False)
        except Exception as e:  # noqa: BLE001
            raise ExportError(f"generator {model.G.config.get('name')!r} cannot be traced into TorchScript: "
                              f"{_short(e)}") from e

    def write(tmp: Path) -> None:
        with _quiet_tracing():  # torch.jit.save's deprecation notice
            torch.jit.save(traced, str(tmp), _extra_files={PORTABLE_JSON: json.dumps(metadata)})

    return atomic_write(path, write)


def _short(e: BaseException) -> str:
    """An exporter error in one line: its first line, without the graph dump that follows."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    text = text.split(" [Caused by the value")[0]
    return f"{type(e).__name__}: {text[:300]}"


def run_file(fmt: str, path: Path, input_names: Sequence[str], inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Run an exported file as a user would: onnxruntime (CPU) or ``torch.jit.load``."""
    if fmt == "onnx":
        _, ort = require_onnx()
        session = _ort_session(ort, path)
        feed = {n: t.numpy() for n, t in zip(input_names, inputs)}
        return torch.from_numpy(session.run(["image"], feed)[0])
    with _quiet_tracing():
        module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return module(*inputs)


def _ort_session(ort: Any, path: Path) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    threads = torch.get_num_threads()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_cases(G: nn.Module, model: PortableGenerator,
                geometry: Geometry) -> list[tuple[tuple[torch.Tensor, ...], torch.Tensor]]:
    """``(inputs, eager output)`` to check files on: a batch of 2 at the resolution and, when height and width are
    dynamic, a batch of 1 at the other size (random inputs, other seeds than the tracing example's)."""
    cases = [(2, geometry.resolution, 1)]
    if geometry.dynamic_size:
        cases.append((1, geometry.other_size, 2))
    out = []
    for batch, size, seed in cases:
        inputs = example_inputs(model, batch, size, seed)
        out.append((inputs, reference_output(G, model, inputs)))
    return out


def check_file(fmt: str, path: Path, model: PortableGenerator,
               cases: Sequence[tuple[Sequence[torch.Tensor], torch.Tensor]],
               tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Run the file on each case's inputs as a user would and compare with the eager generator's output (see
    :func:`check_cases`). Raises :class:`ExportError` above ``tolerance``."""
    worst, checked = 0.0, []
    for inputs, ref in cases:
        batch, size = ref.shape[0], tuple(ref.shape[2:])
        try:
            out = run_file(fmt, path, model.input_names, inputs)
        except Exception as e:  # noqa: BLE001 - the runtime's own error, reported with the file
            raise ExportError(f"{path}: the exported {fmt} file fails on a batch of {batch} at {size[0]}x{size[1]}: "
                              f"{_short(e)}") from e
        if tuple(out.shape) != tuple(ref.shape):
            raise ExportError(f"{path}: output shape {tuple(out.shape)}, semsynth gives {tuple(ref.shape)}")
        diff = float((out - ref).abs().max())
        if not diff <= tolerance:
            raise ExportError(f"{path}: the exported {fmt} file differs from semsynth by {diff:.3g} (more than "
                              f"{tolerance:g}) on a batch of {batch} at {size[0]}x{size[1]}; please report this "
                              f"with the model's config.json")
        worst = max(worst, diff)
        checked.append([batch, *size])
    return {"max_abs_diff": worst, "checked": checked, "runtime": _runtime_name(fmt)}


def _runtime_name(fmt: str) -> str:
    if fmt == "onnx":
        _, ort = require_onnx()
        return f"onnxruntime {ort.__version__} CPUExecutionProvider"
    return f"torch.jit {torch.__version__.split('+')[0]}"


# ------------------------------------------------------------------------------------------------------------
# portable.json


def describe(model: PortableGenerator, info: Any, config: dict[str, Any], geometry: Geometry) -> dict[str, Any]:
    """The ``portable.json`` of an export (without ``files`` and ``checks``)."""
    from . import __version__

    h, w = geometry.resolution
    hh, ww = ("height", "width") if geometry.dynamic_size else (h, w)
    c = model.num_classes
    meaning = {
        "label": f"class ids 0..{c - 1} (int64): raw label-file values mapped through label_values first",
        "instance": "instance ids (int64; any values): edges between different ids become the instance channel; "
                    "all zeros when there is no instance map",
        "semantic": f"float32 one-hot map of the {c} classes" + (" + the instance-edge channel"
                                                                 if model.use_instance else ""),
        "z": f"latent z ~ N(0, I), float32; one row per image ({model.latent_dim} values)",
    }
    shapes = {"label": ["batch", hh, ww], "instance": ["batch", hh, ww],
              "semantic": ["batch", c + int(model.use_instance), hh, ww], "z": ["batch", model.latent_dim]}
    dtypes = {"label": "int64", "instance": "int64", "semantic": "float32", "z": "float32"}
    table = config.get("label_values")
    return {
        "format": "semsynth-portable",
        "version": PORTABLE_VERSION,
        "generator": config["generator"].get("name"),
        "dataset": info.name,
        "resolution": [h, w],
        "dynamic": {"batch": True, "height_width": geometry.dynamic_size, "size_multiple": geometry.size_multiple},
        "input_encoding": model.input,
        "inputs": [{"name": n, "dtype": dtypes[n], "shape": shapes[n], "meaning": meaning[n]}
                   for n in model.input_names],
        "outputs": [{"name": "image", "dtype": "float32", "shape": ["batch", 3, hh, ww],
                     "meaning": "RGB in [-1, 1]; to 8-bit: round((image + 1) * 127.5), clipped to 0..255, "
                                "transposed to [H, W, 3]"}],
        "latent_dim": model.latent_dim,
        "num_classes": c,
        "instance": model.use_instance,
        "dontcare_index": info.dontcare_index,
        "classes": [{"id": i, "name": name, "colour": list(info.palette[i])}
                    for i, name in enumerate(info.class_names)],
        "label_values": table,
        "label_values_note": "raw label-file value -> class id; null: the file holds the class ids themselves",
        "semsynth_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "opset": OPSET,
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------------------
# The export


@dataclass
class PortableExport:
    out: Path
    files: dict[str, Path] = field(default_factory=dict)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: dict[str, Any] = field(default_factory=dict)


def check_formats(formats: Sequence[str], dtype: str = "fp32") -> list[str]:
    """Validate ``--format`` values (before anything is written)."""
    out = []
    for f in formats:
        if f not in FORMATS:
            raise ExportError(f"--format {f!r} is not a format semsynth writes; choose from {', '.join(FORMATS)} "
                              f"(several: --format onnx,torchscript)")
        if f not in out:
            out.append(f)
    portable = [f for f in out if f in PORTABLE_FORMATS]
    if portable and dtype != "fp32":
        raise ExportError(f"--format {portable[0]} --dtype {dtype}: {portable[0]} files are written in fp32 only "
                          f"(onnxruntime on the CPU has no {dtype} kernels for these layers); drop --dtype, or "
                          f"export the safetensors at {dtype} separately with --format safetensors")
    if "onnx" in out:
        require_onnx()
    return out


def export_portable(model_dir: str | os.PathLike, formats: Sequence[str] = ("onnx",), input: str = "label",
                    out_dir: str | os.PathLike | None = None, log: Any = None) -> PortableExport:
    """Write ``generator.onnx`` / ``generator.pt`` and ``portable.json`` for the exported model ``model_dir``.

    With ``out_dir`` (another folder), the model's own files (config.json, model.safetensors,
    encoder.safetensors) are copied there first, so that the folder is complete. Returns what was written and the
    check of each file (its largest difference to the eager generator)."""
    from .training.checkpoint import load_model
    from .utils.files import atomic_write_text

    formats = [f for f in check_formats(formats) if f in PORTABLE_FORMATS]
    if input not in INPUT_MODES:
        raise ExportError(f"--input {input!r}: choose one of {', '.join(INPUT_MODES)}")
    src = Path(model_dir)
    G, _E, info, config = load_model(src, "cpu")
    check_exportable(G)
    out = Path(out_dir) if out_dir is not None else src
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out}: a file is in the way; give a folder")
    interface_channels = info.num_classes + int(info.has_instance)
    geometry = probe_geometry(G, interface_channels, tuple(getattr(G, "resolution", info.resolution)))
    model = PortableGenerator(prepare_generator(G), info.num_classes, info.has_instance, input).eval()
    description = describe(model, info, config, geometry)

    result = PortableExport(out)
    if out.resolve() != src.resolve():
        copy_model_files(src, out)
    description["weights_sha256"] = _sha256(out / "model.safetensors")
    writers = {"onnx": write_onnx, "torchscript": write_torchscript}
    cases = check_cases(G, model, geometry) if formats else []
    for fmt in formats:
        path = out / FILES[fmt]
        if log:
            log(f"writing {path} ...")
        writers[fmt](model, path, geometry, description)
        try:
            result.checks[fmt] = check_file(fmt, path, model, cases)
        except ExportError:
            path.unlink(missing_ok=True)
            raise
        result.files[fmt] = path
    # keep the entries of an earlier export of the other format of these same weights
    previous = _read_json(out / PORTABLE_JSON)
    files = {fmt: FILES[fmt] for fmt in result.files}
    checks = dict(result.checks)
    if previous and previous.get("weights_sha256") == description["weights_sha256"] \
            and previous.get("input_encoding") == input:
        for fmt, name in (previous.get("files") or {}).items():
            if fmt not in files and fmt in FILES and (out / name).is_file():
                files[fmt] = name
                checks[fmt] = (previous.get("checks") or {}).get(fmt)
    description["files"] = dict(sorted(files.items()))
    description["checks"] = {k: checks[k] for k in sorted(checks)}
    description["exported"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    atomic_write_text(json.dumps(description, indent=2), out / PORTABLE_JSON)
    result.description = description
    return result


def copy_model_files(src: Path, out: Path) -> None:
    """Copy a model directory's own files (config.json, model.safetensors, encoder.safetensors) byte for byte."""
    from .utils.files import atomic_write

    extra = (_read_json(src / "config.json") or {}).get("files") or []  # e.g. SIMS's memory bank
    for name in ("config.json", "model.safetensors", "encoder.safetensors", *[f for f in extra if isinstance(f, str)
                                                                              and Path(f).name == f]):
        if (src / name).is_file():
            atomic_write(out / name, lambda tmp, s=src / name: shutil.copyfile(s, tmp))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None
