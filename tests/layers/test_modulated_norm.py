"""layers/modulated_norm.py: ``shift + BN(x) * scale`` that keeps no normalised map for backward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from semsynth.layers import SPADE
from semsynth.layers.modulated_norm import modulated_batch_norm, routed_batch_norm
from semsynth.layers.norm import SyncableBatchNorm2d
from semsynth.layers.scn import SpatiallyConditionalNorm2d


def _inputs(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(2, 5, 6, 7, generator=g, dtype=dtype) * 3 + 1).requires_grad_()
    scale = (1 + torch.randn(2, 5, 6, 7, generator=g, dtype=dtype)).requires_grad_()
    shift = torch.randn(2, 5, 6, 7, generator=g, dtype=dtype).requires_grad_()
    return x, scale, shift


def _plain(norm, x, scale, shift):
    return torch.addcmul(shift, norm(x), scale)


@pytest.mark.parametrize("cls", [nn.BatchNorm2d, SyncableBatchNorm2d])
def test_forward_gradients_and_running_statistics_equal_the_two_operators(cls):
    x, scale, shift = _inputs()
    a, b = cls(5, affine=False).double(), cls(5, affine=False).double()
    b.load_state_dict(a.state_dict())
    g = torch.randn(2, 5, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y = modulated_batch_norm(a, x, scale, shift)
    assert type(y.grad_fn).__name__ == "_ModulatedBatchNormBackward"
    grads = torch.autograd.grad(y, (x, scale, shift), g)
    y_ref = _plain(b, x, scale, shift)
    refs = torch.autograd.grad(y_ref, (x, scale, shift), g)
    assert torch.equal(y, y_ref)  # the same native_batch_norm and addcmul calls
    for got, ref in zip(grads, refs):
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k  # running mean, var and num_batches_tracked updated alike


def test_float32_gradients_within_rounding_and_only_the_needed_ones():
    x, scale, shift = (t.detach().float().requires_grad_(r) for t, r in zip(_inputs(), (False, True, False)))
    norm = nn.BatchNorm2d(5, affine=False)
    y = modulated_batch_norm(norm, x, scale, shift)
    (d_scale,) = torch.autograd.grad(y.square().sum(), (scale,))
    ref = torch.autograd.grad(_plain(nn.BatchNorm2d(5, affine=False), x, scale, shift).square().sum(), (scale,))[0]
    torch.testing.assert_close(d_scale, ref, rtol=1e-5, atol=1e-5)


def test_gradcheck():
    x, scale, shift = (t[:, :3, :4, :4].detach().requires_grad_() for t in _inputs(seed=1))
    norm = nn.BatchNorm2d(3, affine=False).double()
    assert torch.autograd.gradcheck(lambda a, b, c: modulated_batch_norm(norm, a, b, c), (x, scale, shift))


def _kept_maps(fn, x, *args) -> set[int]:
    """The storages of the tensors at least as large as ``x`` that ``fn(BatchNorm2d, x, *args)`` keeps for
    backward."""
    kept = []

    def pack(t):
        kept.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(nn.BatchNorm2d(x.shape[1], affine=False), x, *args)
    return {t.untyped_storage().data_ptr() for t in kept if t.numel() >= x.numel()}


def test_keeps_no_normalised_map_for_backward():
    x, scale, shift = _inputs(torch.float32)
    for modulated in (True, False):
        full = _kept_maps(modulated_batch_norm if modulated else _plain, x, scale, shift)
        others = full - {x.untyped_storage().data_ptr(), scale.untyped_storage().data_ptr()}
        # the two operators keep BN(x) (and 1 + gamma is here the caller's scale); the modulated one only x, scale
        assert len(others) == (0 if modulated else 1)


@pytest.mark.parametrize("case", ["eval", "instance", "affine", "no_grad", "momentum_none", "one_value"])
def test_falls_back_to_the_two_operators(case):
    x, scale, shift = _inputs(torch.float32)
    norm = nn.InstanceNorm2d(5) if case == "instance" else nn.BatchNorm2d(5, affine=case == "affine",
                                                                          momentum=None if case == "momentum_none"
                                                                          else 0.1)
    if case == "eval":
        norm.eval()
    if case == "one_value":
        x, scale, shift = (t[:1, :, :1, :1] for t in (x, scale, shift))
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            modulated_batch_norm(norm, x, scale, shift)
        return
    with torch.set_grad_enabled(case != "no_grad"):
        y = modulated_batch_norm(norm, x, scale, shift)
    assert y.grad_fn is None or type(y.grad_fn).__name__ == "AddcmulBackward0"


def test_spade_and_scn_train_through_it_with_the_gradients_of_the_two_operators(monkeypatch):
    torch.manual_seed(0)
    layers = [SPADE(6, 4, hidden=8, kernel_size=3, norm="batch").double(),
              SpatiallyConditionalNorm2d(6, 3, "syncbatch").double()]
    with torch.no_grad():
        layers[1].candidates.normal_()
    x = torch.randn(2, 6, 8, 8, dtype=torch.float64, requires_grad=True)
    cond = [nn.functional.one_hot(torch.randint(0, 4, (2, 8, 8)), 4).permute(0, 3, 1, 2).double(),
            torch.softmax(torch.randn(2, 3, 8, 8, dtype=torch.float64), 1)]
    import semsynth.layers.modulated_norm as mn

    for layer, c in zip(layers, cond):
        results = []
        fused = "_ModulatedBatchNormBackward" if isinstance(layer, SPADE) else "_RoutedModulatedBatchNormBackward"
        for modulated in (True, False):
            if not modulated:
                monkeypatch.setattr(mn, "_context_applies", lambda *a: False)
            layer.zero_grad()
            y = layer(x, c)
            assert (type(y.grad_fn).__name__ == fused) == modulated
            gx, = torch.autograd.grad(y.sin().sum(), (x,), retain_graph=True)
            y.sin().sum().backward()
            results.append([y.detach(), gx] + [p.grad.clone() for p in layer.parameters()])
            monkeypatch.undo()
        for a, b in zip(*results):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def _routed_inputs(dtype=torch.float64, seed=0, size=(2, 5, 6, 7), n=3):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(*size, generator=g, dtype=dtype) * 3 + 1).requires_grad_()
    routing = torch.softmax(torch.randn(size[0], n, *size[2:], generator=g, dtype=dtype), 1).requires_grad_()
    table = torch.randn(n, 2 * size[1], generator=g, dtype=dtype).requires_grad_()
    return x, routing, table


def _routed_plain(norm, x, routing, table):
    """SCN's modulation written out: [scale | shift] = V^T A per pixel, then shift + BN(x) * (1 + scale)."""
    c = x.shape[1]
    mod = torch.einsum("bnhw,nk->bkhw", routing, table)
    return torch.addcmul(mod[:, c:], norm(x), 1 + mod[:, :c])


