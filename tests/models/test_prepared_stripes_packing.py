"""Less memory and time in a prepared SC-GAN's forward on the CPU (issue 13): the last block and the output conv
in horizontal stripes with a halo of the rows they read (the same image), the deep blocks' kernels packed once in
oneDNN's layout (the same convolution), the label ids of a stripe read from the whole map's, and tensor
accounting that skips oneDNN's packed tensors."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from semsynth import inference_prep
from semsynth.config import load_config
from semsynth.inference_prep import (
    FINEST_STRIPES_CPU,
    PreparedSCC,
    PrepareError,
    _cached_ids,
    _clear_ids_cache,
    pack_deep_kernels,
    prepare_for_inference,
    set_finest_stripes,
)
from semsynth.layers import SpatiallyConditionalConv2d, semantic_input
from semsynth.layers.packed_conv import PackedKernel
from semsynth.layers.spade_piecewise import one_hot_ids
from semsynth.models import build_generator
from semsynth.models.generators.scgan import SCGANGenerator
from semsynth.utils.memory import TensorPeak

from .test_inference_prepare import blocky, randomise, scgan_ade_small

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")


def _model(spec: dict | None = None, size=(64, 64), batch: int = 2, instance: bool = False):
    torch.manual_seed(0)
    spec = dict(spec or scgan_ade_small())
    spec["use_instance"] = instance
    G = build_generator(spec)
    ids = blocky(151, max(size), batch=batch)[:, : size[0], : size[1]]
    sem = semantic_input(ids, 151, None)
    if instance:
        sem = torch.cat([sem, (torch.rand_like(sem[:, :1]) < 0.1).float()], 1)
    randomise(G, sem, None)
    return G, sem


@pytest.mark.parametrize("stripes", [2, 3, 5])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_stripes_give_the_whole_map_image(stripes, dtype):
    G, sem = _model(size=(96, 64), instance=True)  # a size other than the model's resolution, an instance channel
    G, sem = G.to(dtype), sem.to(dtype)
    with torch.no_grad():
        ref = G(sem)
        P = prepare_for_inference(G, stripes=1)
        whole = P(sem)
        set_finest_stripes(P, stripes)
        out = P(sem)
    assert P.finest_stripes == stripes and P.finest_halo == 4  # conv_img 1 + the shortcut: SPADE 2, conv 1
    assert out.shape == ref.shape and out.is_contiguous()
    assert (out - whole).abs().max().item() <= (1e-12 if dtype == torch.float64 else 1e-6)
    assert (out - ref).abs().max().item() <= (1e-10 if dtype == torch.float64 else 5e-5)


def test_the_halo_follows_the_layers():
    """The ablation's routed concat convs chain three 3x3 convs each: 1 + 3 + 3 rows, and the image stays the same."""
    spec = {**scgan_ade_small(), "norm_type": "batch", "param_free_norm": "batch", "conv_type": "conv"}
    G, sem = _model(spec)
    with torch.no_grad():
        P = prepare_for_inference(G, stripes=1)
        whole = P(sem)
        set_finest_stripes(P, 3)
        out = P(sem)
    assert P.finest_halo == 7
    assert (out - whole).abs().max().item() <= 1e-6


def test_stripes_where_they_would_change_the_image_are_refused():
    spec = {**scgan_ade_small(), "param_free_norm": "instance"}  # per-image statistics
    G, _ = _model(spec)
    P = prepare_for_inference(G)  # the default leaves the whole map
    assert P.finest_stripes == 1
    with pytest.raises(PrepareError, match="per-image norm"):
        set_finest_stripes(P, 2)
    with pytest.raises(PrepareError, match="per-image norm"):
        prepare_for_inference(G, stripes=2)
    set_finest_stripes(P, 1)  # always valid


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_stripes_must_be_a_whole_number(bad):
    G, _ = _model()
    with pytest.raises(ValueError, match="whole number >= 1"):
        prepare_for_inference(G, stripes=bad)


def test_stripes_and_packing_are_for_scgan_only():
    G = build_generator(dict(load_config("spade-synthetic-faces").generator))
    with pytest.raises(PrepareError, match="only an SC-GAN"):
        prepare_for_inference(G, stripes=2)
    with pytest.raises(PrepareError, match="only an SC-GAN"):
        prepare_for_inference(G, pack=True)
    with pytest.raises(TypeError, match="pack must be True, False or None"):
        prepare_for_inference(G, pack="yes")


