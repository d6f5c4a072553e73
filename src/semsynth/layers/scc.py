"""Spatially conditional convolution (SCC), SC-GAN paper Eq. 4 and supplementary Alg. 1.

    y(p) = sum_i V_i(p) * (k_i conv F)(p)

``n`` kernel candidates ``k_i`` are mixed per output pixel by the routing map ``V`` ([B, n, H, W]).

Fast path: the ``n`` candidates are one parameter ``[n, Cout, Cin, k, k]``, so a single convolution with
``n*Cout`` output channels computes every candidate (no copy of the kernels), and the per-pixel mix is a
short chain of fused multiply-adds. With spectral norm, ``k_i / sigma_i`` is never materialised: since the
mix is linear, ``sum_i V_i (k_i / sigma_i) * F = sum_i (V_i / sigma_i) (k_i * F)``, so the ``n`` scalars
``1/sigma_i`` are folded into the routing weights (gradients through sigma are unchanged). On the CPU the
stacked 3x3 convolution runs by Winograd's F(2x2, 3x3) where that is measured to be faster (``winograd.py``), and
on small maps it is differentiated by matrix products where that is (``gemm_grad.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ShapeError
from .gemm_grad import GemmGradConv2d, gemm_conv_backward, gemm_grad_pays
from .recompute import in_recompute_unit, saved_tensors_reusable
from .spectral import StackedSpectralNorm
from .winograd import conv3x3, winograd_conv3x3_backward, winograd_pays


def check_routing(routing: torch.Tensor, n: int, batch: int, size: tuple[int, int], layer: str) -> None:
    """Raise a clear error unless ``routing`` is ``[batch, n, *size]``."""
    if routing.dim() != 4 or routing.shape[1] != n or routing.shape[0] != batch or tuple(routing.shape[2:]) != size:
        raise ShapeError(
            f"{layer}: routing map has shape {tuple(routing.shape)}, expected [{batch}, {n}, {size[0]}, {size[1]}] "
            f"(batch, number of candidates, height, width of the feature map); pass one routing channel per "
            f"candidate at the feature map's resolution"
        )


def _mix(stacked: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
    """``sum_i coeff[:, i] * stacked[:, i]`` as one product and ``n - 1`` fused multiply-adds (no autograd)."""
    out = stacked[:, 0] * coeff[:, 0:1]
    for i in range(1, stacked.shape[1]):
        out.addcmul_(stacked[:, i], coeff[:, i : i + 1])
    return out


class _MixCandidates(torch.autograd.Function):
    """``out = sum_i coeff[:, i] * stacked[:, i]`` with a hand-written backward.

    Autograd through per-candidate slices would allocate and zero-fill a full ``[B, n, C, H, W]`` gradient
    buffer per candidate; here the gradient of ``stacked`` is written once, and ``stacked`` is kept only when
    the routing needs a gradient. Backward computes the routing's gradient first and then, unless the graph is
    kept (:func:`~semsynth.layers.recompute.saved_tensors_reusable`), writes the gradient of ``stacked`` into
    ``stacked`` itself, which nothing reads again: the two ``n * C * H * W`` maps are never alive together
    (24 MiB less at the peak of a training step of the ADE20K preset, where the finest block's second SCC is
    differentiated).
    """

    @staticmethod
    def forward(ctx, stacked: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
        out = _mix(stacked, coeff)
        ctx.save_for_backward(stacked if ctx.needs_input_grad[1] else None, coeff)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        stacked, coeff = ctx.saved_tensors
        grad_stacked = grad_coeff = None
        if ctx.needs_input_grad[1]:
            grad_coeff = torch.stack([torch.linalg.vecdot(grad, stacked[:, i], dim=1)
                                      for i in range(stacked.shape[1])], 1)
        if ctx.needs_input_grad[0]:
            grad_stacked = _scaled_gradient(grad, coeff, stacked if saved_tensors_reusable() else None)
        return grad_stacked, grad_coeff


def _scaled_gradient(grad: torch.Tensor, coeff: torch.Tensor, spent: torch.Tensor | None) -> torch.Tensor:
    """``grad[:, None] * coeff[:, :, None]`` (the gradient of the stacked candidates), written into ``spent`` (a
    tensor of that shape whose values are no longer needed) where that is allowed."""
    if spent is not None and spent.dtype == grad.dtype and spent.shape == (grad.shape[0], coeff.shape[1],
                                                                            *grad.shape[1:]):
        return torch.mul(grad.unsqueeze(1), coeff.unsqueeze(2), out=spent)
    return grad.unsqueeze(1) * coeff.unsqueeze(2)


class _ConvMixRecomputed(torch.autograd.Function):
    """``out = sum_i coeff[:, i] * conv(x, weight)[:, i]`` that keeps ``x``, ``weight`` and ``coeff`` for backward
    instead of the stacked ``[B, n*Cout, H, W]`` convolution output: backward runs the convolution again (the same
    algorithm, the same values) for the routing's gradient, frees it, and computes those of ``x`` and ``weight``
    with the convolution's own backward. ``x`` is kept by the layer before anyway (the activation's output),
    ``weight`` is the parameter: one map of ``n * Cout`` channels less per layer for one more convolution."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, coeff: torch.Tensor, layer) -> torch.Tensor:
        y = layer._conv(x, weight, backward=True)
        b, _, h, w = y.shape
        ctx.layer = layer
        ctx.save_for_backward(x, weight, coeff)
        return _mix(y.view(b, layer.num_candidates, -1, h, w), coeff)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, coeff = ctx.saved_tensors
        layer, n = ctx.layer, ctx.layer.num_candidates
        need_x, need_w, need_coeff = ctx.needs_input_grad[:3]
        grad_coeff = dx = dw = stacked = None
        if need_coeff:
            with torch.no_grad():
                y = layer._conv(x, weight, backward=True)
            stacked = y.view(y.shape[0], n, -1, *y.shape[2:])
            grad_coeff = torch.stack([torch.linalg.vecdot(grad, stacked[:, i], dim=1) for i in range(n)], 1)
            del y
        if need_x or need_w:  # the recomputed stack is this function's own: always reusable
            grad_y = _scaled_gradient(grad, coeff, stacked).flatten(1, 2)
            del stacked
            dx, dw = layer._conv_backward(grad_y, x, weight, need_x, need_w)
        return dx, dw, grad_coeff, None


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
            # in place (the division candidate_weights() does): no second copy of the kernels, even for a moment
            self.weight.data.div_(self.sn(self.weight).view(-1, 1, 1, 1, 1))
            self.sn = None
        return self

    # In training, layers whose output has at least this many pixels per image keep their input instead of the
    # stacked n*Cout-channel convolution output and recompute the convolution in backward (_ConvMixRecomputed).
    # At SC-GAN's ADE20K preset, 128 * 128 (the 256x256 and 128x128 blocks) keeps 72 MiB less at the end of a forward
    # for 21.8 GFLOP and 2-16% more time per step (docs/benchmarks.md). None (default): never.
    # ``train.scc_recompute_pixels`` sets it per model (set_scc_recompute).
    recompute_min_pixels: int | None = None

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, backward: bool | None = None) -> torch.Tensor:
        """The stacked convolution ``[B, n*Cout, H', W']`` (``backward``: as :func:`~.winograd.conv3x3`)."""
        if self.kernel_size == 3 and self.stride == 1 and self.padding == 1:
            cin, cout = weight.shape[1], weight.shape[0]
            differentiated = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
            if not winograd_pays(x, cin, cout, backward=True) and gemm_grad_pays(x, cin, cout, differentiated):
                return GemmGradConv2d.apply(x, weight, None, 1)  # the direct conv, its backward by matrix products
            return conv3x3(x, weight, backward=backward)  # F(2x2, 3x3) where it pays
        return F.conv2d(x, weight, None, self.stride, self.padding)

    def _conv_backward(self, grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, need_x: bool,
                       need_w: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The gradients of ``x`` and ``weight`` of :meth:`_conv` (``backward=True``) for its output gradient."""
        if self.kernel_size == 3 and self.stride == 1 and self.padding == 1:
            cin, cout = weight.shape[1], weight.shape[0]
            if winograd_pays(x, cin, cout, backward=True):
                return winograd_conv3x3_backward(grad, x, weight, need_x, need_w)
            if gemm_grad_pays(x, cin, cout, True):
                return gemm_conv_backward(grad, x, weight, 1, need_x, need_w)
        dx, dw, _ = torch.ops.aten.convolution_backward(grad, x, weight, None, [self.stride] * 2, [self.padding] * 2,
                                                        [1, 1], False, [0, 0], 1, [need_x, need_w, False])
        return dx, dw

    def _recomputes(self, x: torch.Tensor, size: tuple[int, int]) -> bool:
        m = self.recompute_min_pixels
        return (m is not None and not torch.jit.is_tracing() and not torch.compiler.is_compiling()
                and size[0] * size[1] >= m and torch.is_grad_enabled()
                and (x.requires_grad or self.weight.requires_grad) and not in_recompute_unit()
                and not torch.is_autocast_enabled(x.device.type))  # backward would recompute in another precision

    def output_size(self, x: torch.Tensor) -> tuple[int, int]:
        k, s, p = self.kernel_size, self.stride, self.padding
        return (x.shape[2] + 2 * p - k) // s + 1, (x.shape[3] + 2 * p - k) // s + 1

    def forward(self, x: torch.Tensor, routing: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(f"SCC: input has shape {tuple(x.shape)}, expected [B, {self.in_channels}, H, W]")
        n, cout = self.num_candidates, self.out_channels
        size = self.output_size(x)
        check_routing(routing, n, x.shape[0], size, "SCC")
        if self.sn is None:
            kernels, coeff = self.weight.flatten(0, 1), routing
        else:  # the kernels and their n sigmas as one autograd node: the weight's gradient is written once
            kernels, sigma = self.sn.flat_and_sigma(self.weight)
            coeff = routing / sigma.view(1, n, 1, 1)
        if self._recomputes(x, size):
            out = _ConvMixRecomputed.apply(x, kernels, coeff.to(x.dtype), self)
        else:
            y = self._conv(x, kernels)  # [B, n*Cout, H', W']
            b, _, h, w = y.shape
            out = mix_candidates(y.view(b, n, cout, h, w), coeff.to(y.dtype))
        if self.bias is not None:
            out = out + torch.einsum("bnhw,nc->bchw", routing.to(out.dtype), self.bias.to(out.dtype))
        return out

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, num_candidates={self.num_candidates}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"bias={self.bias is not None}, spectral={self.sn is not None}")


def set_scc_recompute(module: nn.Module, min_pixels: int | None) -> int:
    """Set ``recompute_min_pixels`` of every SCC layer of ``module`` (``train.scc_recompute_pixels``); returns how
    many there are."""
    layers = [m for m in module.modules() if isinstance(m, SpatiallyConditionalConv2d)]
    for m in layers:
        m.recompute_min_pixels = min_pixels
    return len(layers)


def scc_reference(x: torch.Tensor, routing: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor | None = None,
                  stride: int = 1, padding: int = 1) -> torch.Tensor:
    """Alg. 1 of the supplement written out: one convolution per candidate, stacked, weighted, summed."""
    outs = []
    for i in range(kernels.shape[0]):
        outs.append(F.conv2d(x, kernels[i], None if bias is None else bias[i], stride, padding).unsqueeze(1))
    stacked = torch.cat(outs, dim=1)  # [B, n, Cout, H, W]
    return (stacked * routing.unsqueeze(2)).sum(dim=1)
