"""``semsynth convert --from pix2pixhd``: equivalence with NVIDIA/pix2pixHD's networks (reference outputs made by
running the official code, see tests/data/official/pix2pixhd/README.md), the released layouts, and the errors."""

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from semsynth.cli import main
from semsynth.convert import ConversionError
from semsynth.convert.pix2pixhd import convert_pix2pixhd, infer_generator
from semsynth.convert.spade import rename
from semsynth.layers import semantic_input
from semsynth.models import build_discriminator, build_generator

OFFICIAL = Path(__file__).parents[1] / "data" / "official" / "pix2pixhd"


def reference(name: str) -> tuple[dict, dict, dict, dict]:
    """(G state, D state, inputs and outputs, official options) of a reference file."""
    data = load_file(OFFICIAL / f"{name}.safetensors")
    with safe_open(OFFICIAL / f"{name}.safetensors", "pt") as f:
        opt = json.loads(f.metadata()["opt"])
    g = {k[2:]: v for k, v in data.items() if k.startswith("G.")}
    d = {k[2:]: v for k, v in data.items() if k.startswith("D.")}
    return g, d, {k: v for k, v in data.items() if k.startswith(("input.", "output."))}, opt


def semantic(io: dict) -> torch.Tensor:
    return semantic_input(io["input.label"].long(), 35, io["input.instance"].long())


def convert(state, opt=None, **kw):
    kw.setdefault("encoder_state", None)
    kw.setdefault("discriminator_state", None)
    kw.setdefault("preset", None)
    kw.setdefault("overrides", [])
    return convert_pix2pixhd(state, opt or {}, **kw)


def test_global_generator_reproduces_the_official_output_and_recognises_cityscapes():
    g, _, io, _ = reference("global")
    res = convert(g)  # no opt.txt: 36 channels are Cityscapes' 35 labelIds + instance edge, 512p
    cfg = res.generator.config
    assert (cfg["ngf"], cfg["n_downsample"], cfg["n_blocks"], cfg["n_local_enhancers"]) == (2, 3, 2, 0)
    assert (cfg["norm"], cfg["norm_bias"], cfg["spectral"]) == ("instance", True, False)
    assert res.info.name == "cityscapes" and res.info.has_instance and tuple(res.info.resolution) == (512, 1024)
    assert res.label_values == {str(v): v for v in range(35)}
    with torch.no_grad():
        out = res.generator.eval()(semantic(io))
    torch.testing.assert_close(out, io["output.image"], rtol=0, atol=1e-5)


def test_local_enhancer_and_discriminator_reproduce_the_official_outputs():
    g, d, io, opt = reference("local")
    res = convert(g, {**opt, "resize_or_crop": "none"}, discriminator_state=d)
    cfg = res.generator.config
    assert (cfg["ngf"], cfg["n_downsample"], cfg["n_blocks"], cfg["n_local_enhancers"], cfg["n_blocks_local"]) == \
        (2, 2, 2, 1, 2)
    assert tuple(res.info.resolution) == (1024, 2048) and res.sources["data.crop_size"] == "opt.txt"
    dcfg = res.discriminator.config
    assert (dcfg["num_scales"], dcfg["num_layers"], dcfg["width"], dcfg["spectral"], dcfg["conv_bias"]) == \
        (3, 4, 4, False, True)
    with torch.no_grad():
        out = res.generator.eval()(semantic(io))
        d_out = res.discriminator.eval()(io["input.image_u8"].float() / 127.5 - 1, semantic(io))
    torch.testing.assert_close(out, io["output.image"], rtol=0, atol=1e-5)
    for i in range(3):  # pix2pixHD lists its scales coarse first in the keys, fine first in the outputs
        torch.testing.assert_close(d_out.logits[i], io[f"output.D.{i}.4"], rtol=1e-5, atol=1e-5)
        for j in range(4):
            torch.testing.assert_close(d_out.features[i][j], io[f"output.D.{i}.{j}"], rtol=1e-5, atol=1e-5)


