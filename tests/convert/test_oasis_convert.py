"""``semsynth convert --from oasis``: equivalence with the official OASIS networks (reference outputs made by running
boschresearch/OASIS, see tests/data/official/oasis/README.md), the EMA / plain generator files, the released state
layouts at full size, the datasets' channel conventions, and the errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from semsynth.convert import ConversionError, convert_checkpoint
from semsynth.convert.oasis import (convert_oasis, infer_generator, map_discriminator, map_generator,
                                    official_key)
from semsynth.errors import ConfigError
from semsynth.inference import Synthesizer
from semsynth.models import build_discriminator, build_generator

OFFICIAL = Path(__file__).parents[1] / "data" / "official" / "oasis"
# the reference networks: 6 label channels, images 32x64 (crop_size 64, aspect_ratio 2), z_dim 3
CUSTOM = ["data.name=custom", "data.num_classes=6", "data.crop_size=64", "data.aspect_ratio=2.0"]
OPT = {"name": "tiny", "dataset_mode": "ade20k", "z_dim": 3, "channels_G": 2, "num_res_blocks": 6,
       "param_free_norm": "syncbatch", "spade_ks": 3, "no_3dnoise": False, "no_spectral_norm": False, "no_EMA": False,
       "EMA_decay": 0.9999, "lambda_labelmix": 10.0, "gpu_ids": "0,1,2,3", "phase": "train"}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def reference(name: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(the official state dict, the inputs and outputs) of a reference file."""
    data = load_file(OFFICIAL / f"{name}.safetensors")
    return ({k[len("state."):]: v for k, v in data.items() if k.startswith("state.")},
            {k: v for k, v in data.items() if not k.startswith("state.")})


def write_opt_txt(path: Path, opt: dict) -> None:
    """An opt.txt as the official config.py writes it."""
    path.write_text("".join(f"{k:>25}: {v!s:<30}\n" for k, v in sorted(opt.items())))


def official_folder(tmp_path: Path, *, ema_differs: bool = True, with_ema: bool = True) -> Path:
    """checkpoints/<name>/models/best_{G,EMA,D}.pth and opt.txt one folder up, as the official training writes."""
    models = tmp_path / "oasis_tiny" / "models"
    models.mkdir(parents=True)
    g, _ = reference("generator")
    d, _ = reference("discriminator")
    torch.save(g, models / "best_G.pth")
    if with_ema:
        ema = {k: (v * 1.5 if ema_differs and k == "conv_img.bias" else v) for k, v in g.items()}
        torch.save(ema, models / "best_EMA.pth")
    torch.save(d, models / "best_D.pth")
    write_opt_txt(models.parent / "opt.txt", OPT)
    return models


# -- equivalence with the official networks ---------------------------------------------------------------------


def test_generator_and_discriminator_reproduce_the_official_outputs():
    g, g_io = reference("generator")
    d, d_io = reference("discriminator")
    res = convert_oasis(g, {"z_dim": 3, "channels_G": 2}, discriminator_state=d, overrides=CUSTOM)
    cfg = res.generator.config
    assert (cfg["channels"], cfg["num_res_blocks"], cfg["z_dim"], cfg["noise_3d"], cfg["param_free_norm"],
            cfg["spade_hidden"], cfg["spade_kernel_size"], cfg["spectral"]) == (2, 6, 3, True, "syncbatch", 8, 3, True)
    assert (cfg["num_classes"], cfg["resolution"]) == (6, [32, 64])
    assert res.sources["channels"] == "tensor shapes" and res.sources["z_dim"] == "opt.txt"
    assert res.discriminator.config["channels"] == 2 and res.discriminator.config["num_res_blocks"] == 6
    G, D = res.generator.eval(), res.discriminator.eval()
    with torch.no_grad():
        image = G(g_io["input.semantic"], g_io["input.z"])
        logits = D(d_io["input.image"]).logits[0]
    torch.testing.assert_close(image, g_io["output.image"], rtol=0, atol=1e-5)
    torch.testing.assert_close(logits, d_io["output.logits"], rtol=0, atol=1e-5)


