"""SPADE generator (models/generators/spade.py), its residual block (layers/spade.py) and the multi-scale D at
SPADE's settings."""

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from semsynth import build_generator, count_parameters, one_hot_label
from semsynth.config import load_config
from semsynth.convert import legacy_spectral_to_parametrized, load_strict
from semsynth.errors import ConfigError, ShapeError
from semsynth.layers import SPADEResBlock, semantic_input
from semsynth.models import build_discriminator, build_encoder, generator_latent_dim
from semsynth.objectives import build_objective

OFFICIAL = Path(__file__).parents[1] / "data" / "official" / "spade"
TINY = {"name": "spade", "ngf": 2, "spade_hidden": 4, "z_dim": 8}


def tiny(num_classes=5, resolution=64, use_instance=False, **kw):
    return build_generator({**TINY, **kw}, num_classes=num_classes, resolution=resolution, use_instance=use_instance)


def sem(b=2, h=64, w=64, c=5):
    return one_hot_label(torch.randint(0, c, (b, h, w)), c)


# -- parameter counts at the official settings (meta device; the official code prints the same) -------------

# (generator options, num_classes, instance edge, resolution, count)
COUNTS = {
    "ade20k": ({}, 151, False, 256, 96_492_483),
    "ade20k-vae": ({"use_vae": True}, 151, False, 256, 111_942_595),
    "coco": ({}, 183, True, 256, 97_480_899),
    "coco-vae": ({"use_vae": True}, 183, True, 256, 112_626_883),
    "cityscapes": ({"num_upsampling_layers": "more"}, 35, True, [256, 512], 93_048_003),
    "ade20k-most": ({"num_upsampling_layers": "most"}, 151, False, 256, 97_412_579),
}


@pytest.mark.parametrize("key", list(COUNTS))
def test_official_parameter_counts(key):
    kw, c, inst, res, count = COUNTS[key]
    with torch.device("meta"):
        G = build_generator({"name": "spade", **kw}, num_classes=c, use_instance=inst, resolution=res)
    assert count_parameters(G) == count


def test_vae_input_is_a_linear_layer_from_z():
    with torch.device("meta"):
        G = build_generator({"name": "spade", "use_vae": True}, num_classes=151, resolution=256)
        G_city = build_generator({"name": "spade", "use_vae": True, "num_upsampling_layers": "more"},
                                 num_classes=35, use_instance=True, resolution=[256, 512])
    assert G.fc.weight.shape == (16 * 64 * 8 * 8, 256)  # 1024 channels at 8x8 from z (256)
    assert G_city.fc.weight.shape == (16 * 64 * 4 * 8, 256)  # 4x8 for 256x512 with "more"
    assert G.latent_dim == 256 and generator_latent_dim(G.config) == 256
    with torch.device("meta"):
        assert build_generator("spade", num_classes=151).latent_dim == 0


def test_discriminator_and_encoder_counts_at_spade_settings():
    with torch.device("meta"):
        counts = [count_parameters(build_discriminator("multiscale", num_classes=c, use_instance=i))
                  for c, i in ((151, False), (183, True), (35, True))]
        E = build_encoder({"name": "conv", "width": 64, "input_size": 256}, z_dim=256)
    assert counts == [5_836_930, 5_904_514, 5_601_410]
    assert count_parameters(E) == 10_463_424
    assert len(E.layers) == 6  # SPADE's ConvEncoder at crop 256: layer1 .. layer6


def test_block_structure_is_the_papers():
    with torch.device("meta"):
        G = build_generator("spade", num_classes=151)
    widths = [(getattr(G, n).conv_0.in_channels, getattr(G, n).conv_1.out_channels) for n, _ in G.schedule]
    assert widths == [(1024, 1024)] * 3 + [(1024, 512), (512, 256), (256, 128), (128, 64)]
    assert not G.head_0.learned_shortcut and G.up_0.learned_shortcut
    assert G.up_0.conv_s.weight.shape == (512, 1024, 1, 1) and G.up_0.conv_s.bias is None  # 1x1, no bias
    assert G.head_0.norm_0.mlp_shared[0].weight.shape == (128, 151, 3, 3)
    assert [u for _, u in G.schedule].count(True) == 5


