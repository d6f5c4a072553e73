import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from semsynth.layers import SpatiallyConditionalConv2d
from semsynth.layers.winograd import (
    WinogradConv2d,
    WinogradConv3x3,
    WinogradPolicy,
    conv3x3,
    use_winograd,
    winograd_conv3x3,
    winograd_pays,
    winograd_weight,
)


@pytest.fixture
def everywhere(monkeypatch):
    """The policy lowered so that F(2x2, 3x3) runs at test sizes."""
    for k, v in dict(enabled=True, min_in_channels=1, min_out_channels=1, min_pixels=1, min_eval_pixels=1,
                     max_pixels=10**9).items():
        monkeypatch.setattr(WinogradPolicy, k, v)


@pytest.mark.parametrize("b,cin,cout,h,w", [(1, 3, 4, 5, 7), (2, 5, 6, 6, 6), (1, 2, 3, 2, 3), (3, 4, 2, 9, 4),
                                            (1, 3, 2, 1, 1), (2, 1, 1, 1, 6)])
def test_forward_and_gradients_equal_the_direct_conv_in_float64(b, cin, cout, h, w):
    torch.manual_seed(b * 100 + h * 10 + w)
    x = torch.randn(b, cin, h, w, dtype=torch.float64, requires_grad=True)
    k = torch.randn(cout, cin, 3, 3, dtype=torch.float64, requires_grad=True)
    y, ref = WinogradConv3x3.apply(x, k), F.conv2d(x, k, padding=1)
    assert y.shape == ref.shape == (b, cout, h, w)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ref)
    for a, r in zip(torch.autograd.grad(y, (x, k), g), torch.autograd.grad(ref, (x, k), g)):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(winograd_conv3x3(x.detach(), winograd_weight(k.detach())), ref.detach(),
                               rtol=1e-12, atol=1e-12)


def test_gradcheck():
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    k = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(WinogradConv3x3.apply, (x, k))


def test_float32_rounding_at_a_deep_layer_shape():
    """512 -> 768 channels on 32x32 (the ADE20K generator's first up-sampling block): the error of F(2x2, 3x3) in
    float32 is float rounding, a few 1e-6 of outputs of magnitude ~5, as the direct conv's own error."""
    torch.manual_seed(0)
    x = torch.randn(1, 512, 32, 32)
    k = torch.randn(768, 512, 3, 3) / (9 * 512) ** 0.5
    exact = F.conv2d(x.double(), k.double(), padding=1)
    err_w = (winograd_conv3x3(x, winograd_weight(k)).double() - exact).abs().max().item()
    err_d = (F.conv2d(x, k, padding=1).double() - exact).abs().max().item()
    assert err_w < 2e-5 and err_w < 20 * err_d, (err_w, err_d)


def test_policy(monkeypatch):
    monkeypatch.setattr(WinogradPolicy, "enabled", True)  # the rule itself, on any CPU
    big = torch.zeros(1, 512, 32, 32)
    assert winograd_pays(big, 512, 768)
    assert not winograd_pays(big, 64, 768)  # too few input channels
    assert not winograd_pays(big, 512, 128)  # too few output channels
    assert not winograd_pays(torch.zeros(1, 512, 16, 16), 512, 1536)  # kernel transform too large beside it
    assert winograd_pays(torch.zeros(4, 512, 16, 16), 512, 1536)  # ... unless the batch fills it
    assert not winograd_pays(torch.zeros(1, 128, 128, 128), 128, 384)  # large map: the transforms cost more
    assert not winograd_pays(big.bfloat16(), 512, 768)  # float32 and float64 only
    deep = torch.zeros(1, 1024, 16, 32)  # pix2pixHD's / SPADE's deep blocks at 256x512
    assert winograd_pays(deep, 1024, 1024, backward=False)  # eval takes it from 16x32 ...
    assert not winograd_pays(deep, 1024, 1024, backward=True)  # ... training from 32x32
    assert winograd_pays(deep, 1024, 1024)  # default: differentiated when x requires grad in grad mode
    deep.requires_grad_()
    assert not winograd_pays(deep, 1024, 1024)
    with torch.no_grad():
        assert winograd_pays(deep, 1024, 1024)
    assert not winograd_pays(torch.zeros(1, 1024, 16, 16), 1024, 1024, backward=False)
    WinogradPolicy.enabled = False
    try:
        assert not winograd_pays(big, 512, 768)
    finally:
        WinogradPolicy.enabled = True


