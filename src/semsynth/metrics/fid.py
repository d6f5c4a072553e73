"""FID with pytorch-fid's network and maths, fed from tensors instead of folders.

What pytorch-fid does for a folder of PNG/JPEG files (and what the official SC-GAN code uses):
uint8 RGB -> ``ToTensor`` (``/255``, [0, 1]) -> bilinear resize to 299x299 (``align_corners=False``, no
antialias) -> ``2x - 1`` -> FID Inception (TF 2015-12-05 weights, FID-patched blocks) -> pool3, 2048-d ->
float64 numpy -> ``np.mean`` / ``np.cov(rowvar=False)`` -> ``calculate_frechet_distance`` (scipy ``sqrtm``,
eps 1e-6 fallback). :class:`InceptionFeatures` reproduces the per-image part bit for bit (same modules, same
ops, same order); :func:`frechet_distance` *is* pytorch-fid's function. Generated images are quantised to
uint8 first (:func:`images_to_uint8`), as the official pipeline reads them back from saved PNGs.
The protocol is in docs/evaluation.md.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from pytorch_fid import inception as _pfi
from pytorch_fid.fid_score import calculate_frechet_distance as _pytorch_fid_frechet_distance
from scipy import linalg
from torch import nn

from ..errors import ConfigError, MissingWeightsError, ShapeError
from .weights import FID_INCEPTION, find_weights, load_state_dict

log = logging.getLogger(__name__)

#: Feature sizes pytorch-fid offers (``--dims``) and the Inception block each one is read after.
BLOCK_INDEX_BY_DIM: dict[int, int] = dict(_pfi.InceptionV3.BLOCK_INDEX_BY_DIM)
FID_INPUT_SIZE = 299
ROUNDING_MODES = ("round", "truncate")


def build_fid_inception() -> nn.Module:
    """pytorch-fid's FID Inception in torchvision's layout (that of the weights file), with no weights loaded.

    The body of ``pytorch_fid.inception.fid_inception_v3`` minus its download: torchvision's InceptionV3 with
    1008 classes and pytorch-fid's FID-patched InceptionA/C/E blocks (TF-style average pooling and max
    pooling).
    """
    inception = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008,
                                                init_weights=False)
    inception.Mixed_5b = _pfi.FIDInceptionA(192, pool_features=32)
    inception.Mixed_5c = _pfi.FIDInceptionA(256, pool_features=64)
    inception.Mixed_5d = _pfi.FIDInceptionA(288, pool_features=64)
    inception.Mixed_6b = _pfi.FIDInceptionC(768, channels_7x7=128)
    inception.Mixed_6c = _pfi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6d = _pfi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6e = _pfi.FIDInceptionC(768, channels_7x7=192)
    inception.Mixed_7b = _pfi.FIDInceptionE_1(1280)
    inception.Mixed_7c = _pfi.FIDInceptionE_2(2048)
    return inception


def _random_init_(inception: nn.Module) -> None:
    """He-normal convolutions. PyTorch's default init shrinks the pool3 features to ~1e-8 over ~90 layers,
    which makes random-weight FIDs meaningless; with this they stay O(0.1-1)."""
    for m in inception.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")


class InceptionFeatures(nn.Module):
    """pytorch-fid's FID InceptionV3 features (pool3, 2048-d by default), frozen and in eval mode.

    Args:
        weights: the FID Inception weights file ``pt_inception-2015-12-05-6726825d.pth``, or a folder that
            holds it; ``None`` looks in ``<torch hub dir>/checkpoints``. Missing ->
            :class:`MissingWeightsError`.
        pretrained: ``False`` gives random weights (tests; no file is read).
        dims: 2048 (pool3, the FID standard), or pytorch-fid's other ``--dims`` 64 / 192 / 768 (block
            outputs, spatially averaged). Only 2048 gives numbers comparable with published FIDs; the small
            ones are cheap and meant for tests.

    ``forward(images)``: ``[B, 3, H, W]`` float in [-1, 1], or uint8 in [0, 255] -> float32 ``[B, dims]``.
    uint8 input takes exactly pytorch-fid's path for image files (``/255``). Float input is mapped to [0, 1]
    by ``(x + 1) / 2``, neither clamped nor quantised (quantise first with :func:`images_to_uint8` to get what
    a saved PNG would give). Then, as ``pytorch_fid.inception.InceptionV3(resize_input=True,
    normalize_input=True)``: bilinear resize to 299x299 (``align_corners=False``, no antialias), ``2x - 1``,
    the Inception blocks. State-dict keys are those of ``pytorch_fid.inception.InceptionV3`` (``blocks.*``).
    """

    def __init__(self, weights: str | os.PathLike | None = None, pretrained: bool = True,
                 dims: int = 2048) -> None:
        super().__init__()
        if dims not in BLOCK_INDEX_BY_DIM:
            valid = ", ".join(map(str, BLOCK_INDEX_BY_DIM))
            raise ConfigError(f"Inception feature dims={dims!r}; valid: {valid}")
        if pretrained:  # look for the file before building anything, so that a missing file fails fast
            path = find_weights(
                FID_INCEPTION, weights,
                how_to_pass="give its path (the `weights` argument of semsynth.metrics.InceptionFeatures; "
                            "`--inception PATH` on `semsynth evaluate`)",
                how_to_skip="leave fid and kid out of --metrics",
            )
            state = load_state_dict(path, FID_INCEPTION)
        inception = build_fid_inception()
        if pretrained:
            try:
                inception.load_state_dict(state)
            except RuntimeError as e:
                raise MissingWeightsError(
                    f"{path} is not the FID Inception state dict ({FID_INCEPTION.url}): {e}") from e
        else:
            _random_init_(inception)
        self.dims = dims
        self.block_index = BLOCK_INDEX_BY_DIM[dims]
        # The same four blocks as pytorch_fid.inception.InceptionV3, cut after the one that is needed.
        blocks = [
            [inception.Conv2d_1a_3x3, inception.Conv2d_2a_3x3, inception.Conv2d_2b_3x3,
             nn.MaxPool2d(kernel_size=3, stride=2)],
            [inception.Conv2d_3b_1x1, inception.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2)],
            [inception.Mixed_5b, inception.Mixed_5c, inception.Mixed_5d, inception.Mixed_6a,
             inception.Mixed_6b, inception.Mixed_6c, inception.Mixed_6d, inception.Mixed_6e],
            [inception.Mixed_7a, inception.Mixed_7b, inception.Mixed_7c,
             nn.AdaptiveAvgPool2d(output_size=(1, 1))],
        ]
        self.blocks = nn.ModuleList(nn.Sequential(*b) for b in blocks[: self.block_index + 1])
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> InceptionFeatures:  # always eval (BatchNorm running statistics)
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ShapeError(f"InceptionFeatures takes RGB images [B, 3, H, W]; got shape "
                             f"{tuple(images.shape)}")
        if images.dtype == torch.uint8:
            x = images.float().div(255)  # torchvision ToTensor, as pytorch-fid reads files
        elif images.is_floating_point():
            x = (images.float() + 1) / 2
        else:
            raise TypeError(f"InceptionFeatures takes uint8 or float images; got {images.dtype}")
        x = F.interpolate(x.contiguous(), size=(FID_INPUT_SIZE, FID_INPUT_SIZE), mode="bilinear",
                          align_corners=False)
        x = 2 * x - 1
        for block in self.blocks:
            x = block(x)
        if x.shape[2] != 1 or x.shape[3] != 1:  # dims < 2048, as pytorch-fid's get_activations
            x = F.adaptive_avg_pool2d(x, output_size=(1, 1))
        return x.flatten(1)


def images_to_uint8(images: torch.Tensor, rounding: str = "round") -> torch.Tensor:
    """``[..., 3, H, W]`` in [-1, 1] -> uint8 in [0, 255] (same shape and device): what a saved PNG holds.

    ``rounding="round"``: ``round((clamp(x, -1, 1) + 1) * 127.5)``, what semsynth writes
    (``semsynth.utils.images.to_uint8``); it maps a real image read from uint8 back to the same bytes.
    ``rounding="truncate"``: ``floor(clamp((x + 1) / 2 * 255, 0, 255))``, SPADE/SC-GAN's ``tensor2im`` (the
    official results folders); use it only for generated images (it can take a real image's byte down by one).
    uint8 input is returned unchanged.
    """
    if images.dtype == torch.uint8:
        return images
    x = images.detach().float()
    if rounding == "round":
        x = ((x.clamp(-1, 1) + 1) * 127.5).round()
    elif rounding == "truncate":
        x = ((x + 1) / 2.0 * 255.0).clamp(0, 255).floor()
    else:
        raise ConfigError(f"rounding={rounding!r}; valid: {', '.join(ROUNDING_MODES)}")
    return x.to(torch.uint8)


def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``[N, D]`` features -> (mean ``[D]``, covariance ``[D, D]``), float64, as pytorch-fid (``np.cov``)."""
    act = _as_float64(features)
    if act.shape[0] < 2:
        raise ValueError(f"FID statistics need at least 2 images; got {act.shape[0]}")
    return np.mean(act, axis=0), np.cov(act, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2))``, by pytorch-fid's ``calculate_frechet_distance``.

    pytorch-fid's ``print`` (when ``S1 S2`` is singular and ``eps`` is added) goes to this module's logger
    rather than stdout. If the installed SciPy no longer takes ``sqrtm(disp=...)`` (removed in SciPy 1.18),
    the same algorithm is run here without that argument.
    """
    out = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(out):
            warnings.filterwarnings("ignore", message=".*`disp` argument is deprecated.*")
            value = _pytorch_fid_frechet_distance(mu1, sigma1, mu2, sigma2, eps=eps)
    except TypeError as e:
        if "disp" not in str(e):
            raise
        value = _frechet_distance_without_disp(mu1, sigma1, mu2, sigma2, eps)
    if out.getvalue().strip():
        log.warning("pytorch-fid: %s", out.getvalue().strip())
    return float(value)


def _frechet_distance_without_disp(mu1, sigma1, mu2, sigma2, eps):  # noqa: ANN001, ANN202
    """pytorch-fid 0.3.0's ``calculate_frechet_distance`` line for line, for SciPy without ``disp``."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    assert mu1.shape == mu2.shape and sigma1.shape == sigma2.shape
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        log.warning("fid calculation produces singular product; adding %s to diagonal of cov estimates", eps)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def fid_from_features(feats_a: np.ndarray | torch.Tensor, feats_b: np.ndarray | torch.Tensor) -> float:
    """FID between two feature sets ``[N, D]`` and ``[M, D]`` (symmetric; 0 for a set with itself)."""
    return frechet_distance(*feature_statistics(feats_a), *feature_statistics(feats_b))