@pytest.mark.parametrize("cls", [nn.BatchNorm2d, SyncableBatchNorm2d])
def test_routed_forward_gradients_and_running_statistics_equal_the_formula(cls):
    x, routing, table = _routed_inputs()
    a, b = cls(5, affine=False).double(), cls(5, affine=False).double()
    g = torch.randn(2, 5, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y = routed_batch_norm(a, x, routing, table)
    assert type(y.grad_fn).__name__ == "_RoutedModulatedBatchNormBackward"
    y_ref = _routed_plain(b, x, routing, table)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    for got, ref in zip(torch.autograd.grad(y, (x, routing, table), g),
                        torch.autograd.grad(y_ref, (x, routing, table), g)):
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_routed_gradcheck_and_only_the_needed_gradients():
    x, routing, table = (t.detach().requires_grad_() for t in _routed_inputs(seed=1, size=(2, 3, 4, 4), n=2))
    norm = nn.BatchNorm2d(3, affine=False).double()
    assert torch.autograd.gradcheck(lambda a, b, c: routed_batch_norm(norm, a, b, c), (x, routing, table))
    for needs in [(True, False, False), (False, True, False), (False, False, True)]:
        ins = [t.detach().requires_grad_(r) for t, r in zip((x, routing, table), needs)]
        y = routed_batch_norm(norm, *ins)
        assert type(y.grad_fn).__name__ == "_RoutedModulatedBatchNormBackward"
        (got,) = torch.autograd.grad(y.square().sum(), [t for t in ins if t.requires_grad])
        refs = [t.detach().requires_grad_(r) for t, r in zip((x, routing, table), needs)]
        (ref,) = torch.autograd.grad(_routed_plain(norm, *refs).square().sum(), [t for t in refs if t.requires_grad])
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


def test_routed_keeps_only_x_of_its_size_for_backward():
    x, routing, table = (t.detach().float().requires_grad_() for t in _routed_inputs())
    for routed in (True, False):
        full = _kept_maps(routed_batch_norm if routed else _routed_plain, x, routing, table)
        full -= {x.untyped_storage().data_ptr()}
        # the plain form keeps BN(x) and 1 + scale; the routed operator only x (and the small routing map)
        assert len(full) == (0 if routed else 2)


@pytest.mark.parametrize("case", ["eval", "no_grad", "dtype", "instance"])
def test_routed_falls_back_to_the_plain_operators(case):
    x, routing, table = (t.detach().float().requires_grad_() for t in _routed_inputs())
    norm = nn.InstanceNorm2d(5) if case == "instance" else nn.BatchNorm2d(5, affine=False)
    if case == "eval":
        norm.eval()
    if case == "dtype":  # a float64 routing map and table for a float32 input
        routing, table = routing.detach().double(), table.detach().double()
    with torch.set_grad_enabled(case != "no_grad"):
        y = routed_batch_norm(norm, x, routing, table)
    assert y.grad_fn is None or type(y.grad_fn).__name__ == "AddcmulBackward0"