# -- forward --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout,size,ups", [("normal", (64, 64), 5), ("more", (64, 128), 6), ("most", (128, 128), 7)])
def test_forward_shapes_range_and_layouts(layout, size, ups):
    G = tiny(resolution=list(size), num_upsampling_layers=layout, use_instance=True).eval()
    x = torch.cat([sem(2, *size), torch.zeros(2, 1, *size)], 1)
    with torch.no_grad():
        out = G(x)
        aux = G(x, return_aux=True)
    assert out.shape == (2, 3, *size) and out.abs().max() <= 1
    assert torch.equal(aux.image, out) and aux.coarse_rgb is None
    assert [u for _, u in G.schedule].count(True) == ups and G.factor == 2**ups
    assert hasattr(G, "up_4") == (layout == "most")
    # label-map input: any size divisible by 2**ups works
    bigger = (size[0] * 2, size[1] * 2)
    with torch.no_grad():
        assert G(torch.cat([sem(1, *bigger), torch.zeros(1, 1, *bigger)], 1)).shape == (1, 3, *bigger)


def test_vae_generator_takes_z_and_is_deterministic_given_z():
    G = tiny(use_vae=True).eval()
    x = sem(2)
    z = torch.randn(2, 8)
    with torch.no_grad():
        a, b = G(x, z), G(x, z)
        c = G(x, torch.randn(2, 8))
        d = G(x)  # z ~ N(0, I)
    assert torch.equal(a, b) and not torch.allclose(a, c) and d.shape == a.shape
    with pytest.raises(ShapeError, match=r"z has shape \(2, 4\), expected \[2, 8\]"):
        G(x, torch.randn(2, 4))
    with pytest.raises(ShapeError, match="differs from the resolution 64x64"):
        G(sem(1, 128, 128))
    with pytest.raises(ValueError, match="takes no z"):
        tiny()(x, z)


def test_bad_inputs_and_options():
    G = tiny()
    with pytest.raises(ShapeError, match=r"expects a semantic map \[B, 5, H, W\]"):
        G(sem(1, 64, 64, 4))
    with pytest.raises(ShapeError, match="divisible by 32"):
        G(sem(1, 48, 48))
    for bad, msg in (({"ngf": 0}, "ngf = 0 is out of range"), ({"num_upsampling_layers": "lots"}, "normal, more"),
                     ({"param_free_norm": "group"}, "syncbatch"), ({"spade_kernel_size": 2}, "odd integer"),
                     ({"ngf": 1, "num_upsampling_layers": "most"}, "ngf = 1 is out of range")):
        with pytest.raises(ConfigError, match=msg):
            tiny(**bad)
    with pytest.raises(ConfigError, match="divisible by 64"):
        tiny(resolution=96, num_upsampling_layers="more")


# -- the residual block against the official SPADEResnetBlock (released setting: spectral, sync-batch, 3x3) -----


def test_residual_block_equals_the_official_one():
    """tests/data/official/spade/spade_block.safetensors: the official SPADEResnetBlock(3 -> 2) with norm_G
    spectralspadesyncbatch3x3, perturbed weights and batch statistics (recipe in README.md there)."""
    t = load_file(OFFICIAL / "spade_block.safetensors")
    with safe_open(OFFICIAL / "spade_block.safetensors", "pt") as f:
        opt = json.loads(f.metadata()["opt"])
    assert opt["norm_G"] == "spectralspadesyncbatch3x3"
    B = SPADEResBlock(3, 2, 4, hidden=128, kernel_size=3, norm="syncbatch", spectral=True)
    state = {k[2:]: v for k, v in t.items() if k.startswith("B.")}
    load_strict(B, legacy_spectral_to_parametrized(state), "spade_block")
    B.eval()
    with torch.no_grad():
        y = B(t["input.x"], semantic_input(t["input.label"].long(), 4))
    torch.testing.assert_close(y, t["output.y"], rtol=0, atol=1e-5)


# -- training ---------------------------------------------------------------------------------------------------


