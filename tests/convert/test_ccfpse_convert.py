"""``semsynth convert --from ccfpse``: equivalence with the official CC-FPSE networks (reference outputs made by running
xh-liu/CC-FPSE, see tests/data/official/ccfpse/README.md), the released state layouts, and the errors."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from semsynth.convert import ConversionError, convert_checkpoint
from semsynth.convert.ccfpse import convert_ccfpse, infer_generator, map_generator
from semsynth.convert.spade_family import map_encoder_keys, map_fpse
from semsynth.errors import ConfigError
from semsynth.models import build_discriminator, build_encoder, build_generator
from semsynth.training import load_model

OFFICIAL = Path(__file__).parents[1] / "data" / "official" / "ccfpse"
# the reference generators' datasets: 4 classes + don't-care at 32x32 (VAE), 3 classes + instance edges at 64x128
VAE_OPT = {"dataset_mode": "custom", "label_nc": 4, "contain_dontcare_label": True, "no_instance": True,
           "crop_size": 32, "aspect_ratio": 1.0, "netG": "condconv", "use_vae": True, "z_dim": 256,
           "norm_G": "spectralsync_batch"}
MORE_SETS = ["data.name=custom", "data.num_classes=3", "data.crop_size=128", "data.aspect_ratio=2.0"]


def reference(name: str, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(the official state dict, the inputs and outputs) of a reference file."""
    data = load_file(OFFICIAL / f"{name}.safetensors")
    state = {k[len(prefix) + 1:]: v for k, v in data.items() if k.startswith(prefix + ".")}
    return state, {k: v for k, v in data.items() if not k.startswith(prefix + ".")}


def write_opt_txt(path: Path, opt: dict) -> None:
    """An opt.txt as the official training script writes it."""
    lines = ["----------------- Options ---------------"]
    lines += [f"{k:>25}: {v!s:<30}" for k, v in sorted(opt.items())]
    path.write_text("\n".join(lines + ["----------------- End -------------------"]) + "\n")


# -- equivalence with the official networks ---------------------------------------------------------------------


def test_vae_generator_encoder_and_discriminator_reproduce_the_official_outputs():
    g, g_io = reference("generator_vae", "netG")
    e, e_io = reference("encoder", "netE")
    d, d_io = reference("discriminator", "netD")
    res = convert_ccfpse(g, VAE_OPT, encoder_state=e, discriminator_state=d, preset=None, overrides=[])
    cfg = res.generator.config
    assert (cfg["ngf"], cfg["hidden"], cfg["spade_hidden"], cfg["z_dim"], cfg["num_upsampling_layers"]) == \
        (2, 3, 5, 256, "normal")
    assert (cfg["num_classes"], cfg["use_instance"], cfg["resolution"]) == (5, False, [32, 32])
    assert res.sources["ngf"] == "tensor shapes" and res.sources["dataset"] == "opt.txt"
    # the official block's never-called BatchNorms load like every other tensor (the inert ones of semsynth's block)
    loaded = res.generator.state_dict()
    for key in ("up_1.norm_0.running_var", "up_1.conv_0.norm_layer.weight", "head_0.conv_2.norm_layer.bias"):
        assert torch.equal(loaded[key], g[key])
    assert not any("never calls" in n or "dropped" in n for n in res.notes)
    G, E, D = res.generator.eval(), res.encoder.eval(), res.discriminator.eval()
    assert res.encoder.config["width"] == 1 and res.encoder.config["input_size"] == 256
    with torch.no_grad():
        image = G(g_io["input.semantic"].float(), g_io["input.z"])
        mu, logvar = E(e_io["input.image"])
        out = D(d_io["input.image"], d_io["input.semantic"].float())
    torch.testing.assert_close(image, g_io["output.image"], rtol=0, atol=1e-5)
    torch.testing.assert_close(mu, e_io["output.mu"], rtol=0, atol=1e-5)
    torch.testing.assert_close(logvar, e_io["output.logvar"], rtol=0, atol=1e-5)
    for i in range(3):
        torch.testing.assert_close(out.logits[i], d_io[f"output.logits.{i}"], rtol=0, atol=1e-5)
    for i in range(4):
        torch.testing.assert_close(out.features[i][0], d_io[f"output.feature.{i}"], rtol=0, atol=1e-5)


def test_label_input_generator_with_the_more_layout_reproduces_the_official_output():
    g, io = reference("generator_more", "netG")
    res = convert_ccfpse(g, {}, encoder_state=None, discriminator_state=None, preset=None, overrides=MORE_SETS)
    cfg = res.generator.config
    assert (cfg["ngf"], cfg["use_vae"], cfg["num_upsampling_layers"], cfg["use_instance"]) == (1, False, "more", True)
    assert res.sources["num_upsampling_layers"] == "tensor shapes" and res.sources["dataset"] == "--set"
    assert res.info.semantic_channels == 4 and tuple(res.info.resolution) == (64, 128)
    with torch.no_grad():
        image = res.generator.eval()(io["input.semantic"].float())
    torch.testing.assert_close(image, io["output.image"], rtol=0, atol=1e-5)