def test_convert_command_of_a_local_enhancer(tmp_path):
    from semsynth.inference import Synthesizer

    g, _, io, _ = reference("local")
    ckpt = tmp_path / "label2city_1024p"
    ckpt.mkdir()
    torch.save(g, ckpt / "latest_net_G.pth")
    out = tmp_path / "pix2pixhd-1024p"
    assert main(["convert", "--from", "pix2pixhd", "--checkpoint", str(ckpt / "latest_net_G.pth"), "--out",
                 str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["generator"]["n_local_enhancers"] == 1 and config["dataset"]["name"] == "cityscapes"
    assert config["converted_from"]["sources"]["data.crop_size"] == "the README's test setting of --netG local"
    syn = Synthesizer.from_pretrained(out, device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(syn.G(semantic(io)), io["output.image"], rtol=0, atol=1e-5)


RELEASED = json.loads((OFFICIAL / "released_shapes.json").read_text())


@pytest.mark.parametrize("name,kw,res", [
    ("label2city_1024p", {"ngf": 32, "n_local_enhancers": 1}, [1024, 2048]),
    ("label2city_512p", {}, [512, 1024])])
def test_released_generator_layouts_map_onto_semsynth_networks(name, kw, res):
    state = {k: torch.empty(s, device="meta") for k, s in RELEASED[f"{name}/G"].items()}
    shapes, pairs = infer_generator(state)
    assert shapes["channels"] == 36 and shapes["ngf"] == kw.get("ngf", 64)
    assert shapes["n_local_enhancers"] == kw.get("n_local_enhancers", 0)
    with torch.device("meta"):
        G = build_generator({"name": "pix2pixhd", "norm_bias": True, "spectral": False, **kw}, num_classes=35,
                            use_instance=True, resolution=res)
    assert {k: tuple(v.shape) for k, v in rename(state, pairs).items()} == \
        {k: tuple(v.shape) for k, v in G.state_dict().items()}


def test_released_discriminator_layout_maps_onto_semsynth_networks():
    state = {k: torch.empty(s, device="meta") for k, s in RELEASED["label2city_1024p/D"].items()}
    pairs = [(f"scale{s}_layer{j}.", f"discriminator_{2 - s}.model{j}.") for s in range(3) for j in range(5)]
    with torch.device("meta"):
        D = build_discriminator({"name": "multiscale", "num_scales": 3, "spectral": False, "conv_bias": True},
                                num_classes=35, use_instance=True)
    assert {k: tuple(v.shape) for k, v in rename(state, pairs).items()} == \
        {k: tuple(v.shape) for k, v in D.state_dict().items()}


def test_errors():
    g, _, _, opt = reference("global")
    spade = load_file(OFFICIAL.parent / "spade" / "spade_g.safetensors")
    with pytest.raises(ConversionError, match="looks like a spade checkpoint: --from spade"):
        convert({k[2:]: v for k, v in spade.items() if k.startswith("G.")})
    with pytest.raises(ConversionError, match="pix2pixHD has no VAE style encoder"):
        convert(g, encoder_state={"layer1.0.weight": torch.zeros(1)})
    with pytest.raises(ConversionError, match="--instance_feat/--label_feat"):
        convert(g, {**opt, "instance_feat": True})
    with pytest.raises(ConversionError, match="label_nc 0"):
        convert(g, {"label_nc": 0})
    with pytest.raises(ConversionError, match="netG 'local', but the checkpoint has no local enhancer"):
        convert(g, {"netG": "local"})
    with pytest.raises(ConversionError, match="data.use_instance: tensor shapes says True but opt.txt says False"):
        convert(g, {"label_nc": 35, "no_instance": True})
    with pytest.raises(ConversionError, match="spectral: tensor shapes says False but --set says True"):
        convert(g, overrides=["generator.spectral=true"])
    with pytest.raises(ConversionError, match="a preset of generator 'spade'"):
        convert(g, preset="spade-cityscapes")


def test_shape_mismatches_name_the_official_and_the_semsynth_key():
    g, d, _, _ = reference("local")
    bad = dict(g)
    bad["model.10.conv_block.5.weight"] = torch.zeros(8, 16, 3, 3)
    with pytest.raises(ConversionError, match=r"'model.10.conv_block.5.weight' \(semsynth "
                                              r"'global_generator.blocks.0.conv_1.weight'\) has shape \[8, 16, 3, 3\] "
                                              r"in the checkpoint but \[16, 16, 3, 3\]"):
        convert(bad)
    bad_d = dict(d)
    bad_d["scale2_layer0.0.weight"] = torch.zeros(4, 38, 4, 4)  # the finest scale reads 35 + 1 + 3 = 39 channels
    with pytest.raises(ConversionError, match=r"'scale2_layer0.0.weight' \(semsynth "
                                              r"'discriminator_0.model0.0.weight'\) has shape \[4, 38, 4, 4\] in "
                                              r"the checkpoint but \[4, 39, 4, 4\]"):
        convert(g, discriminator_state=bad_d)
    other = {k: (torch.zeros(4, 38, 4, 4) if k.endswith("layer0.0.weight") else v) for k, v in d.items()}
    with pytest.raises(ConversionError, match="38 input channels, but the generator reads 36"):
        convert(g, discriminator_state=other)
    with pytest.raises(ConversionError, match="not a pix2pixHD multi-scale discriminator"):
        convert(g, discriminator_state={"x.weight": torch.zeros(1)})
