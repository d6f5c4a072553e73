import pytest
import torch

from semsynth.errors import ShapeError
from semsynth.layers import SpatiallyConditionalNorm2d


def _formula(x, routing, A, eps=1e-5, instance=False):
    """Eq. 5 in the (1 + s) form of Alg. 2, with explicit sums over the candidates."""
    dims = (2, 3) if instance else (0, 2, 3)
    mu = x.mean(dims, keepdim=True)
    var = x.var(dims, unbiased=False, keepdim=True)
    normed = (x - mu) / torch.sqrt(var + eps)
    c = x.shape[1]
    scale = sum(routing[:, i : i + 1] * A[i, :c].view(1, c, 1, 1) for i in range(A.shape[0]))
    shift = sum(routing[:, i : i + 1] * A[i, c:].view(1, c, 1, 1) for i in range(A.shape[0]))
    return normed * (1 + scale) + shift


@pytest.mark.parametrize("norm", ["batch", "syncbatch", "instance"])
def test_scn_equals_formula_forward_and_backward(norm):
    n, c = 4, 6
    layer = SpatiallyConditionalNorm2d(c, n, norm).train()
    with torch.no_grad():
        layer.candidates.normal_()
    x = torch.randn(3, c, 5, 7, requires_grad=True)
    routing = torch.softmax(torch.randn(3, n, 5, 7), 1).requires_grad_(True)
    y = layer(x, routing)
    ref = _formula(x, routing, layer.candidates, instance=norm == "instance")
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    for a, b in zip(torch.autograd.grad(y, [x, routing, layer.candidates], g),
                    torch.autograd.grad(ref, [x, routing, layer.candidates], g)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_scn_starts_as_plain_normalisation():
    layer = SpatiallyConditionalNorm2d(8, 3, "batch").train()
    assert torch.count_nonzero(layer.candidates) == 0 and layer.candidates.shape == (3, 16)
    x = torch.randn(4, 8, 6, 6)
    y = layer(x, torch.softmax(torch.randn(4, 3, 6, 6), 1))
    torch.testing.assert_close(y, torch.nn.functional.batch_norm(x, None, None, training=True), rtol=1e-5, atol=1e-5)


def test_scn_table_layout_scale_then_shift():
    layer = SpatiallyConditionalNorm2d(2, 2, "none")
    with torch.no_grad():
        layer.candidates.copy_(torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 5.0, 5.0]]))
    x = torch.ones(1, 2, 1, 1)
    r0 = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    r1 = torch.tensor([0.0, 1.0]).view(1, 2, 1, 1)
    assert torch.allclose(layer(x, r0), torch.full((1, 2, 1, 1), 2.0))  # scale row: x * (1 + 1)
    assert torch.allclose(layer(x, r1), torch.full((1, 2, 1, 1), 6.0))  # shift row: x + 5


def test_scn_rejects_bad_routing():
    layer = SpatiallyConditionalNorm2d(4, 3)
    with pytest.raises(ShapeError, match="routing map has shape \\(2, 4, 5, 5\\), expected \\[2, 3, 5, 5\\]"):
        layer(torch.randn(2, 4, 5, 5), torch.rand(2, 4, 5, 5))
    with pytest.raises(ShapeError, match="expected \\[2, 3, 5, 5\\]"):
        layer(torch.randn(2, 4, 5, 5), torch.rand(2, 3, 10, 10))
