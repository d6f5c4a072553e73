"""Tensors kept for backward as what rebuilds them (``layers/recompute.py``: ``rebuildable``, ``rebuild_scope``),
and gradient buffers written over saved tensors that nothing reads again (``saved_tensors_reusable``)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef

from semsynth.layers.recompute import rebuild_scope, rebuildable, saved_tensors_reusable
from tests.helpers import kept_for_backward


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    s = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    return x, w, s


def _conv_of_scaled(x, w, s, rebuilt: bool, view: bool = False, changed: bool = False):
    """``conv(x, w / s)`` (a view of ``w / s`` with ``view``; doubled in place after its registration with
    ``changed``); returns the loss, a weak reference to the storage of ``w / s``, and how often it was rebuilt."""
    calls = []

    def divide(a, b):
        calls.append(1)
        return a / b

    with rebuild_scope() if rebuilt else torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        ws = rebuildable(w / s, (w, s), divide)
        if changed:
            ws.mul_(2)
        ref = StorageWeakRef(ws.untyped_storage())
        y = F.conv2d(x, ws[:2] if view else ws, padding=1)  # the conv keeps its weight for the input's gradient
        del ws
    return (y * y.detach().cos()).sum(), ref, calls


@pytest.mark.parametrize("view", [False, True])
def test_a_rebuildable_tensor_is_kept_as_its_sources_and_rebuilt_exactly(view):
    x, w, s = _inputs()
    loss, ref, calls = _conv_of_scaled(x, w, s, rebuilt=True, view=view)
    assert ref.expired() and calls == []  # nothing keeps w / s until backward ...
    grads = torch.autograd.grad(loss, (x, w, s))
    assert calls == [1]  # ... which divides again, once
    loss_ref, ref_ref, _ = _conv_of_scaled(x, w, s, rebuilt=False, view=view)
    assert not ref_ref.expired()  # the caller's pass-through hooks are in charge: w / s kept as it is
    for a, b in zip(grads, torch.autograd.grad(loss_ref, (x, w, s))):
        assert torch.equal(a, b)


def test_a_tensor_changed_in_place_after_its_registration_is_kept_as_it_is():
    x, w, s = _inputs(1)
    loss, ref, calls = _conv_of_scaled(x, w, s, rebuilt=True, changed=True)
    assert not ref.expired()
    grads = torch.autograd.grad(loss, (x, w, s))
    assert calls == []
    ws = (w / s) * 2
    y = F.conv2d(x, ws, padding=1)
    for a, b in zip(grads, torch.autograd.grad((y * y.detach().cos()).sum(), (x, w, s))):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_inactive_without_a_scope_without_gradients_and_under_the_callers_hooks():
    x, w, s = _inputs(2)
    ws = rebuildable(w / s, (w, s), torch.div)  # no scope open: nothing registered
    with rebuild_scope():
        y = F.conv2d(x, ws, padding=1)
    ref = StorageWeakRef(ws.untyped_storage())
    del ws
    assert not ref.expired()
    with torch.no_grad(), rebuild_scope():
        assert torch._C._autograd._top_saved_tensors_default_hooks(False) is None  # no hooks opened
    seen = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: seen.append(t) or t, lambda t: t):
        with rebuild_scope():
            ws = rebuildable(w / s, (w, s), torch.div)
            y = F.conv2d(x, ws, padding=1)
    # the caller's hooks saw w / s itself: semsynth's were not opened over them
    assert any(t.untyped_storage().data_ptr() == ws.untyped_storage().data_ptr() for t in seen)
    assert y.grad_fn is not None


def _probe_reusable():
    seen = []

    class Probe(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            return t * 2

        @staticmethod
        def backward(ctx, g):
            seen.append(saved_tensors_reusable())
            return g * 2

    return Probe, seen


def test_saved_tensors_are_reusable_only_when_the_graph_is_freed():
    Probe, seen = _probe_reusable()
    t = torch.randn(3, requires_grad=True)
    Probe.apply(t).sum().backward()
    Probe.apply(t).sum().backward(retain_graph=True)
    torch.autograd.grad(Probe.apply(t).sum(), t, create_graph=True)
    assert seen == [True, False, False]
    assert not saved_tensors_reusable()  # outside any backward


def test_the_candidates_gradient_is_written_over_the_stacked_map_unless_the_graph_is_kept():
    from semsynth.layers.scc import mix_candidates

    g = torch.Generator().manual_seed(3)
    base = torch.randn(2, 3, 4, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(2, 4, 5, 6, generator=g, dtype=torch.float64)
    results = []
    for retain in (False, True):
        stacked = base * 1.5  # a fresh map, as a convolution's output
        ptrs = []
        stacked.register_hook(lambda grad: ptrs.append(grad.data_ptr()))
        out = mix_candidates(stacked, torch.softmax(logits, 1))
        grads = torch.autograd.grad((out * probe).sum(), (base, logits), retain_graph=retain)
        # reused: the gradient of the stacked map lives in the stacked map's own memory
        assert (ptrs[0] == stacked.data_ptr()) == (not retain)
        if retain:  # the kept graph still holds the stacked map's values: a second backward agrees
            again = torch.autograd.grad((out * probe).sum(), (base, logits))
            assert all(torch.equal(a, b) for a, b in zip(grads, again))
        results.append(grads)
    for a, b in zip(*results):
        assert torch.equal(a, b)
    reference = torch.autograd.grad(((base * 1.5) * torch.softmax(logits, 1).unsqueeze(2)).sum(1)
                                    .mul(probe).sum(), (base, logits))
    for a, b in zip(results[0], reference):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_spectral_norm_weights_are_kept_as_the_weight_and_sigma():
    from semsynth.layers.spectral import spectral_norm

    torch.manual_seed(0)
    a = spectral_norm(nn.Conv2d(3, 4, 3, padding=1)).double().train()
    b = copy.deepcopy(a)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    with kept_for_backward() as kept:
        ya = a(x)
    original = a.parametrizations.weight.original
    weights = [t for t in kept if isinstance(t, torch.Tensor) and t.shape == original.shape]
    assert weights and all(t.untyped_storage().data_ptr() == original.untyped_storage().data_ptr() for t in weights)
    assert sum(not isinstance(t, torch.Tensor) for t in kept) == 1  # one recipe: W / sigma
    ga = torch.autograd.grad(ya.square().sum(), (x, *a.parameters()))
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):  # the plain path
        yb = b(x)
    gb = torch.autograd.grad(yb.square().sum(), (x, *b.parameters()))
    assert torch.equal(ya, yb) and all(torch.equal(p, q) for p, q in zip(ga, gb))
    for (k, u), v in zip(a.named_buffers(), b.buffers()):
        assert torch.equal(u, v), k


@pytest.mark.parametrize("needs", [(True, True, True), (True, False, False), (False, True, False),
                                   (False, False, True)])
def test_scn_with_its_activation_equals_the_two_operators(needs):
    from semsynth.layers.scn import SpatiallyConditionalNorm2d

    g = torch.Generator().manual_seed(4)
    a = SpatiallyConditionalNorm2d(5, 3, "batch").double().train()
    with torch.no_grad():
        a.candidates.normal_(generator=g)
    b = copy.deepcopy(a)
    x = torch.randn(2, 5, 6, 7, generator=g, dtype=torch.float64)
    logits = torch.randn(2, 3, 6, 7, generator=g, dtype=torch.float64)
    probe = torch.randn(2, 5, 6, 7, generator=g, dtype=torch.float64)
    outs, grads = [], []
    for m, fused in ((a, True), (b, False)):
        xi, li = x.clone().requires_grad_(needs[0]), logits.clone().requires_grad_(needs[1])
        m.candidates.requires_grad_(needs[2])
        y = m(xi, torch.softmax(li, 1), negative_slope=0.2) if fused else \
            F.leaky_relu(m(xi, torch.softmax(li, 1)), 0.2)
        assert (type(y.grad_fn).__name__ == "_RoutedModulatedBatchNormBackward") == fused
        outs.append(y)
        grads.append(torch.autograd.grad((y * probe).sum(), [t for t in (xi, li, m.candidates) if t.requires_grad]))
    assert torch.equal(outs[0], outs[1])
    for p, q in zip(*grads):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-10)
    for (k, u), v in zip(a.named_buffers(), b.buffers()):  # running statistics updated once, as by the two
        assert torch.equal(u, v), k


def test_scn_output_is_rebuilt_for_the_conv_after_it_not_kept():
    from semsynth.layers.scn import SpatiallyConditionalNorm2d

    g = torch.Generator().manual_seed(5)
    norm = SpatiallyConditionalNorm2d(5, 3, "batch").double().train()
    conv = nn.Conv2d(5, 4, 3, padding=1).double()
    x = torch.randn(2, 5, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    routing = torch.softmax(torch.randn(2, 3, 6, 7, generator=g, dtype=torch.float64), 1)
    with kept_for_backward() as kept:
        h = norm(x, routing, negative_slope=0.2)
        ref = StorageWeakRef(h.untyped_storage())
        y = conv(h)
        del h
    assert ref.expired()
    big = [t for t in kept if isinstance(t, torch.Tensor) and t.numel() >= x.numel()]
    assert all(t.untyped_storage().data_ptr() == x.untyped_storage().data_ptr() for t in big)  # x only
    got = torch.autograd.grad(y.sin().sum(), (x, norm.candidates, conv.weight))
    plain = copy.deepcopy(norm)
    plain.param_free_norm.running_mean.zero_()
    plain.param_free_norm.running_var.fill_(1)
    y2 = conv(F.leaky_relu(plain(x, routing), 0.2))
    assert torch.equal(y, y2)
    for p, q in zip(got, torch.autograd.grad(y2.sin().sum(), (x, plain.candidates, conv.weight))):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-10)


def test_scgan_training_step_keeps_less_with_the_same_gradients():
    from semsynth.models import build_generator

    torch.manual_seed(0)
    G = build_generator({"name": "scgan", "srg_width": 4, "fc_width": 4, "svg_width": 4, "resolution": 64,
                         "conv_candidates": 2, "norm_candidates": 2}, num_classes=5).double().train()
    H = copy.deepcopy(G)
    ids = torch.randint(0, 5, (2, 8, 8), generator=torch.Generator().manual_seed(1))
    sem = F.one_hot(ids.repeat_interleave(8, 1).repeat_interleave(8, 2), 5).permute(0, 3, 1, 2).double()
    params = {p.untyped_storage().data_ptr() for m in (G, H) for p in m.parameters()}

    def activations(tensors) -> int:  # the distinct storages kept, parameters aside
        kept = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                for t in tensors if isinstance(t, torch.Tensor)}
        return sum(n for ptr, n in kept.items() if ptr not in params)

    sizes = []
    with kept_for_backward() as kept:
        out = G(sem)
    sizes.append(activations(kept))
    ga = torch.autograd.grad(out.square().mean(), list(G.parameters()), allow_unused=True)
    plain = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: plain.append(t) or t, lambda t: t):
        out2 = H(sem)
    sizes.append(activations(plain))
    gb = torch.autograd.grad(out2.square().mean(), list(H.parameters()), allow_unused=True)
    assert torch.equal(out, out2)
    for (k, _), p, q in zip(G.named_parameters(), ga, gb):
        assert (p is None) == (q is None), k
        if p is not None:
            torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12, msg=k)
    assert sizes[0] < 0.9 * sizes[1], sizes
    # every SCN output (two per residual block) is kept as its recipe by the SCC after it
    from semsynth.layers.modulated_norm import _routed_output

    recipes = [t for t in kept if not isinstance(t, torch.Tensor)
               and getattr(t.rebuild, "args", (None,))[0] is _routed_output]
    assert len(recipes) == 2 * 7


def test_scn_backward_takes_the_pass_that_rebuilt_its_output_for_the_conv(monkeypatch):
    import semsynth.layers.modulated_norm as mn
    from semsynth.layers.scn import SpatiallyConditionalNorm2d

    g = torch.Generator().manual_seed(6)
    norm = SpatiallyConditionalNorm2d(5, 3, "batch").double().train()
    conv = nn.Conv2d(5, 4, 3, padding=1).double()
    x = torch.randn(2, 5, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    routing = torch.softmax(torch.randn(2, 3, 6, 7, generator=g, dtype=torch.float64), 1)
    passes = []
    original = mn._routed_forward
    monkeypatch.setattr(mn, "_routed_forward", lambda *a: passes.append(a[3] is None) or original(*a))
    with rebuild_scope():
        y = conv(norm(x, routing, negative_slope=0.2))
    torch.autograd.grad(y.sin().sum(), (x, norm.candidates))
    # the forward (with the running statistics), then one pass without them: the conv's rebuild, which the
    # norm's backward takes instead of computing it again
    assert passes == [False, True]


def test_piecewise_spade_output_is_rebuilt_for_the_conv_after_it_not_kept():
    from tests.layers.test_spade_piecewise_train import rect_ids, spade_pair

    a, _ = spade_pair()
    a = a.double().train()
    plain = copy.deepcopy(a)
    conv = nn.Conv2d(6, 4, 3, padding=1).double()
    seg = F.one_hot(rect_ids(9, 32, 32, count=4), 9).permute(0, 3, 1, 2).double()
    x = torch.randn(2, 6, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(7),
                    requires_grad=True)
    with kept_for_backward() as kept:
        h = a(x, seg)
        ref = StorageWeakRef(h.untyped_storage())
        y = conv(h)
        del h
    assert ref.expired()  # the conv keeps x and the piecewise recipe, not the SPADE output
    assert all(t.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
               for t in kept if isinstance(t, torch.Tensor) and t.numel() >= x.numel())
    got = torch.autograd.grad(y.sin().sum(), (x, *a.parameters(), conv.weight))
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):  # the plain path: all kept
        y2 = conv(plain(x, seg))
    assert torch.equal(y, y2)
    for p, q in zip(got, torch.autograd.grad(y2.sin().sum(), (x, *plain.parameters(), conv.weight))):
        assert torch.equal(p, q)


def test_svg_keeps_its_activated_label_maps_as_the_label_pyramid():
    from semsynth.models.generators.scgan import SemanticVectorGenerator

    torch.manual_seed(0)
    svg = SemanticVectorGenerator(5, 5, width=4, num_stages=6).double().train()
    plain = copy.deepcopy(svg)
    ids = torch.randint(0, 5, (2, 16, 16), generator=torch.Generator().manual_seed(1))
    sem = F.one_hot(ids.repeat_interleave(8, 1).repeat_interleave(8, 2), 5).permute(0, 3, 1, 2).double()
    with kept_for_backward() as kept:
        feats, rgb = svg(sem)
    # the 32x32, 64x64 and 128x128 stages (the split conv on a previous stage of >= 16x16; no one-hot look-ups at
    # this width) keep their labels as recipes
    rebuilt = [t for t in kept if not isinstance(t, torch.Tensor)
               and getattr(getattr(t.rebuild, "args", (None,))[0], "__name__", "") == "_activate"]
    assert len(rebuilt) == 3
    loss = sum((f * f.detach().cos()).sum() for f in feats) + rgb.square().sum()
    got = torch.autograd.grad(loss, list(svg.parameters()))
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        feats2, rgb2 = plain(sem)
    loss2 = sum((f * f.detach().cos()).sum() for f in feats2) + rgb2.square().sum()
    assert all(torch.equal(f, g) for f, g in zip(feats, feats2))
    for p, q in zip(got, torch.autograd.grad(loss2, list(plain.parameters()))):
        assert torch.equal(p, q)


def test_a_view_of_a_rebuildable_tensor_in_another_dimension_order_is_rebuilt_in_that_order():
    x, w, s = _inputs(8)
    calls = []

    def divide(a, b):  # rebuilt contiguous, while the announced tensor is laid out [in, out, kh, kw]
        calls.append(1)
        return a / b

    with rebuild_scope():
        ws = (w / s).transpose(0, 1).contiguous().transpose(0, 1)  # its own memory, [in, out, ...] order
        assert not ws.is_contiguous()
        rebuildable(ws, (w, s), divide)
        y = F.conv2d(x, ws[1:], padding=1)  # a view of it: kept as the recipe
    del ws
    grads = torch.autograd.grad(y.sum(), (x, w, s))
    assert calls == [1]
    ref = F.conv2d(x, (w / s)[1:], padding=1)
    for a, b in zip(grads, torch.autograd.grad(ref.sum(), (x, w, s))):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
