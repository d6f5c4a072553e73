"""``deeplabv2``: DeepLab-v2 (Chen et al., TPAMI 2017) with a ResNet-101 trunk and ASPP, the COCO-Stuff
evaluator SPADE and its successors use (kazuto1011/deeplab-pytorch's
``deeplabv2_resnet101_msc-cocostuff164k-100000.pth``, 182 classes).

Architecture (written here from the paper and the public facts of that repository, v1.0 layout):

* ``layer1``: 7x7 conv 3->64 stride 2 + BN + ReLU (``conv1``), 3x3 max-pool stride 2 with ``ceil_mode`` (``pool``);
* ``layer2..layer5``: 3, 4, 23, 3 bottlenecks of MSRA/Caffe ResNet-101 (stride on the first 1x1 conv), output
  256, 512, 1024, 2048 channels; ``layer3`` strides 2, ``layer4`` and ``layer5`` use dilation 2 and 4 instead
  (output stride 8). Each unit is ``reduce`` (1x1), ``conv3x3``, ``increase`` (1x1), each a ``conv`` + ``bn``;
  the first block of each layer has a projection ``shortcut``;
* ``aspp``: four 3x3 convs 2048->classes with dilation 6, 12, 18, 24 (``c0..c3``, with bias), summed.

State-dict keys: ``base.layer1.conv1.conv.weight``, ``base.layer2.block1.reduce.bn.running_mean``,
``base.layer2.block1.shortcut.conv.weight``, ``base.aspp.c0.weight`` ... (the ``MSC(base=DeepLabV2(...))`` wrapper
of that repo). Older layouts of the same repository (``scale.`` instead of ``base.``, ``proj`` instead of
``shortcut``, ``aspp.stages.cN``) are renamed on load.

Input as the repo's loader: RGB [-1, 1] -> 0..255, BGR channel order, minus the mean (104.008, 116.669, 122.675);
no division by a std. Inference as its ``MSC`` wrapper in eval mode (``msc=True``): the pixel-wise max of the
logits at scales 1, 0.5 and 0.75, then bilinear upsampling to the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import SEGMENTERS
from .base import (
    Segmenter,
    check_images,
    check_label_space,
    find_weights,
    load_state_file,
    load_state_strict,
    resize,
    to_unit,
    working_size,
)

COCOSTUFF_WEIGHTS = "deeplabv2_resnet101_msc-cocostuff164k-100000.pth"
COCOSTUFF_URL = ("https://github.com/kazuto1011/deeplab-pytorch/releases/download/v1.0/"
                 "deeplabv2_resnet101_msc-cocostuff164k-100000.pth")
BGR_MEAN = (104.008, 116.669, 122.675)
N_BLOCKS = (3, 4, 23, 3)
ATROUS_RATES = (6, 12, 18, 24)


class _ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int, padding: int, dilation: int, relu: bool) -> None:
        super().__init__()
        self.add_module("conv", nn.Conv2d(cin, cout, k, stride, padding, dilation, bias=False))
        self.add_module("bn", nn.BatchNorm2d(cout, eps=1e-5))
        if relu:
            self.add_module("relu", nn.ReLU())


class _Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dilation: int, project: bool) -> None:
        super().__init__()
        mid = cout // 4
        self.reduce = _ConvBN(cin, mid, 1, stride, 0, 1, True)
        self.conv3x3 = _ConvBN(mid, mid, 3, 1, dilation, dilation, True)
        self.increase = _ConvBN(mid, cout, 1, 1, 0, 1, False)
        self.shortcut = _ConvBN(cin, cout, 1, stride, 0, 1, False) if project else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.increase(self.conv3x3(self.reduce(x))) + self.shortcut(x))


class _ResLayer(nn.Sequential):
    def __init__(self, n: int, cin: int, cout: int, stride: int, dilation: int) -> None:
        super().__init__()
        for i in range(n):
            self.add_module(f"block{i + 1}", _Bottleneck(cin if i == 0 else cout, cout, stride if i == 0 else 1,
                                                         dilation, project=i == 0))


class _ASPP(nn.Module):
    def __init__(self, cin: int, cout: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        for i, r in enumerate(rates):
            conv = nn.Conv2d(cin, cout, 3, 1, padding=r, dilation=r, bias=True)
            nn.init.normal_(conv.weight, 0, 0.01)
            nn.init.zeros_(conv.bias)
            self.add_module(f"c{i}", conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = None
        for conv in self.children():
            y = conv(x)
            out = y if out is None else out + y
        return out


class DeepLabV2Net(nn.Sequential):
    """DeepLab-v2 ResNet-101 + ASPP; logits at 1/8 of the input size."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        stem = nn.Sequential()
        stem.add_module("conv1", _ConvBN(3, 64, 7, 2, 3, 1, True))
        stem.add_module("pool", nn.MaxPool2d(3, 2, 1, ceil_mode=True))
        self.add_module("layer1", stem)
        self.add_module("layer2", _ResLayer(N_BLOCKS[0], 64, 256, 1, 1))
        self.add_module("layer3", _ResLayer(N_BLOCKS[1], 256, 512, 2, 1))
        self.add_module("layer4", _ResLayer(N_BLOCKS[2], 512, 1024, 1, 2))
        self.add_module("layer5", _ResLayer(N_BLOCKS[3], 1024, 2048, 1, 4))
        self.add_module("aspp", _ASPP(2048, num_classes, ATROUS_RATES))


