"""Saving and loading segmenters.

A segmenter trained here is a directory: ``segmenter.safetensors`` (its state_dict) and ``config.json``
(``format: semsynth-segmenter``, the segmenter config with its name and options, ``label_space``, the dataset
facts it was trained on, the training metrics). Adapters for the literature's evaluators load from a spec
instead, e.g. ``{"name": "drn-d-105", "weights": "/path/drn_d_105_cityscapes.pth"}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from ..data.base import DatasetInfo
from ..utils.files import atomic_save_safetensors, atomic_write_text, read_safetensors
from ..errors import ConfigError, SemsynthError
from . import SEGMENTERS, build_segmenter
from .base import Segmenter, WeightsMismatchError, load_state_strict

FORMAT = "semsynth-segmenter"
VERSION = 1
WEIGHTS_FILE = "segmenter.safetensors"
CONFIG_FILE = "config.json"
# Constructor options that fetch pretrained files; a saved segmenter carries its weights instead.
_FILE_OPTIONS = {"pretrained": False, "weights": None, "backbone_weights": None}


def save_segmenter(out_dir: str | os.PathLike, model: Segmenter, info: DatasetInfo | None,
                   extra: dict[str, Any] | None = None) -> Path:
    """Write ``segmenter.safetensors`` and ``config.json`` into ``out_dir`` (created); returns ``out_dir``."""
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or "name" not in config:
        raise SemsynthError("save_segmenter needs a segmenter built with build_segmenter (it records .config)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_save_safetensors(state, out / WEIGHTS_FILE)
    doc = {"format": FORMAT, "version": VERSION, "segmenter": config, "label_space": model.label_space,
           "num_classes": model.num_classes, "dataset": info.to_dict() if info is not None else None,
           **(extra or {})}
    atomic_write_text(json.dumps(doc, indent=2), out / CONFIG_FILE)
    return out


def parse_segmenter_spec(text: str) -> dict[str, Any] | str:
    """CLI text -> a path (returned as is) or a spec: YAML/JSON mapping (``{name: drn-d-105, weights: F}``),
    ``NAME[,KEY=VALUE...]`` (``drn-d-105,weights=/w/drn_d_105_cityscapes.pth``) or ``name=NAME,KEY=VALUE...``."""
    text = text.strip()
    if Path(text).expanduser().exists():
        return str(Path(text).expanduser())
    if text.startswith("{"):
        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"--segmenter {text!r}: not a valid mapping: {e}") from e
        if not isinstance(spec, dict):
            raise ConfigError(f"--segmenter {text!r}: expected a mapping like {{name: drn-d-105, weights: PATH}}")
        return spec
    parts = [p.strip() for p in text.split(",")]
    spec: dict[str, Any] = {}
    if "=" not in parts[0]:
        spec["name"] = parts.pop(0)
    for opt in parts:
        if "=" not in opt:
            raise ConfigError(f"--segmenter {text!r}: option {opt!r} is not KEY=VALUE")
        k, v = opt.split("=", 1)
        spec[k.strip()] = yaml.safe_load(v) if v.strip() else None
    if spec.get("name") not in SEGMENTERS:
        raise ConfigError(f"--segmenter {text!r} is neither an existing path (a trained segmenter directory) nor "
                          f"a segmenter spec (NAME[,KEY=VALUE...]); names are: {', '.join(SEGMENTERS.names())}")
    return spec


def _read_config(d: Path) -> dict[str, Any]:
    cfg_path = d / CONFIG_FILE
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SemsynthError(f"{cfg_path}: not valid JSON: {e}") from e
    if config.get("format") != FORMAT:
        raise SemsynthError(f"{cfg_path} is not a semsynth segmenter config (format {config.get('format')!r}); "
                            f"a segmenter directory comes from 'semsynth segmenter train'")
    return config


def load_segmenter(source: str | os.PathLike | Mapping[str, Any], device: str | torch.device = "cpu"
                   ) -> tuple[Segmenter, dict[str, Any]]:
    """Load a segmenter: our directory (or a training run directory holding ``segmenter/``), a spec mapping
    for an adapter (``{"name": "deeplabv2", "weights": PATH}``), or a registered name (default weights
    location). Returns ``(model in eval mode on device, config)``; ``config["dataset"]`` is the dataset facts
    the segmenter was trained on (``None`` for adapters) and ``config["label_space"]`` its id space."""
    if isinstance(source, Mapping):
        spec = dict(source)
        model = build_segmenter(spec)
        config = {"format": FORMAT, "version": VERSION, "segmenter": model.config, "label_space": model.label_space,
                  "num_classes": model.num_classes, "dataset": None}
        return model.to(device).eval(), config
    p = Path(source).expanduser()
    if p.is_dir():
        d = p if (p / CONFIG_FILE).is_file() else p / "segmenter"
        if not (d / CONFIG_FILE).is_file():
            raise SemsynthError(f"{p} is not a trained segmenter: {p / CONFIG_FILE} is missing (train one with "
                                f"'semsynth segmenter train', which writes <run>/segmenter/)")
        config = _read_config(d)
        spec = dict(config["segmenter"])
        params = SEGMENTERS.parameters(spec.get("name", "")) if spec.get("name") in SEGMENTERS else {}
        spec.update({k: v for k, v in _FILE_OPTIONS.items() if k in params})
        model = build_segmenter(spec)
        weights = d / WEIGHTS_FILE
        state = read_safetensors(weights, WeightsMismatchError)
        load_state_strict(model, state, weights, optional_suffixes=())
        return model.to(device).eval(), config
    if p.exists():
        raise SemsynthError(f"{p} is a file; give a trained segmenter directory, or a spec naming the network for a "
                            f"checkpoint file, e.g. {{name: drn-d-105, weights: {p}}}")
    if isinstance(source, str) and source in SEGMENTERS:
        return load_segmenter({"name": source}, device)
    raise SemsynthError(f"segmenter {str(source)!r}: no such directory, and not a segmenter name "
                        f"({', '.join(SEGMENTERS.names())})")


def check_segmenter_dataset(config: Mapping[str, Any], info: DatasetInfo) -> None:
    """For segmenters trained here (label space ``dataset``/``dataset-eval``): raise if ``info``'s classes are
    not the ones the segmenter was trained on."""
    trained = config.get("dataset")
    if not trained or config.get("label_space") not in ("dataset", "dataset-eval"):
        return
    if trained.get("num_classes") != info.num_classes or list(trained.get("class_names", [])) != list(info.class_names):
        raise ConfigError(f"the segmenter was trained on {trained.get('name')!r} ({trained.get('num_classes')} "
                          f"classes) but the layouts are {info.name!r} ({info.num_classes} classes): their class "
                          f"ids do not mean the same thing; train a segmenter on this dataset "
                          f"('semsynth segmenter train --dataset {info.name} ...')")
