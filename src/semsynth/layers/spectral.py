"""Spectral normalisation (Miyato et al. 2018).

Two forms:

* :func:`spectral_norm` wraps a module's ``weight`` with the parametrisation :class:`SpectralNorm` (one power
  iteration per training forward).
* :class:`StackedSpectralNorm` estimates one spectral norm per matrix of a *stack* of weights
  ``[n, out, ...]`` (the kernel candidates of an SCC layer) and returns the ``n`` values of sigma, so that
  the caller can divide wherever it is cheapest (SCC divides the routing weights, not the kernels).

Both follow the convention of the official SPADE-family code, which uses PyTorch's legacy
``torch.nn.utils.spectral_norm``: the weight is reshaped to ``[out, in*k*k]``, sigma = u^T W v with u, v kept as
buffers, no iteration in eval mode, and each training step of the power iteration updates **v first, then u**
(``v = normalize(W^T u)``, ``u = normalize(W v)``). PyTorch's newer ``parametrizations.spectral_norm`` updates u
first, then v: eval outputs agree, but training from an official checkpoint would leave the official trajectory
at the first step. :class:`SpectralNorm` keeps the state_dict layout of that newer parametrisation
(``parametrizations.weight.original``, ``parametrizations.weight.0._u`` / ``._v``), so checkpoints written with
either load unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from .recompute import rebuildable


class SpectralNorm(nn.Module):
    """Parametrisation ``weight -> weight / sigma`` (register it with ``torch.nn.utils.parametrize``).

    ``sigma = u^T W v`` with ``W`` the weight as a matrix ``[out, in*k*k]`` (``dim`` first). In training mode each
    call first advances the power iteration in place, v then u, as the legacy ``torch.nn.utils.spectral_norm``
    that the official SPADE-family code uses; in eval mode the stored u, v are used as they are. The buffers
    ``_u`` [out] and ``_v`` [in*k*k] have the names of ``torch.nn.utils.parametrizations.spectral_norm``.
    """

    def __init__(self, weight: torch.Tensor, n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12) -> None:
        super().__init__()
        if weight.ndim < 2:
            raise ValueError(f"spectral norm needs a weight with at least 2 dimensions, got shape {tuple(weight.shape)}")
        if n_power_iterations < 1:
            raise ValueError(f"n_power_iterations must be >= 1, got {n_power_iterations}")
        self.dim = dim % weight.ndim
        self.n_power_iterations, self.eps = n_power_iterations, eps
        mat = self._reshape_weight_to_matrix(weight.detach())
        h, w = mat.shape
        # random starts drawn exactly as PyTorch's parametrisation draws them (u, then v), then a converged estimate
        u = mat.new_empty(h).normal_(0, 1)
        v = mat.new_empty(w).normal_(0, 1)
        self.register_buffer("_u", F.normalize(u, dim=0, eps=eps))
        self.register_buffer("_v", F.normalize(v, dim=0, eps=eps))
        self._power_method(mat, 15)

    def _reshape_weight_to_matrix(self, weight: torch.Tensor) -> torch.Tensor:
        if self.dim != 0:
            weight = weight.movedim(self.dim, 0)
        return weight.flatten(1)

    @torch.no_grad()
    def _power_method(self, weight_mat: torch.Tensor, n_power_iterations: int) -> None:
        """``n`` steps of ``v = normalize(W^T u)``, ``u = normalize(W v)``, in place (so that DDP's buffer
        broadcast and checkpoints see them)."""
        weight_mat = weight_mat.detach()
        for _ in range(n_power_iterations):
            self._v.copy_(F.normalize(torch.mv(weight_mat.t(), self._u), dim=0, eps=self.eps))
            self._u.copy_(F.normalize(torch.mv(weight_mat, self._v), dim=0, eps=self.eps))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        weight_mat = self._reshape_weight_to_matrix(weight)
        if self.training:
            self._power_method(weight_mat, self.n_power_iterations)
        if (self.dim == 0 and torch.is_grad_enabled() and weight.requires_grad and not torch.jit.is_tracing()
                and not torch.jit.is_scripting()):
            # the division and sigma as one node: backward writes the weight's gradient once (_WeightOverSigma)
            out, sigma = _WeightOverSigma.apply(weight, *self._vectors())
        else:
            sigma = self._sigma(weight_mat)
            out = weight / sigma
        # in a training forward, the operators that keep W / sigma for backward (a conv: for its input's gradient)
        # keep W and sigma instead, and backward divides again: no copy of the weight kept per layer
        return rebuildable(out, (weight, sigma), torch.div)

    def _vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of the stored ``u`` and ``v``: a second forward before backward (D(real), D(fake)) must not change
        what the first one saved."""
        return self._u.clone(memory_format=torch.contiguous_format), self._v.clone(memory_format=torch.contiguous_format)

    def _sigma(self, weight_mat: torch.Tensor) -> torch.Tensor:
        """``u^T W v`` with the stored vectors (the weight as a matrix)."""
        return _sigma_of(weight_mat, *self._vectors())

    @torch.no_grad()
    def fold_(self, weight: torch.Tensor) -> None:
        """Divide ``weight`` (the parametrisation's ``original``) by sigma in place, as an eval-mode forward would
        (the same division: the same values), without a second copy of the weight."""
        weight.div_(self._sigma(self._reshape_weight_to_matrix(weight)))

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_power_iterations={self.n_power_iterations}, eps={self.eps}"


