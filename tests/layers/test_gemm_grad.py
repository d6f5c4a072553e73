import pytest
import torch
import torch.nn.functional as F
from torch import nn

from semsynth.layers import SpatiallyConditionalConv2d, gemm_grad, spectral_norm
from semsynth.layers.gemm_grad import (
    GemmGradConv2d,
    GemmGradPolicy,
    conv2d_gemm_grad,
    gemm_conv_backward,
    gemm_grad_pays,
)
from semsynth.layers.winograd import WinogradPolicy


@pytest.fixture
def everywhere(monkeypatch):
    """The policy lowered so that the matrix-product backward runs at test sizes (and Winograd off)."""
    for k, v in {"enabled": True, "max_pixels": 10**9, "min_weight": 1}.items():
        monkeypatch.setattr(GemmGradPolicy, k, v)
    monkeypatch.setattr(WinogradPolicy, "enabled", False)


@pytest.mark.parametrize("b,cin,cout,h,w,pad", [(1, 3, 4, 5, 7, 1), (3, 5, 6, 6, 6, 1), (2, 4, 2, 7, 5, 0),
                                                (1, 2, 3, 3, 3, 0), (2, 1, 1, 1, 4, 1)])
def test_gradients_equal_the_direct_convolution_in_float64(b, cin, cout, h, w, pad):
    x = torch.randn(b, cin, h, w, dtype=torch.float64, requires_grad=True)
    k = torch.randn(cout, cin, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(cout, dtype=torch.float64, requires_grad=True)
    y = GemmGradConv2d.apply(x, k, bias, pad)
    ref = F.conv2d(x, k, bias, 1, pad)
    assert torch.equal(y, ref)  # the same forward: oneDNN's direct convolution
    g = torch.randn_like(ref)
    for a, r in zip(torch.autograd.grad(y, [x, k, bias], g), torch.autograd.grad(ref, [x, k, bias], g)):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)
    dx, dw = gemm_conv_backward(g, x.detach(), k.detach(), pad, need_x=False)
    assert dx is None and dw.shape == k.shape
    assert torch.autograd.gradcheck(lambda a, c: GemmGradConv2d.apply(a, c, None, pad), (x, k))


def test_float32_rounding_at_the_deep_shapes():
    x = torch.randn(1, 512, 8, 8, requires_grad=True)
    k = (torch.randn(1536, 512, 3, 3) * 0.02).requires_grad_()
    g = torch.randn(1, 1536, 8, 8)
    ours = torch.autograd.grad(GemmGradConv2d.apply(x, k, None, 1), [x, k], g)
    exact = torch.autograd.grad(F.conv2d(x.double(), k.double(), None, 1, 1), [x, k], g.double())
    for a, e in zip(ours, exact):
        assert ((a.double() - e).abs().max() / e.abs().max()).item() < 1e-5


def test_policy(monkeypatch):
    monkeypatch.setattr(GemmGradPolicy, "enabled", True)  # the rule itself, on any CPU
    assert gemm_grad_pays(torch.zeros(1, 512, 16, 16), 512, 1536, True)
    assert gemm_grad_pays(torch.zeros(4, 1024, 18, 34), 1024, 1024, True)  # pix2pixHD's padded 16x32 map
    assert not gemm_grad_pays(torch.zeros(1, 512, 16, 16), 512, 1536, False)  # no backward: nothing to take
    assert not gemm_grad_pays(torch.zeros(1, 512, 32, 32), 512, 768, True)  # larger map: no gain measured
    assert not gemm_grad_pays(torch.zeros(1, 663, 16, 16), 663, 256, True)  # fewer channels: no gain measured
    assert not gemm_grad_pays(torch.zeros(1, 512, 8, 8).bfloat16(), 512, 1536, True)  # float32/64 only
    assert not gemm_grad_pays(torch.zeros(1, 512, 8, 8).to(memory_format=torch.channels_last), 512, 1536, True)
    monkeypatch.setattr(GemmGradPolicy, "enabled", False)
    assert not gemm_grad_pays(torch.zeros(1, 512, 16, 16), 512, 1536, True)


@pytest.mark.parametrize("vendor, family, flags, takes", [
    ("AuthenticAMD", 0x19, {"avx2"}, True),  # Zen 3: measured faster
    ("AuthenticAMD", 0x19, {"avx2", "avx512f"}, False),  # Zen 4: not measured
    ("AuthenticAMD", 0x1A, {"avx2", "avx512f"}, False),  # Zen 5: not measured
    ("GenuineIntel", 6, {"avx2", "avx512f", "amx_tile"}, False),  # not measured
    ("", -1, set(), False),  # no /proc/cpuinfo
])
def test_the_default_takes_it_only_on_the_cpu_kind_it_was_measured_faster_on(monkeypatch, vendor, family, flags,
                                                                               takes):
    from semsynth.utils import runtime

    monkeypatch.setattr(runtime, "cpu_identity", lambda: {"vendor": vendor, "family": family, "model": 1,
                                                          "flags": frozenset(flags)})
    monkeypatch.setattr(GemmGradPolicy, "enabled", None)
    gemm_grad.cpu_takes_gemm_grad.cache_clear()
    try:
        assert gemm_grad.cpu_takes_gemm_grad() is takes
        assert gemm_grad_pays(torch.zeros(1, 512, 16, 16), 512, 1536, True) is takes
        conv = nn.Conv2d(512, 1024, 3, padding=1, bias=False)
        y = conv2d_gemm_grad(conv, torch.zeros(1, 512, 8, 8))
        assert (type(y.grad_fn).__name__ == "GemmGradConv2dBackward") is takes
    finally:
        gemm_grad.cpu_takes_gemm_grad.cache_clear()


