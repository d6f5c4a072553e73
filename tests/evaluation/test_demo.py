import pytest

from semsynth import demo
from semsynth.config import resolve_config
from semsynth.demo import BUNDLED_MODELS, BUNDLED_SEGMENTERS, run_demo
from semsynth.errors import SemsynthError
from semsynth.training import train
from tests.evaluation.test_evaluate import seg_dir  # noqa: F401  (fixture)
from tests.helpers import TINY_RAW


def test_demo_report_has_every_section(tmp_path, seg_dir):  # noqa: F811
    run = train(resolve_config({**TINY_RAW, "train": {**TINY_RAW["train"], "images": 4}}, name="d"),
                outdir=tmp_path / "runs")
    report = run_demo(tmp_path / "demo", model=run / "model", segmenter=seg_dir, num_eval=8, num_layouts=3,
                      num_seeds=2)
    html = report.read_text()
    for section in ("Gallery", "Style-guided synthesis", "Interpolation", "Semantic vectors", "Metrics",
                    "miou_real", "fid_segmenter", "cosine_heatmap.png", "tsne.png", "Training curves", "G losses"):
        assert section in html, section
    for f in ("gallery.png", "interpolation.png", "style_guided.png", "semantic_vectors/cosine_heatmap.png",
              "evaluation/metrics.json"):
        assert (tmp_path / "demo" / f).is_file(), f
    with pytest.raises(SemsynthError, match="--set only applies with --train"):
        run_demo(tmp_path / "x", overrides=["train.images=8"])


@pytest.mark.parametrize("world,size", [("synthetic-faces", 64), ("synthetic-landscapes", 128)])
def test_bundled_model_and_evaluator_load_and_run(world, size):
    import torch

    from semsynth.inference import Synthesizer
    from semsynth.segmenters import load_segmenter

    model, segmenter = BUNDLED_MODELS[world], BUNDLED_SEGMENTERS[world]
    if not (model / "config.json").is_file():
        pytest.skip(f"no bundled {world} model in this checkout ({model})")
    syn = Synthesizer.from_pretrained(model, "cpu")
    assert syn.info.name == world and syn.multimodal and syn.E is not None
    assert tuple(syn.resolution) == (size, size)
    img = syn.generate(torch.zeros(1, size, size, dtype=torch.long), seeds=[0])
    assert img.shape == (1, 1, 3, size, size) and torch.isfinite(img).all()
    seg, cfg = load_segmenter(str(segmenter))
    assert seg.predict(img[0]).shape == (1, size, size) and cfg["dataset"]["name"] == world
    assert sum(p.stat().st_size for p in model.iterdir()) <= 20 * 2**20  # the budget per bundled model


def test_demo_overview_shows_every_bundled_model_side_by_side(tmp_path, seg_dir, monkeypatch):  # noqa: F811
    runs = {}
    for name, seed in (("one", 0), ("two", 1)):
        raw = {**TINY_RAW, "train": {**TINY_RAW["train"], "images": 4, "seed": seed}}
        runs[name] = train(resolve_config(raw, name=name), outdir=tmp_path / "runs") / "model"
    monkeypatch.setattr(demo, "BUNDLED_MODELS", {"world-a": runs["one"], "world-b": runs["two"],
                                                 "world-c": tmp_path / "absent"})
    monkeypatch.setattr(demo, "BUNDLED_SEGMENTERS", {"synthetic-faces": seg_dir})
    assert set(demo.bundled_models()) == {"world-a", "world-b"}  # a missing one is left out
    page = run_demo(tmp_path / "demo", num_eval=6, num_layouts=2, num_seeds=2)
    assert page == tmp_path / "demo" / "report.html"
    html = page.read_text()
    for world in ("world-a", "world-b"):
        assert (tmp_path / "demo" / world / "report.html").is_file()
        assert (tmp_path / "demo" / world / "gallery.png").is_file()
        assert f"href='{world}/report.html'" in html and f"src='{world}/gallery.png'" in html
        assert "Semantic vectors" in (tmp_path / "demo" / world / "report.html").read_text()
    assert html.index("world-a") < html.index("world-b") and "world-c" not in html
    # the headline metrics of each model are its own evaluation's
    import json

    m = json.loads((tmp_path / "demo" / "world-b" / "evaluation" / "metrics.json").read_text())["metrics"]
    assert f"{m['miou']:.3f} / {m['miou_real']:.3f}" in html
    with pytest.raises(SemsynthError, match="--segmenter scores one model"):
        run_demo(tmp_path / "x", segmenter=seg_dir)
    monkeypatch.setattr(demo, "BUNDLED_MODELS", {"world-c": tmp_path / "absent"})
    with pytest.raises(SemsynthError, match="no bundled model"):
        run_demo(tmp_path / "x")


def test_demo_cli_with_a_deterministic_model(tmp_path, seg_dir, capsys):  # noqa: F811
    from semsynth.cli import main

    raw = {**TINY_RAW, "generator": {**TINY_RAW["generator"], "input_mode": "label"}, "encoder": None,
           "loss": {"perceptual": 0.0, "kl": 0.0}, "train": {**TINY_RAW["train"], "images": 4}}
    run = train(resolve_config(raw, name="det"), outdir=tmp_path / "runs")
    out = tmp_path / "demo"
    assert main(["demo", "--outdir", str(out), "--model", str(run / "model"), "--segmenter", str(seg_dir)]) == 0
    html = (out / "report.html").read_text()
    assert "a deterministic model" in html and "Interpolation" not in html and "Style-guided" not in html
    assert "semsynth demo: SC-GAN on synthetic-faces" in html
    capsys.readouterr()
    assert main(["demo", "--outdir", str(out), "--model", str(tmp_path)]) == 2
    assert "not an exported semsynth model" in capsys.readouterr().err
    assert main(["demo", "--outdir", str(out), "--model", str(run / "model"), "--train"]) == 2
    assert "choose one of --train" in capsys.readouterr().err
