"""``deeplabv3``: torchvision's DeepLabV3 (ResNet-50 or MobileNetV3-Large backbone), trained here.

Built with ``weights=None, weights_backbone=None`` (nothing is downloaded). ``backbone_weights`` initialises the
backbone from torchvision's ImageNet classification file: a path, or ``"imagenet"`` for the file in the torch hub
cache (``resnet50-0676ba61.pth`` / ``mobilenet_v3_large-8738ca79.pth``). Inputs are normalised with the ImageNet
mean and std, as torchvision's models were trained.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from . import SEGMENTERS
from .base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Segmenter,
    check_images,
    check_label_space,
    find_weights,
    load_state_file,
    load_state_strict,
    normalize,
)

_BACKBONES = {
    # name: (builder, ImageNet file, its URL, prefix of the backbone's keys in the classification file)
    "resnet50": ("deeplabv3_resnet50", "resnet50-0676ba61.pth",
                 "https://download.pytorch.org/models/resnet50-0676ba61.pth", ""),
    "mobilenet_v3_large": ("deeplabv3_mobilenet_v3_large", "mobilenet_v3_large-8738ca79.pth",
                           "https://download.pytorch.org/models/mobilenet_v3_large-8738ca79.pth", "features."),
}


@SEGMENTERS.register("deeplabv3", "torchvision DeepLabV3 (resnet50 | mobilenet_v3_large), trained here; optional "
                                  "ImageNet backbone from a file")
class TorchvisionDeepLabV3(Segmenter):
    """torchvision ``deeplabv3_<backbone>`` with a ``num_classes`` head, no auxiliary head."""

    def __init__(self, num_classes: int, backbone: str = "resnet50", backbone_weights: str | None = None,
                 label_space: str = "dataset") -> None:
        super().__init__()
        if backbone not in _BACKBONES:
            raise ConfigError(f"deeplabv3: backbone={backbone!r}; valid: {', '.join(_BACKBONES)}")
        from torchvision.models import segmentation

        builder, filename, url, prefix = _BACKBONES[backbone]
        self.num_classes = num_classes
        self.label_space = check_label_space(label_space)
        self.net = getattr(segmentation, builder)(weights=None, weights_backbone=None, num_classes=num_classes,
                                                  aux_loss=False)
        if backbone_weights:
            path = find_weights(None if backbone_weights == "imagenet" else backbone_weights, filename,
                                what=f"torchvision {backbone} ImageNet", source=url, spec_name="deeplabv3")
            state = load_state_file(path)
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            own = set(self.net.backbone.state_dict())
            load_state_strict(self.net.backbone, {k: v for k, v in state.items() if k in own or
                                                  not k.startswith(("fc.", "classifier."))}, path)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        return self.net(normalize(images, IMAGENET_MEAN, IMAGENET_STD))["out"]
