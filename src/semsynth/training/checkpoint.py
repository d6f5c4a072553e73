"""Checkpoints and exported models.

* Training state (``checkpoints/training-state-<images>.pt``): every state_dict, optimiser state, counter,
  RNG state and the resolved config, as tensors and plain Python values only, so that it loads with
  ``torch.load(weights_only=True)``. Written to a temporary file, flushed and renamed: a crash never leaves
  a torn file in place of a good one. Resuming takes the newest readable one (:func:`find_resume_checkpoint`)
  and refuses settings that would change the numerics (:func:`numerics_changes`).
* Exported model (a directory): ``model.safetensors`` (generator), ``encoder.safetensors`` (optional),
  ``config.json`` (the generator/encoder configs and the dataset facts) and the files a generator keeps beside
  its weights (``G.save_model_files`` / ``G.load_model_files``, listed in config.json's ``files``: SIMS's memory
  bank). Loading needs no training config.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import DatasetInfo
from ..errors import SemsynthError
from ..utils.files import atomic_save_safetensors, atomic_write, atomic_write_text, read_safetensors, safe_torch_load

FORMAT_VERSION = 1


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as weights_only-loadable values."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x: Any) -> Any:
    if isinstance(x, list):
        return tuple(_as_tuple(v) for v in x)
    if isinstance(x, tuple):
        return tuple(_as_tuple(v) for v in x)
    return x


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SemsynthError(f"checkpoint {path} does not exist")
    state = safe_torch_load(path, "training checkpoint", "it may be torn (the process was killed while writing "
                            "it) or not a semsynth checkpoint")
    if not isinstance(state, dict) or state.get("format") != "semsynth-training-state":
        raise SemsynthError(f"{path} is not a semsynth training state")
    return state


# Test hook (tests/training/test_robustness.py): seconds to sleep between writing a checkpoint's temporary file
# and renaming it, so that a test can kill the process while the temporary exists. Never set outside tests.
PAUSE_IN_CHECKPOINT_ENV = "SEMSYNTH_TEST_PAUSE_IN_CHECKPOINT"


def save_training_state(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a training state atomically (temporary file, flush, rename)."""

    def write(tmp: Path) -> None:
        torch.save(state, tmp)
        pause = os.environ.get(PAUSE_IN_CHECKPOINT_ENV)
        if pause:
            time.sleep(float(pause))

    return atomic_write(path, write)


