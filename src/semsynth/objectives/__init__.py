"""Training objectives: what a training step minimises, as registered components.

The training function (``training/loop.py``) is the same for every model; the ``loss`` section of a config names
the objective (``loss: {name: gan, ...}``, the default when no name is given) and its constructor signature is
that section's schema, like generators and discriminators. An objective is an ``nn.Module`` (it may hold a frozen
VGG19) with this interface:

* ``needs_discriminator`` (class attribute): ``False`` for objectives without an adversary (CRN's regression);
  the config then has ``discriminator: null``;
* ``uses_encoder`` (class attribute): whether a VAE encoder's KL term is part of it;
* ``discriminator_kinds`` (class attribute): the ``output_kind`` of the discriminators it reads (``patch``: a list of
  realness logit maps, the default; ``segmentation``: per-pixel N+1 class logits, OASIS); a config pairing it with
  another kind is refused;
* ``prepare(device)``: load what the objective needs from disk (pretrained weights), move to ``device``; a missing
  file raises a ``MissingWeightsError`` that says where to put it and which setting removes the need. The
  constructor itself is cheap (it only checks the settings), so configs are validated without loading anything;
* ``generator_loss(G, D, E, semantic, real, kl_scale) -> (loss, {name: detached term}, fakes detached)``;
* ``generate(G, E, semantic, real) -> fakes`` (no gradients, for the discriminator step);
* ``discriminator_loss(D, semantic, real, fake) -> (loss, {name: detached term})``;
* ``find_unused_parameters`` (attribute): whether some generator parameters get no gradient (DDP must know);
* ``attach(G)``: hand the generator what the objective loaded for it (SIMS: the memory bank its canvases come
  from); the training loop calls it once, right after building G (before its EMA copy and the first samples).

``needs_discriminator`` may also be set per instance when an option decides it (CRN's optional adversarial term).

Families add theirs in ``objectives/<name>.py`` (registered with ``@OBJECTIVES.register(...)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..registry import Registry

OBJECTIVES = Registry("objective")
DEFAULT_OBJECTIVE = "gan"


class Objective(nn.Module):
    """Base class: see the module docstring for the interface."""

    needs_discriminator = True
    discriminator_kinds: tuple[str, ...] = ("patch",)  # the discriminators' ``output_kind`` it reads
    uses_encoder = False
    find_unused_parameters = False

    def prepare(self, device: torch.device | str = "cpu") -> Objective:
        return self.to(device)

    def attach(self, G: nn.Module) -> None:
        """Give the freshly built generator what this objective loaded for it (default: nothing)."""

    def generator_loss(self, G: nn.Module, D: nn.Module | None, E: nn.Module | None, semantic: torch.Tensor,
                       real: torch.Tensor, kl_scale: float = 1.0
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, G: nn.Module, E: nn.Module | None, semantic: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def discriminator_loss(self, D: nn.Module, semantic: torch.Tensor, real: torch.Tensor,
                           fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError


def loss_spec(section: Mapping[str, Any] | None) -> dict[str, Any]:
    """A config's ``loss`` section as a registry spec: without a ``name`` it is the default objective."""
    spec = dict(section or {})
    spec.setdefault("name", DEFAULT_OBJECTIVE)
    return spec


def build_objective(section: Mapping[str, Any] | None) -> Objective:
    """Build the objective of a config's ``loss`` section (cheap: nothing is loaded until ``prepare``)."""
    return OBJECTIVES.build(loss_spec(section))


def objective_class(section: Mapping[str, Any] | None) -> type[Objective]:
    return OBJECTIVES.get(loss_spec(section)["name"])


# Registration happens on import of the objective files.
from . import gan  # noqa: E402,F401
from . import oasis  # noqa: E402,F401
from . import crn, sims  # noqa: E402,F401
from . import unpaired  # noqa: E402,F401

__all__ = ["DEFAULT_OBJECTIVE", "OBJECTIVES", "Objective", "build_objective", "loss_spec", "objective_class"]
