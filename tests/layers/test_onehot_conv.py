"""A k x k conv of a one-hot map by look-ups (layers/onehot_conv.py): forward and weight gradient equal the dense
``F.conv2d`` (float64 to 1e-10, float32 to rounding, gradcheck), on piecewise-constant layouts, random pixels,
borders, batches, 1- and 2-pixel sizes, 3x3 with zero padding, 5x5 and 7x7 with zero or reflection padding or
none, and band blocks split across chunks; the SVG's finest stage and pix2pixHD's first conv use it in training
and eval."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from semsynth.layers import onehot_conv as onehot_module
from semsynth.layers.onehot_conv import onehot_conv, onehot_conv3x3
from tests.models.test_spade_piecewise import rects  # random rectangles: piecewise-constant class ids


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("h,w,batch,layout", [(24, 24, 2, "rects"), (17, 29, 3, "rects"), (16, 16, 2, "noise"),
                                              (1, 1, 1, "noise"), (2, 5, 2, "noise"), (3, 3, 1, "one")])
def test_forward_and_weight_gradient_equal_the_dense_conv(dtype, tol, h, w, batch, layout):
    classes, c = 7, 5
    g = torch.Generator().manual_seed(0)
    if layout == "rects":
        ids = rects(classes, h, w, batch, 0, 8)
    elif layout == "noise":
        ids = torch.randint(0, classes, (batch, h, w), generator=g)
    else:
        ids = torch.full((batch, h, w), classes - 1)
    onehot = F.one_hot(ids, classes).permute(0, 3, 1, 2).to(dtype)
    weight = torch.randn(c, classes, 3, 3, dtype=dtype, generator=g, requires_grad=True)
    ref = F.conv2d(onehot, weight, padding=1)
    out = onehot_conv3x3(ids[:, None].to(dtype), weight)
    assert out.shape == ref.shape and (out - ref).abs().max() <= tol
    probe = torch.randn(ref.shape, dtype=dtype, generator=g)
    (want,) = torch.autograd.grad((ref * probe).sum(), weight)
    (got,) = torch.autograd.grad((out * probe).sum(), weight)
    assert (got - want).abs().max() <= tol * max(1.0, want.abs().max().item())


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("k,padding,reflect", [(7, 3, True), (7, 3, False), (5, 2, True), (5, 1, False),
                                               (3, 0, False), (7, 0, True), (3, 1, True)])
@pytest.mark.parametrize("layout", ["rects", "noise"])
def test_k_by_k_with_zero_or_reflection_padding_equals_the_dense_conv(dtype, tol, k, padding, reflect, layout,
                                                                      monkeypatch):
    """Against ``F.conv2d(pad(onehot), W)`` with ``nn.ReflectionPad2d`` or zero padding; the chunk is made small so
    that band pixels and gradient rows span several blocks and batch elements."""
    monkeypatch.setattr(onehot_module, "_CHUNK", 37)
    classes, c, batch, h, w = 6, 4, 2, 13, 19
    g = torch.Generator().manual_seed(k * 10 + padding)
    ids = rects(classes, h, w, batch, 1, 5) if layout == "rects" else torch.randint(0, classes, (batch, h, w),
                                                                                    generator=g)
    onehot = F.one_hot(ids, classes).permute(0, 3, 1, 2).to(dtype)
    weight = torch.randn(c, classes, k, k, dtype=dtype, generator=g, requires_grad=True)
    bias = torch.randn(c, dtype=dtype, generator=g, requires_grad=True) if k != 5 else None
    padded = F.pad(onehot, (padding,) * 4, mode="reflect") if reflect and padding else F.pad(onehot, (padding,) * 4)
    ref = F.conv2d(padded, weight, bias)
    out = onehot_conv(ids[:, None].to(dtype), weight, bias, padding, reflect)
    assert out.shape == ref.shape and (out - ref).abs().max() <= tol
    probe = torch.randn(ref.shape, dtype=dtype, generator=g)
    params = (weight,) if bias is None else (weight, bias)
    for want, got in zip(torch.autograd.grad((ref * probe).sum(), params),
                         torch.autograd.grad((out * probe).sum(), params)):
        assert (got - want).abs().max() <= tol * max(1.0, want.abs().max().item())


def test_gradcheck_7x7_reflection():
    ids = rects(4, 9, 8, 2, 3, 4)[:, None].double()
    weight = torch.randn(3, 4, 7, 7, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w, b: onehot_conv(ids, w, b, 3, True), (weight, bias))


def test_gradcheck():
    ids = rects(4, 7, 6, 2, 3, 4)[:, None].double()
    weight = torch.randn(3, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: onehot_conv3x3(ids, w), (weight,))


def test_the_svg_finest_stage_uses_it_in_training_with_equal_gradients(monkeypatch):
    """The ADE20K-like SVG (151 classes) at 64x64: the finest stage takes the look-up path (its label conv is not a
    dense conv over 151 channels) and its outputs and every parameter gradient equal the dense stage's."""
    from semsynth.config import load_config
    from semsynth.layers import onehot_conv, semantic_input
    from semsynth.models import build_generator
    from semsynth.models.generators.scgan import SVGStage

    spec = dict(load_config("scgan-ade20k").generator)
    spec.update(srg_width=4, fc_width=4, svg_width=8, spade_hidden=16, resolution=[64, 64])
    torch.manual_seed(0)
    G = build_generator(spec).double().train()
    svg = G.svg
    assert [s.onehot_labels for s in svg.stages[1:]] == [False] * (len(svg.stages) - 2) + [True]
    sem = semantic_input(rects(151, 64, 64, 2, 1, 12), 151, None).double()
    calls = []
    real = onehot_conv.OneHotConv.apply
    monkeypatch.setattr(onehot_conv.OneHotConv, "apply", lambda *a: calls.append(1) or real(*a))

    def run(lookups: bool):
        monkeypatch.setattr(SVGStage, "onehot_min_work", 0 if lookups else 10**9)
        G.zero_grad()
        torch.manual_seed(5)  # the same spectral-norm power iteration in both runs: restore u, v
        for m, (u, v) in zip(sn_modules, saved):
            m._u.copy_(u)
            m._v.copy_(v)
        feats, rgb = svg(sem)
        probe = torch.randn(rgb.shape, dtype=rgb.dtype, generator=torch.Generator().manual_seed(1))
        ((rgb * probe).sum() + sum((f * f).mean() for f in feats)).backward()
        return rgb.detach(), {n: p.grad.clone() for n, p in svg.named_parameters() if p.grad is not None}

    from semsynth.layers.spectral import SpectralNorm

    sn_modules = [m for m in svg.modules() if isinstance(m, SpectralNorm)]
    saved = [(m._u.clone(), m._v.clone()) for m in sn_modules]
    rgb_dense, grads_dense = run(False)
    assert not calls
    rgb_lookup, grads_lookup = run(True)
    assert calls  # the finest stage took the look-up path
    assert (rgb_lookup - rgb_dense).abs().max() <= 1e-10
    assert grads_lookup.keys() == grads_dense.keys()
    for n, gd in grads_dense.items():
        assert (grads_lookup[n] - gd).abs().max() <= 1e-9 * max(1.0, gd.abs().max().item()), n
