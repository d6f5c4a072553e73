"""3x3 convolutions on small maps whose kernel gradient is im2col and one matrix product (issue 13).

On a small map with many channels (SC-GAN's 512 -> 3x512 SC convolutions at 8x8 and 16x16, pix2pixHD's nine
1024-channel residual blocks at 16x32) oneDNN's backward of a direct convolution runs far below the CPU's
matrix-product speed: its kernel gradient is computed in a blocked layout and reordered into the parameter's (a
second kernel-sized buffer, 27 MiB at SC-GAN's deep layers). That gradient is one matrix product over the
unfolded input,

    ``dW [Cout, Cin*9] = dY [Cout, L] @ unfold(x)^T [L, Cin*9]`` (``L`` output pixels; summed over the batch),

where ``unfold(x)`` is 9x the input, small on such maps (4.5 MiB for 512 channels at 16x16). The input gradient
(``fold(W^T dY)`` in the same terms) measured no faster than oneDNN's (and, taken on 8x8 and 16x16 maps, raised
the peak RSS of SC-GAN's training step by 11 MiB) and stays oneDNN's, as does the forward, so a
layer computes exactly what it computed before; only the kernel gradient's rounding differs (float32: about 1e-6
relative, as between any two convolution algorithms).

:class:`GemmGradPolicy` holds where it is taken, measured with ``benchmarks/bench_gemm_grad.py`` on the CPU
kinds named in :func:`cpu_takes_gemm_grad` (docs/benchmarks.md); elsewhere the direct convolution's own backward
stays. The GPU always keeps cuDNN's.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from .layout import is_channels_last


class GemmGradPolicy:
    """Where the kernel gradient of a 3x3, stride-1, one-group convolution is taken by a matrix product instead
    of the direct convolution's backward (CPU, float32/float64, a backward recorded): at most ``max_pixels`` input
    pixels per image (pix2pixHD's reflection-padded 16x32 map, 18x34) and at least ``min_weight`` kernel entries
    per tap (``Cin * Cout``). Measured on an AMD Zen 3 without AVX-512 (family 19h, ~70-85 GFLOP/s of direct 3x3
    conv per thread; ``benchmarks/bench_gemm_grad.py``, one thread): the kernel gradient took 0.68x oneDNN's time
    at 512 -> 1536 on 8x8, 0.78x on 16x16, 0.76-0.86x at 1024 -> 1024 on 10x18 to 18x34 (a forward and backward
    of that convolution 0.88-0.98x); with fewer channels (663 -> 256 at 16x16) it took 1.55x, and on larger maps
    the gain fades (512 -> 512 at 32x64: 0.93x, the whole convolution 0.99x). A whole training step of SC-GAN's
    ADE20K generator took 0.94x the time with it, at 20 MiB less peak RSS, and pix2pixHD's
    0.91-0.99x (docs/benchmarks.md). ``enabled = None`` (the default) takes it only where
    :func:`cpu_takes_gemm_grad`; ``True`` or ``False`` force it on or off everywhere."""

    enabled: bool | None = None
    max_pixels: int = 18 * 34
    min_weight: int = 512 * 1024


@functools.lru_cache(maxsize=1)
def cpu_takes_gemm_grad() -> bool:
    """Whether this CPU is of the kind :class:`GemmGradPolicy` was measured faster on: AMD family 19h without
    AVX-512 (Zen 3). Decided from ``/proc/cpuinfo`` once per process, never timed. Other CPUs (Zen 4 and Zen 5,
    Intel) are not measured and keep the direct convolution's backward (``python benchmarks/bench_gemm_grad.py``
    measures one)."""
    from ..utils.runtime import cpu_identity

    cpu = cpu_identity()
    return cpu["vendor"] == "AuthenticAMD" and cpu["family"] == 0x19 and "avx512f" not in cpu["flags"]


def gemm_grad_enabled() -> bool:
    """:attr:`GemmGradPolicy.enabled`, with ``None`` resolved by :func:`cpu_takes_gemm_grad`."""
    on = GemmGradPolicy.enabled
    return cpu_takes_gemm_grad() if on is None else bool(on)


def gemm_grad_pays(x: torch.Tensor, in_channels: int, out_channels: int, backward: bool) -> bool:
    """Whether :class:`GemmGradPolicy` takes the matrix-product backward for a 3x3, stride-1 convolution of ``x``
    [B, Cin, H, W] to ``out_channels``; ``backward``: whether the call is differentiated (without a backward
    there is nothing to take)."""
    p = GemmGradPolicy
    if not backward or torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return False  # export and compilation see the plain convolution
    return (gemm_grad_enabled() and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and x.dim() == 4 and x.shape[1] == in_channels and not is_channels_last(x)
            and not torch.is_autocast_enabled("cpu")
            and x.shape[2] * x.shape[3] <= p.max_pixels and in_channels * out_channels >= p.min_weight)


def gemm_conv_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, padding: int,
                       need_x: bool = True, need_weight: bool = True
                       ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The gradients of ``x`` and ``weight`` of ``F.conv2d(x, weight, padding=padding)`` (stride 1, square
    kernel) for the output gradient ``grad`` (None where not needed): the kernel's by one matrix product per image
    over the unfolded input, the input's by the direct convolution's backward (as fast as its matrix-product form
    on these maps, and without the 9x unfolded buffer)."""
    dx = dw = None
    if need_x:
        dx = torch.ops.aten.convolution_backward(grad, x, weight, None, [1, 1], [padding] * 2, [1, 1], False, [0, 0],
                                                 1, [True, False, False])[0]
    if need_weight:
        k = weight.shape[-1]
        g = grad.contiguous().flatten(2)  # [B, Cout, L]
        cols = F.unfold(x, k, padding=padding)  # [B, Cin*k*k, L]
        dw = torch.mm(g[0], cols[0].t())
        for i in range(1, x.shape[0]):
            dw.addmm_(g[i], cols[i].t())
        dw = dw.view(weight.shape)
    return dx, dw


class GemmGradConv2d(torch.autograd.Function):
    """``F.conv2d(x, weight, bias, 1, padding)`` whose backward is :func:`gemm_conv_backward`. Keeps what the
    direct convolution keeps: the input (the kernel is the parameter)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int):
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return F.conv2d(x, weight, bias, 1, padding)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        dx, dw = gemm_conv_backward(grad, x, weight, ctx.padding, need_x, need_w)
        return dx, dw, grad.sum((0, 2, 3)) if need_b else None, None


def conv2d_gemm_grad(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for an ``nn.Conv2d`` (spectral norm or not), differentiated by :func:`gemm_conv_backward`
    where :func:`gemm_grad_pays` (a 3x3, stride-1, one-group conv with zero padding), else the module itself:
    the same forward either way, and a parametrized weight is computed once per call as the module does."""
    if (conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple) and conv.padding[0] == conv.padding[1]
            and gemm_grad_pays(x, conv.in_channels, conv.out_channels, torch.is_grad_enabled()
                               and (x.requires_grad or any(p.requires_grad for p in conv.parameters())))):
        return GemmGradConv2d.apply(x, conv.weight, conv.bias, conv.padding[0])
    return conv(x)