def test_convert_command_writes_a_model_that_reproduces_the_official_output(tmp_path):
    ckpt = tmp_path / "coco_best"
    ckpt.mkdir()
    for name, prefix in (("generator_vae", "netG"), ("encoder", "netE"), ("discriminator", "netD")):
        state, _ = reference(name, prefix)
        torch.save({f"module.{k}": v for k, v in state.items()}, ckpt / f"latest_net_{prefix[-1]}.pth")
    write_opt_txt(ckpt / "opt.txt", VAE_OPT)
    out, _ = convert_checkpoint("ccfpse", ckpt / "latest_net_G.pth", tmp_path / "model",
                                encoder=ckpt / "latest_net_E.pth", discriminator=ckpt / "latest_net_D.pth")
    assert (out / "discriminator.safetensors").is_file()
    G, E, info, config = load_model(out)
    assert config["label_values"] == {"0": 0, "1": 1, "2": 2, "3": 3, "255": 4}
    assert config["converted_from"]["sources"]["use_vae"] == "tensor shapes"
    assert info.num_classes == 5 and info.dontcare_index == 4 and E is not None
    _, io = reference("generator_vae", "netG")
    with torch.no_grad():
        image = G(io["input.semantic"].float(), io["input.z"])
    torch.testing.assert_close(image, io["output.image"], rtol=0, atol=1e-5)


# -- the released layouts (key -> shape listings of the official networks at ngf 64) -----------------------------


def _canonical(state_shapes: dict) -> dict:
    """Spectral norm is not applied on the meta device: compare weights by their plain names, without u and v."""
    out = {}
    for k, shape in state_shapes.items():
        if k.endswith(("._u", "._v")):
            continue
        out[k.replace(".parametrizations.weight.original", ".weight")] = list(shape)
    return out


@pytest.mark.parametrize("dataset, kw, channels, instance, res", [
    ("ade20k", {}, 151, False, 256),
    ("cityscapes", {"num_upsampling_layers": "more"}, 35, True, [256, 512]),
])
def test_released_generator_layout_maps_onto_semsynth(dataset, kw, channels, instance, res):
    ref = json.loads((OFFICIAL / "official_shapes.json").read_text())[dataset]
    state = {k: torch.empty(shape, device="meta") for k, shape in ref["netG"]["state"].items()}
    shapes = infer_generator(state)
    assert (shapes["ngf"], shapes["hidden"], shapes["spade_hidden"], shapes["z_dim"]) == (64, 128, 128, 256)
    assert shapes["channels"] == channels + instance
    assert shapes["num_upsampling_layers"] == kw.get("num_upsampling_layers", "normal")
    with torch.device("meta"):
        G = build_generator({"name": "ccfpse", **kw}, num_classes=channels, use_instance=instance, resolution=res)
    mapped, origin = map_generator(state)
    assert len(mapped) == len(state)  # every official tensor has its place, the never-called BatchNorms included
    assert _canonical({k: v.shape for k, v in mapped.items()}) == \
        _canonical({k: v.shape for k, v in G.state_dict().items()})
    assert origin["head_0.cc_0.kernels.2.weight"] == "head_0.gen_weights1.2.weight"
    assert origin["up_0.conv_0.norm_layer.running_mean"] == "up_0.conv_0.norm_layer.running_mean"


def test_released_encoder_and_discriminator_layouts_map_onto_semsynth():
    ref = json.loads((OFFICIAL / "official_shapes.json").read_text())["ade20k"]
    assert ref["netE"]["parameters"] == 10_463_424 and ref["netD"]["parameters"] == 5_190_593
    with torch.device("meta"):
        E = build_encoder({"name": "conv", "width": 64, "input_size": 256}, z_dim=256)
        D = build_discriminator({"name": "fpse", "width": 64}, num_classes=151)
    for net, official, mapper in ((E, ref["netE"]["state"], map_encoder_keys), (D, ref["netD"]["state"], map_fpse)):
        mapped, _ = mapper({k: torch.empty(s, device="meta") for k, s in official.items()})
        assert _canonical({k: v.shape for k, v in mapped.items()}) == \
            _canonical({k: v.shape for k, v in net.state_dict().items()})


# -- errors ---------------------------------------------------------------------------------------------------------


def convert(state, opt=None, **kw):
    kw.setdefault("encoder_state", None)
    kw.setdefault("discriminator_state", None)
    kw.setdefault("preset", None)
    kw.setdefault("overrides", [])
    return convert_ccfpse(state, VAE_OPT if opt is None else opt, **kw)


