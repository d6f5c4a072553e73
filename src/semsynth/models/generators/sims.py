"""SIMS generator: "Semi-parametric Image Synthesis" (Qi, Chen, Jia, Koltun, CVPR 2018).

Reading order follows the paper's Figure 2 and the official code (``xjqicuhk/SIMS``, ``synthesis_256_512.py``):

1. **Canvas** (the non-parametric half, ``semsynth/sims/``): the layout is cut into segments, each gets the
   best-fitting segment of its class from the memory bank (shape IoU + context), and the retrieved segments
   are composed by class depth into a canvas ``[B, 4, H, W]`` (RGB and a coverage mask). The bank is attached
   to the generator (``attach_bank``), not part of its weights: it travels as ``sims_bank.safetensors`` in the
   model directory, and training hands it over from ``loss: {name: sims, bank: FILE}``.
2. **Encoder** on ``x = [layout, canvas RGB, coverage]``: ``L`` levels, each a few 3x3 conv + layer norm +
   LReLU(0.2) layers (official widths 64, 128, 256, 512, 512, 512 with 2, 2, 3, 3, 3, 3 convolutions), then a
   3x3 average pooling of stride 2 (TF's 'SAME': padding excluded). ``L`` halvings reach ``start_size`` pixels
   on the short side (4: 256x512 has L = 6, as the official model).
3. **Decoder**, a cascaded refinement network (CRN's modules, ``crn.py``) from the coarsest level up: level i
   reads ``x`` resized to its size (bilinear, aligned corners), the encoder's pooled features of that size
   (skip connection) and the up-sampled output of the level below; two 3x3 conv + layer norm + LReLU each
   (official widths 512 x 5, then 256). A final module at full size reads ``x`` and the last level.
4. **Outputs**: a 1x1 conv to RGB (``tanh``: semsynth's [-1, 1]; official: linear) and, with ``semantic_head``
   (official), a 1x1 conv to label logits, trained by a cross-entropy to the layout (``objectives/sims.py``).

Not built: the official training's perturbation of the input layout along retrieved shapes, and the spatial
transformer and ordering networks (see ``semsynth/sims/`` for what replaces them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import SemsynthError, ShapeError
from ...layers import init_weights
from ...layers.init import INIT_SCHEMES
from ...registry import check_range
from .. import GENERATORS
from ..outputs import GeneratorOutput
from .crn import _height_width, layer_norm, num_modules, upsample_to

OFFICIAL_ENCODER = (64, 128, 256, 512, 512, 512)
OFFICIAL_CONVS = (2, 2, 3, 3, 3, 3)
CANVAS_CHANNELS = 4  # RGB + coverage


def conv_stack(cin: int, width: int, count: int) -> nn.Sequential:
    """``count`` x (3x3 conv without bias, layer norm, LReLU(0.2)): TF-slim's ``repeat(conv2d, layer_norm)``."""
    layers: list[nn.Module] = []
    for i in range(count):
        layers += [nn.Conv2d(cin if i == 0 else width, width, 3, padding=1, bias=False), layer_norm(width),
                   nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers)


def pool(x: torch.Tensor) -> torch.Tensor:
    """3x3 average pooling, stride 2, padding excluded from the averages (TF 'SAME')."""
    return F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)


def _defaults(given: Sequence[int] | None, official: Sequence[int], fill: int, n: int, name: str) -> list[int]:
    values = list(official[:n]) + [fill] * max(0, n - len(official)) if given is None else list(given)
    if len(values) != n:
        raise ValueError(f"{name} = {values} has {len(values)} entries; this resolution has {n} levels")
    for v in values:
        check_range(f"{name}[i]", v, ge=1, integer=True)
    return [int(v) for v in values]