def test_generator_without_noise_with_instance_norm_and_5x5_spade_reproduces_the_official_output():
    g, io = reference("generator_nonoise")
    res = convert_oasis(g, {"no_3dnoise": True}, overrides=CUSTOM)
    cfg = res.generator.config
    assert (cfg["noise_3d"], cfg["param_free_norm"], cfg["spade_kernel_size"], cfg["channels"]) == \
        (False, "instance", 5, 1)
    assert res.sources["param_free_norm"].startswith("tensor shapes") and res.generator.latent_dim == 0
    with torch.no_grad():
        image = res.generator.eval()(io["input.semantic"])
    torch.testing.assert_close(image, io["output.image"], rtol=0, atol=1e-5)


def test_without_opt_the_noise_width_comes_from_the_shapes():
    g, _ = reference("generator")
    res = convert_oasis(g, {}, overrides=CUSTOM)
    assert res.generator.config["z_dim"] == 3 and res.sources["z_dim"].startswith("tensor shapes")


# -- the official files: EMA by default, the plain generator with --set weights=plain ---------------------------------


def test_the_ema_generator_is_converted_by_default_and_the_plain_one_on_request(tmp_path):
    models = official_folder(tmp_path)
    out, res = convert_checkpoint("oasis", models / "best_G.pth", tmp_path / "ema", overrides=CUSTOM)
    ema = torch.load(models / "best_EMA.pth")
    assert torch.equal(res.generator.conv_img.bias, ema["conv_img.bias"])  # the EMA file, found beside best_G.pth
    assert res.sources["weights"].startswith("default") and res.sources["dataset"] == "--set"
    assert any("converted best_EMA.pth" in n for n in res.notes)
    assert any("--discriminator" in n and "best_D.pth" in n for n in res.notes)
    assert any("dataset_mode ade20k; --set data.name=custom takes precedence" in n for n in res.notes)
    config = json.loads((out / "config.json").read_text())
    assert config["converted_from"]["opt_txt"].endswith("opt.txt") and config["generator"]["z_dim"] == 3
    _, res = convert_checkpoint("oasis", models / "best_EMA.pth", tmp_path / "plain",
                                overrides=CUSTOM + ["weights=plain"],
                                discriminator=models / "best_D.pth")
    g = torch.load(models / "best_G.pth")
    assert torch.equal(res.generator.conv_img.bias, g["conv_img.bias"]) and res.sources["weights"] == "--set"
    assert (tmp_path / "plain" / "discriminator.safetensors").is_file()
    # trained with --no_EMA: the plain generator is the one
    write_opt_txt(models.parent / "opt.txt", {**OPT, "no_EMA": True})
    _, res = convert_checkpoint("oasis", models / "best_G.pth", tmp_path / "noema", overrides=CUSTOM)
    assert res.sources["weights"] == "opt.txt (no_EMA: True)"
    assert torch.equal(res.generator.conv_img.bias, g["conv_img.bias"])


def test_file_choice_errors(tmp_path):
    models = official_folder(tmp_path, with_ema=False)
    with pytest.raises(ConversionError, match=r"needs best_EMA.pth beside it.*--set weights=plain"):
        convert_checkpoint("oasis", models / "best_G.pth", tmp_path / "o", overrides=CUSTOM)
    with pytest.raises(ConversionError, match=r"is the OASIS discriminator .* as --discriminator"):
        convert_checkpoint("oasis", models / "best_D.pth", tmp_path / "o", overrides=CUSTOM)
    with pytest.raises(ConfigError, match="weights is 'ema'"):
        convert_checkpoint("oasis", models / "best_G.pth", tmp_path / "o", overrides=CUSTOM + ["weights=both"])
    with pytest.raises(ConfigError, match="takes only weights=ema|plain"):
        convert_checkpoint("oasis", models / "best_G.pth", tmp_path / "o", overrides=["train.batch_size=2"])
    assert not (tmp_path / "o").exists()


# -- the released layouts (key -> shape of the official networks at full size) ----------------------------------------


