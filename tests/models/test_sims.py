"""SIMS's synthesis network (models/generators/sims.py), its objective (objectives/sims.py) and model directory."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from semsynth import build_generator, count_parameters, one_hot_label
from semsynth.cli import main
from semsynth.config import load_config
from semsynth.data import build_dataset
from semsynth.errors import SemsynthError, ShapeError
from semsynth.sims import BankError, build_bank, load_bank
from semsynth.training import load_training_state, train
from semsynth.training.checkpoint import list_checkpoints, load_model
from semsynth.training.loop import seed_everything

TINY_G = {"encoder_widths": [4, 4, 4, 4], "encoder_convs": [1, 1, 1, 1], "decoder_widths": [4, 4, 4, 4],
          "final_width": 4}


def stack(cin: int, width: int, count: int) -> int:
    """``count`` 3x3 convs without bias, each with a layer norm's gain and bias."""
    return cin * width * 9 + 2 * width + (count - 1) * (width * width * 9 + 2 * width)


def sims_count_by_hand(channels: int, enc: list[int], convs: list[int], dec: list[int], final: int) -> int:
    x = channels + 4  # the layout, the canvas's RGB and its coverage mask
    total, cin = 0, x
    for w, k in zip(enc, convs):
        total, cin = total + stack(cin, w, k), w
    below = 0
    for i, w in enumerate(dec):  # [x, encoder features of this size, the level below]
        total, below = total + stack(x + enc[len(enc) - 1 - i] + below, w, 2), w
    total += stack(x + below, final, 2)
    return total + final * 3 + 3 + final * channels + channels  # to RGB, to label logits


def test_parameter_count_at_the_official_setting_is_the_hand_computation():
    with torch.device("meta"):
        G = build_generator({"name": "sims"}, num_classes=35, resolution=[256, 512])
    assert G.levels == 6 and G.encoder_widths == [64, 128, 256, 512, 512, 512]
    assert G.encoder_convs == [2, 2, 3, 3, 3, 3] and G.decoder_widths == [512] * 5 + [256]
    by_hand = sims_count_by_hand(35, [64, 128, 256, 512, 512, 512], [2, 2, 3, 3, 3, 3], [512] * 5 + [256], 256)
    assert count_parameters(G) == by_hand == 56_098_534
    with torch.device("meta"):
        ade = build_generator({"name": "sims"}, num_classes=151, resolution=256)
    assert count_parameters(ade) == 59_402_330


@pytest.fixture(scope="module")
def tiny_bank():
    ds = build_dataset({"name": "synthetic-faces", "resolution": 64, "num_samples": 4})
    return ds, build_bank(ds, data_spec={"name": "synthetic-faces", "num_samples": 4})


def test_forward_with_a_canvas_from_the_bank_or_given(tiny_bank):
    ds, bank = tiny_bank
    G = build_generator({"name": "sims", **TINY_G}, num_classes=15, resolution=64)
    s = one_hot_label(torch.stack([ds[i]["label"] for i in range(2)]), 15)
    with pytest.raises(SemsynthError, match="no memory bank"):
        G(s)
    G.attach_bank(bank)
    out = G(s, return_aux=True)
    assert out.image.shape == (2, 3, 64, 64) and out.image.abs().max() <= 1
    assert out.segmentation.shape == (2, 15, 64, 64) and out.canvas.shape == (2, 4, 64, 64)
    assert out.canvas[:, 3].mean() > 0.5  # most of each layout is covered by retrieved segments
    assert torch.equal(G(s, canvas=out.canvas), out.image)  # the canvas is the input that made the image
    other = G(s, canvas=torch.zeros_like(out.canvas))
    assert (other - out.image).abs().max() > 0
    with pytest.raises(ShapeError, match="canvas"):
        G(s, canvas=torch.zeros(2, 3, 64, 64))
    with torch.device("meta"):  # the config check builds on the meta device: no bank needed
        M = build_generator({"name": "sims", **TINY_G}, num_classes=15, resolution=64)
        assert M(torch.zeros(2, 15, 64, 64, device="meta")).shape == (2, 3, 64, 64)


