"""Spatially conditional normalisation (SCN), SC-GAN paper Eq. 5 and supplementary Alg. 2.

    y = BN(x) * (1 + s(p)) + m(p),     [s(p) | m(p)] = V(p)^T A

``A`` ([n, 2C]) holds ``n`` candidate affine transforms and starts at zero, so an untrained SCN is the
parameter-free normalisation itself (the paper's "scale candidates initialised to 1" in the ``(1 + s)``
form). Row ``i`` of ``A`` is ``[scale_i (C) | shift_i (C)]``, the layout of the official checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ShapeError
from .modulated_norm import routed_batch_norm
from .norm import param_free_norm
from .scc import check_routing


class SpatiallyConditionalNorm2d(nn.Module):
    """SCN layer: ``forward(x [B, C, H, W], routing [B, n, H, W], negative_slope=None) -> [B, C, H, W]``; with
    ``negative_slope``, followed by ``LeakyReLU(negative_slope)`` (one operator in training: its output is rebuilt in
    backward rather than kept, ``layers/modulated_norm.py``).

    Args:
        num_features: ``C``.
        num_candidates: ``n``, rows of the candidate table ``A``.
        norm: parameter-free normalisation, one of ``syncbatch`` (default, as the official code),
            ``batch``, ``instance``, ``none``.
    """

    def __init__(self, num_features: int, num_candidates: int, norm: str = "syncbatch", eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features, self.num_candidates = num_features, num_candidates
        self.param_free_norm = param_free_norm(norm, num_features, eps=eps)
        self.candidates = nn.Parameter(torch.zeros(num_candidates, 2 * num_features))

    def forward(self, x: torch.Tensor, routing: torch.Tensor, negative_slope: float | None = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.num_features:
            raise ShapeError(f"SCN: input has shape {tuple(x.shape)}, expected [B, {self.num_features}, H, W]")
        check_routing(routing, self.num_candidates, x.shape[0], tuple(x.shape[2:]), "SCN")
        # V^T A per pixel: 1x1 convolutions of the routing map, computed inside the normalisation, so that training
        # keeps the routing map instead of the [B, C, H, W] scale (layers/modulated_norm.py)
        routing = routing.to(x.dtype)
        return routed_batch_norm(self.param_free_norm, x, routing, self.candidates.to(routing.dtype), negative_slope)

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_candidates={self.num_candidates}"
