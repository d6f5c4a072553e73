"""``upernet-101``: UPerNet with a ResNet-101 encoder (Xiao et al., ECCV 2018), the ADE20K evaluator SPADE and its
successors use, through the ``mit-semseg`` package (CSAILVision/semantic-segmentation-pytorch).

``mit-semseg`` is optional: it is imported only when this segmenter is built (``pip install mit-semseg``; install
it with ``--no-deps`` if pip would otherwise change your torch). The networks are built from its classes with no
pretrained download (``resnet101(pretrained=False)``, ``UPerNet(fpn_dim=512)``), then the checkpoint files
``encoder_epoch_50.pth`` and ``decoder_epoch_50.pth`` are loaded strictly (``torch.load(weights_only=True)``;
mit-semseg's own loader would silently skip mismatched keys).

Inputs are normalised as mit-semseg's loader does (ImageNet mean and std on RGB in [0, 1]) and run at a size
rounded to a multiple of 32 (its ``padding_constant``); the 1/4-resolution output is upsampled bilinearly to the
input size. Outputs are the 150 ADE20K classes (id k = ADE class k + 1, label space ``ade20k-150``).
"""

from __future__ import annotations

import types

import torch
from torch import nn

from ..errors import SemsynthError
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
    resize,
    working_size,
)

MODEL_DIR = "ade20k-resnet101-upernet"
ENCODER_FILE = "encoder_epoch_50.pth"
DECODER_FILE = "decoder_epoch_50.pth"
SOURCE = ("the CSAILVision model zoo, http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-resnet101-upernet/ "
          "(encoder_epoch_50.pth and decoder_epoch_50.pth, in one directory)")


def _import_mit_semseg() -> types.SimpleNamespace:
    """The three pieces of mit-semseg this adapter uses; a clear error when the package is absent or broken."""
    try:
        from mit_semseg.models import models as mm
        from mit_semseg.models import resnet as mr
    except ImportError as e:
        raise SemsynthError(f"segmenter 'upernet-101' needs the mit-semseg package, which is not installed "
                            f"({e}): pip install mit-semseg (add --no-deps to keep your torch)") from e
    except Exception as e:  # the package exists but does not import with this torch / Python
        raise SemsynthError(f"segmenter 'upernet-101': the mit-semseg package failed to import with torch "
                            f"{torch.__version__}: {type(e).__name__}: {e}") from e
    return types.SimpleNamespace(resnet101=mr.resnet101, Resnet=mm.Resnet, UPerNet=mm.UPerNet)


@SEGMENTERS.register("upernet-101", "UPerNet ResNet-101 (mit-semseg), the ADE20K evaluator (150 classes); weights "
                                    f"{MODEL_DIR}/ from a path or the torch hub cache")
class UperNet101(Segmenter):
    """mit-semseg ``resnet101`` encoder + ``upernet`` decoder (fc_dim 2048, fpn_dim 512, 150 classes).

    ``weights``: the directory holding ``encoder_epoch_50.pth`` and ``decoder_epoch_50.pth`` (default
    ``<hub>/checkpoints/ade20k-resnet101-upernet/``), loaded when ``pretrained``. ``input_size``: run at this size
    ([H, W] or the shorter side, e.g. 512); logits come back at the input size.
    """

    def __init__(self, num_classes: int = 150, weights: str | None = None, pretrained: bool = True,
                 input_size: int | list[int] | None = None, label_space: str = "ade20k-150") -> None:
        super().__init__()
        self.num_classes, self.input_size = num_classes, input_size
        self.label_space = check_label_space(label_space)
        mit = _import_mit_semseg()
        self.encoder: nn.Module = mit.Resnet(mit.resnet101(pretrained=False))
        self.decoder: nn.Module = mit.UPerNet(num_class=num_classes, fc_dim=2048, use_softmax=False, fpn_dim=512)
        if pretrained:
            folder = find_weights(weights, MODEL_DIR, what="UPerNet-101 ADE20K", source=SOURCE,
                                  spec_name="upernet-101", is_dir=True)
            for part, filename in ((self.encoder, ENCODER_FILE), (self.decoder, DECODER_FILE)):
                path = folder / filename
                if not path.is_file():
                    find_weights(path, f"{MODEL_DIR}/{filename}", what="UPerNet-101 ADE20K", source=SOURCE,
                                 spec_name="upernet-101")
                load_state_strict(part, load_state_file(path), path)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        hw = tuple(images.shape[-2:])
        x = resize(normalize(images, IMAGENET_MEAN, IMAGENET_STD), working_size(hw, self.input_size, 32))
        out = self.decoder(self.encoder(x, return_feature_maps=True))  # log-softmax at 1/4 resolution
        if isinstance(out, (tuple, list)):  # deep-supervision decoders return (pred, aux)
            out = out[0]
        # Interpolating log-probabilities equals interpolating logits up to a per-pixel constant: same argmax.
        return resize(out, hw)
