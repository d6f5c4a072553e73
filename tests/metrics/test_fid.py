"""FID: Fréchet distance against closed forms, FeatureAccumulator batching, missing weights, and parity with
pytorch-fid's own code on the same PNG files with the same random Inception weights."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg

from semsynth.errors import MissingWeightsError
from semsynth.metrics import (
    FeatureAccumulator,
    InceptionFeatures,
    build_fid_inception,
    feature_statistics,
    fid_from_features,
    frechet_distance,
    images_to_uint8,
    load_statistics,
    save_statistics,
)
from semsynth.metrics import fid as fid_module

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"


# ---- Fréchet distance
# --------------------------------------------------------------------------------------------
def test_frechet_distance_of_diagonal_gaussians_matches_closed_form():
    rng = np.random.default_rng(0)
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.1, 3.0, size=d), rng.uniform(0.1, 3.0, size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_frechet_distance_of_full_covariances_matches_direct_computation():
    rng = np.random.default_rng(1)
    d = 6
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = a @ a.T + 0.1 * np.eye(d), b @ b.T + 0.1 * np.eye(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    # By hand with scipy's sqrtm ...
    by_sqrtm = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(linalg.sqrtm(s1 @ s2)))
    # ... and independently: tr sqrt(S1 S2) = tr sqrt(S1^1/2 S2 S1^1/2), a symmetric PSD matrix (eigh only).
    w, v = np.linalg.eigh(s1)
    r1 = v @ np.diag(np.sqrt(w)) @ v.T
    by_eigh = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(
        np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)))
    got = frechet_distance(mu1, s1, mu2, s2)
    assert got == pytest.approx(by_sqrtm, rel=1e-8)
    assert got == pytest.approx(by_eigh, rel=1e-8)


def test_fid_of_a_set_with_itself_is_zero_and_fid_is_symmetric():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(200, 32))
    b = rng.normal(loc=0.3, scale=1.5, size=(150, 32))
    scale = fid_from_features(a, b)
    assert scale > 1.0
    assert abs(fid_from_features(a, a)) < 1e-6 * scale
    assert fid_from_features(b, a) == pytest.approx(scale, rel=1e-9)
    # feature_statistics is pytorch-fid's: np.mean and np.cov(rowvar=False), float64
    mu, sigma = feature_statistics(torch.from_numpy(a).float())
    assert mu.dtype == np.float64 and sigma.shape == (32, 32)
    np.testing.assert_allclose(sigma, np.cov(a.astype(np.float32).astype(np.float64), rowvar=False))


def test_frechet_distance_runs_without_scipy_disp(monkeypatch):
    """SciPy 1.18 drops sqrtm(disp=...), which pytorch-fid 0.3.0 passes: the same maths runs without it."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(60, 5)), rng.normal(size=(60, 5)) + 0.5
    expected = fid_from_features(a, b)

    def no_disp(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise TypeError("sqrtm() got an unexpected keyword argument 'disp'")

    monkeypatch.setattr(fid_module, "_pytorch_fid_frechet_distance", no_disp)
    assert fid_from_features(a, b) == pytest.approx(expected, rel=1e-10)


def test_statistics_file_round_trip(tmp_path):
    mu, sigma = np.arange(3.0), np.eye(3)
    path = save_statistics(tmp_path / "stats.npz", mu, sigma)
    m2, s2 = load_statistics(path)
    np.testing.assert_array_equal(m2, mu)
    np.testing.assert_array_equal(s2, sigma)


# ---- quantisation and batching
# -------------------------------------------------------------------------------------
def test_images_to_uint8_round_trips_bytes_and_matches_png_saving():
    from semsynth.utils.images import to_uint8

    u = torch.arange(256, dtype=torch.uint8).repeat(3, 1).reshape(1, 3, 16, 16)
    x = u.float() / 127.5 - 1  # what loaders give for a uint8 image
    assert torch.equal(images_to_uint8(x), u)
    y = torch.rand(2, 3, 8, 8) * 2.4 - 1.2  # out of range too
    q = images_to_uint8(y)
    assert q.dtype == torch.uint8
    np.testing.assert_array_equal(q.permute(0, 2, 3, 1).numpy(), to_uint8(y))
    # the official tensor2im: ((x + 1) / 2 * 255) clipped, then truncated by astype(uint8)
    official = np.clip((y.numpy() + 1) / 2.0 * 255.0, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(images_to_uint8(y, rounding="truncate").numpy(), official)
    assert images_to_uint8(u) is u


class _RecordingExtractor(torch.nn.Module):
    """Per-image channel means of the uint8 input, recording the batch sizes it was called with."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(x.shape[0])
        return x.float().mean(dim=(2, 3))


def test_feature_accumulator_rebatches_like_a_dataloader_and_keeps_order():
    images = torch.rand(11, 3, 8, 8) * 2 - 1
    ext = _RecordingExtractor()
    acc = FeatureAccumulator(ext, batch_size=4)
    for chunk in (images[:3], images[3:8], images[8:9], images[9]):  # a single [3, H, W] image too
        acc.add(chunk)
    assert len(acc) == 10
    acc.add(images[10:])
    feats = acc.result()
    assert ext.batch_sizes == [4, 4, 3]  # consecutive full batches, then the partial one
    assert feats.dtype == np.float64 and feats.shape == (11, 3)
    np.testing.assert_allclose(feats, images_to_uint8(images).float().mean(dim=(2, 3)).numpy())
    mu, sigma = acc.statistics()
    assert mu.shape == (3,) and sigma.shape == (3, 3)


# ---- weights
# ------------------------------------------------------------------------------------------------------
def test_missing_inception_weights_message(empty_hub):
    with pytest.raises(MissingWeightsError) as e:
        InceptionFeatures()
    msg = str(e.value)
    assert INCEPTION_FILE in msg
    assert str(empty_hub) in msg  # where to put it
    assert "github.com/mseitzer/pytorch-fid/releases" in msg  # where it comes from
    assert "--metrics" in msg and "weights" in msg


def test_missing_inception_weights_at_a_given_path(tmp_path):
    with pytest.raises(MissingWeightsError, match=INCEPTION_FILE) as e:
        InceptionFeatures(weights=tmp_path / "nope.pth")
    assert str(tmp_path / "nope.pth") in str(e.value)
    with pytest.raises(MissingWeightsError, match=str(tmp_path / INCEPTION_FILE)):
        InceptionFeatures(weights=tmp_path)  # a folder without the file


def test_unreadable_inception_file_is_reported(tmp_path):
    bad = tmp_path / INCEPTION_FILE
    bad.write_bytes(b"<html>rate limited</html>")
    with pytest.raises(MissingWeightsError, match="partial download"):
        InceptionFeatures(weights=bad)


def test_random_inception_features_shape_range_and_grad_free():
    net = InceptionFeatures(pretrained=False, dims=64)
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    f = net(x)
    assert f.shape == (2, 64) and f.dtype == torch.float32 and not f.requires_grad
    assert all(not p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training
    # uint8 input = the same images through ToTensor's /255
    u = images_to_uint8(x)
    torch.testing.assert_close(net(u), net(u.float() / 127.5 - 1), rtol=1e-5, atol=1e-6)


# ---- parity with pytorch-fid
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def random_fid_weights(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A seeded random FID Inception state dict, saved under the standard name in a checkpoints folder."""
    torch.manual_seed(1234)
    net = build_fid_inception()
    for m in net.modules():  # He init keeps pool3 features O(1) (the default init shrinks them to ~1e-8)
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    state = net.state_dict()
    path = tmp_path_factory.mktemp("hub") / "checkpoints" / INCEPTION_FILE
    path.parent.mkdir()
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def image_folders(tmp_path_factory) -> tuple[Path, Path]:
    """Two folders of 20 PNGs (64x64): uniform noise, and smooth colour ramps plus weaker noise."""
    root = tmp_path_factory.mktemp("fid_images")
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, 64)
    for name in ("a", "b"):
        (root / name).mkdir()
        for i in range(20):
            if name == "a":
                img = rng.integers(0, 256, size=(64, 64, 3))
            else:
                base = np.stack([np.outer(ramp, np.ones(64)), np.outer(np.ones(64), ramp),
                                 np.full((64, 64), rng.uniform())], -1) * 255
                img = np.clip(base + rng.normal(0, 20, size=(64, 64, 3)), 0, 255)
            Image.fromarray(img.astype(np.uint8)).save(root / name / f"{i:03d}.png")
    return root / "a", root / "b"


@pytest.fixture
def pytorch_fid_uses(monkeypatch, random_fid_weights):
    """Make pytorch-fid's own InceptionV3 load the random state dict instead of downloading its weights."""
    import pytorch_fid.inception

    state = random_fid_weights[1]
    monkeypatch.setattr(pytorch_fid.inception, "load_state_dict_from_url", lambda *a, **k: dict(state))


def _read_uint8(files: list[Path]) -> torch.Tensor:
    arrays = [np.array(Image.open(f).convert("RGB")) for f in files]
    return torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in arrays])


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))  # pytorch-fid's order for a folder of PNGs


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")
def test_fid_equals_pytorch_fid_on_the_same_files(random_fid_weights, image_folders, pytorch_fid_uses):
    """End to end (files -> features -> statistics -> FID) against pytorch-fid's calculate_fid_given_paths.

    dims=64 (pytorch-fid's --dims 64) keeps this fast; the 2048-d features are compared in the next test."""
    from pytorch_fid.fid_score import calculate_fid_given_paths

    a, b = image_folders
    reference = calculate_fid_given_paths([str(a), str(b)], batch_size=8, device="cpu", dims=64,
                                          num_workers=0)

    net = InceptionFeatures(weights=random_fid_weights[0], dims=64)
    feats = []
    for folder in (a, b):
        acc = FeatureAccumulator(net, batch_size=8)
        images = _read_uint8(_files(folder))
        for i in range(0, len(images), 5):  # chunks that do not line up with the batches
            acc.add(images[i: i + 5])
        feats.append(acc.result())
    ours = fid_from_features(*feats)
    assert reference > 0.1  # a meaningful value, not a degenerate 0
    assert abs(ours - reference) < 1e-3
    assert ours == pytest.approx(reference, rel=1e-6)

    # Float images in [-1, 1] (as a loader or a generator gives them) are quantised back to the same bytes.
    acc = FeatureAccumulator(net, batch_size=8)
    acc.add(_read_uint8(_files(a)[:8]).float() / 127.5 - 1)
    np.testing.assert_array_equal(acc.result(), feats[0][:8])