@pytest.mark.parametrize("pad,spectral,bias", [(1, False, True), (0, True, False), (0, False, True)])
def test_conv_module_by_matrix_products_equals_the_module(everywhere, pad, spectral, bias):
    torch.manual_seed(0)
    conv = spectral_norm(nn.Conv2d(4, 5, 3, padding=pad, bias=bias), spectral).double().eval()
    x = torch.randn(2, 4, 6, 7, dtype=torch.float64, requires_grad=True)
    y = conv2d_gemm_grad(conv, x)
    assert type(y.grad_fn).__name__ == "GemmGradConv2dBackward"
    ref = conv(x)
    torch.testing.assert_close(y, ref, rtol=0, atol=0)
    params = [p for p in conv.parameters()]
    g = torch.randn_like(ref)
    for a, r in zip(torch.autograd.grad(y, [x, *params], g), torch.autograd.grad(ref, [x, *params], g)):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)
    with torch.no_grad():  # no backward: the module itself
        assert conv2d_gemm_grad(conv, x).grad_fn is None
    strided = nn.Conv2d(4, 5, 3, stride=2, padding=1).double()
    assert type(conv2d_gemm_grad(strided, x).grad_fn).__name__ != "GemmGradConv2dBackward"


@pytest.mark.parametrize("recompute", [None, 1])
def test_scc_by_matrix_products_equals_the_direct_scc(everywhere, monkeypatch, recompute):
    monkeypatch.setattr(SpatiallyConditionalConv2d, "recompute_min_pixels", recompute)
    torch.manual_seed(0)
    layer = SpatiallyConditionalConv2d(4, 3, 2, spectral=True).double().eval()
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    routing = torch.softmax(torch.randn(2, 2, 5, 6, dtype=torch.float64), 1).requires_grad_()
    y = layer(x, routing)
    g = torch.randn_like(y)
    ours = torch.autograd.grad(y, [x, routing, layer.weight], g)
    monkeypatch.setattr(GemmGradPolicy, "enabled", False)
    ref = layer(x, routing)
    torch.testing.assert_close(y, ref, rtol=0, atol=0)
    for a, r in zip(ours, torch.autograd.grad(ref, [x, routing, layer.weight], g)):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)


def test_pix2pixhd_residual_block_takes_it_in_training(everywhere, monkeypatch):
    from semsynth.models.generators.pix2pixhd import ResnetBlock

    torch.manual_seed(0)
    block = ResnetBlock(6).double()
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64, requires_grad=True)
    seen = []
    real = GemmGradConv2d.apply
    monkeypatch.setattr(GemmGradConv2d, "apply", lambda *a: seen.append(a[0].shape) or real(*a))
    y = block(x)
    assert len(seen) == 2 and seen[0] == (2, 6, 7, 9)  # both convs, on the reflection-padded map
    g = torch.randn_like(y)
    ours = torch.autograd.grad(y, [x, *block.parameters()], g)
    monkeypatch.setattr(GemmGradPolicy, "enabled", False)
    ref = block(x)
    torch.testing.assert_close(y, ref, rtol=0, atol=0)
    for a, r in zip(ours, torch.autograd.grad(ref, [x, *block.parameters()], g)):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-12)


def _bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gemm_grad.py"
    spec = importlib.util.spec_from_file_location("bench_gemm_grad", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_benchmark_parses_shapes_and_rejects_bad_ones(capsys):
    bench = _bench()
    assert bench.parse_shapes("512x1536@16,1024x1024@18x34/0") == [(512, 1536, 16, 16, 1), (1024, 1024, 18, 34, 0)]
    for bad in ("512x1536", "512@16", "ax2@3", "4x4@3/2", "4x4@2/0", "0x4@3"):
        with pytest.raises(Exception, match="expected CINxCOUT@HxW"):
            bench.parse_shapes(bad)
    with pytest.raises(SystemExit) as e:
        bench.main(["--shapes", "4x4@3", "--rounds", "0"])
    assert e.value.code == 2 and "--rounds must be at least 1, got 0" in capsys.readouterr().err
    bench.main(["--shapes", "8x16@4/0,8x16@3", "--reps", "1", "--rounds", "1"])
    out = capsys.readouterr().out
    assert "8 ->   16 at 4x4 pad 0: dw" in out and "8 ->   16 at 3x3 pad 1: dw" in out
    assert "max rel diff" in out and "the rule leaves it" in out  # too few channels for the rule