def _sigma_of(weight_mat: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``u^T W v`` for a weight matrix ``[out, in]``: one matrix-vector product and one dot product."""
    return torch.dot(u, torch.mv(weight_mat, v))


class _WeightOverSigma(torch.autograd.Function):
    """``(W / sigma, sigma)`` with ``sigma = u^T W v`` (``W`` as the matrix ``[out, in*k*k]``, u and v constants) as
    one autograd node. Backward writes the gradient of ``W``,

        ``dL/dW = G / sigma - (sum(G * W) / sigma^2) u v^T``   (``G`` the gradient of ``W / sigma``),

    as one new tensor: ``G / sigma`` and a rank-one update in place, with the sum as a dot product. Autograd through
    the division and ``dot(u, mv(W, v))`` as separate operators makes four more weight-sized tensors (``G / sigma``,
    ``G * W``, its quotient and negation, the outer product ``u v^T``) at the very end of a generator's backward,
    where every other gradient is alive (SC-GAN's SVG: 512 x 512 x 3 x 3, 9 MiB each). ``sigma`` is returned for
    :func:`~.recompute.rebuildable` and takes no gradient."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor):
        sigma = _sigma_of(weight.flatten(1), u, v)
        ctx.save_for_backward(weight, u, v)
        ctx.mark_non_differentiable(sigma)
        return weight / sigma, sigma

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _grad_sigma: torch.Tensor | None):
        weight, u, v = ctx.saved_tensors
        # sigma again (one matrix-vector product), so that a double backward sees how it depends on W
        sigma = _sigma_of(weight.flatten(1), u, v)
        if grad.is_contiguous() and weight.is_contiguous() and grad.dtype == weight.dtype:
            gw_dot = torch.dot(grad.view(-1), weight.view(-1))
        else:
            gw_dot = (grad * weight).sum()
        out = (grad / sigma).contiguous()
        coeff = gw_dot / (sigma * sigma)
        out.view(out.shape[0], -1).addr_((u * -coeff).to(out.dtype), v.to(out.dtype))
        return out, None, None


def spectral_norm(module: nn.Module, enabled: bool = True) -> nn.Module:
    """Return ``module`` with spectral norm (:class:`SpectralNorm`) on its ``weight`` when ``enabled`` (else
    unchanged). State_dict keys: ``parametrizations.weight.original``, ``parametrizations.weight.0._u`` and
    ``._v``, as ``torch.nn.utils.parametrizations.spectral_norm``."""
    if not enabled:
        return module
    if module.weight.is_meta:
        # shape-only model (parameter counting on the meta device): spectral norm adds no parameters, and
        # the 15 initial power iterations would run through slow meta kernels
        return module
    dim = 1 if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)) else 0
    parametrize.register_parametrization(module, "weight", SpectralNorm(module.weight, 1, dim, 1e-12))
    return module


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
        if torch.jit.is_tracing():  # a traced graph holds plain operators, not autograd functions
            return _sigmas(weight.flatten(2), self.u.clone(), self.v.clone())
        return _StackedSigma.apply(weight, self.u.clone(), self.v.clone())  # [n]

    def flat_and_sigma(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight.flatten(0, 1), sigma)`` with the power iteration of :meth:`forward`, as one autograd node
        (:class:`_FlatAndSigma`: the gradient of ``weight`` written once)."""
        if self.training and self.n_power_iterations > 0:
            self._power_iteration(weight, self.n_power_iterations)
        if torch.jit.is_tracing():
            return weight.flatten(0, 1), _sigmas(weight.flatten(2), self.u.clone(), self.v.clone())
        return _FlatAndSigma.apply(weight, self.u.clone(), self.v.clone())


def _sigmas(w: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``[u_i . (W_i v_i)]`` for ``w`` ``[n, out, in*k*k]``: one matrix-vector product per candidate."""
    return torch.stack([_sigma_of(w[i], u[i], v[i]) for i in range(w.shape[0])])