def test_one_training_step_of_the_synthetic_faces_preset_changes_the_generator():
    cfg = load_config("spade-synthetic-faces", ["generator.ngf=2", "generator.spade_hidden=4", "generator.z_dim=8",
                                                "encoder.width=4", "discriminator.width=4", "data.num_samples=2"])
    assert cfg.loss["perceptual"] == 0 and cfg.loss["semantic"] == 0 and cfg.loss["kl"] == 0.05
    assert cfg.loss["adversarial"] == "hinge" and cfg.optim.lr_g == 1e-4 and cfg.optim.lr_d == 4e-4
    torch.manual_seed(0)
    G, D, E = build_generator(cfg.generator), build_discriminator(cfg.discriminator), build_encoder(cfg.encoder)
    objective = build_objective(cfg.loss).prepare("cpu")
    semantic = sem(2, 64, 64, 15)
    real = torch.rand(2, 3, 64, 64) * 2 - 1
    opt_g = torch.optim.Adam(list(G.parameters()) + list(E.parameters()), lr=cfg.optim.lr_g,
                             betas=(cfg.optim.beta1, cfg.optim.beta2))
    before = {k: v.detach().clone() for k, v in G.named_parameters()}
    loss, stats, fakes = objective.generator_loss(G, D, E, semantic, real)
    loss.backward()
    opt_g.step()
    assert torch.isfinite(loss) and {"G/adv", "G/fm", "G/kl"} <= set(stats) and "G/semantic" not in stats
    assert fakes.shape == (2, 3, 64, 64)
    changed = [k for k, v in G.named_parameters() if not torch.equal(v, before[k])]
    assert "fc.weight" in changed and "conv_img.weight" in changed
    assert any(k.startswith("up_3.norm_1.mlp_gamma") for k in changed)
    d_loss, d_stats = objective.discriminator_loss(D, semantic, real, fakes)
    assert torch.isfinite(d_loss) and "D/real" in d_stats


def test_a_short_run_of_the_preset_exports_a_working_model(tmp_path):
    from semsynth.inference import Synthesizer
    from semsynth.training import train

    cfg = load_config("spade-synthetic-faces", [
        "generator.ngf=2", "generator.spade_hidden=4", "generator.z_dim=8", "encoder.width=4",
        "discriminator.width=4", "data.num_samples=4", "train.batch_size=2", "train.images=4", "train.log_every=2",
        "train.sample_every=4", "train.checkpoint_every=4", "train.num_samples=2", "train.tensorboard=false"])
    run = train(cfg, outdir=tmp_path)
    syn = Synthesizer.from_pretrained(run / "model", device="cpu")
    assert syn.z_dim == 8 and syn.G.config["name"] == "spade"
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert rows[-1]["images"] == 4 and "G/kl" in rows[-1] and "G/semantic" not in rows[-1]
    with torch.no_grad():
        img = syn.G(sem(1, 64, 64, 15), torch.zeros(1, 8))
    assert img.shape == (1, 3, 64, 64) and img.abs().max() <= 1


def test_semsynth_models_lists_the_spade_and_pix2pixhd_presets_with_their_counts(capsys):
    from semsynth.cli import main

    assert main(["models", "--json"]) == 0
    presets = {p["name"]: p for p in json.loads(capsys.readouterr().out)["presets"]}
    expected = {"spade-ade20k": (96_492_483, 5_836_930), "spade-coco": (97_480_899, 5_904_514),
                "spade-cityscapes": (93_048_003, 5_601_410), "pix2pixhd-cityscapes": (182_546_755, 5_603_202)}
    for name, (g, d) in expected.items():
        assert (presets[name]["generator_parameters"], presets[name]["discriminator_parameters"]) == (g, d), name
    assert presets["spade-synthetic-faces"]["encoder_parameters"] > 0
    assert "pix2pixhd-synthetic-faces" in presets


@pytest.mark.parametrize("spec", [{**TINY, "use_vae": True}, {"name": "oasis", "channels": 1, "spade_hidden": 4,
                                                              "z_dim": 3}])
def test_in_place_activations_train_exactly_as_out_of_place_ones(spec, monkeypatch):
    """The residual blocks' LReLUs (after SPADE) and the last one overwrite their input: the image and every
    gradient must equal those of out-of-place activations bit for bit, and the blocks keep less for backward."""
    from semsynth.utils.memory import TensorPeak

    s = one_hot_label(torch.randint(0, 5, (2, 64, 64), generator=torch.Generator().manual_seed(0)), 5)
    z = torch.randn(2, spec.get("z_dim", 8), generator=torch.Generator().manual_seed(1))
    plain_lrelu = torch.nn.functional.leaky_relu
    results, peaks = [], []
    for inplace in (True, False):
        if not inplace:
            monkeypatch.setattr(torch.nn.functional, "leaky_relu",
                                lambda t, slope=0.01, inplace=False: plain_lrelu(t, slope))
        torch.manual_seed(2)
        G = build_generator(spec, num_classes=5, resolution=64).train()
        with TensorPeak() as tp:
            image = G(s, z)
        image.square().mean().backward()
        results.append([image.detach()] + [p.grad for p in G.parameters()])
        peaks.append(tp.peak_bytes)
        monkeypatch.undo()
    for a, b in zip(*results):
        assert torch.equal(a, b)
    assert peaks[0] < peaks[1]
