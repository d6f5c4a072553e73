"""Convolution kernels kept in oneDNN's own layout, for eval on the CPU (issue 13).

On the CPU, ``F.conv2d`` hands a plain kernel to oneDNN, which reorders it into the blocked layout its kernels read
(a copy of the whole kernel) on every call. For the deep layers of a generator, whose kernels are large and whose
maps are small, that copy is a large part of the call (a 512 -> 1536 3x3 conv at 8x8: 12.4 ms with it, 6.9 without), and it
is memory allocated and freed each time. :class:`PackedKernel` reorders a kernel once
(``torch.ops.mkldnn._reorder_convolution_weight``, what inductor's freezing does on the CPU) and convolves with
``torch.ops.mkldnn._convolution_pointwise``: the same convolution, the same result up to the order of the sums.

The layout oneDNN picks depends on the input's size (the same kernel packed for an 8x8 map ran 6x slower on a
32x32 one, where oneDNN reorders it back per call), so a kernel is packed for one input size, the one its layer
runs at in the model, and is used packed only at that size: other sizes, autocast, other dtypes and devices,
gradients, tracing and compiling take ``F.conv2d`` with the kernel unpacked again (:meth:`PackedKernel.dense`, a
copy per call: correct, slower). The plain kernel is not kept beside the packed one (that would double its memory).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def packing_available(weight: torch.Tensor) -> bool:
    """Whether ``weight`` can be packed: a float32 CPU tensor, with PyTorch built with oneDNN (mkldnn)."""
    return (weight.device.type == "cpu" and weight.dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_convolution_weight")
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise"))


class PackedKernel:
    """A convolution kernel ``[Cout, Cin/groups, kh, kw]`` packed for oneDNN for inputs of spatial size ``size``."""

    def __init__(self, weight: torch.Tensor, size: tuple[int, int], stride=(1, 1), padding=(1, 1), dilation=(1, 1),
                 groups: int = 1) -> None:
        if weight.dim() != 4 or not packing_available(weight):
            raise ValueError(f"a packed kernel needs a 4-D float32 CPU weight [Cout, Cin/groups, kh, kw] and PyTorch "
                             f"with oneDNN, got {tuple(weight.shape)} {weight.dtype} on {weight.device}")
        self.stride, self.padding, self.dilation = list(stride), list(padding), list(dilation)
        self.groups, self.size = int(groups), (int(size[0]), int(size[1]))
        self.channels_last = not weight.is_contiguous() and weight.is_contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            self.packed = torch.ops.mkldnn._reorder_convolution_weight(
                weight.detach(), self.padding, self.stride, self.dilation, self.groups,
                [1, weight.shape[1] * self.groups, *self.size])

    def dense(self) -> torch.Tensor:
        """The plain kernel again (a copy; channels-last when it was)."""
        w = self.packed.to_dense()
        return w.contiguous(memory_format=torch.channels_last) if self.channels_last else w

    def takes(self, x: torch.Tensor) -> bool:
        """Whether ``x`` runs on the packed kernel: float32 on the CPU at the size it was packed for, no gradients,
        no autocast, eager mode."""
        return (x.dim() == 4 and x.dtype == torch.float32 and x.device.type == "cpu"
                and (x.shape[2], x.shape[3]) == self.size and not (torch.is_grad_enabled() and x.requires_grad)
                and not torch.is_autocast_enabled("cpu") and not torch.jit.is_tracing()
                and not torch.compiler.is_compiling())

    def __call__(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        if self.takes(x):
            return torch.ops.mkldnn._convolution_pointwise(x, self.packed, bias, self.padding, self.stride,
                                                           self.dilation, self.groups, "none", [], "")
        weight = self.dense().to(device=x.device, dtype=x.dtype)  # a model moved or cast after packing
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def __deepcopy__(self, memo: dict) -> PackedKernel:
        """A copy packed again (oneDNN's packed tensors have no storage that ``copy.deepcopy`` could copy)."""
        return PackedKernel(self.dense(), self.size, self.stride, self.padding, self.dilation, self.groups)
