"""``layers.up_conv.up2_conv3x3``: a 3x3 conv of a nearest 2x up-sampled map, computed on the small map (issue 13),
equals the conv of the up-sampled map, with its gradients; the SVG stages use it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from semsynth.layers.up_conv import up2_conv3x3


def reference(x, w, b):
    return F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), w, b, padding=1)


@pytest.mark.parametrize("shape", [(2, 5, 7, 9), (1, 3, 1, 1), (1, 4, 16, 16), (3, 2, 2, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_equals_the_conv_of_the_upsampled_map_in_float64(shape, bias):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    w = torch.randn(6, shape[1], 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64) if bias else None
    y = up2_conv3x3(x, w, b)
    assert y.shape == (shape[0], 6, 2 * shape[2], 2 * shape[3])
    assert (y - reference(x, w, b)).abs().max() <= 1e-12


def test_float32_rounding_and_gradients():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 12, 10, generator=g, requires_grad=True)
    w = (torch.randn(4, 8, 3, 3, generator=g) * 0.3).requires_grad_()
    b = torch.randn(4, generator=g, requires_grad=True)
    up = torch.randn(2, 4, 24, 20, generator=g)
    (up2_conv3x3(x, w, b) * up).sum().backward()
    grads = [t.grad.clone() for t in (x, w, b)]
    for t in (x, w, b):
        t.grad = None
    ref = reference(x, w, b)
    (ref * up).sum().backward()
    assert (up2_conv3x3(x, w, b) - ref).abs().max() <= 1e-5
    for got, t in zip(grads, (x, w, b)):
        assert (got - t.grad).abs().max() <= 1e-4 * max(1.0, t.grad.abs().max().item())


def test_gradcheck():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(up2_conv3x3, (x, w, b))


def test_bad_shapes():
    with pytest.raises(ValueError, match="3x3 weight"):
        up2_conv3x3(torch.zeros(1, 2, 4, 4), torch.zeros(3, 2, 5, 5))
    with pytest.raises(ValueError, match=r"x \[B, C, H, W\]"):
        up2_conv3x3(torch.zeros(1, 3, 4, 4), torch.zeros(3, 2, 3, 3))


def test_svg_stages_take_it_and_match_the_dense_stage(monkeypatch):
    from semsynth import build_generator, one_hot_label
    from semsynth.models.generators.scgan import SVGStage

    calls = []
    import semsynth.models.generators.scgan as scgan

    real = scgan.up2_conv3x3
    monkeypatch.setattr(scgan, "up2_conv3x3", lambda *a: calls.append(a[0].shape[2]) or real(*a))
    torch.manual_seed(0)
    G = build_generator({"name": "scgan", "srg_width": 4, "fc_width": 4, "svg_width": 4, "spade_hidden": 8},
                        num_classes=5, resolution=128).double()
    s = one_hot_label(torch.randint(0, 5, (2, 128, 128)), 5).double()
    G.eval()
    with torch.no_grad():
        fast = G(s, return_aux=True)
        assert calls == [16, 32, 64]  # the stages from a 16x16 previous stage up
        monkeypatch.setattr(SVGStage, "phases_min_pixels", 10**9)
        dense = G(s, return_aux=True)
    assert (fast.image - dense.image).abs().max() <= 1e-12
    assert (fast.coarse_rgb - dense.coarse_rgb).abs().max() <= 1e-12
