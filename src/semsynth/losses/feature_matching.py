"""Discriminator feature matching (pix2pixHD): L1 between D's features of fake and (detached) real images."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def feature_matching_loss(fake_features: list[list[torch.Tensor]],
                          real_features: list[list[torch.Tensor]]) -> torch.Tensor:
    """Mean over feature groups of the sum over a group's features of ``L1(fake, real.detach())``.

    With FPSE's four groups of one feature this is the official ``(1/4) sum_l``; with a multi-scale
    PatchGAN's one group per scale it is ``(1/num_D) sum_D sum_j``.
    """
    if len(fake_features) != len(real_features) or not fake_features:
        raise ValueError("feature matching needs the same, non-empty, feature groups for fake and real")
    total = []
    for fg, rg in zip(fake_features, real_features):
        total.append(sum(F.l1_loss(f.float(), r.detach().float()) for f, r in zip(fg, rg)))
    return torch.stack(total).mean()
