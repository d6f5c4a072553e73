"""CC-FPSE generator (models/generators/ccfpse.py) and its conditional depthwise convolution (layers/condconv.py)."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from semsynth import build_generator, count_parameters, one_hot_label
from semsynth.config import load_config
from semsynth.data import build_dataset
from semsynth.errors import ConfigError, ShapeError
from semsynth.layers.condconv import conditional_depthwise_conv2d
from semsynth.models import build_discriminator, build_encoder, generator_latent_dim

OFFICIAL = Path(__file__).parents[1] / "data" / "official" / "ccfpse"
TINY = {"name": "ccfpse", "ngf": 2, "hidden": 4, "spade_hidden": 4, "z_dim": 8}


def tiny(num_classes=5, resolution=64, **kw):
    return build_generator({**TINY, **kw}, num_classes=num_classes, resolution=resolution,
                           use_instance=kw.pop("use_instance", False))


def sem(b=2, h=64, w=64, c=5):
    return one_hot_label(torch.randint(0, c, (b, h, w)), c)


# -- parameter counts at the official settings (meta device) -------------------------------------------------

# (generator options, num_classes, instance, resolution, the official code's count)
COUNTS = {
    "ade20k-vae": ({}, 151, False, 256, 140_704_323),
    "ade20k-no-vae": ({"use_vae": False}, 151, False, 256, 125_254_211),
    "coco-vae": ({}, 183, True, 256, 141_939_843),
    "cityscapes-vae": ({"num_upsampling_layers": "more"}, 35, True, [256, 512], 128_055_555),
}
INERT = ("norm_0.", "conv_0.norm_layer.", "conv_2.norm_layer.")  # the BatchNorms the official block never calls
INERT_PARAMETERS = 26_112  # their weights and biases at ngf 64 (21 BatchNorms: 3 per block)


def _official_layout(dataset: str) -> dict:
    return json.loads((OFFICIAL / "official_shapes.json").read_text())[dataset]["netG"]


def _parameters(state: dict) -> int:
    """The parameters of an official state layout: every tensor but batch statistics and spectral-norm vectors."""
    skip = ("running_mean", "running_var", "num_batches_tracked", "weight_u", "weight_v")
    return sum(int(torch.tensor(shape).prod()) for k, shape in state.items() if not k.endswith(skip))


def _official_count(key: str) -> int:
    """The official count of a setting, from the official state layouts (official_shapes.json, made with the official
    code): ADE20K and Cityscapes as listed; without VAE and for COCO-Stuff, the ADE20K layout with the tensors that
    depend on the setting changed as the official code builds them (fc: a 3x3 conv on the label map instead of the
    linear layer from z; 184 instead of 151 input channels where the label map is read)."""
    if key == "cityscapes-vae":
        return _parameters(_official_layout("cityscapes")["state"])
    state = dict(_official_layout("ade20k")["state"])
    if key == "ade20k-no-vae":
        state["fc.weight"], state["fc.bias"] = [1024, 151, 3, 3], [1024]
    if key == "coco-vae":  # the label map's 151 channels (+ the 64 pyramid features) -> 184
        state = {k: [v[0], v[1] + 33, *v[2:]] if len(v) == 4 and v[1] in (151, 151 + 64) else v
                 for k, v in state.items()}
    return _parameters(state)


@pytest.mark.parametrize("key", list(COUNTS))
def test_official_parameter_counts(key):
    kw, c, inst, res, official = COUNTS[key]
    with torch.device("meta"):
        G = build_generator({"name": "ccfpse", **kw}, num_classes=c, use_instance=inst, resolution=res)
    assert count_parameters(G) == official == _official_count(key)
    # the inert BatchNorms are part of the count but not trainable
    trainable = sum(p.numel() for p in G.parameters() if p.requires_grad)
    assert official - trainable == INERT_PARAMETERS


def test_the_printed_official_counts_are_those_of_the_layouts():
    for dataset in ("ade20k", "cityscapes"):
        ref = _official_layout(dataset)
        assert ref["parameters"] == _parameters(ref["state"])
    inert = _official_layout("ade20k")["state"]
    assert sum(int(torch.tensor(shape).prod()) for k, shape in inert.items()
               if any(f".{p}" in k for p in INERT) and k.rsplit(".", 1)[1] in ("weight", "bias")) == INERT_PARAMETERS


def test_the_state_layout_is_the_official_one():
    """Key for key (after the converter's renames) and shape for shape, the never-called BatchNorms included."""
    from semsynth.convert.ccfpse import map_generator

    ref = _official_layout("ade20k")["state"]
    mapped, _ = map_generator({k: torch.empty(shape, device="meta") for k, shape in ref.items()})
    with torch.device("meta"):
        G = build_generator("ccfpse", num_classes=151, resolution=256)
    ours = {k.replace(".parametrizations.weight.original", ".weight"): list(v.shape) for k, v in G.state_dict().items()
            if not k.endswith(("._u", "._v"))}
    theirs = {k.replace(".parametrizations.weight.original", ".weight"): list(v.shape) for k, v in mapped.items()
              if not k.endswith(("._u", "._v"))}
    assert ours == theirs
    assert list(G.state_dict()["up_0.norm_0.running_mean"].shape) == ref["up_0.norm_0.running_mean"] == [512]
    assert list(G.state_dict()["up_0.conv_0.norm_layer.weight"].shape) == ref["up_0.conv_0.norm_layer.weight"]


def _inert(G) -> dict:
    return {f"{name}.{sub}": m for name in [n for n, _, _ in G.schedule]
            for sub, m in getattr(G, name).named_modules() if sub and sub.startswith(("norm_0", "conv_0", "conv_2"))
            and isinstance(m, torch.nn.BatchNorm2d)}


def test_the_inert_batchnorms_are_frozen_and_never_called():
    torch.manual_seed(0)
    G = tiny().train()
    inert = _inert(G)
    assert len(inert) == 21 and all(k.endswith(("norm_0", "norm_layer")) for k in inert)
    assert all(not p.requires_grad for m in inert.values() for p in m.parameters())
    called = []
    for name, m in inert.items():
        m.register_forward_pre_hook(lambda mod, args, name=name: called.append(name))
    G(sem(), torch.randn(2, 8)).mean().backward()
    G.eval()(sem(), torch.randn(2, 8))
    assert called == []
    assert all(p.grad is None for m in inert.values() for p in m.parameters())
    inert["up_3.norm_0"](torch.zeros(1, G.up_3.norm_0.num_features, 2, 2))  # the hooks do see a call
    assert called == ["up_3.norm_0"]


def test_encoder_and_discriminator_counts_at_the_official_settings():
    with torch.device("meta"):
        E = build_encoder({"name": "conv", "width": 64, "input_size": 256}, z_dim=256)
        D = build_discriminator({"name": "fpse", "width": 64}, num_classes=151)
    assert count_parameters(E) == 10_463_424
    assert count_parameters(D) == 5_190_593


def test_block_widths_and_predictor_shapes():
    with torch.device("meta"):
        G = build_generator("ccfpse", num_classes=151, resolution=256)
    assert G.fc.weight.shape == (16 * 64 * 8 * 8, 256)
    assert len(G.label_pyramid.encode) == 6 and len(G.label_pyramid.lateral) == 5
    assert G.label_pyramid.encode[0][0].weight.shape == (64, 151, 3, 3)
    assert G.head_0.cc_0.kernels[2].weight.shape == (1024 * 9, 128, 3, 3)  # a 3x3 kernel per channel and pixel
    assert G.head_0.cc_0.kernels[0].weight.shape == (128, 151 + 64, 3, 3)  # reads [labels, pyramid features]
    assert G.up_0.cc_0.attention[2].weight.shape == (512, 128, 3, 3)
    assert G.up_0.cc_1.kernels[2].weight.shape == (512 * 9, 128, 3, 3)
    assert G.up_0.shortcut_conv.weight.shape == (512, 1024, 1, 1)
    assert not G.head_0.learned_shortcut and G.up_0.learned_shortcut
    assert G.conv_img.weight.shape == (3, 64, 3, 3)


# -- forward ----------------------------------------------------------------------------------------------------


def test_forward_with_vae_shapes_range_and_latent():
    torch.manual_seed(0)
    G = tiny().train()
    assert G.latent_dim == 8 and generator_latent_dim(G.config) == 8
    s = sem()
    z = torch.randn(2, 8)
    out = G(s, z, return_aux=True)
    assert out.image.shape == (2, 3, 64, 64)
    assert out.image.min() >= -1 and out.image.max() <= 1
    G.eval()
    a, b = G(s, z), G(s, torch.randn(2, 8))
    assert torch.equal(a, G(s, z)) and not torch.allclose(a, b)  # z changes the image
    with pytest.raises(ShapeError, match=r"z has shape \(2, 3\)"):
        G(s, torch.randn(2, 3))
    with pytest.raises(ShapeError, match="differs from the resolution"):
        G(sem(h=128, w=128))


def test_forward_without_vae_more_layout_with_instance_channel():
    torch.manual_seed(0)
    G = tiny(num_classes=4, resolution=[64, 128], use_vae=False, num_upsampling_layers="more",
             use_instance=True).eval()
    assert G.latent_dim == 0 and generator_latent_dim(G.config) == 0
    assert len(G.label_pyramid.encode) == 7 and G.start_size == (1, 2)
    s = torch.cat([sem(h=64, w=128, c=4), torch.zeros(2, 1, 64, 128)], 1)
    img = G(s)
    assert img.shape == (2, 3, 64, 128) and img.abs().max() <= 1
    assert torch.equal(img, G(s))  # deterministic
    assert G(torch.cat([sem(h=128, w=128, c=4), torch.zeros(2, 1, 128, 128)], 1)).shape == (2, 3, 128, 128)
    with pytest.raises(ValueError, match="takes no z"):
        G(s, torch.randn(2, 8))
    with pytest.raises(ShapeError, match="divisible by 64"):
        G(torch.zeros(2, 5, 96, 96))
    with pytest.raises(ShapeError, match=r"\[B, 5, H, W\] \(4 one-hot channels \+ 1 instance-edge channel\)"):
        G(torch.zeros(2, 4, 64, 128))


def test_every_block_reads_the_label_map():
    """A label change far from the centre changes the output there only through the conditional operators."""
    torch.manual_seed(0)
    G = tiny(use_vae=False).eval()
    s = sem(b=1)
    s2 = s.clone()
    s2[:, :, :16, :16] = 0
    s2[:, 0, :16, :16] = 1
    a, b = G(s), G(s2)
    assert not torch.allclose(a[..., :16, :16], b[..., :16, :16])


@pytest.mark.parametrize("change, says", [
    ({"num_upsampling_layers": "most"}, "valid: normal, more"),
    ({"ngf": 0}, "ngf"),
    ({"norm": "group"}, "norm"),
    ({"hidden": 0}, "hidden"),
])
def test_bad_options_are_config_errors(change, says):
    with pytest.raises(ConfigError, match=says), torch.device("meta"):
        build_generator({"name": "ccfpse", **change}, num_classes=5, resolution=64)


def test_resolution_must_fit_the_layout():
    with pytest.raises(ConfigError, match="divisible by 64"), torch.device("meta"):
        build_generator({"name": "ccfpse", "num_upsampling_layers": "more"}, num_classes=5, resolution=96)


# -- the conditional depthwise convolution ----------------------------------------------------------------------


def _unfold_reference(x, kernels):
    b, c, h, w = x.shape
    return (F.unfold(x, 3, padding=1).view(b, c, 9, h, w) * kernels.view(b, c, 9, h, w)).sum(2)


def test_conditional_depthwise_conv_equals_unfold_and_has_exact_gradients():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 27, 5, 7, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(conditional_depthwise_conv2d(x, k), _unfold_reference(x, k))
    assert torch.autograd.gradcheck(conditional_depthwise_conv2d, (x, k))
    g = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    ours = torch.autograd.grad(conditional_depthwise_conv2d(x, k), (x, k), g)
    ref = torch.autograd.grad(_unfold_reference(x, k), (x, k), g)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)
    with torch.no_grad():  # the no-gradient path
        torch.testing.assert_close(conditional_depthwise_conv2d(x, k), _unfold_reference(x, k))


