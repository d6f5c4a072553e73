import math

import pytest
import torch

from semsynth.errors import DataError, ShapeError
from semsynth.layers import SPADE, IterativeGaussian, apply_mapping, channel_pool, instance_edges, one_hot_label
from semsynth.layers.norm import SyncableBatchNorm2d, convert_sync_batchnorm
from semsynth.layers.position import gaussian_window
from semsynth.layers.routing import channel_pool_bins


def test_channel_pool_bins_match_official_measurements():
    # scgan_official.md §2.3: C=512, n=3 -> [0,171), [170,342), [341,512); C=32 -> [0,11), [10,22), [21,32)
    assert channel_pool_bins(512, 3) == [(0, 171), (170, 342), (341, 512)]
    assert channel_pool_bins(32, 3) == [(0, 11), (10, 22), (21, 32)]
    assert channel_pool_bins(512, 4) == [(0, 128), (128, 256), (256, 384), (384, 512)]
    x = torch.randn(2, 32, 4, 5)
    pooled = channel_pool(x, 3)
    for i, (a, b) in enumerate(channel_pool_bins(32, 3)):
        torch.testing.assert_close(pooled[:, i], x[:, a:b].mean(1))


@pytest.mark.parametrize("c,bins", [(32, 3), (32, 4), (512, 3), (7, 7), (10, 4)])
def test_channel_pool_equals_the_official_adaptive_pooling(c, bins):
    """The product with a pooling matrix equals adaptive_avg_pool3d along channels (the official op), forward and
    backward, in float64 to 1e-12; batch > 1 and a non-contiguous input."""
    x = torch.randn(3, c, 5, 6, dtype=torch.float64).transpose(2, 3).requires_grad_(True)
    ref = torch.nn.functional.adaptive_avg_pool3d(x.unsqueeze(1), (bins, 6, 5)).squeeze(1)
    out = channel_pool(x, bins)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(ref, x, g)[0],
                               rtol=1e-12, atol=1e-12)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # runs in the input's dtype, as the pooling did
        assert channel_pool(x.detach().float(), bins).dtype == torch.float32


def test_channel_pool_first_used_in_inference_mode_then_in_training():
    """The cached pooling matrix made under inference mode (a validation pass, the painter) must still serve a
    training step that keeps it for backward."""
    from semsynth.layers import routing

    routing._POOL_CACHE.clear()
    with torch.inference_mode():
        channel_pool(torch.randn(1, 13, 3, 3), 5)
    x = torch.randn(1, 13, 3, 3, requires_grad=True)
    channel_pool(x, 5).sum().backward()
    torch.testing.assert_close(x.grad.sum(), torch.tensor(5.0) * 9)


def test_mapping_softmax_multiplies_logits_by_tau():
    v = torch.randn(2, 3, 4, 4) * 10
    out = apply_mapping(v, "softmax", 0.05)
    torch.testing.assert_close(out, torch.softmax(0.05 * v, 1))
    torch.testing.assert_close(out.sum(1), torch.ones(2, 4, 4))
    torch.testing.assert_close(apply_mapping(v, "sigmoid", 0.5), torch.sigmoid(0.5 * v))
    torch.testing.assert_close(apply_mapping(v, "none", 2.0), 2.0 * v)
    with pytest.raises(ValueError, match="valid choices"):
        apply_mapping(v, "gelu", 1.0)


def test_iterative_gaussian_window_and_interior_value():
    w = gaussian_window(7, 1.5)
    assert w.max().item() == 1.0
    assert math.isclose(w.sum().item(), 13.648, abs_tol=1e-3)  # not normalised (spec §2.4)
    mask = torch.zeros(1, 2, 20, 20)
    mask[:, 0, 2:18, 2:18] = 1
    mask[:, 1] = 1 - mask[:, 0]
    out = IterativeGaussian(7, 1.5, 1, False)(mask)
    assert math.isclose(out[0, 0, 10, 10].item(), w.sum().item(), rel_tol=1e-5)  # deep inside: full window
    assert out[0, 0, 2, 2] < out[0, 0, 3, 3] < out[0, 0, 4, 4] < out[0, 0, 10, 10]  # grows away from the border
    assert torch.all(out[:, 0][mask[:, 0] == 0] == 0)  # zero outside the region
    rel = IterativeGaussian(7, 1.5, 2, True)(mask)
    assert math.isclose(rel[0, 0, 10, 10].item(), w.sum().item(), rel_tol=1e-4)


def test_one_hot_and_instance_edges():
    label = torch.tensor([[[0, 1], [2, 2]]])
    oh = one_hot_label(label, 3)
    assert oh.shape == (1, 3, 2, 2) and torch.equal(oh.argmax(1), label) and torch.all(oh.sum(1) == 1)
    with pytest.raises(DataError, match=r"class ids \[3\] outside 0..2"):
        one_hot_label(torch.tensor([[[0, 3]]]), 3)
    with pytest.raises(DataError, match="non-integer"):
        one_hot_label(torch.tensor([[[0.5, 1.0]]]), 3)
    inst = torch.tensor([[[1, 1, 2], [1, 1, 2], [3, 3, 3]]])
    edges = instance_edges(inst)[0, 0]
    expected = torch.tensor([[0, 1, 1], [1, 1, 1], [1, 1, 1]], dtype=torch.float32)
    assert torch.equal(edges, expected)


def test_spade_matches_formula_and_checks_channels():
    layer = SPADE(4, 3, hidden=8, norm="batch").train()
    x = torch.randn(2, 4, 8, 8)
    seg = one_hot_label(torch.randint(0, 3, (2, 16, 16)), 3)
    y = layer(x, seg)
    s = torch.nn.functional.interpolate(seg, size=(8, 8), mode="nearest")
    a = layer.mlp_shared(s)
    ref = torch.nn.functional.batch_norm(x, None, None, training=True) * (1 + layer.mlp_gamma(a)) + layer.mlp_beta(a)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ShapeError, match="expected \\[B, 3, H, W\\]"):
        layer(x, seg[:, :2])


def test_convert_sync_batchnorm_replaces_only_marked_norms():
    m = torch.nn.Sequential(SyncableBatchNorm2d(3, affine=False), torch.nn.BatchNorm2d(3))
    m[0].running_mean.fill_(0.5)
    out = convert_sync_batchnorm(m)
    assert isinstance(out[0], torch.nn.SyncBatchNorm) and type(out[1]) is torch.nn.BatchNorm2d
    assert torch.all(out[0].running_mean == 0.5)
