"""pix2pixHD generator (models/generators/pix2pixhd.py) and the multi-scale D at pix2pixHD's settings."""

import pytest
import torch
import torch.nn.functional as F

from semsynth import build_generator, count_parameters, one_hot_label
from semsynth.config import load_config
from semsynth.errors import ConfigError, ShapeError
from semsynth.models import build_discriminator, generator_latent_dim
from semsynth.objectives import build_objective

OWN = {"norm_bias": True, "spectral": False}  # as NVIDIA/pix2pixHD builds it


def sem(b=2, h=64, w=64, c=5):
    return one_hot_label(torch.randint(0, c, (b, h, w)), c)


# -- parameter counts (meta device; the official code prints the same) -----------------------------------------

COUNTS = {
    # SPADE's --netG pix2pixhd at ADE20K (151 channels): no conv bias before a norm
    "spade-ade20k": ({}, 151, False, 256, 182_886_019),
    # NVIDIA/pix2pixHD: label2city_512p (global, ngf 64) and label2city_1024p (ngf 32 + one local enhancer)
    "label2city_512p": (OWN, 35, True, [512, 1024], 182_546_755),
    "label2city_1024p": ({**OWN, "ngf": 32, "n_local_enhancers": 1}, 35, True, [1024, 2048], 182_857_059),
}


@pytest.mark.parametrize("key", list(COUNTS))
def test_official_parameter_counts(key):
    kw, c, inst, res, count = COUNTS[key]
    with torch.device("meta"):
        G = build_generator({"name": "pix2pixhd", **kw}, num_classes=c, use_instance=inst, resolution=res)
    assert count_parameters(G) == count


def test_discriminator_counts_at_pix2pixhd_settings():
    """pix2pixHD's D: n_layers_D 3 (= num_layers 4 here), convs with bias, no spectral norm; 39 input channels."""
    with torch.device("meta"):
        counts = [count_parameters(build_discriminator({"name": "multiscale", "num_scales": n, "spectral": False,
                                                        "conv_bias": True}, num_classes=35, use_instance=True))
                  for n in (2, 3)]
    assert counts == [5_603_202, 8_404_803]


def test_structure_of_the_global_generator_and_local_enhancer():
    with torch.device("meta"):
        G = build_generator({"name": "pix2pixhd", **OWN, "ngf": 32, "n_local_enhancers": 1}, num_classes=35,
                            use_instance=True, resolution=[1024, 2048])
    g = G.global_generator
    assert g.head.conv.weight.shape == (64, 36, 7, 7) and g.to_rgb is None  # G1 is 2 x 32 wide, no RGB head
    assert [m.conv.out_channels for m in g.down] == [128, 256, 512, 1024] and len(g.blocks) == 9
    assert [m.conv.out_channels for m in g.up] == [512, 256, 128, 64]
    assert isinstance(g.up[0].conv, torch.nn.ConvTranspose2d)
    enh = G.local_enhancers[0]
    assert enh.front[0].conv.weight.shape == (32, 36, 7, 7) and enh.front[1].conv.out_channels == 64
    assert len(enh.blocks) == 3 and enh.up.conv.out_channels == 32 and enh.to_rgb.conv.out_channels == 3
    assert G.latent_dim == 0 and generator_latent_dim(G.config) == 0
    with torch.device("meta"):
        spade = build_generator("pix2pixhd", num_classes=151)
    assert spade.global_generator.head.conv.bias is None and spade.global_generator.to_rgb.conv.bias is not None


# -- forward --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw,size", [({}, (32, 32)), (OWN, (32, 64)), ({**OWN, "n_local_enhancers": 1}, (64, 64)),
                                      ({"n_local_enhancers": 2, "norm": "batch"}, (64, 128))])
def test_forward_shapes_and_range(kw, size):
    G = build_generator({"name": "pix2pixhd", "ngf": 2, "n_downsample": 2, "n_blocks": 1, "n_blocks_local": 1, **kw},
                        num_classes=5, resolution=list(size)).eval()
    with torch.no_grad():
        out = G(sem(2, *size))
        aux = G(sem(2, *size), return_aux=True)
    assert out.shape == (2, 3, *size) and out.abs().max() <= 1 and aux.image.shape == out.shape


