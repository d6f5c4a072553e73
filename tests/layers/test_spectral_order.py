"""Spectral norm in the official order: ``layers.spectral.SpectralNorm`` against PyTorch's legacy
``torch.nn.utils.spectral_norm`` (what the official SPADE-family code runs), and the state_dict layout of
``torch.nn.utils.parametrizations.spectral_norm`` (what semsynth wrote before the change)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize

from semsynth.layers.spectral import SpectralNorm, spectral_norm

BUNDLED = Path(__file__).resolve().parents[2] / "src" / "semsynth" / "assets" / "scgan-synthetic-faces"


def _layers():
    torch.manual_seed(0)
    return {
        "conv": (nn.Conv2d(4, 6, 3, padding=1), torch.randn(2, 4, 5, 5)),
        "linear": (nn.Linear(5, 7), torch.randn(3, 5)),
        "conv_transpose": (nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1), torch.randn(2, 4, 5, 5)),
    }


def _uv_sigma(module: nn.Module, legacy: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(u, v, sigma = u^T W v) from the stored state, without running the parametrisation."""
    if legacy:
        w, u, v = module.weight_orig, module.weight_u, module.weight_v
    else:
        p = module.parametrizations.weight
        w, u, v = p.original, p[0]._u, p[0]._v
    dim = 1 if isinstance(module, nn.ConvTranspose2d) else 0
    mat = w.detach().movedim(dim, 0).flatten(1)
    return u.clone(), v.clone(), torch.dot(u, mat @ v)


@pytest.mark.parametrize("kind", ["conv", "linear", "conv_transpose"])
def test_train_mode_follows_legacy_spectral_norm_step_by_step(kind):
    base, x = _layers()[kind]
    legacy = torch.nn.utils.spectral_norm(copy.deepcopy(base))
    ours = spectral_norm(copy.deepcopy(base))
    with torch.no_grad():  # the same starting vectors; the legacy ones are random, not converged
        ours.parametrizations.weight[0]._u.copy_(legacy.weight_u)
        ours.parametrizations.weight[0]._v.copy_(legacy.weight_v)
    opt_l = torch.optim.SGD(legacy.parameters(), lr=0.5)
    opt_o = torch.optim.SGD(ours.parameters(), lr=0.5)
    target = torch.randn_like(base(x))  # (the plain layer: a legacy forward would advance its vectors)
    for step in range(4):
        y_l, y_o = legacy(x), ours(x)
        torch.testing.assert_close(y_o, y_l, rtol=1e-6, atol=1e-6, msg=f"{kind}: outputs differ at step {step}")
        for a, b, what in zip(_uv_sigma(ours, False), _uv_sigma(legacy, True), ("u", "v", "sigma")):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=f"{kind}: {what} differs at step {step}")
        # a gradient step moves the weight, so that the iteration tracks a changing matrix (and gradients agree)
        for y, opt in ((y_l, opt_l), (y_o, opt_o)):
            opt.zero_grad()
            ((y - target) ** 2).mean().backward()
            opt.step()
        torch.testing.assert_close(ours.parametrizations.weight.original, legacy.weight_orig, rtol=1e-5, atol=1e-6)
    # PyTorch's newer parametrisation (u first, then v) ends elsewhere from the same start: the order matters
    other = parametrizations.spectral_norm(copy.deepcopy(base))
    with torch.no_grad():
        other.parametrizations.weight[0]._u.copy_(_uv_sigma(legacy, True)[0])
        other.parametrizations.weight[0]._v.copy_(_uv_sigma(legacy, True)[1])
        other.parametrizations.weight.original.copy_(legacy.weight_orig)
    other(x), legacy(x)
    assert not torch.allclose(other.parametrizations.weight[0]._v, legacy.weight_v, atol=1e-7)


@pytest.mark.parametrize("kind", ["conv", "linear", "conv_transpose"])
def test_eval_mode_uses_the_stored_vectors_as_legacy(kind):
    base, x = _layers()[kind]
    legacy = torch.nn.utils.spectral_norm(copy.deepcopy(base))
    ours = spectral_norm(copy.deepcopy(base))
    ours.load_state_dict({"bias": legacy.bias, "parametrizations.weight.original": legacy.weight_orig,
                          "parametrizations.weight.0._u": legacy.weight_u,
                          "parametrizations.weight.0._v": legacy.weight_v})
    legacy.eval(), ours.eval()
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    for _ in range(2):
        torch.testing.assert_close(ours(x), legacy(x), rtol=1e-6, atol=1e-6)
    for k, v in ours.state_dict().items():  # no power iteration in eval mode
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("kind", ["conv", "linear", "conv_transpose"])
def test_state_dict_keys_are_those_of_parametrizations_spectral_norm(kind):
    base, x = _layers()[kind]
    old = parametrizations.spectral_norm(copy.deepcopy(base))
    ours = spectral_norm(copy.deepcopy(base))
    assert list(ours.state_dict()) == list(old.state_dict())
    for k, v in old.state_dict().items():
        assert ours.state_dict()[k].shape == v.shape, k
    # a state dict written with PyTorch's parametrisation (semsynth before the change) loads and gives its outputs
    ours.load_state_dict(old.state_dict(), strict=True)
    old.eval(), ours.eval()
    torch.testing.assert_close(ours(x), old(x), rtol=1e-6, atol=1e-6)
    assert isinstance(ours.parametrizations.weight[0], SpectralNorm)


