import pytest

from semsynth.config import resolve_config
from semsynth.demo import BUNDLED_MODEL, BUNDLED_SEGMENTER, run_demo
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


@pytest.mark.skipif(not (BUNDLED_MODEL / "config.json").is_file(), reason="no bundled model in this checkout")
def test_bundled_model_and_evaluator_load_and_run():
    import torch

    from semsynth.inference import Synthesizer
    from semsynth.segmenters import load_segmenter

    syn = Synthesizer.from_pretrained(BUNDLED_MODEL, "cpu")
    assert syn.info.name == "synthetic-faces" and syn.multimodal and syn.E is not None
    img = syn.generate(torch.zeros(1, 64, 64, dtype=torch.long), seeds=[0])
    assert img.shape == (1, 1, 3, 64, 64) and torch.isfinite(img).all()
    seg, cfg = load_segmenter(str(BUNDLED_SEGMENTER))
    assert seg.predict(img[0]).shape == (1, 64, 64) and cfg["dataset"]["name"] == "synthetic-faces"
    sizes = sum(p.stat().st_size for d in (BUNDLED_MODEL, BUNDLED_SEGMENTER) for p in d.iterdir())
    assert sizes < 25 * 2**20


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