def save_statistics(path: str | os.PathLike, mu: np.ndarray, sigma: np.ndarray) -> Path:
    """Write (mu, sigma) as pytorch-fid's ``--save-stats`` ``.npz`` (keys ``mu``, ``sigma``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, mu=mu, sigma=sigma)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def load_statistics(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a pytorch-fid statistics ``.npz`` (``mu``, ``sigma``)."""
    with np.load(path) as f:
        return f["mu"][:], f["sigma"][:]


def _as_float64(features: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    act = np.asarray(features, dtype=np.float64)
    if act.ndim != 2:
        raise ShapeError(f"features must be [N, D]; got shape {act.shape}")
    return act


class FeatureAccumulator:
    """Streams images through a feature extractor in fixed batches and keeps only the features.

    Images given to :meth:`add` in any chunking are run in consecutive batches of ``batch_size`` (the last
    one partial), as pytorch-fid's DataLoader does for a folder, so the features equal pytorch-fid's on the
    same images with the same batch size. Between calls, fewer than ``batch_size`` images are kept (as uint8
    when quantised).

    Args:
        extractor: a module mapping ``[B, 3, H, W]`` images (uint8, or float in [-1, 1]) to ``[B, D]``;
            by default ``InceptionFeatures(weights)``.
        batch_size: images per extractor call (40 in the official SC-GAN FID code; pytorch-fid's CLI uses 50).
        device: where the extractor runs (it is moved there); ``None`` keeps the extractor's device.
        quantize: ``"round"`` (default) or ``"truncate"``: float images are first turned into the uint8 a
            saved PNG would hold (:func:`images_to_uint8`); ``None`` feeds float images as they are.
        weights: Inception weights path, used only when ``extractor`` is None.
    """

    def __init__(self, extractor: nn.Module | None = None, *, batch_size: int = 40,
                 device: str | torch.device | None = None, quantize: str | None = "round",
                 weights: str | os.PathLike | None = None) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1; got {batch_size}")
        if quantize is not None and quantize not in ROUNDING_MODES:
            raise ConfigError(f"quantize={quantize!r}; valid: {', '.join(ROUNDING_MODES)} or None")
        self.extractor = extractor if extractor is not None else InceptionFeatures(weights)
        if device is not None:
            self.extractor.to(device)
        self.device = torch.device(device) if device is not None else _module_device(self.extractor)
        self.batch_size = batch_size
        self.quantize = quantize
        self.reset()

    def reset(self) -> None:
        self._features: list[np.ndarray] = []
        self._pending: list[torch.Tensor] = []
        self._num_pending = 0
        self._num_done = 0

    def __len__(self) -> int:
        """Images added so far (run or pending)."""
        return self._num_done + self._num_pending

    def add(self, images: torch.Tensor) -> None:
        """Add ``[B, 3, H, W]`` (or one ``[3, H, W]``) images: float in [-1, 1] or uint8."""
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if images.dim() != 4 or images.shape[1] != 3:
            raise ShapeError(f"FeatureAccumulator.add takes RGB images [B, 3, H, W]; got "
                             f"{tuple(images.shape)}")
        images = images.detach()
        if self.quantize is not None:
            images = images_to_uint8(images, self.quantize)
        if self._pending and self._pending[0].shape[1:] != images.shape[1:]:
            self._run_pending()  # a size change: the batch in progress cannot be stacked with these images
        self._pending.append(images)
        self._num_pending += images.shape[0]
        if self._num_pending < self.batch_size:
            return
        pending = torch.cat(self._pending) if len(self._pending) > 1 else self._pending[0]
        start = 0
        while pending.shape[0] - start >= self.batch_size:
            self._run(pending[start: start + self.batch_size])
            start += self.batch_size
        rest = pending[start:]
        self._pending = [rest] if rest.shape[0] else []
        self._num_pending = rest.shape[0]

    def _run_pending(self) -> None:
        if self._pending:
            self._run(torch.cat(self._pending))
        self._pending, self._num_pending = [], 0

    def _run(self, batch: torch.Tensor) -> None:
        with torch.no_grad():
            feats = self.extractor(batch.to(self.device))
        self._features.append(feats.detach().cpu().numpy().astype(np.float64))
        self._num_done += batch.shape[0]

    def result(self) -> np.ndarray:
        """All features so far, in the order added: float64 ``[N, D]`` (runs any partial batch)."""
        self._run_pending()
        if not self._features:
            raise ValueError("no images were added")
        if len(self._features) > 1:
            self._features = [np.concatenate(self._features)]
        return self._features[0]

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) of :meth:`result`, as pytorch-fid."""
        return feature_statistics(self.result())


def _module_device(module: nn.Module) -> torch.device:
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")