def test_initial_vectors_are_converged():
    torch.manual_seed(1)
    conv = spectral_norm(nn.Conv2d(8, 16, 3))
    _, _, sigma = _uv_sigma(conv, False)
    true = torch.linalg.matrix_norm(conv.parametrizations.weight.original.detach().flatten(1), ord=2)
    assert abs(sigma.item() - true.item()) / true.item() < 1e-3


def _with_pytorch_parametrization(module: nn.Module) -> nn.Module:
    """``module`` with every :class:`SpectralNorm` replaced, in place, by PyTorch's parametrisation (semsynth before
    the change, commit e66d251: ``parametrizations.spectral_norm``)."""
    count = 0
    for m in list(module.modules()):
        if parametrize.is_parametrized(m, "weight") and isinstance(m.parametrizations.weight[0], SpectralNorm):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
            parametrizations.spectral_norm(m, name="weight", n_power_iterations=1, eps=1e-12)
            count += 1
    assert count > 0
    return module


def test_bundled_model_eval_outputs_unchanged_by_the_order_change():
    from semsynth.training.checkpoint import load_model
    from semsynth.utils.files import read_safetensors

    G, E, info, _ = load_model(BUNDLED)
    G_old, E_old, _, _ = load_model(BUNDLED)
    G_old, E_old = _with_pytorch_parametrization(G_old), _with_pytorch_parametrization(E_old)
    G_old.load_state_dict(read_safetensors(BUNDLED / "model.safetensors"), strict=True)
    E_old.load_state_dict(read_safetensors(BUNDLED / "encoder.safetensors"), strict=True)
    G_old.eval(), E_old.eval()
    assert list(G_old.state_dict()) == list(G.state_dict())
    gen = torch.Generator().manual_seed(0)
    label = torch.randint(0, info.num_classes, (2, 64, 64), generator=gen)
    sem = torch.nn.functional.one_hot(label, info.num_classes).permute(0, 3, 1, 2).float()
    z = torch.randn(2, G.latent_dim, generator=gen)
    image = torch.rand(2, 3, 64, 64, generator=gen) * 2 - 1
    with torch.no_grad():
        new, old = G(sem, z, return_aux=True), G_old(sem, z, return_aux=True)
        assert torch.equal(new.image, old.image)
        assert torch.equal(new.coarse_rgb, old.coarse_rgb)
        for a, b in zip(E(image), E_old(image)):
            assert torch.equal(a, b)


def test_stacked_sigma_and_its_gradient_equal_the_per_candidate_formula():
    from semsynth.layers.spectral import StackedSpectralNorm

    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 4, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    sn = StackedSpectralNorm(3, 4, 18).double()
    sn._power_iteration(w, 15)
    sn.eval()  # u, v as stored
    sigma = sn(w)
    ref = torch.stack([sn.u[i] @ w[i].flatten(1) @ sn.v[i] for i in range(3)])
    assert torch.equal(sigma, torch.stack([torch.dot(sn.u[i], torch.mv(w[i].flatten(1), sn.v[i])) for i in range(3)]))
    torch.testing.assert_close(sigma, ref, rtol=1e-12, atol=1e-12)
    gs = torch.tensor([0.5, -2.0, 3.0], dtype=torch.float64)
    (got,) = torch.autograd.grad(sigma, (w,), gs)
    (want,) = torch.autograd.grad(ref, (w,), gs)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: sn(t), (w,))