@GENERATORS.register("sims", "SIMS (CVPR 2018): canvas of retrieved bank segments + layout -> encoder-CRN decoder")
class SIMSGenerator(nn.Module):
    """SIMS synthesis network. ``forward(semantic [B, C, H, W], canvas=None) -> image [B, 3, H, W]`` in
    ``[-1, 1]``; deterministic given the bank (``latent_dim = 0``). Without ``canvas`` the canvas is composed
    from the attached memory bank (an error when none is attached).

    Args:
        encoder_widths, encoder_convs: per encoder level, fine to coarse (``None``: the official 64, 128, 256,
            512, 512, 512 and 2, 2, 3, 3, 3, 3, cut or extended with 512 / 3 to this resolution's levels).
        decoder_widths: per decoder level, coarse to fine (``None``: official, 512 each but 256 for the finest).
        final_width: the full-resolution module (official 256).
        start_size: short side of the coarsest level (official: 4).
        semantic_head: also predict label logits (official; ``GeneratorOutput.segmentation``).
        context_weight: weight of the context agreement in retrieval (``sims/retrieval.py``).
        self_match: a bank photo whose layout agrees with the query layout in this share of cells (mirrored
            too) is not retrieved from (its own photo); 1.0 skips only identical layouts.
        init, init_gain: weight initialisation (official TF-slim: xavier, gain 1).
    """

    model_files = ("sims_bank.safetensors",)

    def __init__(self, num_classes: int, resolution: int | Sequence[int] = 256, use_instance: bool = False, *,
                 encoder_widths: list[int] | None = None, encoder_convs: list[int] | None = None,
                 decoder_widths: list[int] | None = None, final_width: int = 256, start_size: int = 4,
                 semantic_head: bool = True, context_weight: float = 1.0, self_match: float = 0.98,
                 init: str = "xavier", init_gain: float = 1.0) -> None:
        super().__init__()
        check_range("num_classes", num_classes, ge=1, integer=True)
        check_range("start_size", start_size, ge=1, integer=True)
        check_range("final_width", final_width, ge=1, integer=True)
        check_range("context_weight", context_weight, ge=0)
        check_range("self_match", self_match, gt=0, le=1)
        check_range("init_gain", init_gain, gt=0)
        if init not in INIT_SCHEMES:
            raise ValueError(f"init = {init!r} is not valid; choose one of: {', '.join(INIT_SCHEMES)}")
        self.num_classes, self.use_instance = num_classes, use_instance
        self.in_channels = num_classes + int(use_instance)
        self.resolution = _height_width(resolution)
        self.start_size = start_size
        self.levels = num_modules(self.resolution, start_size) - 1
        if self.levels < 1:
            raise ValueError(f"resolution {self.resolution[0]}x{self.resolution[1]} is too small for start_size "
                             f"{start_size}: SIMS needs at least one down-sampling")
        n = self.levels
        self.encoder_widths = _defaults(encoder_widths, OFFICIAL_ENCODER, 512, n, "encoder_widths")
        self.encoder_convs = _defaults(encoder_convs, OFFICIAL_CONVS, 3, n, "encoder_convs")
        self.decoder_widths = _defaults(decoder_widths, [512] * (n - 1) + [256], 512, n, "decoder_widths")
        self.context_weight, self.self_match = float(context_weight), float(self_match)
        self.latent_dim = 0  # deterministic given the bank (the generator contract)
        self.bank = None  # the memory bank (semsynth.sims.MemoryBank), attached, not a weight
        x_channels = self.in_channels + CANVAS_CHANNELS

        # 2. encoder, fine to coarse
        self.encoder = nn.ModuleList()
        cin = x_channels
        for width, count in zip(self.encoder_widths, self.encoder_convs):
            self.encoder.append(conv_stack(cin, width, count))
            cin = width
        # 3. decoder, coarse to fine: [x, pooled encoder features, up-sampled level below]
        self.decoder = nn.ModuleList()
        below = 0
        for i, width in enumerate(self.decoder_widths):
            skip = self.encoder_widths[n - 1 - i]
            self.decoder.append(conv_stack(x_channels + skip + below, width, 2))
            below = width
        self.final = conv_stack(x_channels + below, final_width, 2)
        # 4. outputs
        self.to_rgb = nn.Conv2d(final_width, 3, 1)
        self.to_labels = nn.Conv2d(final_width, num_classes, 1) if semantic_head else None
        init_weights(self, init, init_gain)

    @staticmethod
    def latent_dim_of(config) -> int:
        return 0

    # -- the memory bank -----------------------------------------------------------------------------------------

    def attach_bank(self, bank) -> None:
        """Use ``bank`` (a :class:`semsynth.sims.MemoryBank`) for canvases; it must have this model's classes."""
        from ...sims import BankError

        if bank.num_classes != self.num_classes:
            raise BankError(f"the memory bank has {bank.num_classes} classes ({bank.meta['dataset']['name']}), the "
                            f"SIMS generator {self.num_classes}; build the bank from the dataset the model is trained "
                            f"on (semsynth sims index --dataset ...)")
        bh, bw = bank.resolution
        h, w = self.resolution
        if bh * w != bw * h:
            raise BankError(f"the memory bank's photos are {bh}x{bw}, the model makes {h}x{w} images: the aspect "
                            f"ratios differ; build the bank at the model's resolution")
        self.bank = bank

    def save_model_files(self, out_dir: str | Path) -> list[str]:
        """Write the bank into an exported model directory (skipped when the same bank is there already)."""
        from ...sims import BANK_FILENAME
        from ...sims.bank import read_header

        if self.bank is None:
            raise SemsynthError("this SIMS generator has no memory bank attached, so its model directory would be "
                                "unusable; attach one (G.attach_bank(load_bank(FILE))) before exporting")
        path = Path(out_dir) / BANK_FILENAME
        try:
            same = path.is_file() and read_header(path).get("fingerprint") == self.bank.fingerprint
        except SemsynthError:
            same = False
        if not same:
            self.bank.save(path)
        return [BANK_FILENAME]

    def load_model_files(self, model_dir: str | Path) -> None:
        """Attach the bank of an exported model directory."""
        from ...sims import BANK_FILENAME, BankError, load_bank

        path = Path(model_dir) / BANK_FILENAME
        if not path.is_file():
            raise BankError(f"{model_dir} is a SIMS model without its memory bank: {BANK_FILENAME} is missing (copy "
                            f"it from the training run's model/ folder, or build one from the training data with "
                            f"'semsynth sims index ... --out {path}')")
        self.attach_bank(load_bank(path))

    def compose(self, semantic: torch.Tensor) -> torch.Tensor:
        """The test-time canvas ``[B, 4, H, W]`` of the layouts ``semantic`` from the attached bank."""
        from ...sims import compose_canvas

        if semantic.is_meta:  # a shape-only check of the config: no bank needed
            return torch.zeros(semantic.shape[0], CANVAS_CHANNELS, *semantic.shape[2:], device="meta")
        if self.bank is None:
            raise SemsynthError("the SIMS generator has no memory bank to compose its canvas from: train it with "
                                "loss: {name: sims, bank: FILE}, load it from a model directory that holds "
                                "sims_bank.safetensors, or attach one with G.attach_bank(load_bank(FILE)) (ONNX and "
                                "TorchScript exports of SIMS are not possible: the canvas is composed in Python)")
        labels = semantic[:, : self.num_classes].argmax(1)
        return compose_canvas(self.bank, labels, context_weight=self.context_weight,
                              self_match=self.self_match).to(semantic.dtype)

    # -- the network -----------------------------------------------------------------------------------------

    def check_input(self, semantic: torch.Tensor, canvas: torch.Tensor | None) -> None:
        if semantic.dim() != 4 or semantic.shape[1] != self.in_channels:
            extra = " + 1 instance-edge channel" if self.use_instance else ""
            raise ShapeError(f"SIMS generator expects a semantic map [B, {self.in_channels}, H, W] "
                             f"({self.num_classes} one-hot channels{extra}), got {tuple(semantic.shape)}")
        h, w = semantic.shape[2:]
        try:
            n = num_modules((h, w), self.start_size) - 1
        except ValueError as e:
            raise ShapeError(f"input size {h}x{w}: {e}; resize the label map") from None
        if n != self.levels:
            raise ShapeError(f"input size {h}x{w} needs {n} levels, this SIMS generator has {self.levels} (built for "
                             f"{self.resolution[0]}x{self.resolution[1]}); resize the label map")
        if canvas is not None and (canvas.dim() != 4 or tuple(canvas.shape) != (semantic.shape[0], CANVAS_CHANNELS,
                                                                                 h, w)):
            raise ShapeError(f"the canvas should be [{semantic.shape[0]}, {CANVAS_CHANNELS}, {h}, {w}] (RGB and "
                             f"coverage), got {tuple(canvas.shape)}")

    def forward(self, semantic: torch.Tensor, z: torch.Tensor | None = None, *, canvas: torch.Tensor | None = None,
                return_aux: bool = False) -> torch.Tensor | GeneratorOutput:
        self.check_input(semantic, canvas)
        if z is not None:
            raise ValueError("the SIMS generator takes no z (its variety comes from the memory bank)")
        if canvas is None:
            canvas = self.compose(semantic)
        x = torch.cat([semantic, canvas.to(semantic.dtype)], dim=1)
        skips = []
        h = x
        for stage in self.encoder:  # 2. encoder: features, then pooling, at each level
            h = pool(stage(h))
            skips.append(h)
        y = None
        for i, stage in enumerate(self.decoder):  # 3. decoder from the coarsest level
            skip = skips[self.levels - 1 - i]
            parts = [upsample_to(x, skip.shape[2:]), skip] + ([upsample_to(y, skip.shape[2:])] if y is not None else [])
            y = stage(torch.cat(parts, dim=1))
        y = self.final(torch.cat([x, upsample_to(y, x.shape[2:])], dim=1))
        image = torch.tanh(self.to_rgb(y))  # 4. outputs
        if not return_aux:
            return image
        labels = self.to_labels(y) if self.to_labels is not None else None
        return GeneratorOutput(image, segmentation=labels, canvas=canvas)
