"""OASIS generator and discriminator: official parameter counts, shapes, the noise contract, local re-sampling."""

import numpy as np
import pytest
import torch
from PIL import Image

from semsynth import build_generator, count_parameters, one_hot_label
from semsynth.cli import main
from semsynth.data import DatasetInfo
from semsynth.errors import ConfigError, SemsynthError, ShapeError
from semsynth.inference import Synthesizer, run_generate, seed_noise
from semsynth.models import DISCRIMINATORS, GENERATORS, build_discriminator, generator_latent_dim
from semsynth.models.discriminators.oasis import encoder_widths
from semsynth.models.generators.oasis import block_widths
from semsynth.training import export_model

TINY_G = {"name": "oasis", "channels": 1, "spade_hidden": 4, "z_dim": 3}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks: one thread (on a shared, loaded CPU, two threads spin-wait and run many times slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

TINY_D = {"name": "oasis", "channels": 2}


def sem(b=2, h=64, w=64, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return one_hot_label(torch.randint(0, c, (b, h, w), generator=g), c)


# -- official parameter counts (peers.md section 3; the official code's own count, computed in /tmp) -----------------
OFFICIAL = {"ade20k": (151, [256, 256], 74_314_691, 22_258_904),
            "cityscapes": (35, [256, 512], 71_107_523, 22_251_364),
            "coco": (183, [256, 256], 75_199_427, 22_260_984)}


@pytest.mark.parametrize("key", list(OFFICIAL))
def test_official_parameter_counts(key):
    n, res, g_count, d_count = OFFICIAL[key]
    with torch.device("meta"):
        G = build_generator({"name": "oasis"}, num_classes=n, resolution=res)
        D = build_discriminator({"name": "oasis"}, num_classes=n)
    assert count_parameters(G) == g_count
    assert count_parameters(D) == d_count


def test_official_widths_and_shapes():
    assert block_widths(6) == [16, 16, 16, 8, 4, 2, 1]
    assert block_widths(3) == [8, 4, 2, 1] and block_widths(1) == [2, 1]
    assert encoder_widths(64, 6) == [128, 128, 256, 256, 512, 512]
    with torch.device("meta"):
        G = build_generator({"name": "oasis"}, num_classes=151, resolution=256)
        D = build_discriminator({"name": "oasis"}, num_classes=151)
    assert G.fc.weight.shape == (1024, 151 + 64, 3, 3)  # [z, label] at 8x8
    assert G.body[0].norm_0.mlp_shared[0].weight.shape == (128, 215, 3, 3)
    assert [b.conv_1.out_channels for b in G.body] == [1024, 1024, 512, 256, 128, 64]
    assert not G.body[0].learned_shortcut and G.body[2].learned_shortcut
    assert G.latent_dim == 64 and G.spatial_latent
    assert D.layer_up_last.weight.shape == (152, 64, 1, 1)  # 151 classes + fake
    assert [b.conv2[1].out_channels for b in D.body_up] == [512, 256, 256, 128, 128, 64]
    assert D.body_up[1].conv1[2].in_channels == 1024  # skip [512] + x [512]
    assert len(DISCRIMINATORS.doc("oasis")) > 0 and "noise" in GENERATORS.doc("oasis")


def test_latent_contract():
    assert generator_latent_dim({"name": "oasis", "z_dim": 64, "noise_3d": True}) == 64
    assert generator_latent_dim({"name": "oasis", "z_dim": 64, "noise_3d": False}) == 0
    G = build_generator({**TINY_G, "noise_3d": False}, num_classes=5, resolution=64)
    assert G.latent_dim == 0
    with pytest.raises(ValueError, match="takes no z"):
        G(sem(), torch.zeros(2, 3))


def test_forward_shapes_and_the_three_forms_of_z():
    G = build_generator(TINY_G, num_classes=5, resolution=[32, 64]).eval()
    s = sem(h=32, w=64)
    z = torch.randn(2, 3)
    a = G(s, z)
    assert a.shape == (2, 3, 32, 64) and a.min() >= -1 and a.max() <= 1
    # one vector per image (official "3D noise") == the same vector broadcast over space
    torch.testing.assert_close(G(s, z[:, :, None, None].expand(2, 3, 32, 64)), a, rtol=0, atol=0)
    assert G(s, return_aux=True).image.shape == (2, 3, 32, 64)  # z=None: drawn
    torch.manual_seed(5)
    b = G(s)
    torch.manual_seed(5)
    torch.testing.assert_close(b, G(s, torch.randn(2, 3)))  # drawn first, N(0, I), [B, z_dim]
    # another size at run time (divisible by 32)
    assert G(sem(h=64, w=32)).shape == (2, 3, 64, 32)
    with pytest.raises(ShapeError, match=r"takes \[2, 3\] .* or \[2, 3, 32, 64\]"):
        G(s, torch.zeros(2, 3, 16, 32))
    with pytest.raises(ShapeError, match="divisible by 32"):
        G(sem(h=48, w=64))
    with pytest.raises(ShapeError, match=r"\[B, 5, H, W\]"):
        G(sem(c=6))


def test_spatial_noise_changes_the_image_where_it_changes():
    G = build_generator({**TINY_G, "init_gain": 1.0}, num_classes=5, resolution=64).eval()
    s = sem(b=1)
    za, zb = torch.randn(1, 3, 1, 1).expand(1, 3, 64, 64), torch.randn(1, 3, 1, 1).expand(1, 3, 64, 64)
    inside = torch.zeros(1, 1, 64, 64, dtype=torch.bool)
    inside[..., :32, :] = True
    mixed = torch.where(inside, zb, za)
    with torch.no_grad():
        a, b, m = G(s, za), G(s, zb), G(s, mixed)
    assert not torch.allclose(m, a) and not torch.allclose(m, b)
    # nearer b inside the region, nearer a outside (the receptive field blurs the border)
    err = lambda x, y, rows: (x - y)[..., rows, :].abs().mean()  # noqa: E731
    assert err(m, b, slice(0, 16)) < err(m, a, slice(0, 16))
    assert err(m, a, slice(48, 64)) < err(m, b, slice(48, 64))


@pytest.mark.parametrize("spec, message", [
    ({"spade_kernel_size": 2}, "an odd integer"),
    ({"num_res_blocks": 0}, "num_res_blocks = 0 is out of range"),
    ({"param_free_norm": "group"}, "param_free_norm = 'group' is not valid"),
    ({"channels": 0}, "channels = 0 is out of range"),
])
def test_bad_generator_options_are_config_errors(spec, message):
    from semsynth.config import resolve_config
    from tests.helpers import TINY_RAW

    raw = {**TINY_RAW, "generator": {**TINY_G, **spec}, "encoder": None, "discriminator": TINY_D,
           "loss": {"name": "oasis", "dontcare_channel": None}}
    with pytest.raises(ConfigError, match=message):
        resolve_config(raw)
    with pytest.raises(ConfigError, match="divisible by 64"):
        resolve_config({**raw, "generator": TINY_G, "data": {**raw["data"], "resolution": 96}})


def test_discriminator_output_is_per_pixel_n_plus_1_logits():
    D = build_discriminator(TINY_D, num_classes=5)
    out = D(torch.randn(2, 3, 64, 128), sem(h=64, w=128))
    assert len(out.logits) == 1 and out.logits[0].shape == (2, 6, 64, 128)
    assert len(out.features) == 1 and len(out.features[0]) == 12
    assert out.features[0][5].shape == (2, 16, 1, 2) and out.features[0][-1].shape == (2, 2, 64, 128)
    assert D(torch.randn(1, 3, 64, 64)).logits[0].shape == (1, 6, 64, 64)  # the label map is not read
    with pytest.raises(ShapeError, match="divisible by 64"):
        D(torch.randn(1, 3, 32, 32))
    small = build_discriminator({**TINY_D, "num_res_blocks": 3}, num_classes=5)
    assert small(torch.randn(1, 3, 8, 8)).logits[0].shape == (1, 6, 8, 8)


# -- local re-sampling ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oasis_model(tmp_path_factory):
    """A tiny OASIS generator (random weights, BN statistics perturbed) exported as a model directory."""
    torch.manual_seed(1)
    G = build_generator({**TINY_G, "init_gain": 1.0}, num_classes=4, resolution=32)
    with torch.no_grad():
        for name, buf in G.named_buffers():
            if name.endswith("running_var"):
                buf.uniform_(0.5, 2)
            elif name.endswith("running_mean"):
                buf.normal_(0, 0.3)
    info = DatasetInfo(name="custom", num_classes=4, class_names=["ground", "sky", "tree", "road"],
                       resolution=(32, 32))
    return export_model(tmp_path_factory.mktemp("oasis") / "model", G, info)


def layout(path=None):
    ids = np.zeros((32, 32), np.uint8)
    ids[:12] = 1  # sky on top
    ids[12:, :16] = 2
    ids[12:, 16:] = 3
    if path is not None:
        Image.fromarray(ids).save(path)
    return torch.from_numpy(ids.astype(np.int64))


def test_local_noise_is_the_base_seed_outside_and_the_new_seed_inside(oasis_model):
    syn = Synthesizer.from_pretrained(oasis_model)
    label = layout()
    region = syn.region_mask(label, syn.class_ids("sky"))
    assert region.shape == (1, 32, 32) and int(region.sum()) == 12 * 32
    z = syn.local_noise(0, 3, region)
    assert z.shape == (1, 3, 32, 32)
    z0, z3 = seed_noise(0, 3), seed_noise(3, 3)
    assert torch.equal(z[0, :, 12:, :], z0[:, None, None].expand(3, 20, 32))  # exactly seed 0's outside
    assert torch.equal(z[0, :, :12, :], z3[:, None, None].expand(3, 12, 32))  # seed 3's inside


def test_resample_changes_the_region_and_keeps_the_limits(oasis_model):
    syn = Synthesizer.from_pretrained(oasis_model)
    label = layout()
    # seeds 0 and 3, one image per batch as resample() runs them (another batch size may round differently)
    base = torch.cat([syn.generate(label[None], seeds=[s])[0] for s in (0, 3)])
    out = syn.resample(label, 0, [3], classes=syn.class_ids("sky"))
    assert out.shape == (1, 1, 3, 32, 32)
    img = out[0, 0]
    inside = (img - base[0])[:, :12].abs().mean()
    assert inside > 1e-3  # new noise inside the region changes the image there
    # the limits: an empty region is seed 0's image, the whole image seed 3's, both exactly
    torch.testing.assert_close(syn.resample(label, 0, [3], mask=torch.zeros(32, 32, dtype=torch.bool))[0, 0],
                               base[0], rtol=0, atol=0)
    torch.testing.assert_close(syn.resample(label, 0, [3], mask=torch.ones(32, 32, dtype=torch.bool))[0, 0],
                               base[1], rtol=0, atol=0)
    # the same region as a painted mask gives the same image; channel ids work as names
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[:12] = True
    torch.testing.assert_close(syn.resample(label, 0, [3], mask=mask)[0, 0], img, rtol=0, atol=0)
    assert syn.class_ids("1, ROAD") == [1, 3]
    with pytest.raises(SemsynthError, match="'water' is not a class of custom"):
        syn.class_ids("water")


def test_generate_resample_from_the_command_line(oasis_model, tmp_path, capsys):
    labels = tmp_path / "labels"
    labels.mkdir()
    layout(labels / "scene.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[:12] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out"
    rc = main(["generate", "--model", str(oasis_model), "--labels", str(labels), "--out", str(out), "--seeds", "3-4",
               "--resample-from", "0", "--resample-class", "sky"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["scene_seed0_resample3.png", "scene_seed0_resample4.png"]
    by_mask = run_generate(oasis_model, labels, tmp_path / "m", seeds=[3], resample_from=0,
                           resample_mask=tmp_path / "mask.png", progress=False)
    assert np.array_equal(np.asarray(Image.open(by_mask[0])), np.asarray(Image.open(out / "scene_seed0_resample3.png")))
    # a class the layout lacks: warned, the image is seed 0's
    run_generate(oasis_model, labels, tmp_path / "e", seeds=[3], resample_from=0, resample_class="3,ground",
                 progress=False)
    assert "the region to re-sample is empty" not in capsys.readouterr().err
    Image.fromarray(np.full((32, 32), 2, np.uint8)).save(labels / "scene.png")
    run_generate(oasis_model, labels, tmp_path / "f", seeds=[3], resample_from=0, resample_class="sky",
                 progress=False)
    assert "scene.png: the region to re-sample is empty" in capsys.readouterr().err


def test_resample_errors(oasis_model, tmp_path):
    labels = tmp_path / "l.png"
    layout(labels)
    Image.fromarray(np.zeros((16, 32), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(SemsynthError, match="needs --seeds"):
        run_generate(oasis_model, labels, tmp_path / "o", resample_from=0, resample_class="sky")
    with pytest.raises(SemsynthError, match="need --resample-from"):
        run_generate(oasis_model, labels, tmp_path / "o", seeds=[1], resample_class="sky")
    with pytest.raises(SemsynthError, match="one of them"):
        run_generate(oasis_model, labels, tmp_path / "o", seeds=[1], resample_from=0)
    with pytest.raises(SemsynthError, match=r"the mask is 32x16 \(WxH\) but the layout .* is 32x32"):
        run_generate(oasis_model, labels, tmp_path / "o", seeds=[1], resample_from=0,
                     resample_mask=tmp_path / "small.png")
    assert not (tmp_path / "o").exists()


def test_resample_needs_a_generator_that_takes_spatial_noise(tmp_path):
    G = build_generator({"name": "scgan", "srg_width": 4, "fc_width": 4, "svg_width": 4, "conv_candidates": 2,
                         "norm_candidates": 2, "spade_hidden": 8, "input_mode": "noise", "z_dim": 8},
                        num_classes=4, resolution=32)
    info = DatasetInfo(name="custom", num_classes=4, class_names=list("abcd"), resolution=(32, 32))
    syn = Synthesizer.from_pretrained(export_model(tmp_path / "m", G, info))
    with pytest.raises(SemsynthError, match="needs a generator that takes spatial noise.*'scgan'"):
        syn.resample(layout(), 0, [1], classes=[1])
