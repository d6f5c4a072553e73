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