@pytest.mark.parametrize("vendor, family, flags, takes", [
    ("AuthenticAMD", 0x19, {"avx2", "avx512f"}, True),  # Zen 4: measured faster
    ("AuthenticAMD", 0x1A, {"avx2", "avx512f"}, False),  # Zen 5: measured slower
    ("AuthenticAMD", 0x19, {"avx2"}, True),  # Zen 3 (no AVX-512): measured faster
    ("GenuineIntel", 6, {"avx2", "avx512f", "amx_tile"}, True),  # Xeon with AMX: measured faster
    ("GenuineIntel", 6, {"avx2", "avx512f"}, False),  # Intel without AMX: not measured
    ("GenuineIntel", 6, {"avx2", "amx_tile"}, False),  # no AVX-512
    ("", -1, set(), False),  # no /proc/cpuinfo
])
def test_the_default_takes_winograd_only_on_the_cpu_kind_it_was_measured_faster_on(monkeypatch, vendor, family,
                                                                                     flags, takes):
    from semsynth.layers import winograd
    from semsynth.utils import runtime

    monkeypatch.setattr(runtime, "cpu_identity", lambda: {"vendor": vendor, "family": family, "model": 1,
                                                          "flags": frozenset(flags)})
    monkeypatch.setattr(WinogradPolicy, "enabled", None)
    winograd.cpu_takes_winograd.cache_clear()
    try:
        assert winograd.cpu_takes_winograd() is takes
        big = torch.zeros(1, 512, 32, 32)
        assert winograd_pays(big, 512, 768) is takes
        x, k = torch.randn(1, 512, 32, 32), torch.randn(768, 512, 3, 3)
        assert (type(conv3x3(x.requires_grad_(), k).grad_fn).__name__ == "WinogradConv3x3Backward") is takes
        monkeypatch.setattr(WinogradPolicy, "enabled", not takes)  # forced either way
        assert winograd_pays(big, 512, 768) is (not takes)
    finally:
        winograd.cpu_takes_winograd.cache_clear()


def test_cpu_identity_reads_proc_cpuinfo():
    from pathlib import Path

    from semsynth.utils.runtime import cpu_identity

    info = cpu_identity()
    if not Path("/proc/cpuinfo").exists():
        assert info["family"] == -1 and not info["flags"]
        return
    text = Path("/proc/cpuinfo").read_text()
    if "vendor_id" not in text:
        pytest.skip("/proc/cpuinfo without vendor_id (not x86)")
    first = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.split("\n\n")[0].splitlines())}
    assert info["vendor"] == first["vendor_id"] and info["family"] == int(first["cpu family"])
    assert info["flags"] == frozenset(first["flags"].split())


def test_conv3x3_takes_the_policy(everywhere):
    x = torch.randn(1, 3, 6, 6, requires_grad=True)
    k = torch.randn(4, 3, 3, 3, requires_grad=True)
    y = conv3x3(x, k)
    assert type(y.grad_fn).__name__ == "WinogradConv3x3Backward"
    torch.testing.assert_close(y, F.conv2d(x, k, padding=1), rtol=1e-5, atol=1e-5)
    WinogradPolicy.enabled = False
    try:
        assert "Convolution" in type(conv3x3(x, k).grad_fn).__name__
    finally:
        WinogradPolicy.enabled = True


@pytest.mark.parametrize("spectral", [False, True])
def test_scc_by_winograd_equals_the_direct_scc(everywhere, spectral):
    torch.manual_seed(1)
    layer = SpatiallyConditionalConv2d(6, 5, 3, 3, spectral=spectral).eval()
    x = torch.randn(2, 6, 9, 7, requires_grad=True)
    routing = torch.softmax(torch.randn(2, 3, 9, 7), 1).requires_grad_(True)
    y = layer(x, routing)
    view = y.grad_fn.next_functions[0][0]  # the mix reads a view of the stacked conv
    assert type(view.next_functions[0][0]).__name__ == "WinogradConv3x3Backward"
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, routing, layer.weight], g)
    WinogradPolicy.enabled = False
    try:
        ref = layer(x, routing)
        grads_ref = torch.autograd.grad(ref, [x, routing, layer.weight], g)
    finally:
        WinogradPolicy.enabled = True
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with torch.inference_mode():
        torch.testing.assert_close(layer(x, routing), ref, rtol=1e-5, atol=1e-5)