def _shapes_without_spectral_norm(state) -> dict[str, tuple[int, ...]]:
    """key -> shape, spectral-norm parametrisations folded back to ``weight`` (meta models have none)."""
    out = {}
    for k, v in state.items():
        if k.endswith((".0._u", ".0._v")):
            continue
        out[k.replace(".parametrizations.weight.original", ".weight")] = tuple(v.shape)
    return out


@pytest.mark.parametrize("key, dataset, channels", [("ade20k_G", "ade20k", 151), ("cityscapes_G", "cityscapes", 35),
                                                    ("coco_G", "coco", 183)])
def test_the_released_generators_map_onto_semsynths(key, dataset, channels):
    shapes = json.loads((OFFICIAL / "official_shapes.json").read_text())
    state = {k: torch.empty(v, device="meta") for k, v in shapes[key].items()}
    inferred = infer_generator(state)
    assert (inferred["channels"], inferred["num_res_blocks"], inferred["cond"], inferred["spade_hidden"],
            inferred["batch_stats"], inferred["spectral"]) == (64, 6, channels + 64, 128, True, True)
    res = (256, 512) if dataset == "cityscapes" else (256, 256)
    with torch.device("meta"):
        G = build_generator({"name": "oasis"}, num_classes=channels, resolution=list(res))
    mapped = map_generator(state)
    assert _shapes_without_spectral_norm(mapped) == _shapes_without_spectral_norm(G.state_dict())
    assert sum(k.endswith("._u") for k in mapped) == sum(k.endswith("weight_orig") for k in shapes[key]) == 16  # 6 x 2 + 4 shortcuts
    assert official_key("body.0.norm_0.param_free_norm.running_mean") == "body.0.norm_0.first_norm.running_mean"
    assert official_key("body.0.conv_0.parametrizations.weight.0._v") == "body.0.conv_0.weight_v"
    if key == "ade20k_G":
        with torch.device("meta"):
            D = build_discriminator({"name": "oasis"}, num_classes=151)
        mapped = map_discriminator({k: torch.empty(v, device="meta") for k, v in shapes["ade20k_D"].items()})
        assert _shapes_without_spectral_norm(mapped) == _shapes_without_spectral_norm(D.state_dict())


def tiny_official(channels: int) -> dict[str, torch.Tensor]:
    """An official-format generator state at a released dataset's width (label channels + z 64), but tiny (channels_G
    1, SPADE hidden 2): the dataset logic depends on the shapes of the first convs only."""
    G = build_generator({"name": "oasis", "channels": 1, "spade_hidden": 2}, num_classes=channels, resolution=256)
    return {official_key(k): v for k, v in G.state_dict().items()}


@pytest.mark.parametrize("mode", ["cityscapes", "coco"])
def test_dataset_conventions_of_the_released_models(mode, tmp_path):
    state = tiny_official(35 if mode == "cityscapes" else 183)
    res = convert_oasis(state, {"dataset_mode": mode, "z_dim": 64})
    info = res.info
    if mode == "cityscapes":
        assert (info.name, info.num_classes, info.has_instance, tuple(info.resolution)) == \
            ("cityscapes", 35, False, (256, 512))
        assert res.label_values == {str(v): v for v in range(35)}
        assert res.data["name"] == "cityscapes" and res.data["use_instance"] is False and res.data["flip"] is False
    else:  # OASIS's COCO order: label + 1, 255 -> 0
        assert (info.num_classes, info.dontcare_index, info.class_names[0], info.class_names[1]) == \
            (183, 0, "unlabeled", "person")
        assert res.label_values["0"] == 1 and res.label_values["181"] == 182 and res.label_values["255"] == 0
        assert res.data is None and any("SPADE's order" in n for n in res.notes)
    # without opt.txt the dataset is recognised from the first conv's width (label channels + 64)
    res = convert_oasis(state, {})
    assert res.sources["dataset"].startswith("tensor shapes") and any("no opt.txt" in n for n in res.notes)