def test_pool3_features_equal_pytorch_fid_activations(random_fid_weights, image_folders, pytorch_fid_uses):
    from pytorch_fid.fid_score import get_activations
    from pytorch_fid.inception import InceptionV3

    files = _files(image_folders[0])[:2] + _files(image_folders[1])[:2]
    ref_net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    reference = get_activations(files, ref_net, batch_size=4, dims=2048, device="cpu", num_workers=0)

    net = InceptionFeatures(weights=random_fid_weights[0])
    assert list(net.state_dict()) == list(ref_net.state_dict())  # pytorch-fid's module layout
    acc = FeatureAccumulator(net, batch_size=4)
    acc.add(_read_uint8(files))
    ours = acc.result()
    assert ours.shape == (4, 2048) and ours.dtype == np.float64
    assert np.abs(reference).mean() > 1e-3
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-7)


def test_inception_weights_are_found_in_the_hub_cache(monkeypatch, random_fid_weights):
    path = random_fid_weights[0]
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(path.parent.parent))
    net = InceptionFeatures(dims=64)
    expected = random_fid_weights[1]["Conv2d_1a_3x3.conv.weight"]
    torch.testing.assert_close(net.blocks[0][0].conv.weight, expected)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")
@pytest.mark.skipif(not os.environ.get("SEMSYNTH_FULL_FID_TEST"),
                    reason="2048-d end-to-end FID takes ~2 min on a 2-core CPU (two 2048x2048 sqrtm); "
                           "set SEMSYNTH_FULL_FID_TEST=1 to run it")
def test_fid_2048_equals_pytorch_fid_end_to_end(random_fid_weights, image_folders, pytorch_fid_uses):
    from pytorch_fid.fid_score import calculate_fid_given_paths

    a, b = image_folders
    reference = calculate_fid_given_paths([str(a), str(b)], batch_size=8, device="cpu", dims=2048,
                                          num_workers=0)
    net = InceptionFeatures(weights=random_fid_weights[0])
    feats = []
    for folder in (a, b):
        acc = FeatureAccumulator(net, batch_size=8)
        acc.add(_read_uint8(_files(folder)))
        feats.append(acc.result())
    assert abs(fid_from_features(*feats) - reference) < 1e-3
