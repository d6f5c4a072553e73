"""Facts about what is registered and about the built-in presets (for ``semsynth models``)."""

from __future__ import annotations

from typing import Any

import torch

from .config import load_config, preset_names
from .data import DATASETS
from .models import DISCRIMINATORS, ENCODERS, GENERATORS, build_discriminator, build_encoder, build_generator
from .models import count_parameters
from .objectives import OBJECTIVES


def preset_parameter_counts(name: str) -> dict[str, Any]:
    """Build a preset's networks on the meta device (no memory, no init cost) and count their parameters."""
    cfg = load_config(name)
    with torch.device("meta"):
        G = build_generator(cfg.generator)
        D = build_discriminator(cfg.discriminator) if cfg.discriminator is not None else None
        E = build_encoder(cfg.encoder) if cfg.encoder else None
    svg = getattr(G, "svg", None)
    return {
        "name": name, "dataset": cfg.data["name"], "generator": cfg.generator["name"],
        "discriminator": cfg.discriminator["name"] if cfg.discriminator else None,
        "encoder": cfg.encoder["name"] if cfg.encoder else None, "objective": cfg.loss["name"],
        "generator_parameters": count_parameters(G),
        "svg_parameters": count_parameters(svg) if svg is not None else None,
        "discriminator_parameters": count_parameters(D) if D is not None else None,
        "encoder_parameters": count_parameters(E) if E is not None else None,
    }


def describe_models() -> dict[str, list[dict[str, Any]]]:
    def rows(reg):
        return [{"name": n, "doc": reg.doc(n)} for n in reg.names()]

    return {
        "generators": rows(GENERATORS), "discriminators": rows(DISCRIMINATORS), "encoders": rows(ENCODERS),
        "objectives": rows(OBJECTIVES),
        "datasets": rows(DATASETS), "presets": [preset_parameter_counts(n) for n in preset_names()],
    }
