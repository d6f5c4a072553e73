"""``drn-d-105``: DRN-D-105 (Yu, Koltun, Funkhouser, "Dilated Residual Networks", CVPR 2017) as a Cityscapes
segmenter, the evaluator SPADE and its successors use for Cityscapes mIoU.

Architecture (written here from the paper and the public facts of fyu/drn): a DRN-D trunk with bottleneck
blocks ``[1, 1, 3, 4, 23, 3, 1, 1]`` and channels ``(16, 32, 64, 128, 256, 512, 512, 512)``:

* level 0: 7x7 conv 3->16, BN, ReLU (stride 1); level 1: 3x3 conv 16->16; level 2: 3x3 conv 16->32, stride 2;
* levels 3-4: 3 and 4 bottlenecks (64 and 128 planes, x4 expansion), stride 2 each (output stride 8);
* levels 5-6: 23 and 3 bottlenecks (256 and 512 planes) with dilation 2 and 4, no further striding;
* levels 7-8: 3x3 conv 2048->512 with dilation 2, then 3x3 conv 512->512 (no residuals: the "D" degridding);
* head: 1x1 conv 512->19 (``seg``), then ``up``: a depthwise 16x16 transposed conv, stride 8, padding 4, whose
  weights are a fixed bilinear kernel (the x8 upsampling back to the input size).

State-dict keys follow fyu/drn's ``DRNSeg``: ``base.<level>.*`` (``base`` = the trunk's levels 0..8 as a
``Sequential``; conv levels as ``base.N.0`` conv / ``base.N.1`` BN, bottlenecks as
``base.N.<block>.{conv1,bn1,conv2,bn2,conv3,bn3,downsample.0,downsample.1}``), ``seg.{weight,bias}`` and
``up.weight``. Checkpoints saved from ``nn.DataParallel`` (``module.`` prefix) load too.

Inputs are normalised as fyu/drn's Cityscapes loader does (``info.json``): RGB in [0, 1], mean
``(0.290101, 0.328081, 0.286964)``, std ``(0.182954, 0.186566, 0.184475)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import SEGMENTERS
from .base import (
    Segmenter,
    check_images,
    check_label_space,
    find_weights,
    load_state_file,
    load_state_strict,
    normalize,
    resize,
    working_size,
)

CITYSCAPES_WEIGHTS = "drn_d_105_cityscapes.pth"
CITYSCAPES_SOURCE = ("the DRN authors' Cityscapes models (fyu/drn README: http://go.yf.io/drn-cityscapes-models; "
                     "the DRN-D-105 file SPADE/OASIS users evaluate with)")
IMAGENET_WEIGHTS = "drn_d_105-12b40979.pth"
IMAGENET_URL = "http://dl.yf.io/drn/drn_d_105-12b40979.pth"
# fyu/drn datasets/cityscapes/info.json (the statistics its segmentation loader normalises with)
CITYSCAPES_MEAN = (0.290101, 0.328081, 0.286964)
CITYSCAPES_STD = (0.182954, 0.186566, 0.184475)

LAYERS = (1, 1, 3, 4, 23, 3, 1, 1)
CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)


def _conv_level(cin: int, cout: int, n: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(n):
        mods += [nn.Conv2d(cin if i == 0 else cout, cout, 3, stride=stride if i == 0 else 1, padding=dilation,
                           dilation=dilation, bias=False),
                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*mods)


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1, project: bool = False) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
                           if project else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        short = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + short)


def _bottleneck_level(cin: int, planes: int, n: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    cout = planes * _Bottleneck.expansion
    blocks = [_Bottleneck(cin, planes, stride, dilation, project=stride != 1 or cin != cout)]
    blocks += [_Bottleneck(cout, planes, 1, dilation) for _ in range(n - 1)]
    return nn.Sequential(*blocks)


def drn_d_105_trunk() -> nn.Sequential:
    """DRN-D-105's levels 0..8 (output stride 8, 512 channels), indexed as fyu/drn's ``DRNSeg.base``."""
    c, n = CHANNELS, LAYERS
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, c[0], 7, padding=3, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU(inplace=True)),
        _conv_level(c[0], c[0], n[0]),
        _conv_level(c[0], c[1], n[1], stride=2),
        _bottleneck_level(c[1], c[2], n[2], stride=2),
        _bottleneck_level(c[2] * 4, c[3], n[3], stride=2),
        _bottleneck_level(c[3] * 4, c[4], n[4], dilation=2),
        _bottleneck_level(c[4] * 4, c[5], n[5], dilation=4),
        _conv_level(c[5] * 4, c[6], n[6], dilation=2),
        _conv_level(c[6], c[7], n[7]),
    )


def bilinear_kernel(size: int) -> torch.Tensor:
    """The ``size x size`` bilinear interpolation kernel of a transposed convolution (FCN's upsampling)."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    t = 1 - (torch.arange(size, dtype=torch.float64) - center).abs() / factor
    return (t[:, None] * t[None, :]).float()


@SEGMENTERS.register("drn-d-105", "DRN-D-105, the Cityscapes evaluator (19 trainIds); weights "
                                  f"{CITYSCAPES_WEIGHTS} from a path or the torch hub cache")
class DRND105(Segmenter):
    """DRN-D-105 segmentation network (fyu/drn ``DRNSeg('drn_d_105', 19)``) returning logits at input size.

    ``weights``: the segmentation checkpoint (default ``<hub>/checkpoints/drn_d_105_cityscapes.pth``), loaded
    when ``pretrained``. ``backbone_weights``: an ImageNet classification file (``drn_d_105-12b40979.pth``) to
    initialise the trunk only (for training one). ``input_size``: run the network at this size ([H, W] or the
    shorter side), e.g. ``[1024, 2048]`` for full-resolution Cityscapes; logits come back at the input size.
    """

    def __init__(self, num_classes: int = 19, weights: str | None = None, pretrained: bool = True,
                 backbone_weights: str | None = None, input_size: int | list[int] | None = None,
                 mean: list[float] | tuple[float, ...] = CITYSCAPES_MEAN,
                 std: list[float] | tuple[float, ...] = CITYSCAPES_STD,
                 label_space: str = "cityscapes-trainid") -> None:
        super().__init__()
        self.num_classes = num_classes
        self.label_space = check_label_space(label_space)
        self.input_size, self.mean, self.std = input_size, tuple(mean), tuple(std)
        self.base = drn_d_105_trunk()
        self.seg = nn.Conv2d(CHANNELS[-1], num_classes, 1, bias=True)
        nn.init.normal_(self.seg.weight, 0, math.sqrt(2.0 / num_classes))
        nn.init.zeros_(self.seg.bias)
        self.up = nn.ConvTranspose2d(num_classes, num_classes, 16, stride=8, padding=4, groups=num_classes,
                                     bias=False)
        with torch.no_grad():
            self.up.weight.copy_(bilinear_kernel(16).expand(num_classes, 1, 16, 16))
        self.up.weight.requires_grad_(False)  # fixed bilinear upsampling, as in DRNSeg
        if backbone_weights:
            path = find_weights(backbone_weights, IMAGENET_WEIGHTS, what="DRN-D-105 ImageNet",
                                source=IMAGENET_URL, spec_name="drn-d-105")
            load_state_strict(self.base, imagenet_to_trunk(load_state_file(path)), path)
        if pretrained:
            path = find_weights(weights, CITYSCAPES_WEIGHTS, what="DRN-D-105 Cityscapes segmentation",
                                source=CITYSCAPES_SOURCE, spec_name="drn-d-105")
            load_state_strict(self, load_state_file(path), path)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        hw = tuple(images.shape[-2:])
        x = resize(normalize(images, self.mean, self.std), working_size(hw, self.input_size, 8))
        logits = self.up(self.seg(self.base(x)))
        return resize(logits, hw)


def imagenet_to_trunk(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fyu/drn's ImageNet DRN-D-105 keys (``layer0.*`` .. ``layer8.*``, ``fc.*``) -> trunk keys (``0.*`` ..)."""
    out = {}
    for k, v in state.items():
        if k.startswith("layer"):
            level, rest = k[len("layer"):].split(".", 1)
            out[f"{int(level)}.{rest}"] = v
        elif not k.startswith("fc."):
            out[k] = v
    return out
