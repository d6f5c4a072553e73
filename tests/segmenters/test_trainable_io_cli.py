"""Segmenters trained here (unet, deeplabv3), saving/loading them, training and the CLI (tiny, CPU)."""

import argparse
import json

import pytest
import torch

from semsynth.data import DATASETS, build_dataset
from semsynth.errors import ConfigError, MissingWeightsError, SemsynthError
from semsynth.models import count_parameters
from semsynth.segmenters import (
    build_segmenter,
    check_segmenter_dataset,
    load_segmenter,
    parse_segmenter_spec,
    save_segmenter,
)
from semsynth.segmenters.cli import add_segmenter_commands, run_segmenter_command

FACES = {"name": "synthetic-faces", "resolution": 32, "num_samples": 24, "seed": 0}


@pytest.fixture(autouse=True)
def _hub_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))


def cli(*argv):
    p = argparse.ArgumentParser(prog="semsynth segmenter")
    add_segmenter_commands(p)
    return run_segmenter_command(p.parse_args([str(a) for a in argv]))


def test_unet_any_size_and_small():
    seg = build_segmenter({"name": "unet"}, num_classes=15)
    assert seg.config == {"name": "unet", "num_classes": 15, "width": 16, "depth": 3, "label_space": "dataset"}
    assert count_parameters(seg) < 2_000_000
    out = seg.eval()(torch.rand(2, 3, 37, 29) * 2 - 1)
    assert out.shape == (2, 15, 37, 29)
    assert seg.predict(torch.zeros(1, 3, 8, 8)).shape == (1, 8, 8)


def test_deeplabv3_builds_offline_and_loads_an_imagenet_backbone(tmp_path):
    import torchvision

    seg = build_segmenter({"name": "deeplabv3", "backbone": "mobilenet_v3_large"}, num_classes=5).eval()
    with torch.no_grad():
        assert seg(torch.rand(1, 3, 48, 40) * 2 - 1).shape == (1, 5, 48, 40)
    with pytest.raises(MissingWeightsError, match="mobilenet_v3_large-8738ca79.pth"):
        build_segmenter({"name": "deeplabv3", "backbone": "mobilenet_v3_large", "backbone_weights": "imagenet"},
                        num_classes=5)
    imagenet = torchvision.models.mobilenet_v3_large(weights=None).state_dict()
    path = tmp_path / "hub" / "checkpoints" / "mobilenet_v3_large-8738ca79.pth"
    path.parent.mkdir(parents=True)
    torch.save(imagenet, path)
    seg2 = build_segmenter({"name": "deeplabv3", "backbone": "mobilenet_v3_large", "backbone_weights": "imagenet"},
                           num_classes=5)
    assert torch.equal(seg2.net.backbone["0"][0].weight, imagenet["features.0.0.weight"])
    with pytest.raises(ConfigError, match="backbone"):
        build_segmenter({"name": "deeplabv3", "backbone": "vgg"}, num_classes=5)


def test_save_load_roundtrip(tmp_path):
    ds = build_dataset(FACES)
    seg = build_segmenter({"name": "unet", "width": 4, "depth": 2}, num_classes=ds.info.num_classes)
    with torch.no_grad():
        for p in seg.parameters():
            p.normal_()
    seg.eval()
    out = save_segmenter(tmp_path / "seg", seg, ds.info, {"metrics": {"validation": {"miou": 0.5}}})
    assert (out / "segmenter.safetensors").is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["format"] == "semsynth-segmenter" and cfg["segmenter"]["width"] == 4
    assert cfg["dataset"]["name"] == "synthetic-faces" and cfg["label_space"] == "dataset"
    assert cfg["metrics"]["validation"]["miou"] == 0.5
    model, config = load_segmenter(tmp_path / "seg")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(model(x), seg(x), atol=1e-6)
    check_segmenter_dataset(config, ds.info)
    with pytest.raises(ConfigError, match="trained on"):
        check_segmenter_dataset(config, DATASETS.get("cityscapes").describe(root="/x"))
    with pytest.raises(SemsynthError, match="not a trained segmenter"):
        load_segmenter(tmp_path)
    with pytest.raises(SemsynthError, match="is a file"):
        load_segmenter(out / "config.json")


def test_parse_segmenter_spec(tmp_path):
    assert parse_segmenter_spec("drn-d-105") == {"name": "drn-d-105"}
    assert parse_segmenter_spec("deeplabv2,weights=/w/f.pth,msc=false") == {"name": "deeplabv2",
                                                                            "weights": "/w/f.pth", "msc": False}
    assert parse_segmenter_spec("{name: drn-d-105, input_size: [512, 1024]}") == {"name": "drn-d-105",
                                                                                  "input_size": [512, 1024]}
    assert parse_segmenter_spec("name=drn-d-105,input_size=512") == {"name": "drn-d-105", "input_size": 512}
    assert parse_segmenter_spec(str(tmp_path)) == str(tmp_path)
    with pytest.raises(ConfigError, match="neither an existing path"):
        parse_segmenter_spec("nonexistent-thing")


def test_train_and_eval_through_the_cli(tmp_path, capsys):
    assert cli("train", "--dataset", "synthetic-faces", "--set", "data.resolution=32", "--set", "data.num_samples=24",
               "--arch", "unet", "--set", "model.width=4", "--set", "model.depth=2", "--outdir", tmp_path,
               "--epochs", 2, "--batch-size", 8, "--val", "0.25", "--log-every", 1, "--cache", "--lr", "3e-3") == 0
    run = next(tmp_path.glob("00000-unet-synthetic-faces"))
    for f in ("config.yaml", "log.txt", "stats.jsonl", "segmenter/segmenter.safetensors", "segmenter/config.json"):
        assert (run / f).is_file(), f
    records = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in records) and sum("val_miou" in r for r in records) == 2
    cfg = json.loads((run / "segmenter" / "config.json").read_text())
    val = cfg["metrics"]["validation"]
    assert 0 <= val["miou"] <= 1 and 0 <= val["pixel_accuracy"] <= 1 and val["images"] == 6
    capsys.readouterr()
    assert cli("eval", "--segmenter", run, "--dataset", "synthetic-faces", "--set", "data.resolution=32",
               "--set", "data.num_samples=8", "--json") == 0
    res = json.loads(capsys.readouterr().out)
    assert res["images"] == 8 and res["label_space"] == "dataset" and 0 <= res["miou"] <= 1
    assert set(res["per_class_iou"]) >= {"skin", "hair"}


def test_cli_errors(tmp_path):
    with pytest.raises(ConfigError, match="data.KEY=VALUE"):
        cli("train", "--dataset", "synthetic-faces", "--set", "epochs=3", "--outdir", tmp_path)
    with pytest.raises(ConfigError, match="no option"):
        cli("train", "--dataset", "synthetic-faces", "--set", "model.nope=1", "--set", "data.num_samples=16",
            "--set", "data.resolution=32", "--outdir", tmp_path, "--epochs", 1, "--batch-size", 4, "--val", "none")
    with pytest.raises(MissingWeightsError):
        cli("eval", "--segmenter", "drn-d-105", "--dataset", "synthetic-faces")
    with pytest.raises(ConfigError, match="evaluation label map"):
        cli("eval", "--segmenter", "{name: drn-d-105, pretrained: false}", "--dataset", "synthetic-faces",
            "--set", "data.num_samples=2", "--set", "data.resolution=32")
