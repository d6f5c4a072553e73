"""Official checkpoints in: ``semsynth convert`` turns a released ``latest_net_G.pth`` (SC-GAN, SPADE, CC-FPSE,
OASIS, pix2pixHD) into a semsynth model directory, the format ``semsynth export`` writes.

Each family has a converter (``convert/<family>.py``) registered with :func:`register`. It receives the official
state dicts (already read safely, ``module.`` prefixes stripped) and the options of the official ``opt.txt`` (and,
when it declares the keywords ``opt_path`` / ``checkpoint_path``, where those files are),
infers every width and count the tensor shapes determine, takes the rest from ``--preset`` / ``--set``, builds the
semsynth networks, maps the keys (no tensor value changes) and loads them strictly. :func:`convert_checkpoint` then
writes ``model.safetensors`` (+ ``encoder.safetensors``, ``discriminator.safetensors``) and ``config.json``.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import DatasetInfo
from ..errors import ConfigError, SemsynthError

CONVERTERS: dict[str, Callable[..., Converted]] = {}


class ConversionError(SemsynthError):
    """A checkpoint that does not fit the model it is converted to (wrong ``--from``, preset, key, shape)."""


@dataclass
class Converted:
    """What a family's converter returns: semsynth networks holding the official weights, and the facts."""

    generator: nn.Module
    info: DatasetInfo  # the channel convention of the official dataset (classes, don't-care, instance edge)
    encoder: nn.Module | None = None
    discriminator: nn.Module | None = None
    label_values: dict[str, int] | None = None  # raw label-file value -> channel, as the official test script
    data: dict[str, Any] | None = None  # a dataset spec (name + options) for `evaluate` / `demo`
    sources: dict[str, str] = field(default_factory=dict)  # setting -> where its value came from
    notes: list[str] = field(default_factory=list)  # anything the user should know


def register(name: str) -> Callable[[Callable[..., Converted]], Callable[..., Converted]]:
    """Register a family's converter: ``fn(state, opt, *, encoder_state, discriminator_state, preset, overrides)``."""

    def deco(fn: Callable[..., Converted]) -> Callable[..., Converted]:
        if name in CONVERTERS:
            raise ValueError(f"converter {name!r} is registered twice")
        CONVERTERS[name] = fn
        return fn

    return deco


# ------------------------------------------------------------------------------------------------------------
# Reading official files


def read_opt_txt(path: str | os.PathLike) -> dict[str, Any]:
    """The options of an official ``opt.txt`` (``name: value   [default: x]`` lines, as SPADE-style training scripts
    write them); values parsed as Python/YAML scalars (``True``, ``0.05``, ``None``, strings)."""
    import yaml

    out: dict[str, Any] = {}
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise ConversionError(f"cannot read {path}: {e.strerror or e}") from e
    for line in text.splitlines():
        m = re.match(r"^\s*([A-Za-z_][\w]*)\s*:\s*(.*?)\s*(\[default:.*\])?\s*$", line)
        if not m:
            continue
        key, raw = m.group(1), m.group(2)
        if raw in ("None", ""):
            value: Any = None
        elif raw in ("True", "False"):
            value = raw == "True"
        else:
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError:
                value = raw
            if isinstance(value, (dict, list)) or value is None:
                value = raw
        out[key] = value
    return out


