"""3x3 convolutions by Winograd's minimal filtering F(2x2, 3x3), for the CPU (issue 13).

A stride-1, zero-padding-1 3x3 convolution computes each 2x2 block of outputs from the 4x4 input tile around it.
Winograd's F(2x2, 3x3) writes it as ``Y = A^T [(G g G^T) . (B^T d B)] A``: the kernel ``g`` and the tile ``d``
are taken into a 4x4 transform domain where the convolution is 16 element-wise products summed over the input
channels, i.e. 16 matrix products ``[Cout, Cin] x [Cin, tiles]``. That is 16 multiply-adds per 2x2 outputs and
input channel instead of 36: 2.25x fewer than the direct convolution, for three cheap linear transforms
(additions only). The identity is exact; only the rounding differs (a few 1e-6 relative in float32,
``tests/layers/test_winograd.py``).

oneDNN's direct convolution runs near the CPU's peak, so the transforms and the matrix products only pay where
the products are large: many channels on small maps (the deep layers of a generator), and only on a CPU whose
direct convolution is slow enough beside its matrix products: :func:`winograd_pays` holds the measured rule and
:func:`cpu_takes_winograd` the CPUs it was measured to pay on; the GPU keeps cuDNN, which chooses its own
algorithms.

:class:`WinogradConv3x3` is differentiable in the input and the kernel with a hand-written backward in the same
transform domain (two more batched products of the same size, as the direct convolution's backward needs two
more convolutions); it keeps only the input, as the direct convolution does, and recomputes the transforms.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from .layout import is_channels_last

# F(2x2, 3x3) (Lavin and Gray, 2016): the kernel transform G; B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0],
# [0, 1, 0, -1]] and A^T = [[1, 1, 1, 0], [0, 1, -1, -1]] are written out as additions below.
_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))


class WinogradPolicy:
    """Where F(2x2, 3x3) replaces the direct convolution (CPU, float32/float64): at least ``min_in_channels``
    input and ``min_out_channels`` output channels, at most ``max_pixels`` pixels per image and at least
    ``min_pixels`` in the batch (the kernel transform, computed per call, must be small beside the products).
    Measured with ``benchmarks/bench_winograd.py`` on an AMD EPYC with AVX-512 (docs/benchmarks.md), from 128 x 384
    channels on 64x64 to 512 x 768 on 32x32: 0.82-0.91x the direct convolution's time in eval and 0.69-0.76x in
    training on one thread (0.83-0.97x and 0.76-0.97x on two); on 8x8 and 16x16 maps the kernel transform costs
    more than the products save, and with fewer channels on larger maps the input and output transforms do.
    Without a backward the rule starts at ``min_eval_pixels``: 256 to 1024 channels on 16x32 (pix2pixHD's and
    SPADE's deep blocks at 256x512) took 0.73-0.88x in eval on one thread, 0.83-0.86x on two, where training
    was 0.78-1.01x on one and 0.99-1.02x on two. All of that holds on the CPU it was measured on (AMD family 19h,
    Zen 4, whose AVX-512 runs on 256-bit units: ~110 GFLOP/s of direct 3x3 conv per thread); on Zen 5 (family 1Ah,
    full-width AVX-512, ~200 GFLOP/s) the direct convolution is faster at every one of those shapes (F(2x2, 3x3)
    1.09-1.55x its time). An Intel Xeon with AMX (family 6, ``amx_tile``; ~190 GFLOP/s of direct 3x3 conv per
    thread, like Zen 5) measured like Zen 4 inside the rule (0.74-1.02x in eval, 0.68-0.94x in training) and slower
    outside it; so did Zen 3 (family 19h without AVX-512, ~70-85 GFLOP/s per thread: 0.65-0.94x in eval and
    0.61-0.92x in training inside the rule), where a whole SC-GAN training step took 0.81-0.87x the time with it and
    a step of G and D together 0.89x (eval the same). So ``enabled = None`` (the default) takes it only where
    :func:`cpu_takes_winograd`; ``True`` or ``False`` force it on or off everywhere (``benchmarks/bench_winograd.py``
    measures a machine)."""

    enabled: bool | None = None
    min_in_channels: int = 128
    min_out_channels: int = 256
    min_pixels: int = 32 * 32
    min_eval_pixels: int = 16 * 32
    max_pixels: int = 64 * 64


@functools.lru_cache(maxsize=1)
def cpu_takes_winograd() -> bool:
    """Whether this CPU is of a kind :class:`WinogradPolicy` was measured faster on: AMD family 19h (Zen 4 with
    AVX-512, Zen 3 without it), or an Intel family-6 CPU with AVX-512 and AMX (Sapphire Rapids and later Xeons).
    Decided from ``/proc/cpuinfo`` once per process, never timed, so a run computes the same on every machine of a
    kind (a resumed run included). Zen 5 (family 1Ah) measured slower; other CPUs (Intel without AMX, ARM) are not
    measured and keep the direct convolution."""
    from ..utils.runtime import cpu_identity

    cpu = cpu_identity()
    flags = cpu["flags"]
    if cpu["vendor"] == "AuthenticAMD":
        return cpu["family"] == 0x19  # Zen 3 and Zen 4, with or without AVX-512
    return cpu["vendor"] == "GenuineIntel" and cpu["family"] == 6 and "avx512f" in flags and "amx_tile" in flags


def winograd_enabled() -> bool:
    """:attr:`WinogradPolicy.enabled`, with ``None`` resolved by :func:`cpu_takes_winograd`."""
    on = WinogradPolicy.enabled
    return cpu_takes_winograd() if on is None else bool(on)


def winograd_pays(x: torch.Tensor, in_channels: int, out_channels: int, backward: bool | None = None) -> bool:
    """Whether :class:`WinogradPolicy` takes F(2x2, 3x3) for ``x`` [B, Cin, H, W] (stride 1, padding 1).
    ``backward``: whether the call will be differentiated (default: grad mode on and ``x`` requiring grad); without
    one the rule starts at ``min_eval_pixels``."""
    p = WinogradPolicy
    if backward is None:
        backward = torch.is_grad_enabled() and x.requires_grad
    return (winograd_enabled() and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and x.dim() == 4 and not torch.jit.is_tracing() and not torch.jit.is_scripting()
            and not is_channels_last(x)  # channels-last maps (a prepared SC-GAN's) take oneDNN's direct conv
            and in_channels >= p.min_in_channels and out_channels >= p.min_out_channels
            and x.shape[0] * x.shape[2] * x.shape[3] >= (p.min_pixels if backward else p.min_eval_pixels)
            and x.shape[2] * x.shape[3] <= p.max_pixels)


def _kernel_transform(like: torch.Tensor) -> torch.Tensor:
    """``[16, 9]``: row ``4a + b`` maps a flattened 3x3 kernel to ``(G g G^T)[a, b]`` (``kron(G, G)``)."""
    g = torch.tensor(_G, dtype=torch.float64)
    return torch.kron(g, g).to(like)


def winograd_weight(weight: torch.Tensor) -> torch.Tensor:
    """``U = G g G^T`` of every kernel: ``[Cout, Cin, 3, 3] -> [16, Cout, Cin]`` (tile position major), one matrix
    product ``[16, 9] x [9, Cout * Cin]``."""
    cout, cin = weight.shape[:2]
    return torch.mm(_kernel_transform(weight), weight.reshape(cout * cin, 9).t()).view(16, cout, cin)


def _winograd_weight_adjoint(du: torch.Tensor) -> torch.Tensor:
    """The kernel gradient from ``dU`` ``[16, Cout, Cin]``: ``dg = G^T dU G`` -> ``[Cout, Cin, 3, 3]``."""
    _, cout, cin = du.shape
    return torch.mm(du.reshape(16, cout * cin).t(), _kernel_transform(du)).view(cout, cin, 3, 3)


def _tiles(h: int, w: int) -> tuple[int, int]:
    return (h + 1) // 2, (w + 1) // 2


def input_transform(x: torch.Tensor, padding: int = 1) -> torch.Tensor:
    """``V = B^T d B`` of every 4x4 tile (stride 2) of ``x`` zero-padded by ``padding`` (1: the output keeps the
    input's size; 0: a "valid" convolution, 2 pixels smaller): ``[16, Cin, B * tiles]``."""
    b, c, h, w = x.shape
    th, tw = _tiles(h + 2 * padding - 2, w + 2 * padding - 2)
    xp = F.pad(x, (padding, 2 + 2 * tw - w - padding, padding, 2 + 2 * th - h - padding))
    r = [xp[:, :, k : k + 2 * th : 2] for k in range(4)]  # row k of every tile row: [B, C, th, 2tw + 2]
    rows = x.new_empty(4, b, c, th, 2 * tw + 2)
    torch.sub(r[0], r[2], out=rows[0])
    torch.add(r[1], r[2], out=rows[1])
    torch.sub(r[2], r[1], out=rows[2])
    torch.sub(r[1], r[3], out=rows[3])
    v = x.new_empty(4, 4, c, b, th, tw)
    for a in range(4):
        col = [rows[a, ..., k : k + 2 * tw : 2] for k in range(4)]
        torch.sub(col[0], col[2], out=v[a, 0].transpose(0, 1))
        torch.add(col[1], col[2], out=v[a, 1].transpose(0, 1))
        torch.sub(col[2], col[1], out=v[a, 2].transpose(0, 1))
        torch.sub(col[1], col[3], out=v[a, 3].transpose(0, 1))
    return v.view(16, c, b * th * tw)


def output_transform(m: torch.Tensor, batch: int, h: int, w: int) -> torch.Tensor:
    """``Y = A^T M A``: ``[16, Cout, B * tiles] -> [B, Cout, h, w]``."""
    th, tw = _tiles(h, w)
    cout = m.shape[1]
    m = m.view(4, 4, cout, batch, th, tw)
    s = m.new_empty(2, 4, cout, batch, th, tw)
    torch.add(m[0], m[1], out=s[0])
    s[0].add_(m[2])
    torch.sub(m[1], m[2], out=s[1])
    s[1].sub_(m[3])
    out = m.new_empty(batch, cout, 2 * th, 2 * tw)
    for i in range(2):
        y = out[:, :, i::2, 0::2].transpose(0, 1)
        torch.add(s[i, 0], s[i, 1], out=y)
        y.add_(s[i, 2])
        y = out[:, :, i::2, 1::2].transpose(0, 1)
        torch.sub(s[i, 1], s[i, 2], out=y)
        y.sub_(s[i, 3])
    return out if (2 * th, 2 * tw) == (h, w) else out[:, :, :h, :w].contiguous()


def _output_transform_adjoint(grad: torch.Tensor) -> torch.Tensor:
    """The adjoint of :func:`output_transform`: ``dM = A dY A^T`` per tile, ``[B, Cout, h, w] -> [16, Cout, B*T]``."""
    b, cout, h, w = grad.shape
    th, tw = _tiles(h, w)
    if (2 * th, 2 * tw) != (h, w):
        grad = F.pad(grad, (0, 2 * tw - w, 0, 2 * th - h))
    d = [[grad[:, :, p::2, q::2].transpose(0, 1) for q in range(2)] for p in range(2)]  # [Cout, B, th, tw]
    r = grad.new_empty(4, 2, cout, b, th, tw)  # r[a, q] = sum_p A^T[p, a] dY[p, q]
    for q in range(2):
        r[0, q].copy_(d[0][q])
        torch.add(d[0][q], d[1][q], out=r[1, q])
        torch.sub(d[0][q], d[1][q], out=r[2, q])
        torch.neg(d[1][q], out=r[3, q])
    dm = grad.new_empty(4, 4, cout, b, th, tw)
    for a in range(4):
        dm[a, 0].copy_(r[a, 0])
        torch.add(r[a, 0], r[a, 1], out=dm[a, 1])
        torch.sub(r[a, 0], r[a, 1], out=dm[a, 2])
        torch.neg(r[a, 1], out=dm[a, 3])
    return dm.view(16, cout, b * th * tw)


def _input_transform_adjoint(dv: torch.Tensor, batch: int, h: int, w: int) -> torch.Tensor:
    """The adjoint of :func:`input_transform`: ``dd = B dV B^T`` per tile, added back where the tiles overlap and
    cropped to ``[B, Cin, h, w]``."""
    th, tw = _tiles(h, w)
    c = dv.shape[1]
    dv = dv.view(4, 4, c, batch, th, tw)
    # e[k, b] = sum_a B^T[a, k] dV[a, b]; B^T columns: k0 = (1,0,0,0), k1 = (0,1,-1,1), k2 = (-1,1,1,0), k3 = (0,0,0,-1)
    e = dv.new_empty(4, 4, c, batch, th, tw)
    e[0].copy_(dv[0])
    torch.sub(dv[1], dv[2], out=e[1])
    e[1].add_(dv[3])
    torch.add(dv[1], dv[2], out=e[2])
    e[2].sub_(dv[0])
    torch.neg(dv[3], out=e[3])
    dxp = dv.new_zeros(batch, c, 2 * th + 2, 2 * tw + 2)
    for k in range(4):
        row = dxp[:, :, k : k + 2 * th : 2]
        ek = e[k]
        row[..., 0 : 2 * tw : 2].add_(ek[0].transpose(0, 1))
        row[..., 1 : 1 + 2 * tw : 2].add_((ek[1] - ek[2] + ek[3]).transpose(0, 1))
        row[..., 2 : 2 + 2 * tw : 2].add_((ek[1] + ek[2] - ek[0]).transpose(0, 1))
        row[..., 3 : 3 + 2 * tw : 2].sub_(ek[3].transpose(0, 1))
    return dxp[:, :, 1 : h + 1, 1 : w + 1]


def winograd_conv3x3(x: torch.Tensor, u: torch.Tensor, padding: int = 1) -> torch.Tensor:
    """``F.conv2d(x, weight, padding=padding)`` (1 or 0) from ``u = winograd_weight(weight)`` (no autograd: eval)."""
    b, c, h, w = x.shape
    return output_transform(torch.bmm(u, input_transform(x, padding)), b, h + 2 * padding - 2, w + 2 * padding - 2)


class WinogradConv3x3(torch.autograd.Function):
    """``F.conv2d(x, weight, padding=1)`` by F(2x2, 3x3), differentiable in ``x`` and ``weight``. Keeps what the
    direct convolution keeps (the input; the kernel is the parameter) and recomputes both transforms in backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return winograd_conv3x3(x, winograd_weight(weight))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        return winograd_conv3x3_backward(grad, x, weight, *ctx.needs_input_grad[:2])


def winograd_conv3x3_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, need_x: bool = True,
                              need_weight: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The gradients of ``x`` and ``weight`` of :class:`WinogradConv3x3` (padding 1) for the output gradient
    ``grad``, by the adjoints of its transforms (None where not needed)."""
    b, c, h, w = x.shape
    dm = _output_transform_adjoint(grad.contiguous())
    dx = dw = None
    if need_x:
        dx = _input_transform_adjoint(torch.bmm(winograd_weight(weight).transpose(1, 2), dm), b, h, w)
    if need_weight:
        dw = _winograd_weight_adjoint(torch.bmm(dm, input_transform(x).transpose(1, 2)))
    return dx, dw


def conv3x3(x: torch.Tensor, weight: torch.Tensor, u: torch.Tensor | None = None,
            backward: bool | None = None) -> torch.Tensor:
    """A stride-1, padding-1 3x3 convolution without bias: F(2x2, 3x3) where :func:`winograd_pays`, else
    ``F.conv2d``. ``u`` is ``winograd_weight(weight)`` when the caller keeps it (eval without gradients).
    ``backward``: choose the algorithm as for a call that will be differentiated (default: whether gradients are
    recorded), so that a forward run without them and its recomputation in backward compute the same values."""
    backward = (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)) if backward is None \
        else backward
    if not winograd_pays(x, weight.shape[1], weight.shape[0], backward):
        return F.conv2d(x, weight, None, 1, 1)
    if backward and torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return WinogradConv3x3.apply(x, weight)
    return winograd_conv3x3(x, winograd_weight(weight) if u is None else u)


class WinogradConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (3x3, stride 1, zero padding 1 or no padding, no groups or dilation) that runs F(2x2, 3x3)
    where :func:`winograd_pays`; the same parameters and state-dict keys. :func:`use_winograd` turns the matching
    convs of a module into it. Without padding (the conv after pix2pixHD's reflection pads) only calls without a
    backward take it: the transforms' adjoints are written for padding 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        backward = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        unpadded = self.padding[0] == 0
        if (not winograd_pays(x, self.in_channels, self.out_channels, backward)
                or (unpadded and (backward or x.shape[-2] < 3 or x.shape[-1] < 3))):  # the direct conv's error
            return super().forward(x)
        y = conv3x3(x, self.weight) if self.padding[0] == 1 else winograd_conv3x3(x, winograd_weight(self.weight), 0)
        if self.bias is None:
            return y
        bias = self.bias.view(1, -1, 1, 1)
        return y + bias if torch.is_grad_enabled() else y.add_(bias)


def is_same_3x3(m: nn.Module, *, plain: bool = False) -> bool:
    """Whether ``m`` is a 3x3 ``nn.Conv2d`` with stride 1, zero padding 1, no dilation and one group (the output
    keeps the input's size); ``plain``: an ``nn.Conv2d`` itself, without parametrization (spectral norm)."""
    if plain and (type(m) is not nn.Conv2d or getattr(m, "parametrizations", None)):
        return False
    return (isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) and m.stride == (1, 1) and m.padding == (1, 1)
            and m.dilation == (1, 1) and m.groups == 1 and m.padding_mode == "zeros")


def _is_valid_3x3(m: nn.Module) -> bool:
    """A plain 3x3 ``nn.Conv2d`` with stride 1 and no padding, dilation or groups."""
    return (type(m) is nn.Conv2d and not getattr(m, "parametrizations", None) and m.kernel_size == (3, 3)
            and m.stride == (1, 1) and m.padding == (0, 0) and m.dilation == (1, 1) and m.groups == 1)


def use_winograd(module: nn.Module) -> int:
    """Make every plain ``nn.Conv2d`` of ``module`` that F(2x2, 3x3) can compute (:func:`is_same_3x3`, or the same
    without padding) a :class:`WinogradConv2d`, in place; returns how many."""
    count = 0
    for m in module.modules():
        if is_same_3x3(m, plain=True) or _is_valid_3x3(m):
            m.__class__ = WinogradConv2d
            count += 1
    return count