def _sigmas_gradient(grad: torch.Tensor, u: torch.Tensor, v: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``dsigma_i u_i v_i^T`` for every candidate, as one new tensor of the weight's ``shape``."""
    return (u * grad[:, None]).unsqueeze(2).mul(v.unsqueeze(1)).view(shape)


class _FlatAndSigma(torch.autograd.Function):
    """``(W.flatten(0, 1), sigma)`` for a stack ``W`` ``[n, out, ...]``: the kernels as one ``[n*out, ...]``
    convolution weight and ``sigma_i = u_i^T W_i v_i``, as one autograd node, so that backward writes the gradient of
    ``W`` once: the convolution's weight gradient plus ``dsigma_i u_i v_i^T`` in one new tensor (two uses of ``W``
    as separate nodes leave autograd one tensor per use and a third for their sum: at the 512-channel SCC layers
    27 MiB each)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor):
        w = weight.flatten(2)
        ctx.save_for_backward(u, v)
        ctx.shape = weight.shape
        return weight.flatten(0, 1), _sigmas(w, u, v)

    @staticmethod
    def backward(ctx, grad_flat: torch.Tensor | None, grad_sigma: torch.Tensor | None):
        u, v = ctx.saved_tensors
        if grad_sigma is None:
            return (None if grad_flat is None else grad_flat.reshape(ctx.shape)), None, None
        if grad_flat is None:
            return _sigmas_gradient(grad_sigma, u, v, ctx.shape), None, None
        # dsigma_i u_i v_i^T added in place into the convolution's weight gradient, a fresh tensor (SCC's kernels
        # feed one convolution): no second weight-sized tensor (27 MiB at the 512-channel SCC layers)
        out = grad_flat.reshape(ctx.shape).contiguous()
        out.view(ctx.shape[0], ctx.shape[1], -1).baddbmm_((u * grad_sigma[:, None]).unsqueeze(2), v.unsqueeze(1))
        return out, None, None


class _StackedSigma(torch.autograd.Function):
    """``sigma_i = u_i^T W_i v_i`` for a stack ``W`` ``[n, out, ...]`` (u, v constants). Its gradient in ``W``,
    ``dsigma_i u_i v_i^T``, is written once as one ``W``-sized tensor; autograd through per-candidate slices would
    zero-fill one ``W``-sized buffer per candidate and sum them (at the 512-channel SCC layers, 27 MiB each)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        w = weight.flatten(2)
        ctx.save_for_backward(u, v)
        ctx.shape = weight.shape
        return _sigmas(w, u, v)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        u, v = ctx.saved_tensors
        return _sigmas_gradient(grad, u, v, ctx.shape), None, None


def _power_iteration_modules(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules()
            if isinstance(m, (StackedSpectralNorm, SpectralNorm)) or type(m).__name__ == "_SpectralNorm"]


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
