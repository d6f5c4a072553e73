"""Spatially conditional convolution (SCC), SC-GAN paper Eq. 4 and supplementary Alg. 1.

    y(p) = sum_i V_i(p) * (k_i conv F)(p)

``n`` kernel candidates ``k_i`` are mixed per output pixel by the routing map ``V`` ([B, n, H, W]).

Fast path: the ``n`` candidates are one parameter ``[n, Cout, Cin, k, k]``, so a single convolution with
``n*Cout`` output channels computes every candidate (no copy of the kernels), and the per-pixel mix is a
short chain of fused multiply-adds. With spectral norm, ``k_i / sigma_i`` is never materialised: since the
mix is linear, ``sum_i V_i (k_i / sigma_i) * F = sum_i (V_i / sigma_i) (k_i * F)``, so the ``n`` scalars
``1/sigma_i`` are folded into the routing weights (gradients through sigma are unchanged). On the CPU the
stacked 3x3 convolution runs by Winograd's F(2x2, 3x3) where that is measured to be faster (``winograd.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ShapeError
from .spectral import StackedSpectralNorm
from .winograd import conv3x3


def check_routing(routing: torch.Tensor, n: int, batch: int, size: tuple[int, int], layer: str) -> None:
    """Raise a clear error unless ``routing`` is ``[batch, n, *size]``."""
    if routing.dim() != 4 or routing.shape[1] != n or routing.shape[0] != batch or tuple(routing.shape[2:]) != size:
        raise ShapeError(
            f"{layer}: routing map has shape {tuple(routing.shape)}, expected [{batch}, {n}, {size[0]}, {size[1]}] "
            f"(batch, number of candidates, height, width of the feature map); pass one routing channel per "
            f"candidate at the feature map's resolution"
        )


class _MixCandidates(torch.autograd.Function):
    """``out = sum_i coeff[:, i] * stacked[:, i]`` with a hand-written backward.

    Autograd through per-candidate slices would allocate and zero-fill a full ``[B, n, C, H, W]`` gradient
    buffer per candidate; here the gradient of ``stacked`` is written once, and ``stacked`` is kept only when
    the routing needs a gradient.
    """

    @staticmethod
    def forward(ctx, stacked: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
        n = stacked.shape[1]
        out = stacked[:, 0] * coeff[:, 0:1]
        for i in range(1, n):
            out.addcmul_(stacked[:, i], coeff[:, i : i + 1])
        ctx.save_for_backward(stacked if ctx.needs_input_grad[1] else None, coeff)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        stacked, coeff = ctx.saved_tensors
        grad_stacked = grad_coeff = None
        if ctx.needs_input_grad[0]:
            grad_stacked = grad.unsqueeze(1) * coeff.unsqueeze(2)
        if ctx.needs_input_grad[1]:
            grad_coeff = torch.stack([torch.linalg.vecdot(grad, stacked[:, i], dim=1)
                                      for i in range(stacked.shape[1])], 1)
        return grad_stacked, grad_coeff


def mix_candidates(stacked: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
    """``sum_i coeff[:, i] * stacked[:, i]`` for ``stacked`` [B, n, C, H, W] and ``coeff`` [B, n, H, W].

    While tracing (ONNX or TorchScript export) the custom autograd function, which neither format can hold, is
    replaced by :func:`mix_candidates_plain`, the same sum in the same order."""
    if torch.jit.is_tracing():
        return mix_candidates_plain(stacked, coeff)
    return _MixCandidates.apply(stacked, coeff)


def mix_candidates_plain(stacked: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
    """:func:`mix_candidates` in plain tensor operations (multiply, add): the export form of the per-pixel mix."""
    out = stacked[:, 0] * coeff[:, 0:1]
    for i in range(1, stacked.shape[1]):
        out = out + stacked[:, i] * coeff[:, i : i + 1]
    return out


class SpatiallyConditionalConv2d(nn.Module):
    """SCC layer: ``forward(x [B, Cin, H, W], routing [B, n, H', W']) -> [B, Cout, H', W']``.

    Args:
        in_channels, out_channels: feature channels.
        num_candidates: ``n``, the number of kernel candidates (routing channels).
        kernel_size, stride, padding: as in ``nn.Conv2d`` (padding defaults to ``kernel_size // 2``).
        bias: one bias vector per candidate, mixed by the same routing weights (off in the official code).
        spectral: spectral norm on each candidate separately (as the official code's per-expert SN).
    """

    def __init__(self, in_channels: int, out_channels: int, num_candidates: int, kernel_size: int = 3,
                 stride: int = 1, padding: int | None = None, bias: bool = False, spectral: bool = False) -> None:
        super().__init__()
        if num_candidates < 1:
            raise ValueError(f"num_candidates must be >= 1, got {num_candidates}")
        self.in_channels, self.out_channels, self.num_candidates = in_channels, out_channels, num_candidates
        self.kernel_size, self.stride = kernel_size, stride
        self.padding = kernel_size // 2 if padding is None else padding
        self.weight = nn.Parameter(torch.empty(num_candidates, out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(num_candidates, out_channels)) if bias else None
        self.reset_parameters()
        self.sn = (
            StackedSpectralNorm(num_candidates, out_channels, in_channels * kernel_size**2, weight=self.weight)
            if spectral else None
        )

    def reset_parameters(self) -> None:
        for w in self.weight:  # each candidate initialised like an nn.Conv2d kernel
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def channels_last_(self) -> SpatiallyConditionalConv2d:
        """Store the candidates so that the stacked ``[n*Cout, Cin, k, k]`` view is channels-last."""
        w = self.weight.data
        self.weight.data = w.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
        return self

    def candidate_weights(self) -> torch.Tensor:
        """The effective kernels ``[n, Cout, Cin, k, k]`` (divided by sigma when spectral)."""
        if self.sn is None:
            return self.weight
        return self.weight / self.sn(self.weight).view(-1, 1, 1, 1, 1)

    @torch.no_grad()
    def fold_spectral_norm_(self) -> SpatiallyConditionalConv2d:
        """Divide the stored candidates by their current sigma and drop the power-iteration state (for export
        and inference only: the layer then computes the same eval output with plain kernels, and its state_dict
        loses the ``sn.u``/``sn.v`` buffers)."""
        if self.sn is not None:
            self.sn.eval()  # sigma from the stored u, v: no power iteration
            self.weight.data = self.candidate_weights().detach().clone()
            self.sn = None
        return self

    def forward(self, x: torch.Tensor, routing: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(f"SCC: input has shape {tuple(x.shape)}, expected [B, {self.in_channels}, H, W]")
        n, cout = self.num_candidates, self.out_channels
        if self.kernel_size == 3 and self.stride == 1 and self.padding == 1:  # F(2x2, 3x3) where it pays
            y = conv3x3(x, self.weight.flatten(0, 1))  # [B, n*Cout, H, W]
        else:
            y = F.conv2d(x, self.weight.flatten(0, 1), None, self.stride, self.padding)  # [B, n*Cout, H', W']
        b, _, h, w = y.shape
        check_routing(routing, n, b, (h, w), "SCC")
        coeff = routing if self.sn is None else routing / self.sn(self.weight).view(1, n, 1, 1)
        out = mix_candidates(y.view(b, n, cout, h, w), coeff.to(y.dtype))
        if self.bias is not None:
            out = out + torch.einsum("bnhw,nc->bchw", routing.to(y.dtype), self.bias.to(y.dtype))
        return out

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, num_candidates={self.num_candidates}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"bias={self.bias is not None}, spectral={self.sn is not None}")


def scc_reference(x: torch.Tensor, routing: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor | None = None,
                  stride: int = 1, padding: int = 1) -> torch.Tensor:
    """Alg. 1 of the supplement written out: one convolution per candidate, stacked, weighted, summed."""
    outs = []
    for i in range(kernels.shape[0]):
        outs.append(F.conv2d(x, kernels[i], None if bias is None else bias[i], stride, padding).unsqueeze(1))
    stacked = torch.cat(outs, dim=1)  # [B, n, Cout, H, W]
    return (stacked * routing.unsqueeze(2)).sum(dim=1)