def test_local_enhancer_adds_its_front_end_to_the_global_features():
    torch.manual_seed(0)
    G = build_generator({"name": "pix2pixhd", **OWN, "ngf": 2, "n_downsample": 1, "n_blocks": 1, "n_blocks_local": 1,
                         "n_local_enhancers": 1}, num_classes=3, resolution=32).eval()
    x = sem(1, 32, 32, 3)
    with torch.no_grad():
        coarse = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        enh = G.local_enhancers[0]
        ref = enh.to_rgb(enh.up(enh.blocks(enh.front(x) + G.global_generator(coarse))))
        torch.testing.assert_close(G(x), ref)


def test_bad_inputs_and_options():
    G = build_generator({"name": "pix2pixhd", "ngf": 2, "n_downsample": 2, "n_blocks": 1}, num_classes=5,
                        resolution=32)
    with pytest.raises(ShapeError, match=r"expects a semantic map \[B, 5, H, W\]"):
        G(sem(1, 32, 32, 4))
    with pytest.raises(ShapeError, match="divisible by 4"):
        G(sem(1, 30, 30))
    with pytest.raises(ValueError, match="takes no z"):
        G(sem(1, 32, 32), torch.randn(1, 8))
    for bad, msg in (({"ngf": 0}, "ngf = 0 is out of range"), ({"norm": "group"}, "instance, batch"),
                     ({"first_kernel_size": 4}, "odd integer"), ({"n_local_enhancers": -1}, "out of range")):
        with pytest.raises(ConfigError, match=msg):
            build_generator({"name": "pix2pixhd", **bad}, num_classes=5, resolution=32)


def test_cityscapes_preset_is_pix2pixhds_own_setting():
    cfg = load_config("pix2pixhd-cityscapes")
    assert cfg.generator["norm_bias"] is True and cfg.generator["spectral"] is False
    assert cfg.discriminator["spectral"] is False and cfg.discriminator["conv_bias"] is True
    assert cfg.loss["adversarial"] == "ls" and cfg.loss["semantic"] == 0 and cfg.loss["feature_matching"] == 10
    assert cfg.optim.lr_g == cfg.optim.lr_d == 2e-4 and (cfg.optim.beta1, cfg.optim.beta2) == (0.5, 0.999)
    assert cfg.data["crop_size"] == 1024 and cfg.generator["resolution"] == [512, 1024]


def test_one_training_step_of_the_synthetic_faces_preset_changes_the_generator():
    cfg = load_config("pix2pixhd-synthetic-faces", ["generator.ngf=2", "generator.n_blocks=1",
                                                    "discriminator.width=4", "data.num_samples=2"])
    torch.manual_seed(0)
    G, D = build_generator(cfg.generator), build_discriminator(cfg.discriminator)
    objective = build_objective(cfg.loss).prepare("cpu")
    semantic, real = sem(2, 64, 64, 15), torch.rand(2, 3, 64, 64) * 2 - 1
    opt = torch.optim.Adam(G.parameters(), lr=cfg.optim.lr_g, betas=(cfg.optim.beta1, cfg.optim.beta2))
    before = {k: v.detach().clone() for k, v in G.named_parameters()}
    loss, stats, _ = objective.generator_loss(G, D, None, semantic, real)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and {"G/adv", "G/fm"} <= set(stats)
    assert all(not torch.equal(v, before[k]) for k, v in G.named_parameters() if k.endswith("weight"))


# -- the first conv of the label map by look-ups (layers/onehot_conv.py) ---------------------------------------


@pytest.mark.parametrize("kw,instance", [(OWN, True), ({}, False), ({**OWN, "n_local_enhancers": 1}, True),
                                         (OWN, 0.5)])