def test_a_bank_of_other_classes_is_refused(tiny_bank):
    _, bank = tiny_bank
    G = build_generator({"name": "sims", **TINY_G}, num_classes=5, resolution=64)
    with pytest.raises(BankError, match="15 classes"):
        G.attach_bank(bank)
    G2 = build_generator({"name": "sims", **TINY_G}, num_classes=15, resolution=[64, 128])
    with pytest.raises(BankError, match="aspect ratios differ"):
        G2.attach_bank(bank)


def test_copies_of_the_generator_share_its_bank(tiny_bank):
    import copy

    G = build_generator({"name": "sims", **TINY_G}, num_classes=15, resolution=64)
    G.attach_bank(tiny_bank[1])
    assert copy.deepcopy(G).bank is G.bank and "bank" not in str(list(G.state_dict()))


# -- training and the model directory ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sims_run(tiny_bank, tmp_path_factory):
    root = tmp_path_factory.mktemp("sims")
    bank_path = tiny_bank[1].save(root / "bank.safetensors")
    sets = [f"generator.{k}={v}" for k, v in TINY_G.items()] + [
        f"loss.bank={bank_path}", "loss.random_width=4", "data.num_samples=4", "train.batch_size=2",
        "train.images=2", "train.log_every=2", "train.sample_every=2", "train.checkpoint_every=2",
        "train.num_samples=2", "train.tensorboard=false"]
    cfg = load_config("sims-synthetic-faces", sets)
    assert cfg.discriminator is None and cfg.loss["name"] == "sims"
    return cfg, train(cfg, outdir=root / "runs")


def test_one_step_of_the_preset_changes_every_parameter(sims_run):
    cfg, run = sims_run
    state = load_training_state(list_checkpoints(run)[-1])
    assert state["D"] is None and state["cur_nimg"] == 2
    seed_everything(cfg.train.seed)
    G0 = build_generator(cfg.generator)
    same = [k for k, v in G0.state_dict().items() if torch.equal(v, state["G"][k])]
    assert same == [] and any(k.startswith("to_labels") for k in state["G"])
    stats = (run / "stats.jsonl").read_text()
    assert "G/segmentation" in stats and "G/conv5_2" in stats


def test_the_model_directory_carries_the_bank_through_export_and_generate(sims_run, tiny_bank, tmp_path):
    _, run = sims_run
    model = run / "model"
    assert json.loads((model / "config.json").read_text())["files"] == ["sims_bank.safetensors"]
    assert load_bank(model / "sims_bank.safetensors").fingerprint == tiny_bank[1].fingerprint
    out = tmp_path / "exported"
    assert main(["export", "--checkpoint", str(run), "--out", str(out)]) == 0
    copied = tmp_path / "copied"
    assert main(["export", "--model", str(out), "--out", str(copied)]) == 0
    assert (copied / "sims_bank.safetensors").read_bytes() == (model / "sims_bank.safetensors").read_bytes()
    from semsynth.data.synthetic_faces import write_synthetic_faces

    faces = write_synthetic_faces(tmp_path / "faces", 2, size=64, split="val", progress=False)
    assert main(["generate", "--model", str(copied), "--labels", str(faces / "labels"), "--out",
                 str(tmp_path / "gen")]) == 0
    G, _, info, _ = load_model(copied)
    assert G.bank is not None and G.bank.fingerprint == tiny_bank[1].fingerprint
    label = torch.from_numpy(np.array(Image.open(min((faces / "labels").iterdir())))).long()
    with torch.no_grad():
        expected = ((G(one_hot_label(label[None], info.num_classes))[0] + 1) * 127.5).round().clamp(0, 255)
    written = np.asarray(Image.open(tmp_path / "gen" / "val_000000.png")).transpose(2, 0, 1)
    assert np.abs(written.astype(int) - expected.byte().numpy().astype(int)).max() <= 1
    (copied / "sims_bank.safetensors").unlink()
    with pytest.raises(BankError, match="without its memory bank"):
        load_model(copied)
