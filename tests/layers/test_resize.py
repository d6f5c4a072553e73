"""up2_nearest (layers/resize.py): exactly F.interpolate's nearest 2x up-sampling forward, its gradient to rounding,
differentiable twice, a fresh tensor; and the SC-GAN training forward reads its one-hot label map once."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from semsynth.layers.resize import NARROW_COLUMNS, up2_nearest


def reference(x):
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


@pytest.mark.parametrize("shape", [(2, 5, 1, 1), (1, 3, 4, 7), (2, 8, 16, NARROW_COLUMNS), (1, 4, 9, NARROW_COLUMNS + 3)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_and_gradient_equal_interpolate(shape, channels_last, dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    probe = torch.randn(shape[0], shape[1], 2 * shape[2], 2 * shape[3], generator=g, dtype=dtype)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, ref = up2_nearest(xa), reference(xb)
    assert torch.equal(out, ref)
    assert out.stride() == ref.stride()  # the same memory layout as the interpolation's
    (ga,), (gb,) = torch.autograd.grad((out * probe).sum(), xa), torch.autograd.grad((ref * probe).sum(), xb)
    torch.testing.assert_close(ga, gb, rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-5)
    with torch.no_grad():
        assert torch.equal(up2_nearest(x), reference(x))


def test_second_derivative_and_gradcheck():
    x = torch.randn(1, 2, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(up2_nearest, (x,))
    assert torch.autograd.gradgradcheck(up2_nearest, (x,))


def test_output_is_a_fresh_map_that_can_be_written_in_place():
    x = torch.randn(2, 3, 1, 2)  # a reshape of an expansion would be a view with stride 0 here
    y = up2_nearest(x)
    assert y.is_contiguous() and y.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
    F.leaky_relu(y, 0.2, inplace=True)  # would raise on a map whose elements share memory
    assert torch.equal(y, F.leaky_relu(reference(x), 0.2))


def test_other_inputs_are_the_interpolation_itself():
    x = torch.randn(1, 2, 3, 4).to(torch.bfloat16)
    assert torch.equal(up2_nearest(x), reference(x))
    traced = torch.jit.trace(up2_nearest, torch.randn(1, 2, 3, 4))  # traced: the plain interpolation, any size
    assert traced(torch.ones(1, 2, 5, 6)).shape == (1, 2, 10, 12)


def test_scgan_training_forward_reads_the_label_map_once(monkeypatch):
    """The SVG's look-up conv, the SPADE shortcuts' exact algebra and the marked convs share one one-hot check of
    the full-size map (smaller sizes: its resizes); the image and every gradient are those of separate checks."""
    from semsynth.layers import SPADE, onehot_conv, spade
    from semsynth.models.generators import scgan
    from semsynth.models.generators.scgan import SVGStage
    from tests.models.test_inference_prepare import case, scgan_ade_small

    monkeypatch.setattr(SVGStage, "onehot_min_work", 0)
    monkeypatch.setattr(SPADE, "piecewise_min_work", 0)
    monkeypatch.setattr(SPADE, "piecewise_max_band_train", 1.0)
    G, sem, z = case(scgan_ade_small(), 64)
    G.train()
    calls = []
    for module in (onehot_conv, spade, scgan):
        real = module.one_hot_ids
        monkeypatch.setattr(module, "one_hot_ids", lambda seg, real=real: calls.append(tuple(seg.shape)) or real(seg))
    state = {k: v.clone() for k, v in G.state_dict().items()}

    def run():
        G.load_state_dict(state)
        G.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        out = G(sem, z)
        out.square().mean().backward()
        return out.detach(), {n: p.grad.clone() for n, p in G.named_parameters() if p.grad is not None}

    out, grads = run()
    assert calls == [tuple(sem.shape[:1]) + (sem.shape[1],) + tuple(sem.shape[2:])]  # once, at the map's size
    monkeypatch.setattr(spade, "ids_of_map", lambda *a: (False, None))
    monkeypatch.setattr(scgan, "ids_of_map", lambda *a: (False, None))
    calls.clear()
    out2, grads2 = run()
    assert len(calls) > 1  # each layer checking its own map
    assert torch.equal(out, out2)
    assert grads.keys() == grads2.keys() and all(torch.equal(grads[k], grads2[k]) for k in grads)