def load_official_state(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    """An official state dict, read with ``torch.load(weights_only=True)`` (a pickle holding code is refused),
    unwrapped from ``{"state_dict": ...}``-style containers, with DataParallel's ``module.`` prefixes removed."""
    from ..utils.files import safe_torch_load

    obj = safe_torch_load(path, what, "give the .pth file of the released checkpoint (e.g. latest_net_G.pth)",
                          error=ConversionError)
    for key in ("state_dict", "model_state_dict", "model", "netG", "net_G"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(f"{what}: {path} does not hold a state dict (a mapping of parameter names to tensors)")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def find_opt_txt(checkpoint: Path) -> Path | None:
    """The ``opt.txt`` the official training scripts write beside their checkpoints (or one folder up)."""
    for d in (checkpoint.parent, checkpoint.parent.parent):
        p = d / "opt.txt"
        if p.is_file():
            return p
    return None


# ------------------------------------------------------------------------------------------------------------
# Helpers for the families' converters


# legacy spectral norm (``torch.nn.utils.spectral_norm``, the official code) -> its parametrisation (semsynth)
SPECTRAL_NAMES = ((".weight_orig", ".parametrizations.weight.original"), (".weight_u", ".parametrizations.weight.0._u"),
                  (".weight_v", ".parametrizations.weight.0._v"))


def parametrized_key(key: str) -> str:
    """``X.weight_orig`` / ``X.weight_u`` / ``X.weight_v`` -> ``X.parametrizations.weight.original`` / ``.0._u`` /
    ``.0._v``; any other key unchanged."""
    for legacy, parametrized in SPECTRAL_NAMES:
        if key.endswith(legacy):
            return key[: -len(legacy)] + parametrized
    return key


def legacy_spectral_key(key: str) -> str:
    """The inverse of :func:`parametrized_key` (for messages that name the official key)."""
    for legacy, parametrized in SPECTRAL_NAMES:
        if key.endswith(parametrized):
            return key[: -len(parametrized)] + legacy
    return key


def legacy_spectral_to_parametrized(state: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Official legacy spectral norm (``X.weight_orig``, ``X.weight_u``, ``X.weight_v``) -> the names of
    ``torch.nn.utils.parametrizations.spectral_norm`` (``X.parametrizations.weight.original``, ``..._u``,
    ``..._v``). Other keys are kept. Values are not changed."""
    return {(parametrized_key(k) if k.startswith(prefix) else k): v for k, v in state.items()}


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str, hint: str = "",
                official_names: Mapping[str, str] | None = None) -> None:
    """Load mapped official tensors into a semsynth module; any missing or extra key or shape difference raises
    :class:`ConversionError` naming the key, both shapes, the source file and ``hint`` (the likely cause).

    ``official_names`` (semsynth key -> the checkpoint's own key, for the keys the mapping renamed) makes the
    messages name the key the user can find in the official file too. A tensor that is not floating-point where
    the model holds floats (or the reverse), or a non-finite value, is refused the same way."""
    expected = module.state_dict()
    why = f"; {hint}" if hint else ""
    names = dict(official_names or {})

    def name(k: str) -> str:
        official = names.get(k)
        return f"{k!r}" if official is None or official == k else f"{k!r} (official {official!r})"

    for k, v in expected.items():
        if k in state and tuple(state[k].shape) != tuple(v.shape):
            raise ConversionError(f"{source}: tensor {name(k)} has shape {list(state[k].shape)} in the checkpoint "
                                  f"but {list(v.shape)} in the semsynth model{why}")
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensor(s) missing from the checkpoint ({', '.join(map(name, missing[:4]))}"
                         f"{', ...' if len(missing) > 4 else ''})")
        if extra:
            parts.append(f"{len(extra)} tensor(s) of the checkpoint have no place in the model "
                         f"({', '.join(map(name, extra[:4]))}{', ...' if len(extra) > 4 else ''})")
        raise ConversionError(f"{source}: " + "; ".join(parts) + why)
    for k, v in expected.items():
        t = state[k]
        if t.is_floating_point() != v.is_floating_point():
            raise ConversionError(f"{source}: tensor {name(k)} is {t.dtype} in the checkpoint, the model holds "
                                  f"{v.dtype}{why}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ConversionError(f"{source}: tensor {name(k)} holds NaN or infinite values; the checkpoint is "
                                  f"damaged")
    module.load_state_dict(dict(state), strict=True)


def resolve_setting(name: str, candidates: list[tuple[str, Any]], sources: dict[str, str]) -> Any:
    """The value of a setting from ``[(source, value), ...]`` (``None`` values skipped): every source that gives
    one must agree, else :class:`ConversionError` names both sources. Records the first source in ``sources``."""
    given = [(s, v) for s, v in candidates if v is not None]
    if not given:
        return None
    first_src, first = given[0]
    for src, v in given[1:]:
        if v != first:
            raise ConversionError(f"{name}: {first_src} says {first!r} but {src} says {v!r}; remove the "
                                  f"contradiction (the tensor shapes are always right)")
    sources[name] = first_src
    return first


# ------------------------------------------------------------------------------------------------------------
# The command


def convert_checkpoint(family: str, checkpoint: str | os.PathLike, out: str | os.PathLike, *,
                       encoder: str | os.PathLike | None = None, discriminator: str | os.PathLike | None = None,
                       preset: str | None = None, overrides: list[str] | tuple[str, ...] = (),
                       opt: str | os.PathLike | None = None) -> tuple[Path, Converted]:
    """``semsynth convert``: read the official files, convert, write the model directory; returns (dir, result)."""
    from ..training.checkpoint import export_model
    from ..utils.files import atomic_save_safetensors

    _load_families()
    if family not in CONVERTERS:
        raise ConfigError(f"--from {family!r}: valid sources are: {', '.join(sorted(CONVERTERS))}")
    ckpt = Path(checkpoint)
    if not ckpt.is_file():
        raise ConversionError(f"--checkpoint {ckpt}: no such file")
    opt_path = Path(opt) if opt is not None else find_opt_txt(ckpt)
    options = read_opt_txt(opt_path) if opt_path is not None else {}
    state = load_official_state(ckpt, f"{family} generator checkpoint")
    enc = load_official_state(encoder, f"{family} encoder checkpoint") if encoder else None
    disc = load_official_state(discriminator, f"{family} discriminator checkpoint") if discriminator else None
    fn = CONVERTERS[family]
    # optional keywords a converter may declare: where opt.txt and the checkpoint are (e.g. to find files they name)
    extra_kw = {k: v for k, v in (("opt_path", opt_path), ("checkpoint_path", ckpt))
                if k in inspect.signature(fn).parameters}
    result = fn(state, options, encoder_state=enc, discriminator_state=disc, preset=preset,
                overrides=list(overrides), **extra_kw)
    if opt_path is not None:
        result.notes.insert(0, f"options read from {opt_path}")
    result.generator.eval()
    if result.encoder is not None:
        result.encoder.eval()
    extra = {"converted_from": {"family": family, "checkpoint": ckpt.name,
                                "encoder": Path(encoder).name if encoder else None,
                                "discriminator": Path(discriminator).name if discriminator else None,
                                "opt_txt": str(opt_path) if opt_path else None, "sources": result.sources},
             "label_values": result.label_values, "data": result.data}
    if result.discriminator is not None:
        extra["discriminator"] = getattr(result.discriminator, "config", None)
    out_dir = export_model(out, result.generator, result.info, result.encoder, extra=extra)
    if result.discriminator is not None:
        state_d = {k: v.detach().cpu().contiguous() for k, v in result.discriminator.state_dict().items()}
        atomic_save_safetensors(state_d, out_dir / "discriminator.safetensors")
    return out_dir, result


def _load_families() -> None:
    """Import the family converters (each registers itself)."""
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):  # type: ignore[name-defined]
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