def test_the_default_on_the_cpu_and_only_in_inference(monkeypatch):
    G, sem = _model()
    assert prepare_for_inference(G).finest_stripes == 1  # a small model: its last block reads 128 KiB
    monkeypatch.setattr(inference_prep, "STRIPES_MIN_BYTES", inference_prep._finest_map_bytes(G))
    P = prepare_for_inference(G)
    assert isinstance(P, SCGANGenerator) and P.finest_stripes == FINEST_STRIPES_CPU
    calls = []
    orig = SCGANGenerator._finest_in_stripes
    monkeypatch.setattr(SCGANGenerator, "_finest_in_stripes", lambda self, *a: calls.append(1) or orig(self, *a))
    with torch.no_grad():
        P(sem)
        P(sem, return_aux=True)  # the aux outputs: the whole map
    assert calls == [1]
    P(sem)  # gradients enabled: the whole map
    assert calls == [1]


def test_ids_of_a_band_of_rows_come_from_the_whole_map():
    sem = semantic_input(blocky(7, 32, batch=2), 7, None)
    _clear_ids_cache()
    whole = _cached_ids(sem)
    assert torch.equal(whole, one_hot_ids(sem))
    band = sem[:, :, 5:19]
    assert torch.equal(_cached_ids(band), whole[:, :, 5:19])
    assert _cached_ids(sem) is whole  # the cache still holds the whole map's
    cols = sem[:, :, :, 3:20]  # not a band of rows: found on its own
    assert torch.equal(_cached_ids(cols), one_hot_ids(cols))
    _clear_ids_cache()


def test_block_sizes():
    G = build_generator(dict(load_config("scgan-ade20k").generator))
    sizes = G.block_sizes()
    assert sizes["head_0"] == (8, 8) and sizes["G_middle_0"] == sizes["G_middle_1"] == (16, 16)
    assert sizes["up_0"] == (32, 32) and sizes["up_3"] == (256, 256)
    assert G.block_sizes((128, 192))["up_3"] == (128, 192)


@needs_onednn
@pytest.mark.parametrize("size", [(8, 8), (16, 12)])
def test_a_packed_kernel_is_the_same_convolution(size):
    torch.manual_seed(0)
    w = torch.randn(24, 16, 3, 3)
    k = PackedKernel(w, size)
    b = torch.randn(24)
    for shape in [(2, 16, *size), (1, 16, 5, 7)]:  # its size; another size (the plain kernel again)
        x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            assert torch.allclose(k(x, b), F.conv2d(x, w, b, padding=1), atol=1e-5)
    assert torch.equal(k.dense(), w)
    assert torch.equal(copy.deepcopy(k).dense(), w)
    x = torch.randn(1, 16, *size, requires_grad=True)  # gradients: the plain kernel, differentiable in x
    k(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # autocast: the plain kernel
        y = k(torch.randn(1, 16, *size))
    assert y.shape == (1, 24, *size)
    with pytest.raises(ValueError, match="float32 CPU weight"):
        PackedKernel(w.double(), size)


@needs_onednn
def test_prepared_scgan_packs_its_deep_kernels():
    G, sem = _model()
    with torch.no_grad():
        plain = prepare_for_inference(G, pack=False, stripes=1)(sem)
        P = prepare_for_inference(G, stripes=1)  # the default on the CPU: packed
        out = P(sem)
    sizes = P.block_sizes()
    packed = {n for n, m in P.named_modules() if isinstance(m, PreparedSCC)}
    expected = {f"{b}.{c}" for b, (h, w) in sizes.items() if h * w <= 32 * 32 for c in ("conv_0", "conv_1")}
    assert packed == expected and packed  # the 64x64 model: every block up to 32x32
    assert P.head_0.conv_0.kernel.size == sizes["head_0"]
    assert not any(isinstance(m, SpatiallyConditionalConv2d) for n, m in P.named_modules() if n in packed)
    assert (out - plain).abs().max().item() <= 1e-6
    assert pack_deep_kernels(P) == 0  # nothing left to pack
    with torch.no_grad(), TensorPeak(P) as peak:  # oneDNN's packed tensors have no storage to count
        P(sem)
    assert peak.peak_bytes > 0
    with pytest.raises(Exception, match="routing map has shape"):
        P.head_0.conv_0(torch.randn(1, P.head_0.conv_0.in_channels, 2, 2), torch.rand(1, 2, 2, 2))
