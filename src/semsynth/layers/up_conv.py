"""A 3x3 convolution of a nearest-neighbour 2x up-sampled map, computed on the small map (issue 13).

After nearest up-sampling every 2x2 block of the input holds one value, so each output pixel of a 3x3 convolution
(stride 1, zero padding 1) reads only a 2x2 window of the small map: along each axis, an output at an even
position ``2i`` sees the small map at ``i - 1`` (through tap 0) and ``i`` (taps 1 and 2), one at an odd position
``2i + 1`` sees ``i`` (taps 0 and 1) and ``i + 1`` (tap 2); the zero padding of the large map is the zero padding
of the small one. So the four output phases are four 2x2 convolutions of the small map with summed taps, run as
one convolution with ``4 * Cout`` outputs, and interleaved: 16 multiply-adds per small-map pixel and input channel
instead of 36 (0.44x the FLOPs), and the up-sampled map is never built. The identity is exact; in floating point
the taps are summed before the products (float rounding). Differentiable (autograd through the tap sums, the
convolution and the interleave).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .layout import is_channels_last

# along one axis: [parity, small-map offset (0: the earlier pixel), tap]
_PHASES = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]],
                        [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])


def up2_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1)`` for a 3x3
    ``weight [Cout, Cin, 3, 3]`` (one group), computed on ``x [B, Cin, H, W]`` itself."""
    if weight.shape[2:] != (3, 3) or x.dim() != 4 or weight.shape[1] != x.shape[1]:
        raise ValueError(f"up2_conv3x3 needs x [B, C, H, W] and a 3x3 weight [Cout, C, 3, 3], got "
                         f"{tuple(x.shape)} and {tuple(weight.shape)}")
    b, _, h, w = x.shape
    cout = weight.shape[0]
    m = _PHASES.to(device=weight.device, dtype=weight.dtype)
    # kernels[a, c, o, i, u, v] = sum_{s,t} m[a, u, s] m[c, v, t] weight[o, i, s, t]: phase (a, c) as a 2x2 kernel
    kernels = torch.einsum("aus,cvt,oist->acoiuv", m, m, weight).reshape(4 * cout, weight.shape[1], 2, 2)
    out = F.conv2d(F.pad(x, (1, 1, 1, 1)), kernels, None if bias is None else bias.repeat(4))
    out = out.view(b, 2, 2, cout, h + 1, w + 1)  # [B, 4 Cout, H + 1, W + 1] by phase
    # phase (a, c) at small-map pixel (i, j) is out[:, a, c, :, i + a, j + c]; it goes to (2i + a, 2j + c)
    if is_channels_last(x):  # a channels-last map (a prepared model's) gives a channels-last result
        y = out.new_empty(b, h, 2, w, 2, cout)
        for a in (0, 1):
            for c in (0, 1):
                y[:, :, a, :, c] = out[:, a, c, :, a : a + h, c : c + w].permute(0, 2, 3, 1)
        return y.view(b, 2 * h, 2 * w, cout).permute(0, 3, 1, 2)
    y = out.new_empty(b, cout, h, 2, w, 2)
    for a in (0, 1):
        for c in (0, 1):
            y[:, :, :, a, :, c] = out[:, a, c, :, a : a + h, c : c + w]
    return y.view(b, cout, 2 * h, 2 * w)
