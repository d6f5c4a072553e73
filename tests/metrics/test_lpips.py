"""LPIPS through the lpips package with a random or file-loaded backbone; never a download."""

from __future__ import annotations

import pytest
import torch
import torchvision

from semsynth.errors import MissingWeightsError
from semsynth.metrics import LPIPSMetric


@pytest.fixture(scope="module")
def metric() -> LPIPSMetric:
    torch.manual_seed(0)
    return LPIPSMetric(pretrained_backbone=False, batch_size=3)


def test_lpips_zero_for_identical_positive_and_symmetric_otherwise(metric):
    a, b = torch.rand(4, 3, 64, 64) * 2 - 1, torch.rand(4, 3, 64, 64) * 2 - 1
    d_aa = metric.distance(a, a)
    assert d_aa.shape == (4,) and torch.all(d_aa.abs() < 1e-6)
    d_ab, d_ba = metric.distance(a, b), metric.distance(b, a)
    assert torch.all(d_ab > 0)
    torch.testing.assert_close(d_ab, d_ba)
    assert metric.paired(a, b) == pytest.approx(float(d_ab.mean()), rel=1e-5)  # 4 pairs in chunks of 3
    assert metric.paired(a, a) == pytest.approx(0.0, abs=1e-6)


def test_lpips_takes_uint8_like_the_float_images(metric):
    u = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    v = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    expected = metric.distance(u.float() / 127.5 - 1, v.float() / 127.5 - 1)
    torch.testing.assert_close(metric.distance(u, v), expected)


def test_lpips_diversity(metric):
    x, y, z = (torch.rand(2, 3, 32, 32) * 2 - 1 for _ in range(3))
    assert metric.diversity([x, x, x]) == pytest.approx(0.0, abs=1e-6)
    assert metric.diversity([x, y]) == pytest.approx(metric.paired(x, y), rel=1e-5)
    pairs = [metric.paired(x, y), metric.paired(x, z), metric.paired(y, z)]
    assert metric.diversity([x, y, z]) == pytest.approx(sum(pairs) / 3, rel=1e-5)
    with pytest.raises(ValueError):
        metric.diversity([x])


def test_missing_backbone_file_names_it(empty_hub):
    with pytest.raises(MissingWeightsError) as e:
        LPIPSMetric()
    msg = str(e.value)
    assert "alexnet-owt-7be5be79.pth" in msg and str(empty_hub) in msg
    assert "download.pytorch.org/models/alexnet-owt-7be5be79.pth" in msg and "--metrics" in msg
    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth"):
        LPIPSMetric(net="vgg")


def test_backbone_is_loaded_from_a_torchvision_state_dict(tmp_path, empty_hub):
    torch.manual_seed(1)
    features = torchvision.models.alexnet(weights=None).features
    # torchvision's file also has the classifier (233 MB); lpips uses only the features, so only those are
    # written here
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    torch.save(state, tmp_path / "alexnet-owt-7be5be79.pth")
    for where in (tmp_path, tmp_path / "alexnet-owt-7be5be79.pth"):
        m = LPIPSMetric(weights_dir=where)
        torch.testing.assert_close(m.model.net.slice1._modules["0"].weight, state["features.0.weight"])
        torch.testing.assert_close(m.model.net.slice5._modules["10"].bias, state["features.10.bias"])
    # and from the hub cache
    empty_hub.mkdir(parents=True)
    torch.save(state, empty_hub / "alexnet-owt-7be5be79.pth")
    m = LPIPSMetric()
    torch.testing.assert_close(m.model.net.slice3._modules["6"].weight, state["features.6.weight"])
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert float(m.distance(x, x.flip(-1))) > 0
