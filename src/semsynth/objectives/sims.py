"""SIMS's objective: CRN's perceptual regression of the synthesis network, on canvases from the memory bank.

Generator:  L = CRN regression (``objectives/crn.py``; official SIMS weights 1/2.6, 1/4.8, 1/3.7, 1/5.6,
            10/1.5, i.e. the same balance) + segmentation * cross-entropy of the label head to the layout
            (official 10) [+ gan * adversarial, optional, not in the paper]

For every training sample a canvas is composed afresh (``semsynth/sims/canvas.py``): each of its segments gets
the best-fitting segment of its class from the bank, from *other* photos (its own photo is recognised by its
layout and skipped), chosen among about ``pool`` random photos, and

* ``canvas: official`` (default; the official ``train_generate_synthesis.m``): the retrieved *shapes* are
  filled with the training photo's own colours, recoloured towards the retrieved segment with probability
  ``colour_transfer`` and with ``elision`` of the pixels along the segment boundaries removed; the network
  learns to complete and repair a canvas whose pieces do not fit;
* ``canvas: retrieved``: the canvas test time composes (the retrieved segments' own colours), so that training
  and test inputs look alike, but the target photo differs from the canvas in colour.

The bank (``bank``: the file ``semsynth sims index`` wrote from the training data) is loaded in ``prepare`` and
attached to the generator (``attach``), which carries it into its exported model directory.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import check_range
from . import OBJECTIVES
from .crn import CRNObjective, cross_entropy_to_layout, plain_module

CANVASES = ("official", "retrieved")


@OBJECTIVES.register("sims", "SIMS (CVPR 2018): CRN regression on canvases from the memory bank (+ label head CE)")
class SIMSObjective(CRNObjective):
    """Args (besides CRN's ``features``, ``layer_weights``, ``normalize_terms``, ``vgg_weights``, ``vgg_pooling``,
    ``random_seed``, ``random_width``, ``gan``, ``adversarial``):

        bank: the memory bank file (``semsynth sims index --out``) of the training data.
        segmentation: weight of the label head's cross-entropy (official 10; 0 without the head).
        canvas: ``official`` (retrieved shapes, the photo's own colours) or ``retrieved`` (the test-time canvas).
        pool: photos each training query chooses among (official 100).
        colour_transfer: probability of recolouring a segment towards the retrieved one (official 0.2).
        elision: share of the pixels along segment boundaries removed from training canvases (official 0.5).
    """

    def __init__(self, bank: str | None = None, features: str = "vgg19", layer_weights: list[float] | None = None,
                 normalize_terms: bool = True, vgg_weights: str | None = None, vgg_pooling: str = "avg",
                 random_seed: int = 0, random_width: int = 64, segmentation: float = 10.0, canvas: str = "official", pool: int = 100,
                 colour_transfer: float = 0.2, elision: float = 0.5, gan: float = 0.0,
                 adversarial: str = "hinge") -> None:
        super().__init__(features=features, layer_weights=layer_weights, normalize_terms=normalize_terms,
                         vgg_weights=vgg_weights, vgg_pooling=vgg_pooling, random_seed=random_seed,
                         random_width=random_width, gan=gan,
                         adversarial=adversarial)
        if canvas not in CANVASES:
            raise ValueError(f"loss.canvas = {canvas!r}; valid: {', '.join(CANVASES)}")
        check_range("loss.segmentation", segmentation, ge=0)
        check_range("loss.pool", pool, ge=1, integer=True)
        check_range("loss.colour_transfer", colour_transfer, ge=0, le=1)
        check_range("loss.elision", elision, ge=0, le=1)
        self.bank_path, self.segmentation, self.canvas = bank, float(segmentation), canvas
        self.pool, self.colour_transfer, self.elision = pool, float(colour_transfer), float(elision)
        self.bank = None
        # without the cross-entropy the label head gets no gradient: DDP must not wait for it
        self.find_unused_parameters = self.segmentation == 0

    def prepare(self, device: torch.device | str = "cpu", pretrained: bool = True) -> SIMSObjective:
        """Load the bank (a missing or foreign file stops training before anything is written) and the
        feature network."""
        from ..sims import BankError, load_bank

        if self.bank is None:
            if self.bank_path is None:
                raise BankError("the SIMS objective needs a memory bank of the training data (loss.bank): build it "
                                "with 'semsynth sims index --dataset NAME [--set data.KEY=VALUE] --out BANK' (the "
                                "dataset and options of the config's data section) and train with "
                                "--set loss.bank=BANK")
            self.bank = load_bank(self.bank_path)
        return super().prepare(device, pretrained)

    def attach(self, G: nn.Module) -> None:
        plain = plain_module(G)
        if not hasattr(plain, "attach_bank"):
            raise ConfigError(f"loss: sims composes canvases for the SIMS generator; generator "
                              f"{getattr(plain, 'config', {}).get('name', type(plain).__name__)!r} takes none: use "
                              f"generator: {{name: sims}} (or loss: {{name: crn}})")
        plain.attach_bank(self.bank)

    def training_canvas(self, G: nn.Module, semantic: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """A fresh canvas for each training sample, from other photos of the bank."""
        from ..sims import compose_canvas

        plain = plain_module(G)
        labels = semantic[:, : plain.num_classes].argmax(1)
        official = self.canvas == "official"
        return compose_canvas(self.bank, labels, real=real if official else None,
                              context_weight=plain.context_weight, self_match=plain.self_match, pool=self.pool,
                              colour_transfer=self.colour_transfer if official else 0.0,
                              elision=self.elision if official else 0.0)

    def run_generator(self, G: nn.Module, semantic: torch.Tensor, real: torch.Tensor):
        return G(semantic, None, canvas=self.training_canvas(G, semantic, real), return_aux=True)

    def extra_terms(self, out, real, semantic, num_classes, total, stats):
        if self.segmentation > 0 and out.segmentation is not None:
            ce = cross_entropy_to_layout(out.segmentation, semantic, num_classes)
            stats["G/segmentation"] = ce.detach()
            total = total + self.segmentation * ce
        return total, stats
