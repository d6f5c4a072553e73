"""Checkpoints and exported models.

* Training state (``checkpoints/training-state-<images>.pt``): every state_dict, optimiser state, counter,
  RNG state and the resolved config, as tensors and plain Python values only, so that it loads with
  ``torch.load(weights_only=True)``. Written to a temporary file, flushed and renamed: a crash never leaves
  a torn file in place of a good one.
* Exported model (a directory): ``model.safetensors`` (generator), ``encoder.safetensors`` (optional) and
  ``config.json`` (the generator/encoder configs and the dataset facts). Loading needs no training config.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import DatasetInfo
from ..errors import SemsynthError
from ..utils.files import atomic_save_safetensors, atomic_write_text, read_safetensors

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
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a torn or foreign file
        raise SemsynthError(f"cannot read checkpoint {path}: {e}") from e
    if not isinstance(state, dict) or state.get("format") != "semsynth-training-state":
        raise SemsynthError(f"{path} is not a semsynth training state")
    return state


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Training states of a run, oldest first."""
    ckpt = Path(run_dir) / "checkpoints"
    return sorted(ckpt.glob("training-state-*.pt"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))


def remove_stale_temporaries(run_dir: str | os.PathLike) -> None:
    """Delete half-written files left by a process that was killed while saving."""
    for d in (Path(run_dir) / "checkpoints", Path(run_dir) / "model"):
        if d.is_dir():
            for p in d.glob(".*.tmp*"):
                p.unlink(missing_ok=True)


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> None:
    for p in list_checkpoints(run_dir)[:-keep]:
        p.unlink(missing_ok=True)


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
    atomic_write_text(json.dumps(config, indent=2), out / "config.json")
    return out


def load_model(model_dir: str | os.PathLike, device: str | torch.device = "cpu"):
    """Rebuild an exported model: returns ``(G, E or None, DatasetInfo, config dict)``, G and E in eval mode."""
    from ..models import build_encoder, build_generator

    d = Path(model_dir)
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise SemsynthError(f"{d} is not an exported semsynth model: {cfg_path} is missing (export one with "
                            f"'semsynth train', which writes <run>/model/)")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SemsynthError(f"{cfg_path}: not valid JSON: {e}") from e
    if config.get("format") != "semsynth-model":
        raise SemsynthError(f"{cfg_path} is not a semsynth model config")
    G = build_generator(config["generator"])
    _load_weights(G, d / "model.safetensors")
    E = None
    if config.get("encoder"):
        E = build_encoder(config["encoder"])
        _load_weights(E, d / "encoder.safetensors")
        E.to(device).eval()
    return G.to(device).eval(), E, DatasetInfo.from_dict(config["dataset"]), config


def _load_weights(module: nn.Module, path: Path) -> None:
    state = read_safetensors(path, SemsynthError)
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SemsynthError(f"{path} does not match its config.json: missing {missing[:5]}, "
                            f"unexpected {unexpected[:5]}")


def export_from_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, use_ema: bool = True,
                           dtype: torch.dtype | None = None) -> Path:
    """Export the generator (its EMA when kept and ``use_ema``) and encoder of a training state."""
    from ..config import resolve_config
    from ..config import dataset_info as _dataset_info
    from ..models import build_encoder, build_generator

    path = Path(checkpoint)
    if path.is_dir():
        ckpts = list_checkpoints(path)
        if not ckpts:
            raise SemsynthError(f"no checkpoint in {path / 'checkpoints'}")
        path = ckpts[-1]
    state = load_training_state(path)
    cfg = state["config"]
    G = build_generator(cfg["generator"])
    G.load_state_dict(state["G_ema"] if use_ema and state.get("G_ema") is not None else state["G"])
    E = None
    if cfg.get("encoder") and state.get("E") is not None:
        E = build_encoder(cfg["encoder"])
        E.load_state_dict(state["E"])
    raw = {k: v for k, v in cfg.items() if k in ("data", "generator", "discriminator", "encoder", "loss", "optim",
                                                  "train", "name")}
    for sec in ("generator", "discriminator"):
        for k in ("num_classes", "use_instance", "resolution"):
            raw[sec].pop(k, None)
    info = _dataset_info(resolve_config(raw).data)
    extra = {"images_seen": state["cur_nimg"], "ema": use_ema and state.get("G_ema") is not None,
             "data": cfg["data"], "source_checkpoint": path.name}
    old = Path(path).parent.parent / "model" / "config.json"
    if old.is_file():  # keep the raw label mapping the run recorded
        extra["label_values"] = json.loads(old.read_text(encoding="utf-8")).get("label_values")
    return export_model(out_dir, G, info, E, extra=extra, dtype=dtype)
