"""A prepared SC-GAN on the CPU keeps its feature maps channels-last (``prepare_for_inference(channels_last=None)``,
issue 13): the same outputs as the contiguous layout (float64: 1e-10), the image returned contiguous, and each
layer that handles the layout itself (the up-sampling conv, the routing's channel pooling, SCN, SPADE's piecewise
modulation, Winograd's rule) equal in both layouts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from semsynth.config import load_config
from semsynth.inference_prep import PreparedSCN, PreparedSPADE, prepare_for_inference
from semsynth.layers import SPADE, SpatiallyConditionalNorm2d, semantic_input
from semsynth.layers.layout import is_channels_last
from semsynth.layers.routing import channel_pool
from semsynth.layers.up_conv import up2_conv3x3
from semsynth.layers.winograd import WinogradPolicy, winograd_pays
from semsynth.models import build_generator
from semsynth.models.generators.scgan import SCResBlock

from .test_inference_prepare import blocky, randomise, scgan_ade_small

CL = torch.channels_last


def _scgan(dtype=torch.float64):
    torch.manual_seed(0)
    G = build_generator(scgan_ade_small())
    sem = semantic_input(blocky(151, 64), 151, None)
    randomise(G, sem, None)
    return G.to(dtype), sem.to(dtype)


def _block_layouts(P, sem):
    seen = []
    hooks = [m.register_forward_hook(lambda m, a, out: seen.append(is_channels_last(out)))
             for m in P.modules() if isinstance(m, SCResBlock)]
    with torch.no_grad():
        out = P(sem, return_aux=True)
    for h in hooks:
        h.remove()
    return out, seen


def test_prepared_scgan_runs_channels_last_on_the_cpu_with_equal_outputs():
    G, sem = _scgan()
    with torch.no_grad():
        ref = G(sem, return_aux=True)
    P = prepare_for_inference(G)  # default: channels-last (an SC-GAN on the CPU)
    out, layouts = _block_layouts(P, sem)
    assert layouts and all(layouts), layouts  # every residual block's output channels-last
    assert out.image.is_contiguous() and P(sem).is_contiguous()  # the image as the unprepared model returns it
    assert (out.image - ref.image).abs().max() <= 1e-10
    assert (out.coarse_rgb - ref.coarse_rgb).abs().max() <= 1e-10
    for a, b in zip(out.norm_routing, ref.norm_routing):
        assert (a - b).abs().max() <= 1e-10
    plain = prepare_for_inference(G, channels_last=False)
    out2, layouts2 = _block_layouts(plain, sem)
    assert layouts2 and not any(layouts2)
    assert (out2.image - out.image).abs().max() <= 1e-10
    assert not any(m.weight.is_contiguous(memory_format=CL) and not m.weight.is_contiguous()
                   for m in plain.modules() if isinstance(m, torch.nn.Conv2d))


def test_channels_last_in_float32_and_only_for_scgan_by_default():
    G, sem = _scgan(torch.float32)
    with torch.no_grad():
        ref = G(sem)
        out = prepare_for_inference(G)(sem)
    assert (out - ref).abs().max() <= 5e-5
    spade = build_generator(dict(load_config("spade-synthetic-faces").generator))
    P = prepare_for_inference(spade)
    assert not any(is_channels_last(m.weight) for m in P.modules() if isinstance(m, torch.nn.Conv2d))


def test_up2_conv3x3_in_channels_last_equals_the_up_sampled_conv():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 7, 6, generator=g, dtype=torch.float64)
    w = torch.randn(4, 5, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    ref = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, b, padding=1)
    out = up2_conv3x3(x.contiguous(memory_format=CL), w, b)
    assert is_channels_last(out) and out.shape == ref.shape
    assert (out - ref).abs().max() <= 1e-12


def test_channel_pool_in_channels_last():
    x = torch.randn(2, 12, 5, 7, dtype=torch.float64)
    out = channel_pool(x.contiguous(memory_format=CL), 5)
    assert is_channels_last(out)
    assert (out - channel_pool(x, 5)).abs().max() <= 1e-12


@pytest.mark.parametrize("chunk_bytes", [None, 48])  # 48: one pixel's modulation per chunk (float64, 6 channels)
def test_prepared_scn_and_spade_in_channels_last(chunk_bytes):
    torch.manual_seed(0)
    scn = SpatiallyConditionalNorm2d(6, 4, "batch").double().eval()
    with torch.no_grad():
        scn.candidates.normal_()
        scn.param_free_norm.running_mean.normal_()
    x = torch.randn(2, 6, 9, 8, dtype=torch.float64)
    r = torch.softmax(torch.randn(2, 4, 9, 8, dtype=torch.float64), 1)
    p = PreparedSCN(scn)
    if chunk_bytes:
        p.mod_chunk_bytes = chunk_bytes
    with torch.no_grad():
        ref = scn(x, r)
        a = p(x, r)
        c = p(x.contiguous(memory_format=CL), r.contiguous(memory_format=CL))
    assert is_channels_last(c) and (a - ref).abs().max() <= 1e-12 and (c - ref).abs().max() <= 1e-12

    spade = SPADE(6, 5, 8, 3, "batch").double().eval()
    sp = PreparedSPADE(spade)
    if chunk_bytes:
        sp.mod_chunk_bytes = chunk_bytes
    seg = semantic_input(blocky(5, 16, batch=2), 5, None).double()
    x = torch.randn(2, 6, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        ref = spade(x, seg)
        nchw = sp(x, seg)
        cl = sp(x.contiguous(memory_format=CL), seg)
    assert is_channels_last(cl)
    assert (nchw - ref).abs().max() <= 1e-10 and (cl - ref).abs().max() <= 1e-10


def test_winograd_leaves_channels_last_maps_to_the_direct_conv(monkeypatch):
    monkeypatch.setattr(WinogradPolicy, "enabled", True)
    x = torch.zeros(1, 512, 32, 32)
    assert winograd_pays(x, 512, 768, backward=False)
    assert not winograd_pays(x.contiguous(memory_format=CL), 512, 768, backward=False)


@pytest.mark.parametrize("bad", ["yes", 1])
def test_channels_last_must_be_a_bool_or_none(bad):
    G, _ = _scgan(torch.float32)
    with pytest.raises(TypeError, match="channels_last"):
        prepare_for_inference(G, channels_last=bad)
