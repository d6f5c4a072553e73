"""Spectral normalisation (Miyato et al. 2018).

Two forms:

* :func:`spectral_norm` wraps a module's ``weight`` with PyTorch's own parametrisation
  (``torch.nn.utils.parametrizations.spectral_norm``, one power iteration per training forward).
* :class:`StackedSpectralNorm` estimates one spectral norm per matrix of a *stack* of weights
  ``[n, out, ...]`` (the kernel candidates of an SCC layer) and returns the ``n`` values of sigma, so that
  the caller can divide wherever it is cheapest (SCC divides the routing weights, not the kernels).

Both follow the convention of the official SPADE-family code: the weight is reshaped to ``[out, in*k*k]``,
sigma = u^T W v with u, v from the power iteration kept as buffers, and no iteration in eval mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations


def spectral_norm(module: nn.Module, enabled: bool = True) -> nn.Module:
    """Return ``module`` with spectral norm on its ``weight`` when ``enabled`` (else unchanged)."""
    if not enabled:
        return module
    if module.weight.is_meta:
        # shape-only model (parameter counting on the meta device): spectral norm adds no parameters, and
        # PyTorch's 15 initial power iterations would run through slow meta kernels
        return module
    return parametrizations.spectral_norm(module, name="weight", n_power_iterations=1, eps=1e-12)


class StackedSpectralNorm(nn.Module):
    """Power-iteration state for ``n`` matrices stored as one tensor ``[n, out, *rest]``.

    ``forward(weight)`` returns sigma ``[n]`` (differentiable in ``weight``; u and v are constants), and in
    training mode first advances the power iteration by ``n_power_iterations`` steps, in place.
    """

    def __init__(self, n: int, out_features: int, in_features: int, n_power_iterations: int = 1,
                 eps: float = 1e-12, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.n_power_iterations = n_power_iterations
        self.eps = eps
        self.register_buffer("u", F.normalize(torch.randn(n, out_features), dim=1, eps=eps))
        self.register_buffer("v", F.normalize(torch.randn(n, in_features), dim=1, eps=eps))
        if weight is not None:  # start from a converged estimate, as PyTorch's parametrisation does
            self._power_iteration(weight, 15)

    @torch.no_grad()
    def _power_iteration(self, weight: torch.Tensor, steps: int) -> None:
        if weight.is_meta:  # shape-only models (parameter counting) have nothing to iterate on
            return
        w = weight.detach().flatten(2)  # [n, out, in*k*k]
        # one matrix-vector product per candidate: batched GEMV (bmm with a vector) is several times slower
        for i in range(w.shape[0]):
            u, v = self.u[i], self.v[i]
            for _ in range(steps):
                v = F.normalize(torch.mv(w[i].t(), u), dim=0, eps=self.eps)
                u = F.normalize(torch.mv(w[i], v), dim=0, eps=self.eps)
            # in place, so that DDP's buffer broadcast and checkpoints see the update
            self.u[i].copy_(u)
            self.v[i].copy_(v)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.training and self.n_power_iterations > 0:
            self._power_iteration(weight, self.n_power_iterations)
        w = weight.flatten(2)
        u, v = self.u.clone(), self.v.clone()
        return torch.stack([torch.dot(u[i], torch.mv(w[i], v[i])) for i in range(w.shape[0])])  # [n]


def _power_iteration_modules(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules()
            if isinstance(m, StackedSpectralNorm) or type(m).__name__ == "_SpectralNorm"]


@contextlib.contextmanager
def power_iteration_frozen(*modules: nn.Module | None) -> Iterator[None]:
    """Within this block, spectral norm uses its current u and v without advancing the power iteration.

    A batch split into micro-batches (gradient accumulation) runs every forward several times per optimiser
    step; freezing the iteration after the first micro-batch keeps sigma exactly what one full-batch forward
    would have used.
    """
    sn = [m for mod in modules if mod is not None for m in _power_iteration_modules(mod) if m.training]
    for m in sn:
        m.training = False
    try:
        yield
    finally:
        for m in sn:
            m.training = True