def checkpoint_images(path: Path) -> int | None:
    """The image count in a checkpoint's name (``training-state-000004000.pt`` -> 4000)."""
    tail = path.stem.rsplit("-", 1)[-1]
    return int(tail) if path.stem.startswith("training-state-") and tail.isdigit() else None


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Training states of a run, oldest first."""
    ckpt = Path(run_dir) / "checkpoints"
    found = [p for p in ckpt.glob("training-state-*.pt") if checkpoint_images(p) is not None]
    return sorted(found, key=checkpoint_images)


def _try_load(path: Path) -> tuple[dict[str, Any] | None, str]:
    """``(state, "")``, or ``(None, why it cannot be read)``."""
    try:
        return load_training_state(path), ""
    except SemsynthError as e:
        return None, str(e)


def find_resume_checkpoint(resume: str | os.PathLike) -> tuple[Path, dict[str, Any], list[tuple[Path, str]]]:
    """The checkpoint to resume from, its state, and the unreadable checkpoints passed over (path, why).

    ``resume`` is a run directory (its newest readable checkpoint; newer unreadable ones are passed over) or a
    checkpoint file (which must be readable: otherwise the error lists the run's readable checkpoints)."""
    p = Path(resume)
    if p.is_dir():
        ckpts = list_checkpoints(p)
        if not ckpts:
            raise SemsynthError(f"--resume {p}: no checkpoint in {p / 'checkpoints'} to resume from (the run stopped "
                                f"before its first one); start it again with 'semsynth train --config "
                                f"{p / 'config.yaml'}'")
        bad: list[tuple[Path, str]] = []
        for c in reversed(ckpts):
            state, why = _try_load(c)
            if state is not None:
                return c, state, bad
            bad.append((c, why))
        raise SemsynthError(
            f"--resume {p}: none of its {len(ckpts)} checkpoint(s) can be read ("
            + "; ".join(f"{c.name}: {why}" for c, why in bad)
            + f"), so the run cannot be continued; start it again with 'semsynth train --config "
              f"{p / 'config.yaml'}' (the unreadable files are left in place)")
    if not p.is_file():
        raise SemsynthError(f"--resume {p}: no such run directory or checkpoint file")
    state, why = _try_load(p)
    if state is not None:
        return p, state, []
    run = p.parent.parent if p.parent.name == "checkpoints" else None
    intact = [c for c in reversed(list_checkpoints(run) if run is not None else [])
              if c.resolve() != p.resolve() and _try_load(c)[0] is not None]
    if not intact:
        where = f"run {run} has" if run is not None else "there is"
        raise SemsynthError(f"--resume {p}: {why}; {where} no other readable checkpoint: start the run again "
                            f"with --config")
    raise SemsynthError(
        f"--resume {p}: {why}. Readable checkpoints of run {run}, newest first: "
        + ", ".join(f"{c.name} ({checkpoint_images(c)} images)" for c in intact)
        + f". Resume from one with: semsynth train --resume {intact[0]}")


def set_aside_newer_checkpoints(run_dir: str | os.PathLike, images: int) -> list[Path]:
    """Move the checkpoints of ``run_dir`` newer than ``images`` (unreadable ones, or those of a branch that a
    resume from an older checkpoint abandons) to ``checkpoints/set-aside/``, so that a later ``--resume RUN``
    never takes them for the newest state of this run. Returns their new paths; nothing is deleted."""
    moved = []
    for c in list_checkpoints(run_dir):
        if checkpoint_images(c) > images:
            dest_dir = c.parent / "set-aside"
            dest_dir.mkdir(exist_ok=True)
            dest, n = dest_dir / c.name, 1
            while dest.exists():
                dest, n = dest_dir / f"{c.stem}.{n}{c.suffix}", n + 1
            os.replace(c, dest)
            moved.append(dest)
    return moved


def remove_stale_temporaries(run_dir: str | os.PathLike) -> None:
    """Delete half-written files left by a process that was killed while saving."""
    run = Path(run_dir)
    for d in (run, run / "checkpoints", run / "model", run / "samples"):
        if d.is_dir():
            for p in d.glob(".*.tmp*"):
                p.unlink(missing_ok=True)


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> None:
    for p in list_checkpoints(run_dir)[:-keep]:
        p.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------------------
# Resuming with other settings

# Settings that change nothing a run computes: a resume may change them freely and still continue exactly.
# (``train.num_workers`` is one because the loader seeds every sample's random crop and flip from the run's seed,
# the epoch and the sample's index: see ``training.loop.SeededSamples``.)
BOOKKEEPING_KEYS = frozenset({
    "name", "data.root", "train.log_every", "train.sample_every", "train.checkpoint_every",
    "train.keep_checkpoints", "train.tensorboard", "train.num_samples", "train.nan_patience", "train.num_workers",
    "train.recompute",  # the same gradients and buffers, bit for bit (layers/recompute.py)
    "train.scc_recompute_pixels",  # the same gradients, bit for bit (layers/scc.py, _ConvMixRecomputed)
    "train.init",  # read only when a run starts: a resume ignores it
})
# The run's length: a resume may extend (or shorten) a run; the learning-rate schedule is re-stretched.
LENGTH_KEYS = frozenset({"train.images", "train.epochs"})
_ABSENT = object()


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = _plain(v)
    return out


def _plain(v: Any) -> Any:
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


def format_setting(value: Any) -> str:
    if value is _ABSENT:
        return "(not set)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def numerics_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, old value, new value)`` for every setting that differs between the config stored in a checkpoint
    (``old``) and the config of a resume (``new``) and that changes what the run computes: all but
    :data:`BOOKKEEPING_KEYS` and :data:`LENGTH_KEYS`. Values print with :func:`format_setting`."""
    a, b = _flatten(old), _flatten(new)
    for flat in (a, b):  # a loss section without a name (written before objectives were registered) is "gan"
        if any(k.startswith("loss.") for k in flat):
            flat.setdefault("loss.name", "gan")
    from ..config import OptimConfig, TrainConfig

    for sec, cls in (("optim", OptimConfig), ("train", TrainConfig)):  # a setting added since: its default
        for k, v in dataclasses.asdict(cls()).items():
            if f"{sec}.{k}" in b:
                a.setdefault(f"{sec}.{k}", _plain(v))
    changes = []
    for key in sorted(set(a) | set(b)):
        if key in BOOKKEEPING_KEYS or key in LENGTH_KEYS:
            continue
        x, y = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if x is _ABSENT or y is _ABSENT or x != y or isinstance(x, bool) != isinstance(y, bool):
            changes.append((key, x, y))
    return changes


# ------------------------------------------------------------------------------------------------------------
# Exported models


def _state_for_export(module: nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in module.state_dict().items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.contiguous()
    return out


def export_model(out_dir: str | os.PathLike, G: nn.Module, info: DatasetInfo, E: nn.Module | None = None,
                 extra: dict[str, Any] | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write ``model.safetensors`` (+ ``encoder.safetensors``) and ``config.json`` into ``out_dir``.

    ``dtype`` (e.g. ``torch.float16``) stores floating tensors at that precision (half the size); loading casts
    them back to the model's dtype."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {"format": "semsynth-model", "version": FORMAT_VERSION, "generator": G.config,
              "encoder": E.config if E is not None else None, "dataset": info.to_dict(), **(extra or {})}
    for name, module in (("model", G), ("encoder", E)):
        if module is not None:
            atomic_save_safetensors(_state_for_export(module, dtype), out / f"{name}.safetensors")
    # files a generator keeps beside its weights (SIMS: its memory bank), listed so that copies take them along
    files = G.save_model_files(out) if hasattr(G, "save_model_files") else []
    if files:
        config["files"] = files
    atomic_write_text(json.dumps(config, indent=2), out / "config.json")
    return out


def read_model_config(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of an exported model, checked: format, version, sections, dataset facts."""
    d = Path(model_dir)
    cfg_path = d / "config.json"
    if not d.exists():
        raise SemsynthError(f"model directory {d} does not exist; give a directory written by 'semsynth export' or "
                            f"a run's model/ folder")
    if not cfg_path.is_file():
        raise SemsynthError(f"{d} is not an exported semsynth model: {cfg_path} is missing (export one with "
                            f"'semsynth export', or use a run's model/ folder, which 'semsynth train' writes)")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise SemsynthError(f"{cfg_path}: not a text file ({e}); it should be the JSON written by semsynth") from e
    except json.JSONDecodeError as e:
        raise SemsynthError(f"{cfg_path}: not valid JSON: {e}") from e
    if not isinstance(config, dict) or config.get("format") != "semsynth-model":
        raise SemsynthError(f"{cfg_path} is not a semsynth model config (its \"format\" is not \"semsynth-model\"); "
                            f"give a directory written by 'semsynth export'")
    version = config.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SemsynthError(f"{cfg_path}: \"version\" is {version!r}; this semsynth reads model format version "
                            f"{FORMAT_VERSION} (re-export the model with 'semsynth export')")
    if version > FORMAT_VERSION:
        raise SemsynthError(f"{cfg_path}: model format version {version} was written by a newer semsynth; this one "
                            f"reads version {FORMAT_VERSION}: upgrade semsynth")
    for key in ("generator", "dataset"):
        if not isinstance(config.get(key), dict):
            raise SemsynthError(f"{cfg_path}: the \"{key}\" section is missing or not a mapping")
    if config.get("encoder") is not None and not isinstance(config["encoder"], dict):
        raise SemsynthError(f"{cfg_path}: the \"encoder\" section must be a mapping or null")
    table = config.get("label_values")
    if table is not None:
        ok = isinstance(table, dict)
        if ok:
            try:
                ok = all(isinstance(v, int) and not isinstance(v, bool) and str(int(k)) == str(k).strip()
                         for k, v in table.items())
            except (TypeError, ValueError):
                ok = False
        if not ok:
            raise SemsynthError(f"{cfg_path}: \"label_values\" must map raw label values (integers written as "
                                f"strings, e.g. \"255\") to channel ids (integers), or be null")
    return config


def load_model(model_dir: str | os.PathLike, device: str | torch.device = "cpu"):
    """Rebuild an exported model: returns ``(G, E or None, DatasetInfo, config dict)``, G and E in eval mode.

    Every problem with the directory (a missing or foreign config, an unknown format version, weights that do
    not fit the config) is a :class:`SemsynthError` that names the file, the key and the shapes."""
    from ..errors import ConfigError
    from ..models import build_encoder, build_generator

    d = Path(model_dir)
    config = read_model_config(d)
    cfg_path = d / "config.json"
    try:
        info = DatasetInfo.from_dict(config["dataset"])
    except (TypeError, ValueError, KeyError) as e:
        raise SemsynthError(f"{cfg_path}: the \"dataset\" section is not valid: {e}") from e
    gcfg = config["generator"]
    for key, fact in (("num_classes", info.num_classes), ("use_instance", info.has_instance)):
        if key in gcfg and gcfg[key] != fact:
            raise SemsynthError(f"{cfg_path}: generator.{key} is {gcfg[key]!r} but the dataset section says "
                                f"{fact!r}; the file was edited or mixes two models")
    try:
        G = build_generator(gcfg)
        E = build_encoder(config["encoder"]) if config.get("encoder") else None
    except ConfigError as e:
        raise SemsynthError(f"{cfg_path}: {e}") from e
    _load_weights(G, d / "model.safetensors", cfg_path, "the generator")
    if hasattr(G, "load_model_files"):  # what it keeps beside its weights (SIMS: the memory bank)
        G.load_model_files(d)
    if E is not None:
        _load_weights(E, d / "encoder.safetensors", cfg_path, "the style encoder")
        E.to(device).eval()
    return G.to(device).eval(), E, info, config


def _load_weights(module: nn.Module, path: Path, cfg_path: Path | None = None, what: str = "the model") -> None:
    """Load ``path`` into ``module``, checking every key and shape first."""
    state = read_safetensors(path, SemsynthError)
    expected = module.state_dict()
    cfg = cfg_path if cfg_path is not None else path.with_name("config.json")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    keep = "; keep config.json and the .safetensors files of one export together"
    if wrong:
        k = wrong[0]
        more = f" (and {len(wrong) - 1} more tensor(s) of another shape)" if len(wrong) > 1 else ""
        extra = (f"; {len(missing)} tensor(s) missing and {len(unexpected)} not part of the config"
                 if missing or unexpected else "")
        raise SemsynthError(
            f"{path} ({what}) does not fit {cfg}: tensor {k!r} has shape {list(state[k].shape)} in the weights but "
            f"{list(expected[k].shape)} in the model the config describes{more}{extra}: the weights belong to a model "
            f"of another width, class count or number of candidates{keep}")
    if missing or unexpected:
        raise SemsynthError(
            f"{path} ({what}) does not fit {cfg}: "
            + (f"{len(missing)} tensor(s) the config needs are missing ({', '.join(missing[:4])}"
               f"{', ...' if len(missing) > 4 else ''})" if missing else "")
            + ("; " if missing and unexpected else "")
            + (f"{len(unexpected)} tensor(s) are not part of this config ({', '.join(unexpected[:4])}"
               f"{', ...' if len(unexpected) > 4 else ''})" if unexpected else "")
            + f": the weights belong to another model or configuration{keep}")
    for k, v in expected.items():
        if v.is_floating_point() != state[k].is_floating_point():
            raise SemsynthError(f"{path} ({what}): tensor {k!r} is {state[k].dtype}, expected a "
                                f"{'floating-point' if v.is_floating_point() else 'integer'} tensor")
    for k, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise SemsynthError(f"{path} ({what}): tensor {k!r} holds NaN or infinite values; the export is "
                                f"damaged (re-export it from a training checkpoint)")
    module.load_state_dict(state, strict=True)  # copies, casting fp16/bf16 storage to the model's dtype


def export_from_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, use_ema: bool = True,
                           dtype: torch.dtype | None = None) -> Path:
    """Export the generator (its EMA when kept and ``use_ema``) and encoder of a training state."""
    from ..config import resolve_config
    from ..config import dataset_info as _dataset_info
    from ..models import build_encoder, build_generator

    path = Path(checkpoint)
    if path.is_dir():
        if not list_checkpoints(path):
            raise SemsynthError(f"--checkpoint {path}: no checkpoint in {path / 'checkpoints'}")
        # the newest readable checkpoint; newer unreadable ones are named, not silently skipped
        path, state, passed = find_resume_checkpoint(path)
        for c, why in passed:
            print(f"warning: {c} cannot be read ({why}); exporting {path.name}, the newest readable checkpoint",
                  file=sys.stderr)
    else:
        state = load_training_state(path)
    cfg = state["config"]
    G = build_generator(cfg["generator"])
    G.load_state_dict(state["G_ema"] if use_ema and state.get("G_ema") is not None else state["G"])
    if hasattr(G, "load_model_files"):  # the files beside the weights, from the run's exported model
        G.load_model_files(Path(path).parent.parent / "model")
    E = None
    if cfg.get("encoder") and state.get("E") is not None:
        E = build_encoder(cfg["encoder"])
        E.load_state_dict(state["E"])
    raw = {k: v for k, v in cfg.items() if k in ("data", "generator", "discriminator", "encoder", "loss", "optim",
                                                  "train", "name")}
    info = _dataset_info(resolve_config(raw).data)
    extra = {"images_seen": state["cur_nimg"], "ema": use_ema and state.get("G_ema") is not None,
             "data": cfg["data"], "source_checkpoint": path.name}
    old = Path(path).parent.parent / "model" / "config.json"
    if old.is_file():  # keep the raw label mapping the run recorded
        extra["label_values"] = json.loads(old.read_text(encoding="utf-8")).get("label_values")
    return export_model(out_dir, G, info, E, extra=extra, dtype=dtype)