def test_another_familys_checkpoint_is_refused_naming_it():
    spade_like = {"fc.weight": torch.zeros(1024, 184, 3, 3),
                  "head_0.norm_0.mlp_shared.0.weight": torch.zeros(128, 184, 3, 3)}
    with pytest.raises(ConversionError, match=r"not a CC-FPSE CondConvGenerator.*--from spade"):
        convert(spade_like)
    d, _ = reference("discriminator", "netD")
    with pytest.raises(ConversionError, match="not a CC-FPSE CondConvGenerator"):
        convert(d)
    g, _ = reference("generator_vae", "netG")
    with pytest.raises(ConversionError, match="not a CC-FPSE ConvEncoder"):
        convert(g, encoder_state=d)
    with pytest.raises(ConversionError, match="netG is 'spade'"):
        convert(g, {**VAE_OPT, "netG": "spade"})


def test_a_shape_mismatch_names_the_key_and_both_shapes():
    g, _ = reference("generator_vae", "netG")
    g = dict(g)
    assert list(g["up_0.norm_s.mlp_gamma.weight"].shape) == [32, 5, 3, 3]
    g["up_0.norm_s.mlp_gamma.weight"] = torch.zeros(32, 5, 3, 4)
    with pytest.raises(ConversionError) as e:
        convert(g)
    msg = str(e.value)
    assert "'up_0.norm_s.mlp_gamma.weight'" in msg and "up_0.shortcut_norm.mlp_gamma.weight" in msg
    assert "[32, 5, 3, 4]" in msg and "[32, 5, 3, 3]" in msg and "wrong --from" in msg


def test_a_missing_tensor_is_named():
    g, _ = reference("generator_vae", "netG")
    g = {k: v for k, v in g.items() if k != "up_3.gen_se_weights2.2.bias"}
    with pytest.raises(ConversionError, match=r"missing from the checkpoint \('up_3\.cc_1\.attention\.2\.bias' "
                                              r"\(official 'up_3\.gen_se_weights2\.2\.bias'\)\)"):
        convert(g)


def test_a_never_called_batchnorm_of_the_wrong_width_is_refused():
    g, _ = reference("generator_vae", "netG")
    g = dict(g)
    g["up_1.conv_0.norm_layer.weight"] = torch.ones(7)
    with pytest.raises(ConversionError, match=r"'up_1.conv_0.norm_layer.weight' has shape \[7\].*\[16\]"):
        convert(g)


def test_instance_channel_contradiction_names_both_sources():
    """The SPADE-family classic: a checkpoint without the instance channel converted as if it had one."""
    g, _ = reference("generator_vae", "netG")
    with pytest.raises(ConversionError, match="use_instance: tensor shapes says False but opt.txt says True"):
        convert(g, {**VAE_OPT, "no_instance": False})


def test_contradictions_with_preset_or_set_are_refused():
    g, _ = reference("generator_vae", "netG")
    with pytest.raises(ConversionError, match="ngf: tensor shapes says 2 but --set says 4"):
        convert(g, overrides=["generator.ngf=4"])
    with pytest.raises(ConversionError, match="a preset of generator 'scgan'"):
        convert(g, preset="scgan-ade20k")
    with pytest.raises(ConfigError, match="convert takes only"):
        convert(g, overrides=["train.batch_size=2"])
    with pytest.raises(ConversionError, match="label_norm: opt.txt says 'syncbatch' but --set says 'instance'"):
        convert(g, overrides=["generator.label_norm=instance"])
    no_norm_g = {k: v for k, v in VAE_OPT.items() if k != "norm_G"}
    with pytest.raises(ConversionError, match="label_norm: --set says 'instance' but the checkpoint holds batch-norm"):
        convert(g, no_norm_g, overrides=["generator.label_norm=instance"])
    assert convert(g, no_norm_g, overrides=["generator.norm=batch"]).generator.config["norm"] == "batch"


def test_image_size_must_fit_the_vae_first_layer():
    g, _ = reference("generator_vae", "netG")
    with pytest.raises(ConversionError, match=r"fc\.weight has shape \[32, 256\].*64x64"):
        convert(g, {**VAE_OPT, "crop_size": 64})


def test_unknown_channel_count_without_opt_asks_for_it():
    g, _ = reference("generator_vae", "netG")
    with pytest.raises(ConversionError, match="5 input channels.*--opt"):
        convert(g, {})


def test_encoder_and_discriminator_must_belong_to_the_generator():
    g, _ = reference("generator_vae", "netG")
    e, _ = reference("encoder", "netE")
    d, _ = reference("discriminator", "netD")
    e = {**e, "fc_mu.weight": e["fc_mu.weight"][:8], "fc_mu.bias": e["fc_mu.bias"][:8]}
    with pytest.raises(ConversionError, match="a z of 8, but the generator's fc takes z_dim 256"):
        convert(g, encoder_state=e)
    g2, _ = reference("generator_more", "netG")
    with pytest.raises(ConversionError, match="has no VAE"):
        convert(g2, {}, overrides=MORE_SETS, encoder_state=reference("encoder", "netE")[0])
    with pytest.raises(ConversionError, match="5 label channels, but the generator reads 4"):
        convert(g2, {}, overrides=MORE_SETS, discriminator_state=d)
