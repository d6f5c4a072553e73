"""``semsynth convert --from spade``: equivalence with the official SPADE networks (reference outputs made by running
NVlabs/SPADE, see tests/data/official/spade/README.md), the released state layouts, and the errors."""

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from semsynth.cli import main
from semsynth.convert import ConversionError, legacy_spectral_to_parametrized
from semsynth.convert.spade import convert_spade, infer_spade
from semsynth.convert.spade_family import Settings, map_discriminator, map_encoder, spade_dataset
from semsynth.errors import ConfigError
from semsynth.layers import semantic_input
from semsynth.models import build_discriminator, build_encoder, build_generator

OFFICIAL = Path(__file__).parents[1] / "data" / "official" / "spade"


def reference(name: str, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """(the official state dict, the inputs and outputs, the official options) of a reference file."""
    data = load_file(OFFICIAL / f"{name}.safetensors")
    with safe_open(OFFICIAL / f"{name}.safetensors", "pt") as f:
        opt = json.loads(f.metadata()["opt"])
    state = {k[len(prefix) + 1:]: v for k, v in data.items() if k.startswith(prefix + ".")}
    return state, {k: v for k, v in data.items() if not k.startswith(prefix + ".")}, opt


def semantic(io: dict, num_classes: int) -> torch.Tensor:
    """The official input: one-hot labels (+ the instance map's edges), built by semsynth from the stored maps."""
    inst = io.get("input.instance")
    return semantic_input(io["input.label"].long(), num_classes, inst.long() if inst is not None else None)


def image(io: dict) -> torch.Tensor:
    return io["input.image_u8"].float() / 127.5 - 1


def convert(state, opt=None, **kw):
    kw.setdefault("encoder_state", None)
    kw.setdefault("discriminator_state", None)
    kw.setdefault("preset", None)
    kw.setdefault("overrides", [])
    return convert_spade(state, opt or {}, **kw)


def write_opt_txt(path: Path, opt: dict) -> None:
    """An opt.txt as the official training script writes it."""
    lines = ["----------------- Options ---------------"]
    lines += [f"{k:>25}: {v!s:<30}" for k, v in sorted(opt.items())]
    path.write_text("\n".join(lines + ["----------------- End -------------------"]) + "\n")


def official_names(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A semsynth SPADE network's state under the official names (legacy spectral norm), for synthetic checkpoints."""
    out = {}
    for k, v in module.state_dict().items():
        k = k.replace(".parametrizations.weight.original", ".weight_orig")
        k = k.replace(".parametrizations.weight.0._u", ".weight_u")
        k = k.replace(".parametrizations.weight.0._v", ".weight_v")
        out[k] = v
    return out


# -- equivalence with the official networks ---------------------------------------------------------------------


def test_label_input_generator_and_discriminator_reproduce_the_official_outputs():
    g, g_io, opt = reference("spade_g", "G")
    d, d_io, _ = reference("spade_d", "D")
    res = convert(g, opt, discriminator_state=d)
    cfg = res.generator.config
    assert (cfg["ngf"], cfg["use_vae"], cfg["num_upsampling_layers"], cfg["param_free_norm"], cfg["spectral"],
            cfg["spade_kernel_size"], cfg["spade_hidden"]) == (1, False, "normal", "instance", True, 1, 128)
    assert (cfg["num_classes"], cfg["use_instance"], cfg["resolution"]) == (6, True, [64, 64])
    assert res.sources["ngf"] == "tensor shapes" and res.sources["dataset"] == "opt.txt"
    assert res.info.dontcare_index == 5 and res.label_values["255"] == 5
    assert res.discriminator.config["num_scales"] == 2 and res.discriminator.config["num_layers"] == 4
    with torch.no_grad():
        out = res.generator.eval()(semantic(g_io, 6))
        d_out = res.discriminator.eval()(image(d_io), semantic(d_io, 6))
    torch.testing.assert_close(out, g_io["output.image"], rtol=0, atol=1e-5)
    for i in range(2):
        torch.testing.assert_close(d_out.logits[i], d_io[f"output.D.{i}.4"], rtol=1e-5, atol=1e-5)
        for j in range(4):
            torch.testing.assert_close(d_out.features[i][j], d_io[f"output.D.{i}.{j}"], rtol=1e-5, atol=1e-5)


def test_vae_generator_with_the_more_layout_and_its_encoder_reproduce_the_official_outputs():
    g, g_io, opt = reference("spade_g_vae", "G")
    e, e_io, _ = reference("spade_e", "E")
    res = convert(g, opt, encoder_state=e)
    cfg = res.generator.config
    assert (cfg["use_vae"], cfg["z_dim"], cfg["num_upsampling_layers"], cfg["resolution"]) == \
        (True, 256, "more", [64, 128])
    assert res.sources["num_upsampling_layers"] == "tensor shapes"  # the fc's 1x2 map at 64x128 means "more"
    assert res.encoder.config["width"] == 1 and res.encoder.config["input_size"] == 256
    with torch.no_grad():
        out = res.generator.eval()(semantic(g_io, 5), g_io["input.z"])
        mu, logvar = res.encoder.eval()(image(e_io))
    torch.testing.assert_close(out, g_io["output.image"], rtol=0, atol=1e-5)
    torch.testing.assert_close(mu, e_io["output.mu"], rtol=0, atol=1e-5)
    torch.testing.assert_close(logvar, e_io["output.logvar"], rtol=0, atol=1e-5)


def test_spade_codebase_pix2pixhd_generator_reproduces_the_official_output_and_recognises_ade20k():
    g, io, _ = reference("spade_pix2pixhd", "G")
    res = convert(g)  # no opt.txt: 151 channels are ADE20K
    cfg = res.generator.config
    assert cfg["name"] == "pix2pixhd"
    assert (cfg["ngf"], cfg["n_downsample"], cfg["n_blocks"], cfg["norm_bias"], cfg["spectral"]) == \
        (2, 3, 2, False, True)
    assert res.info.name == "ade20k" and res.data["label_convention"] == "scgan"
    assert res.label_values == {str(v): v for v in range(151)}  # label 0 stays channel 0, as SPADE's loader
    assert res.sources["dataset"] == "tensor shapes (151 input channels)"
    with torch.no_grad():
        out = res.generator.eval()(semantic(io, 151))
    torch.testing.assert_close(out, io["output.image"], rtol=0, atol=1e-5)


def test_convert_command_writes_a_model_that_reproduces_the_official_output(tmp_path):
    from semsynth.inference import Synthesizer

    g, io, opt = reference("spade_g", "G")
    d, _, _ = reference("spade_d", "D")
    ckpt = tmp_path / "checkpoints" / "custom_pretrained"
    ckpt.mkdir(parents=True)
    torch.save({f"module.{k}": v for k, v in g.items()}, ckpt / "latest_net_G.pth")  # DataParallel prefixes
    torch.save(d, ckpt / "latest_net_D.pth")
    write_opt_txt(ckpt / "opt.txt", opt)
    out = tmp_path / "spade-custom"
    assert main(["convert", "--from", "spade", "--checkpoint", str(ckpt / "latest_net_G.pth"), "--discriminator",
                 str(ckpt / "latest_net_D.pth"), "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["generator"]["name"] == "spade" and config["label_values"]["255"] == 5
    assert config["converted_from"]["sources"]["num_upsampling_layers"] == "opt.txt"
    assert (out / "discriminator.safetensors").is_file()
    syn = Synthesizer.from_pretrained(out, device="cpu")
    with torch.no_grad():
        result = syn.G(semantic(io, 6))
    torch.testing.assert_close(result, io["output.image"], rtol=0, atol=1e-5)


# -- the released checkpoints' layouts (key -> shape, made with the official code) ------------------------------


def _normalised(state: dict) -> dict[str, tuple]:
    """Key -> shape with spectral norm's vectors dropped and its weight named plainly (meta-built networks have
    no spectral-norm parametrisation)."""
    out = {}
    for k, v in state.items():
        if k.endswith(("._u", "._v")):
            continue
        out[k.replace(".parametrizations.weight.original", ".weight")] = tuple(v.shape)
    return out


RELEASED = json.loads((OFFICIAL / "released_shapes.json").read_text())


@pytest.mark.parametrize("name", ["coco_pretrained", "ade20k_pretrained", "cityscapes_pretrained", "coco_vae"])
def test_released_generator_layouts_map_onto_semsynth_networks(name):
    state = {k: torch.empty(s, device="meta") for k, s in RELEASED[f"{name}/G"].items()}
    shapes = infer_spade(state)
    s = Settings(("spade",), None, [], "SPADE")
    mode, _, info, _ = spade_dataset(shapes["channels"], {}, s, [])
    assert mode == {"coco_pretrained": "coco", "coco_vae": "coco", "ade20k_pretrained": "ade20k",
                    "cityscapes_pretrained": "cityscapes"}[name]
    spec = {"name": "spade", "ngf": shapes["ngf"], "use_vae": shapes["use_vae"],
            "num_upsampling_layers": "more" if mode == "cityscapes" else "normal"}
    with torch.device("meta"):
        G = build_generator(spec, **info.model_interface())
    assert _normalised(legacy_spectral_to_parametrized(state)) == _normalised(G.state_dict())
    assert shapes["ngf"] == 64 and shapes["spade_hidden"] == 128 and shapes["spade_kernel_size"] == 3


def test_released_encoder_and_discriminator_layouts_map_onto_semsynth_networks():
    e = {k: torch.empty(s, device="meta") for k, s in RELEASED["coco_vae/E"].items()}
    d = {k: torch.empty(s, device="meta") for k, s in RELEASED["coco_pretrained/D"].items()}
    with torch.device("meta"):
        E = build_encoder({"name": "conv", "width": 64, "input_size": 256}, z_dim=256)
        D = build_discriminator("multiscale", num_classes=183, use_instance=True)
    assert _normalised(map_encoder(e)) == _normalised(E.state_dict())
    assert _normalised(map_discriminator(d)) == _normalised(D.state_dict())


# -- the dataset conventions -------------------------------------------------------------------------------------


def _tiny_official(channels: int, **kw) -> dict[str, torch.Tensor]:
    """A tiny SPADE generator's state under the official names, reading ``channels`` inputs."""
    G = build_generator({"name": "spade", "ngf": 1, "spade_hidden": 2, **kw}, num_classes=channels, resolution=256)
    return official_names(G)


@pytest.mark.parametrize("channels,name,instance,values", [
    (184, "coco-stuff", True, {"0": 0, "181": 181, "255": 182}),
    (183, "coco-stuff", False, {"0": 0, "255": 182}),
    (36, "cityscapes", True, {"0": 0, "33": 33}),
])
def test_datasets_are_recognised_from_the_channel_count(channels, name, instance, values):
    res = convert(_tiny_official(channels))
    assert res.info.name == name and res.info.has_instance == instance
    assert res.info.semantic_channels == channels
    assert all(res.label_values[k] == v for k, v in values.items())
    if name == "cityscapes":
        assert res.generator.config["num_upsampling_layers"] == "more"
        assert tuple(res.info.resolution) == (256, 512)
        assert res.sources["num_upsampling_layers"] == "default of SPADE's cityscapes setting"


# -- errors ---------------------------------------------------------------------------------------------------


def test_a_checkpoint_of_another_family_is_refused_with_the_right_from():
    p2p = load_file(OFFICIAL.parent / "pix2pixhd" / "global.safetensors")
    state = {k[2:]: v for k, v in p2p.items() if k.startswith("G.")}
    with pytest.raises(ConversionError, match="looks like a pix2pixhd checkpoint: --from pix2pixhd"):
        convert(state)
    scgan = {"fc.weight": torch.zeros(4, 3, 3, 3), "pyramid_spaital_routing.labelDec1.0.bias": torch.zeros(4)}
    with pytest.raises(ConversionError, match="--from scgan"):
        convert(scgan)


def test_the_instance_map_on_or_off_contradicting_the_shapes_is_refused():
    state = _tiny_official(184)  # COCO-Stuff with instance edges (SPADE#7: 184 vs 183 channels)
    with pytest.raises(ConversionError, match="data.use_instance: tensor shapes says True but --set says False"):
        convert(state, overrides=["data.use_instance=false"])
    with pytest.raises(ConversionError, match="data.use_instance: tensor shapes says True but opt.txt says False"):
        convert(state, {"dataset_mode": "coco", "no_instance": True})


def test_a_shape_mismatch_names_the_key_and_both_shapes():
    g, _, opt = reference("spade_g", "G")
    g["up_3.norm_1.mlp_gamma.weight"] = torch.zeros(2, 128, 1, 1)
    with pytest.raises(ConversionError, match=r"'up_3.norm_1.mlp_gamma.weight' has shape \[2, 128, 1, 1\] in the "
                                              r"checkpoint but \[1, 128, 1, 1\] in the semsynth model; read as SPADE"):
        convert(g, opt)
    g, _, opt = reference("spade_g", "G")
    del g["conv_img.bias"]
    with pytest.raises(ConversionError, match=r"1 tensor\(s\) missing from the checkpoint \('conv_img.bias'\)"):
        convert(g, opt)


def test_contradictions_and_mismatched_files_are_refused():
    g, _, opt = reference("spade_g", "G")
    gv, _, opt_v = reference("spade_g_vae", "G")
    d, _, _ = reference("spade_d", "D")
    e, _, _ = reference("spade_e", "E")
    with pytest.raises(ConversionError, match="dataset: opt.txt says 'custom' but --preset spade-ade20k says 'ade20k'"):
        convert(g, opt, preset="spade-ade20k")
    with pytest.raises(ConversionError, match="a preset of generator 'scgan'"):
        convert(g, opt, preset="scgan-ade20k")
    with pytest.raises(ConversionError, match="the two files are of different models"):
        convert(gv, opt_v, discriminator_state=d)  # a D on 7 label channels, a G reading 6
    with pytest.raises(ConversionError, match="has no VAE"):
        convert(g, opt, encoder_state=e)
    with pytest.raises(ConversionError, match=r"fc.weight has shape \[32, 256\], a first map of 2 cells"):
        convert(gv, {**opt_v, "crop_size": 256})
    with pytest.raises(ConversionError, match="opt.txt says 'most', but the checkpoint has no up_4"):
        convert(g, {**opt, "num_upsampling_layers": "most"})
    with pytest.raises(ConfigError, match="convert takes only"):
        convert(g, opt, overrides=["train.batch_size=2"])
    ade = _tiny_official(151)
    with pytest.raises(ConversionError, match="label_convention"):
        convert(ade, overrides=["data.label_convention=spade"])
    with pytest.raises(ConversionError, match="7 input channels, which is none of SPADE's datasets"):
        convert(g)
