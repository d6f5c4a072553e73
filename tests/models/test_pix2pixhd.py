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
