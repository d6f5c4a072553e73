import json

import numpy as np
import pytest
import torch

from semsynth import build_generator
from semsynth.analysis import collect_semantic_vectors, cosine_matrix, tsne
from semsynth.cli import main
from semsynth.config import resolve_config
from semsynth.errors import SemsynthError
from semsynth.training import train
from tests.helpers import TINY_RAW


def test_class_means_match_a_direct_computation():
    G = build_generator({"name": "scgan", "srg_width": 4, "fc_width": 4, "svg_width": 4}, num_classes=3,
                        resolution=64).eval()
    labels = torch.randint(0, 3, (2, 64, 64))
    labels[:, :8] = 0
    st = collect_semantic_vectors(G, labels, 3, scale=-1, point_fraction=1.0, max_points=10**6)
    from semsynth.layers import one_hot_label

    feats, _ = G.svg(one_hot_label(labels, 3))
    v = feats[-1].permute(0, 2, 3, 1).reshape(-1, 4).double()
    lab = labels.reshape(-1)
    for c in range(3):
        torch.testing.assert_close(st["sums"][c] / st["counts"][c], v[lab == c].mean(0))
    assert st["scale"] == 6 and st["dims"] == 4
    st2 = collect_semantic_vectors(G, labels, 3, scale=1, space="routing")
    assert st2["scale"] == 1 and st2["dims"] == 3  # n routing weights
    with pytest.raises(SemsynthError, match="scales 1..6"):
        collect_semantic_vectors(G, labels, 3, scale=7)


def test_cosine_and_tsne_separate_clusters():
    a = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    c = cosine_matrix(a)
    assert c[0, 1] == pytest.approx(1.0) and c[0, 2] == pytest.approx(0.0)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (30, 5)), rng.normal(5, 0.1, (30, 5))])
    y = tsne(x, perplexity=10, iterations=1000)
    d_in = np.linalg.norm(y[:30].mean(0) - y[30:].mean(0))
    spread = y[:30].std(0).mean() + y[30:].std(0).mean()
    assert d_in > 3 * spread


def test_tsne_is_deterministic_by_seed_and_handles_small_samples():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 0.1, (40, 8)), rng.normal(3, 0.1, (40, 8))])
    a, b = tsne(x, seed=3), tsne(x, seed=3)
    assert a.shape == (80, 2) and a.dtype == np.float64 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    # perplexity is lowered below the sample size (scikit-learn rejects perplexity >= n) ...
    few = tsne(x[::8], perplexity=30, iterations=300)
    assert few.shape == (10, 2) and np.isfinite(few).all() and few.std() > 0
    # ... and fewer than 5 points give zeros rather than an error
    np.testing.assert_array_equal(tsne(x[:3]), np.zeros((3, 2)))


def test_cli_analyze_writes_json_and_pictures(tmp_path, capsys):
    run = train(resolve_config({**TINY_RAW, "train": {**TINY_RAW["train"], "images": 4}}, name="a"),
                outdir=tmp_path)
    out = tmp_path / "ana"
    assert main(["analyze", "semantic-vectors", "--model", str(run / "model"), "--out", str(out), "--num", "4",
                 "--points", "150"]) == 0
    res = json.loads((out / "semantic_vectors.json").read_text())
    assert res["dataset"] == "synthetic-faces" and res["images"] == 4
    assert "l_eye/r_eye" in res["pairs"] and len(res["cosine"]) == len(res["classes"])
    assert (out / "cosine_heatmap.png").stat().st_size > 1000 and (out / "tsne.png").stat().st_size > 1000
    assert "cosine l_eye/r_eye" in capsys.readouterr().out
    assert main(["analyze", "semantic-vectors", "--model", str(run / "model"), "--out", str(out),
                 "--scale", "0"]) == 2
    assert main(["analyze", "semantic-vectors", "--model", str(run / "model"), "--out", str(out),
                 "--dataset", "synthetic-faces", "--set", "data.resolution=64", "--set", "data.num_classes=3"]) == 2
