"""Model registries and builders. Models are built by short name; the constructor signature is the config.

>>> G = build_generator({"name": "scgan", "srg_width": 16}, num_classes=19, resolution=64)
>>> G.config["name"]
'scgan'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..registry import Registry

GENERATORS = Registry("generator")
DISCRIMINATORS = Registry("discriminator")
ENCODERS = Registry("encoder")


def build_generator(spec: Mapping[str, Any] | str, **interface: Any) -> nn.Module:
    """Build a registered generator. ``interface``: ``num_classes``, ``resolution``, ``use_instance``."""
    return GENERATORS.build(spec, **interface)


def build_discriminator(spec: Mapping[str, Any] | str, **interface: Any) -> nn.Module:
    """Build a registered discriminator. ``interface``: ``num_classes``, ``use_instance``."""
    return DISCRIMINATORS.build(spec, **interface)


def build_encoder(spec: Mapping[str, Any] | str, **interface: Any) -> nn.Module:
    """Build a registered style encoder (VAE). ``interface``: ``z_dim``, ``resolution``."""
    return ENCODERS.build(spec, **interface)


def generator_latent_dim(spec: Mapping[str, Any]) -> int:
    """The size of the latent z a generator config takes (0: deterministic, no z).

    Every registered generator class may define ``latent_dim_of(config) -> int`` (a static method on the resolved
    config) and sets ``self.latent_dim`` when built; a class without it takes no latent."""
    cls = GENERATORS.get(spec["name"])
    fn = getattr(cls, "latent_dim_of", None)
    return int(fn(spec)) if fn is not None else 0


def count_parameters(module: nn.Module) -> int:
    """Number of learnable parameters (buffers such as spectral-norm vectors excluded)."""
    return sum(p.numel() for p in module.parameters())


# Registration happens on import of the model files.
from . import discriminators, encoders, generators  # noqa: E402,F401

__all__ = [
    "DISCRIMINATORS", "ENCODERS", "GENERATORS", "build_discriminator", "build_encoder", "build_generator",
    "count_parameters", "generator_latent_dim",
]