def test_tracing_keeps_the_direct_conv(everywhere):
    layer = SpatiallyConditionalConv2d(4, 4, 2, 3).eval()
    x, r = torch.randn(1, 4, 6, 6), torch.softmax(torch.randn(1, 2, 6, 6), 1)
    traced = torch.jit.trace(layer, (x, r))
    assert "conv" in str(traced.graph).lower() and "bmm" not in str(traced.graph)
    torch.testing.assert_close(traced(x, r), layer(x, r), rtol=1e-5, atol=1e-5)


def test_winograd_conv2d_and_use_winograd(everywhere):
    from torch import nn
    from torch.nn.utils import parametrizations

    from semsynth.layers.winograd import WinogradConv2d, use_winograd

    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.Conv2d(5, 4, 3, padding=1, bias=False),
                        nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 3, padding=2,
                        dilation=2), nn.Conv2d(4, 4, 3, padding=1, groups=2),
                        parametrizations.spectral_norm(nn.Conv2d(4, 4, 3, padding=1)))
    net.eval()
    x = torch.randn(2, 3, 10, 9, requires_grad=True)
    ref = net(x)
    keys = list(net.state_dict())
    assert use_winograd(net) == 2  # only the first two: the others are strided, 1x1, dilated, grouped, parametrized
    assert [type(m) is WinogradConv2d for m in net] == [True, False, True] + [False] * 5
    assert list(net.state_dict()) == keys
    out = net(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(out)
    ga = torch.autograd.grad(out, [x, net[0].weight, net[0].bias], g)
    WinogradPolicy.enabled = False
    try:
        gb = torch.autograd.grad(net(x), [x, net[0].weight, net[0].bias], g)
    finally:
        WinogradPolicy.enabled = True
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("b,cin,cout,h,w", [(1, 3, 4, 5, 7), (2, 5, 6, 6, 6), (1, 2, 3, 3, 3), (1, 4, 2, 18, 34)])
def test_unpadded_convolution_equals_the_direct_one_in_float64(b, cin, cout, h, w):
    """``padding=0`` (a "valid" convolution, 2 pixels smaller: the conv after pix2pixHD's reflection pads)."""
    torch.manual_seed(h * 10 + w)
    x = torch.randn(b, cin, h, w, dtype=torch.float64)
    k = torch.randn(cout, cin, 3, 3, dtype=torch.float64)
    out = winograd_conv3x3(x, winograd_weight(k), padding=0)
    assert out.shape == (b, cout, h - 2, w - 2)
    assert (out - F.conv2d(x, k)).abs().max().item() < 1e-12


def test_unpadded_winograd_conv2d_in_eval_and_training(everywhere):
    """An unpadded 3x3 conv becomes a WinogradConv2d: F(2x2, 3x3) without a backward, the direct conv with one
    (the adjoints are written for padding 1); the same outputs and gradients either way."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3).double()
    ref = copy.deepcopy(conv)
    assert use_winograd(nn.Sequential(conv, nn.Conv2d(4, 6, 3, stride=2), nn.Conv2d(4, 6, 5))) == 1
    assert isinstance(conv, WinogradConv2d)
    x = torch.randn(2, 4, 9, 10, dtype=torch.float64)
    calls = []
    with torch.no_grad(), _count_bmm(calls):
        assert (conv(x) - ref(x)).abs().max().item() < 1e-12
    assert calls  # ran the Winograd products
    xg = x.clone().requires_grad_()
    calls.clear()
    with _count_bmm(calls):
        y = conv(xg)
    assert not calls  # differentiated: the direct conv
    (gx,) = torch.autograd.grad(y.sum(), xg)
    (rx,) = torch.autograd.grad(ref(xg).sum(), xg)
    assert torch.equal(gx, rx)
    with torch.no_grad(), pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
        conv(torch.randn(1, 4, 2, 40, dtype=torch.float64))  # too small: PyTorch's own error, not a wrong shape


@contextlib.contextmanager
def _count_bmm(calls):
    original = torch.bmm

    def bmm(*a, **k):
        calls.append(1)
        return original(*a, **k)

    torch.bmm = bmm
    try:
        yield
    finally:
        torch.bmm = original