def test_scc_kernels_and_sigma_as_one_node_give_the_per_candidate_gradient():
    from semsynth.layers import SpatiallyConditionalConv2d

    torch.manual_seed(0)
    layer = SpatiallyConditionalConv2d(4, 5, 3, spectral=True).double().eval()
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    r = torch.softmax(torch.randn(2, 3, 6, 6, dtype=torch.float64), 1)
    y = layer(x, r)
    assert type(layer.sn.flat_and_sigma(layer.weight)[0].grad_fn).__name__ == "_FlatAndSigmaBackward"
    (got,) = torch.autograd.grad(y.sin().sum(), (layer.weight,))
    # the same layer written with per-candidate kernels divided by their sigma (supplement Alg. 1)
    sig = torch.stack([layer.sn.u[i] @ layer.weight[i].flatten(1) @ layer.sn.v[i] for i in range(3)])
    k = layer.weight / sig.view(3, 1, 1, 1, 1)
    ref = sum(r[:, i : i + 1] * torch.nn.functional.conv2d(x, k[i], padding=1) for i in range(3))
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    (want,) = torch.autograd.grad(ref.sin().sum(), (layer.weight,))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda w: layer.sn.flat_and_sigma(w)[1], (layer.weight.detach().requires_grad_(),))


def test_traced_scc_with_spectral_norm_holds_plain_operators():
    from semsynth.layers import SpatiallyConditionalConv2d

    torch.manual_seed(0)
    layer = SpatiallyConditionalConv2d(4, 5, 3, spectral=True).eval()
    x, r = torch.randn(1, 4, 6, 6), torch.softmax(torch.randn(1, 3, 6, 6), 1)
    traced = torch.jit.trace(layer, (x, r), check_trace=False)
    assert "PythonOp" not in str(traced.inlined_graph)
    torch.testing.assert_close(traced(x, r), layer(x, r), rtol=1e-5, atol=1e-6)  # the export form of the mix


def test_spectral_division_as_one_node_gives_the_autograd_gradient_and_fewer_weight_sized_tensors():
    from semsynth.utils.memory import TensorPeak

    torch.manual_seed(0)
    conv = spectral_norm(nn.Conv2d(6, 8, 3, padding=1)).double().eval()  # eval: the stored u, v (no iteration)
    x = torch.randn(2, 6, 7, 7, dtype=torch.float64)
    assert type(conv.weight.grad_fn).__name__ == "_WeightOverSigmaBackward"
    y = conv(x)
    w = conv.parametrizations.weight.original
    (got,) = torch.autograd.grad(y.sin().sum(), (w,))
    # the same forward as separate operators (what autograd differentiated before): sigma = u^T W v, W / sigma
    sn = conv.parametrizations.weight[0]
    u, v = sn._u.clone(), sn._v.clone()
    ref_w = w / torch.dot(u, torch.mv(w.flatten(1), v))
    ref = torch.nn.functional.conv2d(x, ref_w, conv.bias, padding=1)
    torch.testing.assert_close(y, ref, rtol=0, atol=0)
    (want,) = torch.autograd.grad(ref.sin().sum(), (w,))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    assert torch.autograd.gradcheck(lambda t: torch.nn.functional.conv2d(x, sn(t), padding=1),
                                    (w.detach().requires_grad_(),))
    assert torch.autograd.gradgradcheck(lambda t: sn(t) * sn(t).sum(), (w.detach().requires_grad_(),))
    # eval without gradients: the plain division, no autograd node
    with torch.no_grad():
        torch.testing.assert_close(conv(x), torch.nn.functional.conv2d(x, w / torch.dot(u, torch.mv(w.flatten(1), v)),
                                                                      conv.bias, padding=1), rtol=0, atol=0)

    # the backward of a bigger layer: one weight-sized tensor made in backward (the gradient) besides the conv's
    big = spectral_norm(nn.Conv2d(64, 64, 3, padding=1, bias=False))
    xb = torch.randn(1, 64, 4, 4, requires_grad=True)
    out = big(xb).sum()
    with TensorPeak() as tp:
        out.backward()
    made = [t for t in tp.peak_tensors if t.nbytes >= big.parametrizations.weight.original.numel() * 4]
    assert len(made) <= 2, made  # the conv's weight gradient and the parameter's gradient, nothing else


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_spectral_division_node_under_autocast_gives_the_separate_operators_gradient(dtype):
    torch.manual_seed(0)
    conv = spectral_norm(nn.Conv2d(8, 8, 3, padding=1)).eval()
    x = torch.randn(2, 8, 6, 6)
    w = conv.parametrizations.weight.original
    sn = conv.parametrizations.weight[0]
    with torch.autocast("cpu", dtype=dtype):
        y = conv(x)
        ref = torch.nn.functional.conv2d(x, w / torch.dot(sn._u, torch.mv(w.flatten(1), sn._v)), conv.bias, padding=1)
    assert y.dtype == ref.dtype == dtype
    assert torch.equal(y, ref)
    (got,) = torch.autograd.grad(y.float().sin().sum(), (w,))
    (want,) = torch.autograd.grad(ref.float().sin().sum(), (w,))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6 * want.abs().max().item())
