import json

import pytest
import torch

from semsynth.cli import main
from semsynth.config import resolve_config
from semsynth.errors import ConfigError, MissingWeightsError, SemsynthError
from semsynth.evaluation import evaluate, parse_metrics
from semsynth.metrics import SegmentationScore
from semsynth.segmenters import build_segmenter, save_segmenter
from semsynth.data import build_dataset
from semsynth.training import train
from tests.helpers import TINY_RAW

DATA = {"name": "synthetic-faces", "resolution": 64, "num_samples": 16}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    run = train(resolve_config({**TINY_RAW, "train": {**TINY_RAW["train"], "images": 4}}, name="e"),
                outdir=tmp_path_factory.mktemp("ev"))
    return run / "model"


@pytest.fixture(scope="module")
def seg_dir(tmp_path_factory):
    torch.manual_seed(0)
    seg = build_segmenter({"name": "unet", "width": 4, "depth": 2}, num_classes=15).eval()
    info = build_dataset(DATA).info
    return save_segmenter(tmp_path_factory.mktemp("seg") / "segmenter", seg, info, {})


def test_evaluate_scores_generated_images_against_layouts(model_dir, seg_dir, tmp_path):
    res = evaluate(tmp_path, model_dir, dataset_spec=DATA, metrics=["miou", "fid", "kid"], segmenter=str(seg_dir),
                   feature_extractor="segmenter", num=12, batch_size=5, progress=False)
    m = res["metrics"]
    assert res["layouts"] == 12 and res["split"] == "val"
    assert set(m) >= {"miou", "pixel_accuracy", "miou_real", "fid_segmenter", "kid_segmenter"}
    assert 0 <= m["pixel_accuracy"] <= 1 and m["fid_segmenter"] >= 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["metrics"] == m
    assert len(list((tmp_path / "images").glob("*.png"))) == 12
    assert "Per-class IoU" in (tmp_path / "report.html").read_text()
    from PIL import Image

    grid = Image.open(tmp_path / "samples.png")  # 8 rows of layout | real | generated, from batches of 5
    assert grid.size == (2 + 3 * 66, 2 + 8 * 66)

    # the same numbers from the saved PNGs (the protocol scores what is saved)
    again = evaluate(tmp_path / "b", None, dataset_spec=DATA, generated=tmp_path / "images",
                     metrics=["miou", "fid"], segmenter=str(seg_dir), feature_extractor="segmenter", num=12,
                     progress=False)
    assert again["metrics"]["miou"] == pytest.approx(m["miou"], abs=1e-9)
    assert again["metrics"]["fid_segmenter"] == pytest.approx(m["fid_segmenter"], rel=1e-6, abs=1e-6)


def test_miou_matches_a_direct_computation(model_dir, seg_dir, tmp_path):
    from semsynth.inference import Synthesizer, seed_noise
    from semsynth.metrics import images_to_uint8
    from semsynth.segmenters import load_segmenter

    res = evaluate(tmp_path, model_dir, dataset_spec=DATA, metrics=["miou"], segmenter=str(seg_dir), num=6,
                   progress=False, save_images=False)
    syn = Synthesizer.from_pretrained(model_dir)
    seg, _ = load_segmenter(str(seg_dir))
    ds = build_dataset({**DATA, "split": "val"})
    labels = torch.stack([ds[i]["label"] for i in range(6)])
    z = torch.stack([seed_noise(i, syn.z_dim) for i in range(6)])
    fake = images_to_uint8(syn.generate(labels, z=z)).float() / 127.5 - 1
    score = SegmentationScore(15)
    score.update(seg.predict(fake), labels)
    assert res["metrics"]["miou"] == pytest.approx(score.miou(), abs=1e-9)


def test_bad_inputs(model_dir, seg_dir, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown ssim"):
        parse_metrics("fid,ssim")
    with pytest.raises(SemsynthError, match="need --segmenter"):
        evaluate(tmp_path, model_dir, dataset_spec=DATA, metrics=["miou"])
    with pytest.raises(SemsynthError, match="give --model"):
        evaluate(tmp_path, None, dataset_spec=DATA)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(MissingWeightsError, match="pt_inception-2015-12-05-6726825d.pth.*--inception PATH"):
        evaluate(tmp_path, model_dir, dataset_spec=DATA, metrics=["fid"])
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth.*--lpips-weights"):
        evaluate(tmp_path, model_dir, dataset_spec=DATA, metrics=["lpips"])
    with pytest.raises(SemsynthError, match="no image named after layout"):
        evaluate(tmp_path, None, dataset_spec=DATA, generated=tmp_path, metrics=["miou"], segmenter=str(seg_dir))


def test_cli_evaluate(model_dir, seg_dir, tmp_path, capsys):
    rc = main(["evaluate", "--model", str(model_dir), "--out", str(tmp_path), "--metrics", "miou", "--segmenter",
               str(seg_dir), "--num", "4", "--no-images"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "miou" in out and "report.html" in out
    assert not (tmp_path / "images").exists()
    assert main(["evaluate", "--model", str(model_dir), "--out", str(tmp_path), "--metrics", "bogus"]) == 2


def test_latent_from_the_encoder_reconstructs_the_style(model_dir, seg_dir, tmp_path):
    from semsynth.inference import Synthesizer
    from semsynth.metrics import images_to_uint8

    evaluate(tmp_path, model_dir, dataset_spec=DATA, metrics=["miou"], segmenter=str(seg_dir), num=3,
             latent="encoder", progress=False)
    syn = Synthesizer.from_pretrained(model_dir)
    ds = build_dataset({**DATA, "split": "val"})
    real = torch.stack([ds[i]["image"] for i in range(3)])
    labels = torch.stack([ds[i]["label"] for i in range(3)])
    expected = images_to_uint8(syn.generate(labels, z=syn.style_z(real)))
    from PIL import Image
    import numpy as np

    got = torch.from_numpy(np.asarray(Image.open(tmp_path / "images" / f"{ds[0]['name']}.png"))).permute(2, 0, 1)
    assert torch.equal(got, expected[0])
