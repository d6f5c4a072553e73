"""LPIPS (Zhang et al. 2018) through the ``lpips`` package, without ever letting torchvision download.

The package ships its calibrated linear layers (``lpips/weights/v0.1/<net>.pth``); the backbone's ImageNet
weights are torchvision's (``alexnet-owt-7be5be79.pth``, ``vgg16-397923af.pth``,
``squeezenet1_1-b8a52dc0.pth``). :class:`LPIPSMetric` builds ``lpips.LPIPS(pnet_rand=True)`` (a randomly
initialised backbone, so torchvision is never asked for weights) and then loads the backbone from a file
found in ``weights_dir`` or the torch hub cache.
"""

from __future__ import annotations

import itertools
import os
import warnings

import torch
from torch import nn

from ..errors import ConfigError, MissingWeightsError, ShapeError
from .weights import LPIPS_BACKBONES, find_weights, load_state_dict

LPIPS_NETS = tuple(LPIPS_BACKBONES)


def _lpips_module():  # noqa: ANN202  (imported lazily: `import lpips` also pulls in its trainer)
    import lpips

    return lpips


class LPIPSMetric:
    """LPIPS distances between images in [-1, 1] (uint8 images are accepted too and mapped to [-1, 1]).

    Args:
        net: backbone, ``"alex"`` (default, the usual choice for evaluation), ``"vgg"`` or ``"squeeze"``.
        weights_dir: the torchvision backbone file, or a folder holding it under its standard name;
            ``None`` looks in ``<torch hub dir>/checkpoints``. Missing -> :class:`MissingWeightsError`.
        pretrained_backbone: ``False`` keeps a random backbone (tests; no file is read). The linear layers are
            always the package's calibrated ones (version 0.1).
        device: where the network runs; inputs are moved there.
        batch_size: pairs per forward pass in :meth:`paired` and :meth:`diversity`.
    """

    def __init__(self, net: str = "alex", weights_dir: str | os.PathLike | None = None,
                 pretrained_backbone: bool = True, device: str | torch.device = "cpu",
                 batch_size: int = 32) -> None:
        if net not in LPIPS_BACKBONES:
            raise ConfigError(f"LPIPS net={net!r}; valid: {', '.join(LPIPS_NETS)}")
        backbone_path = None
        if pretrained_backbone:  # look before building anything, so a missing file fails fast
            backbone_path = find_weights(
                LPIPS_BACKBONES[net], weights_dir,
                how_to_pass="give its path (`--lpips-weights PATH` on `semsynth evaluate`; the `weights_dir` "
                            "argument of semsynth.metrics.LPIPSMetric)",
                how_to_skip="leave lpips out of --metrics",
            )
        lpips = _lpips_module()
        with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=False`
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)
        if backbone_path is not None:
            model.net.load_state_dict(_backbone_state(model.net, load_state_dict(backbone_path,
                                                                                  LPIPS_BACKBONES[net])))
        model.requires_grad_(False)
        self.model: nn.Module = model.eval().to(device)
        self.net = net
        self.device = torch.device(device)
        self.batch_size = batch_size

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4 or x.shape[1] != 3:
            raise ShapeError(f"LPIPS takes RGB images [B, 3, H, W]; got shape {tuple(x.shape)}")
        x = x.float() / 127.5 - 1 if x.dtype == torch.uint8 else x.float()
        return x.to(self.device)

    @torch.no_grad()
    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-pair LPIPS ``[B]`` (on CPU) of ``a``, ``b`` ``[B, 3, H, W]`` in [-1, 1] (one forward pass)."""
        a, b = self._prep(a), self._prep(b)
        if a.shape != b.shape:
            raise ShapeError(f"LPIPS pairs must have the same shape; got {tuple(a.shape)} and "
                             f"{tuple(b.shape)}")
        return self.model(a, b).reshape(a.shape[0]).float().cpu()

    def distances(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """:meth:`distance` in chunks of ``batch_size`` pairs."""
        if a.shape[0] != b.shape[0]:
            raise ShapeError(f"LPIPS pairs: {a.shape[0]} images vs {b.shape[0]}")
        chunks = [self.distance(a[i: i + self.batch_size], b[i: i + self.batch_size])
                  for i in range(0, a.shape[0], self.batch_size)]
        return torch.cat(chunks) if chunks else torch.zeros(0)

    def paired(self, fakes: torch.Tensor, reals: torch.Tensor) -> float:
        """Mean LPIPS between each generated image and its ground truth (SC-GAN's CelebAMask-HQ column)."""
        if fakes.shape[0] == 0:
            raise ValueError("LPIPS of an empty batch")
        return float(self.distances(fakes, reals).mean())

    def diversity(self, samples: list[torch.Tensor]) -> float:
        """Mean LPIPS between different samples (seeds) of the same layouts.

        ``samples[s]`` is ``[B, 3, H, W]``: sample ``s`` for layouts ``0..B-1``. Every unordered pair of
        samples ``(s, t)``, ``s < t``, of each layout is scored; the result is the mean over layouts and
        pairs (0 when all samples are equal; higher = more diverse).
        """
        if len(samples) < 2:
            raise ValueError(f"diversity needs at least 2 samples per layout; got {len(samples)}")
        shapes = {tuple(s.shape) for s in samples}
        if len(shapes) != 1:
            raise ShapeError(f"diversity samples must all have one shape; got {sorted(shapes)}")
        pairs = itertools.combinations(range(len(samples)), 2)
        pair_means = [self.distances(samples[s], samples[t]) for s, t in pairs]
        return float(torch.stack(pair_means).mean())


def _backbone_state(net: nn.Module, tv_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision keys ``features.<i>.*`` -> the lpips backbone's ``slice<k>.<i>.*`` (lpips keeps
    torchvision's layer indices inside its slices); the classifier keys are not needed."""
    out = {}
    for key in net.state_dict():
        _slice, rest = key.split(".", 1)
        src = f"features.{rest}"
        if src not in tv_state:
            raise MissingWeightsError(f"the LPIPS backbone file has no {src!r}; is it torchvision's ImageNet "
                                      f"state dict?")
        out[key] = tv_state[src]
    return out