def test_coco_label_files_are_read_in_oasis_order(tmp_path):
    torch.save(tiny_official(183), tmp_path / "best_EMA.pth")
    write_opt_txt(tmp_path / "opt.txt", {"dataset_mode": "coco", "z_dim": 64})
    out, _ = convert_checkpoint("oasis", tmp_path / "best_EMA.pth", tmp_path / "m")
    syn = Synthesizer(*_load(out))
    ids = np.array([[0, 181], [255, 7]], np.uint8)
    Image.fromarray(ids).save(tmp_path / "l.png")
    assert syn.read_label(tmp_path / "l.png").tolist() == [[1, 182], [0, 8]]


def _load(out):
    from semsynth.training import load_model

    G, E, info, config = load_model(out)
    return G, E, info, config, torch.device("cpu")


def test_ade20k_from_the_shapes_alone():
    res = convert_oasis(tiny_official(151), {})
    assert res.info.name == "ade20k" and res.info.class_names[0] == "unlabeled"
    assert res.data["label_convention"] == "scgan" and res.label_values["150"] == 150
    assert res.generator.config["z_dim"] == 64 and res.generator.config["resolution"] == [256, 256]


# -- errors ------------------------------------------------------------------------------------------------------


def test_errors_name_the_cause():
    g, _ = reference("generator")
    d, _ = reference("discriminator")
    with pytest.raises(ConversionError, match="z_dim 4, but opt.txt says z_dim 3: a wrong dataset"):
        convert_oasis(g, {"z_dim": 3}, overrides=["data.name=custom", "data.num_classes=5"])
    with pytest.raises(ConversionError, match="fits none of OASIS's datasets"):
        convert_oasis(g, {})
    with pytest.raises(ConversionError, match="needs the number of label channels"):
        convert_oasis(g, {}, overrides=["data.name=custom"])
    with pytest.raises(ConversionError, match=r"dataset_mode 'faces' is not one OASIS ships.*data.name=custom"):
        convert_oasis(g, {"dataset_mode": "faces"})
    with pytest.raises(ConversionError, match="OASIS has no style encoder"):
        convert_oasis(g, {}, encoder_state=d, overrides=CUSTOM)
    with pytest.raises(ConversionError, match="is the OASIS discriminator"):
        convert_oasis(d, {}, overrides=CUSTOM)
    with pytest.raises(ConversionError, match=r"not an OASIS generator.*--from spade"):
        convert_oasis({"fc.weight": torch.zeros(16, 5, 3, 3), "head_0.norm_0.mlp_shared.0.weight": torch.zeros(1)},
                      {})
    with pytest.raises(ConversionError, match="a preset of generator 'scgan'"):
        convert_oasis(g, {}, preset="scgan-ade20k-oasisd")
    with pytest.raises(ConversionError, match="param_free_norm: --set says 'instance' but the checkpoint holds "
                                              "batch-norm statistics"):
        convert_oasis(g, {}, overrides=CUSTOM + ["generator.param_free_norm=instance"])
    with pytest.raises(ConversionError, match="channels: tensor shapes says 2 but opt.txt says 64"):
        convert_oasis(g, {"channels_G": 64}, overrides=CUSTOM)
    bad = dict(g)
    bad["body.1.norm_0.mlp_gamma.weight"] = torch.zeros(33, 8, 3, 3)
    with pytest.raises(ConversionError, match=r"'body.1.norm_0.mlp_gamma.weight' has shape \[33, 8, 3, 3\] in the "
                                              r"checkpoint but \[32, 8, 3, 3\]"):
        convert_oasis(bad, {}, overrides=CUSTOM)
    missing = {k: v for k, v in g.items() if k != "body.0.norm_1.first_norm.running_var"}
    with pytest.raises(ConversionError, match=r"missing .*'body.0.norm_1.param_free_norm.running_var' \(official "
                                              r"'body.0.norm_1.first_norm.running_var'\)"):
        convert_oasis(missing, {}, overrides=CUSTOM)
    other = {**d, "layer_up_last.weight": torch.zeros(8, 2, 1, 1), "layer_up_last.bias": torch.zeros(8)}
    with pytest.raises(ConversionError, match="7 classes \\+ fake, but the generator reads 6 label channels"):
        convert_oasis(g, {}, discriminator_state=other, overrides=CUSTOM)