def test_conditional_depthwise_conv_kernel_layout():
    """Kernel channel c*9 + d multiplies channel c at window offset d (row-major): a kernel with a single 1 at
    d = 5 (dy 0, dx +1) shifts the image left by one pixel."""
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)
    k = torch.zeros(1, 18, 4, 4)
    k[:, 5] = 1  # channel 0, offset (0, +1)
    k[:, 9 + 1] = 1  # channel 1, offset (-1, 0)
    y = conditional_depthwise_conv2d(x, k)
    assert torch.equal(y[0, 0, :, :3], x[0, 0, :, 1:]) and torch.equal(y[0, 0, :, 3], torch.zeros(4))
    assert torch.equal(y[0, 1, 1:], x[0, 1, :3]) and torch.equal(y[0, 1, 0], torch.zeros(4))
    with pytest.raises(ShapeError, match=r"expected \[1, 18, 4, 4\]"):
        conditional_depthwise_conv2d(x, k[:, :9])


# -- the synthetic-faces preset trains on the CPU --------------------------------------------------------------


def test_one_training_step_of_the_synthetic_faces_preset_changes_the_generator():
    from semsynth.objectives import build_objective

    torch.manual_seed(0)
    cfg = load_config("ccfpse-synthetic-faces", ["generator.ngf=2", "generator.hidden=4", "generator.spade_hidden=4",
                                                 "discriminator.width=4", "encoder.width=4", "encoder.input_size=32",
                                                 "data.num_samples=4", "train.batch_size=2"])
    assert cfg.loss["perceptual"] == 0 and cfg.loss["semantic"] == 0 and cfg.loss["feature_matching"] == 20
    G = build_generator(cfg.generator).train()
    D = build_discriminator(cfg.discriminator).train()
    E = build_encoder(cfg.encoder).train()
    objective = build_objective(cfg.loss).prepare("cpu")
    ds = build_dataset(cfg.data)
    batch = [ds[i] for i in range(2)]
    real = torch.stack([b["image"] for b in batch])
    semantic = one_hot_label(torch.stack([b["label"] for b in batch]), ds.info.num_classes)
    before = {k: v.detach().clone() for k, v in G.named_parameters()}
    opt = torch.optim.Adam(list(G.parameters()) + list(E.parameters()), lr=cfg.optim.lr_g,
                           betas=(cfg.optim.beta1, cfg.optim.beta2))
    loss, stats, _ = objective.generator_loss(G, D, E, semantic, real)
    assert {"G/adv", "G/fm", "G/kl"} <= set(stats) and "G/semantic" not in stats
    assert torch.isfinite(loss)
    inert = {k for k, p in G.named_parameters() if not p.requires_grad}
    assert len(inert) == 21 * 2  # the weights and biases of the inert BatchNorms (see above)
    inert_state = {k: v.clone() for k, v in G.state_dict().items() if k.rsplit(".", 1)[0].endswith(("norm_0",
                                                                                                   "norm_layer"))}
    assert len(inert_state) == 21 * 5  # + running mean and variance, batch count
    opt.zero_grad()
    loss.backward()
    no_grad = [k for k, p in G.named_parameters() if p.grad is None and k not in inert]
    assert not no_grad, f"parameters without a gradient: {no_grad[:5]}"
    opt.step()
    changed = [k for k, p in G.named_parameters() if not torch.equal(p, before[k])]
    assert sorted(changed) == sorted(set(before) - inert)  # every parameter changed, but the inert ones
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in inert_state.items())
