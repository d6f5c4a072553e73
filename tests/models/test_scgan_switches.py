"""The SC-GAN switches the ablation grids turn (src/semsynth/grids/), checked numerically against what they stand for:
the Table 3 "Conv" operator is a plain convolution of cat(F, V) (n of them in a chain), its "BN" is batch norm with a
learned affine, one candidate (Table 5, n = 1) makes SCC a plain convolution and SCN a batch norm with one learned
affine, and Table 6's mappings are the functions they are named after, applied to tau * v."""

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from semsynth import build_generator, one_hot_label
from semsynth.layers import SpatiallyConditionalConv2d, SpatiallyConditionalNorm2d, apply_mapping
from semsynth.models.generators.scgan import RoutedConcatConv, SCResBlock, UnconditionalNorm

TINY = {"name": "scgan", "srg_width": 4, "fc_width": 4, "svg_width": 4, "conv_candidates": 2,
        "norm_candidates": 2, "spade_hidden": 8}


def routing(b=2, n=3, h=8, w=8):
    return torch.softmax(torch.randn(b, n, h, w), 1)


def test_conv_operator_with_one_conv_is_a_plain_conv_of_features_and_routing():
    torch.manual_seed(0)
    op = RoutedConcatConv(5, 7, num_routing=3, num_convs=1, spectral=False)
    x, v = torch.randn(2, 5, 8, 8), routing()
    want = F.conv2d(torch.cat([x, v], 1), op.convs[0].weight, None, padding=1)
    torch.testing.assert_close(op(x, v), want)


def test_conv_operator_chains_n_convs_each_reading_the_routing_map():
    torch.manual_seed(0)
    op = RoutedConcatConv(5, 7, num_routing=3, num_convs=3, spectral=False)
    x, v = torch.randn(2, 5, 8, 8), routing()
    y = F.conv2d(torch.cat([x, v], 1), op.convs[0].weight, None, padding=1)
    for conv in op.convs[1:]:
        y = F.conv2d(torch.cat([F.leaky_relu(y, 0.2), v], 1), conv.weight, None, padding=1)
    torch.testing.assert_close(op(x, v), y)
    assert [c.weight.shape[1] for c in op.convs] == [5 + 3, 7 + 3, 7 + 3]


@pytest.mark.parametrize("kind", ["syncbatch", "batch"])
def test_bn_operator_is_batch_norm_with_a_learned_affine_and_ignores_the_routing(kind):
    torch.manual_seed(0)
    op = UnconditionalNorm(6, kind).train()
    with torch.no_grad():
        op.norm.weight.uniform_(0.5, 1.5)
        op.norm.bias.uniform_(-1, 1)
    bn = nn.BatchNorm2d(6, affine=True).train()
    bn.load_state_dict(op.norm.state_dict())
    x = torch.randn(4, 6, 8, 8) * 3 + 1
    out = op(x, routing(4))
    torch.testing.assert_close(out, bn(x))
    torch.testing.assert_close(op(x, routing(4)), out)  # another routing map: the same output


def test_scc_with_one_candidate_is_a_plain_conv():
    torch.manual_seed(0)
    scc = SpatiallyConditionalConv2d(5, 7, num_candidates=1)
    x = torch.randn(2, 5, 8, 8)
    v = apply_mapping(torch.randn(2, 1, 8, 8), "softmax", 0.05)  # softmax over one candidate: all ones
    assert torch.equal(v, torch.ones_like(v))
    torch.testing.assert_close(scc(x, v), F.conv2d(x, scc.weight[0], None, padding=1))


def test_scn_with_one_candidate_is_batch_norm_with_one_learned_affine():
    torch.manual_seed(0)
    scn = SpatiallyConditionalNorm2d(6, num_candidates=1, norm="batch").train()
    with torch.no_grad():
        scn.candidates.uniform_(-0.5, 0.5)
    bn = nn.BatchNorm2d(6, affine=True).train()
    with torch.no_grad():
        bn.weight.copy_(1 + scn.candidates[0, :6])
        bn.bias.copy_(scn.candidates[0, 6:])
    x = torch.randn(4, 6, 8, 8) * 2 - 1
    torch.testing.assert_close(scn(x, torch.ones(4, 1, 8, 8)), bn(x))


@pytest.mark.parametrize("mapping,fn", [("sigmoid", torch.sigmoid), ("tanh", torch.tanh), ("relu", torch.relu),
                                        ("none", lambda t: t), ("softmax", lambda t: torch.softmax(t, 1))])
def test_table6_mappings_are_the_named_functions_of_tau_times_v(mapping, fn):
    v = torch.randn(2, 3, 4, 4) * 10
    torch.testing.assert_close(apply_mapping(v, mapping, 0.05), fn(0.05 * v))


@functools.lru_cache(maxsize=1)
def reference_generator():
    return build_generator({**TINY, "conv_candidates": 3}, num_classes=5, resolution=32)


@pytest.mark.parametrize("conv_type,norm_type", [("conv", "batch"), ("conv", "scn"), ("scc", "batch"),
                                                 ("scc", "scn")])
def test_table3_cells_build_exactly_their_operators(conv_type, norm_type):
    G = build_generator({**TINY, "conv_type": conv_type, "norm_type": norm_type, "conv_candidates": 3},
                        num_classes=5, resolution=32)
    blocks = [m for m in G.modules() if isinstance(m, SCResBlock)]
    assert len(blocks) == 7
    conv_cls = SpatiallyConditionalConv2d if conv_type == "scc" else RoutedConcatConv
    norm_cls = SpatiallyConditionalNorm2d if norm_type == "scn" else UnconditionalNorm
    for b in blocks:
        assert isinstance(b.conv_0, conv_cls) and isinstance(b.conv_1, conv_cls)
        assert isinstance(b.norm_0, norm_cls) and isinstance(b.norm_1, norm_cls)
        if conv_type == "conv":
            assert len(b.conv_0.convs) == 3  # "we triple its Conv number" (n = 3)
    # the SVG is the same in every cell ("SVG remains intact")
    ref = reference_generator()
    assert {k: v.shape for k, v in G.svg.named_parameters()} == {k: v.shape for k, v in ref.svg.named_parameters()}
    G.train()
    out = G(one_hot_label(torch.randint(0, 5, (2, 32, 32)), 5))
    assert out.shape == (2, 3, 32, 32) and torch.isfinite(out).all()


@pytest.mark.parametrize("n", [1, 8])
def test_table5_candidates_set_the_routing_width(n):
    G = build_generator({**TINY, "svg_width": 8, "conv_candidates": n, "norm_candidates": 4}, num_classes=5,
                        resolution=32).train()
    out = G(one_hot_label(torch.randint(0, 5, (2, 32, 32)), 5), return_aux=True)
    assert all(r.shape[1] == n for r in out.conv_routing)
    assert all(r.shape[1] == 4 for r in out.norm_routing)
    assert G.up_3.conv_0.weight.shape[0] == n  # n kernel candidates per SCC


def test_more_candidates_than_svg_channels_is_refused():
    with pytest.raises(ValueError, match="raise svg_width"):
        build_generator({**TINY, "conv_candidates": 8}, num_classes=5, resolution=32)
