"""The exact piecewise SPADE modulation with its hand-written backward (layers/spade_piecewise.py): forward and
every weight gradient equal the dense ``conv2(relu(conv1(onehot)))`` on piecewise-constant layouts, in float64 to
1e-10 and in float32 to float rounding; SPADE uses it in training where it applies and the dense convs elsewhere."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from semsynth.layers import SPADE
from semsynth.layers.spade_piecewise import PiecewiseModulation, piecewise_modulation
from tests.models.test_spade_piecewise import rects  # random rectangles: piecewise-constant class ids
from tests.helpers import kept_for_backward


def rect_ids(classes: int, h: int, w: int, batch: int = 2, seed: int = 0, count: int = 10) -> torch.Tensor:
    return rects(classes, h, w, batch, seed, count)


def dense(onehot, w1, b1, w2, b2):
    return F.conv2d(F.conv2d(onehot, w1, b1, padding=1).relu(), w2, b2, padding=1)


def weights(classes, hidden, c2, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    # biases around zero so that some hidden units are negative (relu' matters) in interiors and bands
    return [(torch.randn(*s, generator=g, dtype=dtype) * k).requires_grad_()
            for s, k in (((hidden, classes, 3, 3), 0.5), ((hidden,), 0.5), ((c2, hidden, 3, 3), 0.3), ((c2,), 1.0))]


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("h,w,batch", [(24, 24, 2), (17, 29, 2), (5, 5, 1), (9, 6, 3)])
def test_forward_and_gradients_equal_the_dense_convs(dtype, tol, h, w, batch):
    classes, hidden, c2 = 7, 6, 8
    ids = rect_ids(classes, h, w, batch)
    onehot = F.one_hot(ids, classes).permute(0, 3, 1, 2).to(dtype)
    ws = weights(classes, hidden, c2, dtype)
    out_dense = dense(onehot, *ws)
    probe = torch.randn(out_dense.shape, dtype=dtype, generator=torch.Generator().manual_seed(2))
    grads_dense = torch.autograd.grad((out_dense * probe).sum(), ws)
    out = piecewise_modulation(ids.unsqueeze(1).to(dtype), *ws)
    grads = torch.autograd.grad((out * probe).sum(), ws)
    scale = out_dense.abs().max().item()
    assert (out - out_dense).abs().max().item() <= tol * scale
    for name, a, b in zip(("w1", "b1", "w2", "b2"), grads, grads_dense):
        assert (a - b).abs().max().item() <= tol * b.abs().max().item(), name


def test_small_chunks_give_the_same_gradients(monkeypatch):
    ids = rect_ids(5, 20, 20)
    onehot = F.one_hot(ids, 5).permute(0, 3, 1, 2).double()
    ws = weights(5, 4, 6, torch.float64)
    out_dense = dense(onehot, *ws)
    grads_dense = torch.autograd.grad(out_dense.square().sum(), ws)
    monkeypatch.setattr(PiecewiseModulation, "chunk_bytes", 1)  # one pixel per chunk
    out = piecewise_modulation(ids.unsqueeze(1).double(), *ws)
    grads = torch.autograd.grad(out.square().sum(), ws)
    torch.testing.assert_close(out, out_dense, rtol=0, atol=1e-10)
    for a, b in zip(grads, grads_dense):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_one_class_everywhere_and_gradcheck():
    ids = torch.full((1, 1, 7, 8), 2.0, dtype=torch.float64)
    ws = [w.detach().requires_grad_() for w in weights(4, 3, 5, torch.float64)]
    assert torch.autograd.gradcheck(lambda *a: piecewise_modulation(ids, *a), ws)
    ids = rect_ids(4, 9, 9, batch=1).unsqueeze(1).double()
    assert torch.autograd.gradcheck(lambda *a: piecewise_modulation(ids, *a), ws)


def spade_pair(norm="syncbatch"):
    torch.manual_seed(0)
    a = SPADE(6, 9, 7, 3, norm)
    b = SPADE(6, 9, 7, 3, norm)
    b.load_state_dict(a.state_dict())
    a.piecewise_min_work = 0  # a small layer: its dense convs are cheap, the piecewise path is forced for the test
    a.piecewise_max_band_train = 0.7
    b.piecewise_max_band = 0.0  # dense convs always
    return a, b


def test_spade_in_training_uses_it_and_matches_the_dense_layer():
    a, b = spade_pair()
    ids = rect_ids(9, 64, 64, count=4)
    seg = F.one_hot(ids, 9).permute(0, 3, 1, 2).float()
    x = torch.randn(2, 6, 32, 32)  # the map resized to 32x32 (a strided view), 4 rectangles: mostly interior
    calls = []
    orig = PiecewiseModulation.forward
    PiecewiseModulation.forward = staticmethod(lambda *args: (calls.append(1), orig(*args))[1])
    try:
        ya = a.train()(x, seg)
    finally:
        PiecewiseModulation.forward = staticmethod(orig)
    yb = b.train()(x, seg)
    assert calls, "the piecewise path was not taken"
    torch.testing.assert_close(ya, yb, rtol=1e-5, atol=1e-5)
    probe = torch.randn_like(ya)
    (ya * probe).sum().backward()
    (yb * probe).sum().backward()
    for (k, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=k)
    # running statistics advanced the same way (the norm of x is computed as before)
    torch.testing.assert_close(a.param_free_norm.running_mean, b.param_free_norm.running_mean)


def test_spade_takes_the_dense_convs_where_the_algebra_does_not_apply():
    a, _ = spade_pair()
    x = torch.randn(2, 6, 16, 16)
    soft = torch.softmax(torch.randn(2, 9, 16, 16), 1)  # not one-hot
    noisy = F.one_hot(torch.randint(0, 9, (2, 16, 16)), 9).permute(0, 3, 1, 2).float()  # all band
    seg_grad = F.one_hot(rect_ids(9, 16, 16), 9).permute(0, 3, 1, 2).float().requires_grad_()  # needs d/dseg
    calls = []
    orig = PiecewiseModulation.forward
    PiecewiseModulation.forward = staticmethod(lambda *args: (calls.append(1), orig(*args))[1])
    try:
        for seg in (soft, noisy, seg_grad):
            a(x, seg)
    finally:
        PiecewiseModulation.forward = staticmethod(orig)
    assert not calls


def test_the_policy_small_layers_and_training_band_limit():
    """Dense convs for small layers (label channels x hidden < piecewise_min_work) and, in training, above the
    training band limit; the piecewise path where the dense convs are costly and the map is mostly interior."""
    ids = rect_ids(9, 64, 64, count=4)
    seg = F.one_hot(ids, 9).permute(0, 3, 1, 2).float()
    x = torch.randn(2, 6, 32, 32)
    calls = []
    orig = PiecewiseModulation.forward
    PiecewiseModulation.forward = staticmethod(lambda *args: (calls.append(1), orig(*args))[1])
    try:
        s = SPADE(6, 9, 7, 3, "syncbatch")
        s(x, seg)
        assert not calls  # 9 x 7 < 4096: dense
        s.piecewise_min_work = 63
        s.piecewise_max_band_train = 0.7  # this map at 32x32: 57 % band
        s(x, seg)
        assert calls  # training, band below the limit
        calls.clear()
        s.piecewise_max_band_train = 0.01
        s(x, seg)
        assert not calls  # training, band above the training limit
        with torch.no_grad():
            s.eval()(x, seg)
        assert calls  # eval: the eval limit (0.7) applies
    finally:
        PiecewiseModulation.forward = staticmethod(orig)


@pytest.mark.parametrize("classes,size", [(7, 5), (151, 5), (5000, 5), (40, 3)])
def test_distinct_windows_groups_exactly_the_pixels_with_equal_windows(classes, size):
    from semsynth.layers.spade_piecewise import distinct_windows

    ids = rect_ids(classes, 23, 31, batch=2, seed=classes).long()  # [2, 23, 31]
    g = torch.Generator().manual_seed(3)
    ids.view(-1)[torch.randint(0, ids.numel(), (20,), generator=g)] = classes - 1  # some isolated pixels
    pixels = torch.randperm(ids.numel(), generator=g)[:900]
    first, group = distinct_windows(ids, classes, pixels, size)
    r = size // 2
    windows = F.unfold(F.pad(ids.double().unsqueeze(1), (r, r, r, r), value=classes), size)  # [2, size^2, H*W]
    windows = windows.transpose(1, 2).reshape(-1, size * size)[pixels]
    expected = torch.unique(windows, dim=0).shape[0]
    assert first.numel() == expected  # one group per distinct window ...
    assert torch.equal(windows[first[group]], windows)  # ... and every pixel's group has its window
    assert expected < pixels.numel()  # the layout repeats windows (else the test shows nothing)
    first, group = distinct_windows(ids, classes, pixels[:0], size)
    assert first.numel() == group.numel() == 0


def test_spade_training_keeps_the_recipe_not_the_scale_and_rebuilds_it_exactly(monkeypatch):
    import copy
    import contextlib

    import semsynth.layers.spade as spade_module
    from semsynth.layers.spade_piecewise import PiecewiseRecipe

    a, _ = spade_pair()
    b = copy.deepcopy(a)
    ids = rect_ids(9, 32, 32, count=4)
    seg = F.one_hot(ids, 9).permute(0, 3, 1, 2).double()
    x = torch.randn(2, 6, 32, 32, dtype=torch.float64, requires_grad=True)
    a, b = a.double().train(), b.double().train()
    rebuilt = []
    orig = PiecewiseRecipe.assemble
    monkeypatch.setattr(PiecewiseRecipe, "assemble", lambda self, ch=slice(None): rebuilt.append(ch) or orig(self, ch))
    with kept_for_backward() as kept:
        ya = a(x, seg)
    # nothing of x's size is kept but x itself (the scale 1 + gamma is rebuilt from the recipe in backward)
    assert [t for t in kept if isinstance(t, torch.Tensor) and t.numel() == x.numel() and t is not x] == []
    probe = torch.randn_like(ya)
    ga = torch.autograd.grad((ya * probe).sum(), [x, *a.parameters()])
    assert rebuilt == [slice(0, 6)]
    monkeypatch.setattr(spade_module, "saved_as", lambda *args: contextlib.nullcontext())
    yb = b(x, seg)
    gb = torch.autograd.grad((yb * probe).sum(), [x, *b.parameters()])
    assert torch.equal(ya, yb)
    for p, q in zip(ga, gb):
        assert torch.equal(p, q)


def test_split_outputs_are_the_channels_of_one_and_give_its_gradients():
    """``split=c`` returns channels [:c] and [c:] as two tensors (SPADE's gamma and beta, no slicing in backward):
    the same values, the same weight gradients, also where only one of them is used."""
    ids = rect_ids(6, 16, 18).unsqueeze(1).double()
    ws = weights(6, 5, 8, torch.float64)
    whole = piecewise_modulation(ids, *ws)
    gamma, beta = piecewise_modulation(ids, *ws, split=3)
    assert torch.equal(gamma, whole[:, :3]) and torch.equal(beta, whole[:, 3:])
    probe = torch.randn(whole.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ref = torch.autograd.grad((whole * probe).sum(), ws)
    got = torch.autograd.grad((gamma * probe[:, :3]).sum() + (beta * probe[:, 3:]).sum(), ws)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    ref_beta = torch.autograd.grad((piecewise_modulation(ids, *ws)[:, 3:] * probe[:, 3:]).sum(), ws)
    got_beta = torch.autograd.grad((piecewise_modulation(ids, *ws, split=3)[1] * probe[:, 3:]).sum(), ws)
    for a, b in zip(got_beta, ref_beta):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("split", [0, 8, -1])
def test_split_outside_the_channels_is_refused(split):
    ids = rect_ids(4, 8, 8).unsqueeze(1).double()
    with pytest.raises(ValueError, match=f"split={split} must lie between 0 and the 8 output channels"):
        piecewise_modulation(ids, *weights(4, 3, 8, torch.float64), split=split)
