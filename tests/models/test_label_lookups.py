"""OASIS and CC-FPSE read the label map concatenated with other maps (OASIS: the 3D noise before it; CC-FPSE: the
label features after it), and SC-GAN's shortcut SPADEs read it where their piecewise path declines the layout:
their convs over it compute the one-hot channels by look-ups
(``layers/onehot_conv.py``: ``read_labels_by_lookups``, ``label_ids``). A training step's output and every
parameter gradient equal the dense model's (float64), with and without ``train.recompute`` (the recomputation in
backward reads the labels as the forward did), and a map that is not one-hot or wants a gradient runs densely."""

from __future__ import annotations

import pytest
import torch

from semsynth import build_generator
from semsynth.layers import onehot_conv, semantic_input
from semsynth.layers.recompute import enable_recompute
from semsynth.layers.spectral import SpectralNorm
from tests.models.test_spade_piecewise import rects

CASES = {
    "oasis": ({"name": "oasis", "channels": 2, "num_res_blocks": 3, "spade_hidden": 16, "z_dim": 8}, False, 8),
    "oasis-no-noise": ({"name": "oasis", "channels": 2, "num_res_blocks": 3, "spade_hidden": 16,
                        "noise_3d": False}, True, 0),
    "ccfpse": ({"name": "ccfpse", "ngf": 2, "hidden": 8, "spade_hidden": 8, "z_dim": 8,
                "num_upsampling_layers": "normal"}, True, 8),
    "ccfpse-no-vae": ({"name": "ccfpse", "ngf": 2, "hidden": 8, "spade_hidden": 8, "use_vae": False,
                       "num_upsampling_layers": "normal"}, False, 0),
    # SC-GAN's shortcut SPADEs, where their piecewise path declines the layout (forced off below) and the dense
    # convs run: their first conv reads the one-hot map
    "scgan": ({"name": "scgan", "srg_width": 4, "fc_width": 4, "svg_width": 4, "conv_candidates": 2,
               "norm_candidates": 2, "spade_hidden": 8}, False, 0),
    "scgan-instance": ({"name": "scgan", "srg_width": 4, "fc_width": 4, "svg_width": 4, "conv_candidates": 2,
                        "norm_candidates": 2, "spade_hidden": 8}, True, 0),
}


@pytest.fixture(autouse=True)
def _dense_spade(monkeypatch):
    """SPADE's piecewise path off: SC-GAN's shortcut SPADEs run their dense convs (the ones marked for look-ups)."""
    from semsynth.layers.spade import SPADE

    monkeypatch.setattr(SPADE, "piecewise_max_band", 0)
    monkeypatch.setattr(SPADE, "piecewise_max_band_train", 0)


def _setup(key: str):
    spec, instance, z_dim = CASES[key]
    classes = 11
    torch.manual_seed(0)
    G = build_generator(spec, num_classes=classes, use_instance=instance, resolution=[64, 64]).double().train()
    ids = rects(classes, 64, 64, 2, 4, 10)
    x = semantic_input(ids, classes, ids * 3 % 4 if instance else None).double()
    z = torch.randn(2, z_dim, dtype=torch.float64) if z_dim else None
    return G, x, z


@pytest.mark.parametrize("key", list(CASES))
@pytest.mark.parametrize("recompute", [False, True])
def test_lookups_give_the_dense_outputs_and_gradients(key, recompute, monkeypatch):
    G, x, z = _setup(key)
    if recompute:
        assert enable_recompute(G) > 0
    calls = []
    real = onehot_conv.OneHotConv.apply
    monkeypatch.setattr(onehot_conv.OneHotConv, "apply", lambda *a: calls.append(a[1].shape) or real(*a))
    sn = [m for m in G.modules() if isinstance(m, SpectralNorm)]
    saved = [(m._u.clone(), m._v.clone()) for m in sn]
    state = {k: v.clone() for k, v in G.state_dict().items()}  # batch-norm statistics move in training mode

    def run(lookups: bool):
        monkeypatch.setattr(onehot_conv, "onehot_part_min_work", 0 if lookups else 10**12)
        G.load_state_dict(state)
        for m, (u, v) in zip(sn, saved):
            m._u.copy_(u)
            m._v.copy_(v)
        G.zero_grad()
        calls.clear()
        out = G(x, z)
        probe = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1))
        (out * probe).sum().backward()
        return out.detach(), {n: p.grad.clone() for n, p in G.named_parameters() if p.grad is not None}, len(calls)

    out_dense, grads_dense, n_dense = run(False)
    out_lookup, grads_lookup, n_lookup = run(True)
    assert n_dense == 0 and n_lookup >= 4  # the convs over the labels took the look-ups (recomputed: again)
    assert all(shape[1] == 11 for shape in calls)  # over the 11 class channels only
    assert (out_lookup - out_dense).abs().max() <= 1e-10
    assert grads_lookup.keys() == grads_dense.keys()
    for n, gd in grads_dense.items():
        assert (grads_lookup[n] - gd).abs().max() <= 1e-9 * max(1.0, gd.abs().max().item()), n