def test_first_conv_by_lookups_gives_the_dense_outputs_and_gradients(kw, instance, monkeypatch):
    """The 7x7 reflection-padded conv of the one-hot classes by look-ups (the instance edges by a dense conv):
    outputs and every parameter gradient of a training step equal the dense generator's (float64), with pix2pixHD's
    own build (biases, instance edges), SPADE's (spectral norm: the same power iteration) and a local enhancer
    (whose global generator reads the average-pooled, not one-hot, map and stays dense). The binary edge channel
    makes (class, edge) pairs the classes; a non-binary one (0.5: ``instance`` 0.5) keeps a dense conv of its own."""
    from semsynth.layers import onehot_conv, semantic_input
    from semsynth.layers.spectral import SpectralNorm
    from semsynth.models.generators.pix2pixhd import ConvNormReLU
    from tests.models.test_spade_piecewise import rects

    classes = 35
    torch.manual_seed(0)
    G = build_generator({"name": "pix2pixhd", "ngf": 4, "n_downsample": 2, "n_blocks": 1, "n_blocks_local": 1, **kw},
                        num_classes=classes, use_instance=bool(instance), resolution=[32, 64]).double().train()
    ids = rects(classes, 32, 64, 2, 3, 10)
    x = semantic_input(ids, classes, ids * 7 % 5 if instance else None).double()
    assert x.shape[1] == classes + bool(instance) and (not instance or 0 < x[:, -1].sum() < x[:, -1].numel())
    if instance:
        x[:, -1] *= instance
    calls = []
    real = onehot_conv.OneHotConv.apply
    monkeypatch.setattr(onehot_conv.OneHotConv, "apply", lambda *a: calls.append(a[1].shape) or real(*a))
    sn = [m for m in G.modules() if isinstance(m, SpectralNorm)]
    saved = [(m._u.clone(), m._v.clone()) for m in sn]

    def run(lookups: bool):
        monkeypatch.setattr(ConvNormReLU, "onehot_min_work", 0 if lookups else 10**12)
        for m, (u, v) in zip(sn, saved):
            m._u.copy_(u)
            m._v.copy_(v)
        G.zero_grad()
        out = G(x)
        probe = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1))
        (out * probe).sum().backward()
        return out.detach(), {n: p.grad.clone() for n, p in G.named_parameters()}

    out_dense, grads_dense = run(False)
    assert not calls
    out_lookup, grads_lookup = run(True)
    pairs = instance == 1  # (class, edge) pairs as the classes
    assert calls == [(4, classes * (2 if pairs else 1), 7, 7)]  # one first conv (G1's, or the enhancer's)
    assert (out_lookup - out_dense).abs().max() <= 1e-10
    for n, gd in grads_dense.items():
        assert (grads_lookup[n] - gd).abs().max() <= 1e-9 * max(1.0, gd.abs().max().item()), n


def test_first_conv_lookups_in_the_prepared_model_and_not_on_soft_maps(monkeypatch):
    """The prepared (eval) model takes the look-ups too and equals the unprepared dense one; a map that is not
    one-hot (soft labels) runs the dense conv."""
    from semsynth.inference_prep import prepare_for_inference
    from semsynth.layers import onehot_conv
    from semsynth.models.generators.pix2pixhd import ConvNormReLU

    G = build_generator({"name": "pix2pixhd", **OWN, "ngf": 4, "n_downsample": 2, "n_blocks": 1},
                        num_classes=35, use_instance=False, resolution=[32, 32]).eval()
    x = sem(2, 32, 32, 35)
    calls = []
    real = onehot_conv.OneHotConv.apply
    monkeypatch.setattr(onehot_conv.OneHotConv, "apply", lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        monkeypatch.setattr(ConvNormReLU, "onehot_min_work", 10**12)
        dense = G(x)
        monkeypatch.setattr(ConvNormReLU, "onehot_min_work", 0)
        prepared = prepare_for_inference(G)
        assert not calls
        torch.testing.assert_close(prepared(x), dense, atol=1e-5, rtol=1e-5)
        assert calls
        calls.clear()
        soft = x * 0.5 + 0.5 / 35
        torch.testing.assert_close(prepared(soft), G(soft), atol=1e-5, rtol=1e-5)
        assert not calls