def rename_legacy_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Older deeplab-pytorch layouts -> the v1.0 one; a bare ``DeepLabV2`` state gets the ``base.`` prefix."""
    out = {}
    for k, v in state.items():
        if k.startswith("scale."):
            k = "base." + k[len("scale."):]
        elif not k.startswith("base."):
            k = "base." + k
        k = k.replace(".proj.", ".shortcut.").replace(".aspp.stages.", ".aspp.")
        out[k] = v
    return out


@SEGMENTERS.register("deeplabv2", "DeepLab-v2 ResNet-101 + ASPP, the COCO-Stuff evaluator (182 classes); weights "
                                  f"{COCOSTUFF_WEIGHTS} from a path or the torch hub cache")
class DeepLabV2(Segmenter):
    """DeepLab-v2 (``MSC(DeepLabV2(n_classes=182, n_blocks=[3, 4, 23, 3], atrous_rates=[6, 12, 18, 24]))``).

    ``weights``: the checkpoint (default ``<hub>/checkpoints/deeplabv2_resnet101_msc-cocostuff164k-100000.pth``),
    loaded when ``pretrained``. ``msc``: multi-scale max fusion (1, 0.5, 0.75) as the repo's inference.
    ``input_size``: run at this size ([H, W] or the shorter side), logits come back at the input size.
    """

    def __init__(self, num_classes: int = 182, weights: str | None = None, pretrained: bool = True,
                 msc: bool = True, input_size: int | list[int] | None = None,
                 label_space: str = "coco-stuff-182") -> None:
        super().__init__()
        self.num_classes, self.msc, self.input_size = num_classes, msc, input_size
        self.label_space = check_label_space(label_space)
        self.base = DeepLabV2Net(num_classes)
        if pretrained:
            path = find_weights(weights, COCOSTUFF_WEIGHTS, what="DeepLab-v2 COCO-Stuff", source=COCOSTUFF_URL,
                                spec_name="deeplabv2")
            load_state_strict(self, rename_legacy_keys(load_state_file(path)), path)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        hw = tuple(images.shape[-2:])
        x = to_unit(images) * 255.0
        mean = torch.tensor(BGR_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = resize(x.flip(1) - mean, working_size(hw, self.input_size, 1))  # RGB -> BGR, minus the mean
        logits = self.base(x)
        if self.msc:
            size = logits.shape[-2:]
            pyramid = [logits]
            for s in (0.5, 0.75):
                small = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
                pyramid.append(F.interpolate(self.base(small), size=size, mode="bilinear", align_corners=False))
            logits = torch.stack(pyramid).amax(0)
        return resize(logits, hw)