@pytest.mark.parametrize("key", ["oasis", "ccfpse", "scgan"])
def test_dense_where_the_map_is_not_one_hot_or_wants_a_gradient(key, monkeypatch):
    G, x, z = _setup(key)
    G.eval()
    monkeypatch.setattr(onehot_conv, "onehot_part_min_work", 0)
    calls = []
    real = onehot_conv.OneHotConv.apply
    monkeypatch.setattr(onehot_conv.OneHotConv, "apply", lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        G(x, z)
    assert calls
    calls.clear()
    with torch.no_grad():
        G(x * 0.9, z)  # soft labels
    assert not calls
    G(x.clone().requires_grad_(True), z).sum().backward()  # a gradient for the label map: the dense convs
    assert not calls


def test_marking_a_conv_it_cannot_compute_is_an_error():
    conv = torch.nn.Conv2d(10, 4, 3, stride=2, padding=1)
    with pytest.raises(ValueError, match="not a stride-1 'same' conv"):
        onehot_conv.read_labels_by_lookups(conv, 0, 8)
    with pytest.raises(ValueError, match=r"label channels \[4, 12\)"):
        onehot_conv.read_labels_by_lookups(torch.nn.Conv2d(10, 4, 3, padding=1), 4, 8)


def test_lazy_labels_find_the_ids_once_and_only_when_a_marked_conv_asks(monkeypatch):
    from semsynth.layers import one_hot_label

    found = []
    real = onehot_conv.labels_for_lookups
    monkeypatch.setattr(onehot_conv, "labels_for_lookups", lambda *a: found.append(1) or real(*a))
    ids = torch.randint(0, 5, (1, 8, 8))
    labels = onehot_conv.lazy_labels(one_hot_label(ids, 5), 5)
    assert not found  # nothing asked yet
    torch.testing.assert_close(labels.at(8, 8), ids[:, None].float(), rtol=0, atol=0)
    assert len(found) == 1
    torch.testing.assert_close(labels.at(4, 4), ids[:, None, ::2, ::2].float(), rtol=0, atol=0)  # nearest halving
    assert labels.at(4, 4).is_contiguous()
    labels.at(8, 8)
    labels.at(4, 4)
    assert len(found) == 1  # the map's own size once; a smaller size is its resize, without a second check
    small_first = onehot_conv.lazy_labels(one_hot_label(ids, 5), 5)
    torch.testing.assert_close(small_first.at(2, 2), ids[:, None, ::4, ::4].float(), rtol=0, atol=0)
    small_first.at(8, 8)
    torch.testing.assert_close(small_first.at(4, 4), ids[:, None, ::2, ::2].float(), rtol=0, atol=0)
    assert len(found) == 3  # 2x2 from its own resize (the full size unknown then), 8x8; 4x4 from the 8x8 ids
    soft = onehot_conv.lazy_labels(one_hot_label(ids, 5) * 0.5, 5)
    assert soft.at(8, 8) is None  # not one-hot: the marked convs run densely


def test_the_svg_label_pyramid_halving_equals_bilinear_interpolation():
    """SC-GAN's label pyramid halves by the 2x2 average (two strided sums): bit for bit F.interpolate(bilinear, 0.5)
    on one-hot maps, to rounding on soft ones, and the interpolation itself on odd sizes; gradients too."""
    import torch.nn.functional as F

    from semsynth.layers import one_hot_label
    from semsynth.models.generators.scgan import _halve

    def bilinear(t):
        return F.interpolate(t, scale_factor=0.5, mode="bilinear", align_corners=False)

    level = one_hot_label(torch.randint(0, 7, (2, 32, 48), generator=torch.Generator().manual_seed(0)), 7)
    for _ in range(4):
        nxt = _halve(level)
        assert torch.equal(nxt, bilinear(level))
        level = nxt
    soft = torch.rand(2, 3, 10, 14, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(_halve(soft), bilinear(soft), rtol=0, atol=1e-15)
    g = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(torch.autograd.grad(_halve(soft), soft, g)[0],
                               torch.autograd.grad(bilinear(soft), soft, g)[0], rtol=0, atol=1e-15)
    odd = torch.rand(1, 2, 9, 6)
    assert torch.equal(_halve(odd), bilinear(odd))
