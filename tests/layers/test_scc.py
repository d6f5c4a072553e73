import pytest
import torch

from semsynth.errors import ShapeError
from semsynth.layers import SpatiallyConditionalConv2d, scc_reference


def _loop_formula(x, routing, kernels, bias=None, padding=1):
    """Eq. 4 with an explicit loop over candidates: y = sum_i V_i * (k_i conv F) (+ sum_i V_i b_i)."""
    out = 0
    for i in range(kernels.shape[0]):
        yi = torch.nn.functional.conv2d(x, kernels[i], None, 1, padding)
        if bias is not None:
            yi = yi + bias[i].view(1, -1, 1, 1)
        out = out + routing[:, i : i + 1] * yi
    return out


@pytest.mark.parametrize("n,bias,spectral", [(1, False, False), (3, False, False), (4, True, False),
                                             (3, False, True), (2, True, True)])
def test_scc_fast_path_equals_per_candidate_loop(n, bias, spectral):
    layer = SpatiallyConditionalConv2d(6, 5, n, 3, bias=bias, spectral=spectral)
    if bias:
        torch.nn.init.normal_(layer.bias)
    layer.eval()  # no power iteration, so both sides see the same sigma
    x = torch.randn(2, 6, 9, 7, requires_grad=True)
    routing = torch.softmax(torch.randn(2, n, 9, 7), 1).requires_grad_(True)

    y = layer(x, routing)
    kernels = layer.candidate_weights()
    ref = _loop_formula(x, routing, kernels, layer.bias)
    assert y.shape == (2, 5, 9, 7)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    # Alg. 1 written as in the supplement (stack, multiply, sum) agrees as well
    torch.testing.assert_close(scc_reference(x, routing, kernels, layer.bias), ref, rtol=1e-5, atol=1e-5)

    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, routing, layer.weight], g)
    grads_ref = torch.autograd.grad(ref, [x, routing, layer.weight], g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_scc_float64_exact_and_one_hot_routing_selects_a_kernel():
    layer = SpatiallyConditionalConv2d(3, 4, 3, 3).double()
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    routing = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    routing[:, 1] = 1  # every pixel takes candidate 1
    y = layer(x, routing)
    ref = torch.nn.functional.conv2d(x, layer.weight[1], None, 1, 1)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)


def test_scc_spectral_norm_sigma_matches_largest_singular_value():
    layer = SpatiallyConditionalConv2d(4, 6, 3, 3, spectral=True)
    layer.train()
    for _ in range(50):  # power iteration converges while training
        layer.sn(layer.weight)
    sigma = layer.sn(layer.weight).detach()
    true = torch.linalg.matrix_norm(layer.weight.detach().flatten(2), ord=2)
    torch.testing.assert_close(sigma, true, rtol=1e-4, atol=1e-6)
    eff = layer.candidate_weights().detach().flatten(2)
    torch.testing.assert_close(torch.linalg.matrix_norm(eff, ord=2), torch.ones(3), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("shape,msg", [((2, 2, 8, 8), "expected \\[2, 3, 8, 8\\]"), ((2, 3, 4, 4), "expected"),
                                       ((1, 3, 8, 8), "expected"), ((3, 8, 8), "expected")])
def test_scc_rejects_bad_routing(shape, msg):
    layer = SpatiallyConditionalConv2d(5, 4, 3)
    with pytest.raises(ShapeError, match=msg):
        layer(torch.randn(2, 5, 8, 8), torch.rand(*shape))


def test_scc_rejects_bad_input_channels():
    layer = SpatiallyConditionalConv2d(5, 4, 3)
    with pytest.raises(ShapeError, match="expected \\[B, 5, H, W\\]"):
        layer(torch.randn(2, 4, 8, 8), torch.rand(2, 3, 8, 8))


def test_scc_channels_last_matches_contiguous():
    layer = SpatiallyConditionalConv2d(8, 6, 3, 3, spectral=True).eval()
    x = torch.randn(2, 8, 10, 10)
    r = torch.softmax(torch.randn(2, 3, 10, 10), 1)
    ref = layer(x, r)
    layer.channels_last_()
    assert layer.weight.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
    y = layer(x.contiguous(memory_format=torch.channels_last), r.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


def _scc_pair(spectral, kernel_size=3, stride=1, bias=False):
    import copy

    torch.manual_seed(0)
    layer = SpatiallyConditionalConv2d(6, 5, 3, kernel_size, stride=stride, bias=bias, spectral=spectral).double()
    return layer.train(), copy.deepcopy(layer).train()


@pytest.mark.parametrize("spectral,kernel_size,stride,bias,winograd", [
    (True, 3, 1, False, False), (False, 3, 1, True, False), (True, 1, 1, False, False), (False, 3, 2, False, False),
    (True, 3, 1, False, True)])
def test_scc_recomputed_stack_gives_the_same_outputs_and_gradients(monkeypatch, spectral, kernel_size, stride,
                                                                    bias, winograd):
    from semsynth.layers.winograd import WinogradPolicy

    if winograd:  # F(2x2, 3x3) for these small shapes, in forward and in the recomputation
        monkeypatch.setattr(WinogradPolicy, "enabled", True)  # on any CPU
        for k in ("min_in_channels", "min_out_channels", "min_pixels", "min_eval_pixels"):
            monkeypatch.setattr(WinogradPolicy, k, 1)
    a, b = _scc_pair(spectral, kernel_size, stride, bias)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, 10, 12, generator=g, dtype=torch.float64, requires_grad=True)
    h, w = a.output_size(x)
    logits = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    results = []
    for layer, threshold in ((a, 1), (b, None)):
        monkeypatch.setattr(SpatiallyConditionalConv2d, "recompute_min_pixels", threshold)
        kept = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
            y = layer(x, torch.softmax(logits, 1))
        assert (type(y.grad_fn).__name__ == "_ConvMixRecomputedBackward") == (threshold is not None) or bias
        # recomputed: nothing of the stacked output's size (3 candidates x 5 channels) is kept for backward
        stacked = 2 * 15 * h * w
        assert any(t.numel() == stacked for t in kept) == (threshold is None)
        gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        grads = torch.autograd.grad(y, [x, logits, *layer.parameters()], gy)
        results.append([y, *grads, *layer.buffers()])
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_scc_recomputes_only_large_maps_in_training(monkeypatch):
    from semsynth.layers.recompute import _run_inside

    layer = SpatiallyConditionalConv2d(4, 4, 2).train()
    monkeypatch.setattr(SpatiallyConditionalConv2d, "recompute_min_pixels", 64)
    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    r = torch.softmax(torch.randn(1, 2, 8, 8), 1)
    assert type(layer(x, r).grad_fn).__name__ == "_ConvMixRecomputedBackward"
    assert type(layer(x[:, :, :7], r[:, :, :7]).grad_fn).__name__ != "_ConvMixRecomputedBackward"  # 56 < 64 pixels
    with torch.no_grad():
        assert layer(x, r).grad_fn is None
    with torch.autocast("cpu", dtype=torch.bfloat16):  # backward runs outside autocast: no recomputation
        assert type(layer(x, r).grad_fn).__name__ != "_ConvMixRecomputedBackward"
    # inside a block that recomputes itself (train.recompute) the layer keeps its stack: the block keeps nothing
    assert type(_run_inside(layer, x, r).grad_fn).__name__ != "_ConvMixRecomputedBackward"
