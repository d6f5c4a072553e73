"""Weight initialisation schemes shared by all models."""

from __future__ import annotations

import torch
from torch import nn

from .scc import SpatiallyConditionalConv2d

INIT_SCHEMES = ("xavier", "normal", "kaiming", "orthogonal", "default")


def _raw_weight(m: nn.Module):
    """The trainable weight tensor (the original under a spectral-norm parametrisation)."""
    if hasattr(m, "parametrizations") and "weight" in m.parametrizations:
        return m.parametrizations.weight.original
    return m.weight


def init_weights(module: nn.Module, scheme: str = "xavier", gain: float = 0.02) -> None:
    """Initialise every conv / linear / SCC weight in ``module`` (biases to 0), as the SPADE family does.

    ``xavier`` (official SC-GAN/SPADE: xavier-normal with gain 0.02), ``normal`` (N(0, gain)), ``kaiming``,
    ``orthogonal``, or ``default`` (PyTorch's own initialisation, unchanged). SCC candidates are initialised
    one kernel at a time; SCN candidate tables are left at zero.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; valid choices are: {', '.join(INIT_SCHEMES)}")
    if scheme == "default":
        return
    if any(p.is_meta for p in module.parameters()):  # shape-only model: nothing to initialise
        return

    def init_(w):
        if scheme == "xavier":
            nn.init.xavier_normal_(w, gain=gain)
        elif scheme == "normal":
            nn.init.normal_(w, 0.0, gain)
        elif scheme == "kaiming":
            nn.init.kaiming_normal_(w, a=0, mode="fan_in")
        else:
            nn.init.orthogonal_(w, gain=gain)

    for m in module.modules():
        if isinstance(m, SpatiallyConditionalConv2d):
            for w in m.weight.data:
                init_(w)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
            if m.sn is not None:  # restart the power iteration from the new weights
                m.sn._power_iteration(m.weight, 15)
        elif isinstance(m, (nn.Conv2d, nn.Linear, nn.ConvTranspose2d)):
            init_(_raw_weight(m).data)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
            _rewarm_spectral_norm(m)


@torch.no_grad()
def _rewarm_spectral_norm(m: nn.Module) -> None:
    """After re-initialising a spectrally normed weight, converge u and v on the new weight."""
    if not (hasattr(m, "parametrizations") and "weight" in m.parametrizations):
        return
    if m.parametrizations.weight.original.is_meta:
        return
    sn = m.parametrizations.weight[0]
    if hasattr(sn, "_power_method") and hasattr(sn, "_reshape_weight_to_matrix"):
        sn._power_method(sn._reshape_weight_to_matrix(m.parametrizations.weight.original), 15)
