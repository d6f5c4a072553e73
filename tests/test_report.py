import json
import re

import numpy as np
import torch
from PIL import Image

from semsynth.report import (display_scale, grid_rows_height, loss_charts, write_evaluation_report,
                             write_run_report)
from semsynth.utils.images import image_grid


def _charts(html: str) -> dict[str, dict]:
    """title -> {y tick labels (floats), legend names} for every SVG chart in ``html``."""
    out = {}
    for svg in re.findall(r"<svg.*?</svg>", html):
        title = re.search(r'font-weight="bold">(.*?)</text>', svg).group(1)
        ticks = [float(v) for v in re.findall(r'class="ytick"[^>]*>([^<]+)</text>', svg)]
        legend = re.findall(r'fill="#[0-9a-f]{6}" text-anchor="end">(.*?)</text>', svg)
        out[title] = {"ticks": ticks, "legend": legend, "lines": svg.count("<polyline")}
    return out


def test_loss_charts_draw_one_chart_per_term_with_its_own_range():
    rows = [{"images": 100 * i, "images_per_s": 5.0 + i, "G/kl": 100.0 / (i + 1), "G/adv": 1.0 + 0.05 * i,
             "G/total": 20.0 - i, "D/real": 0.5 - 0.01 * i, "D/total": 1.0 - 0.02 * i,
             "D/logit_real": 0.5 + 0.1 * i, "D/logit_fake": -0.5 - 0.1 * i} for i in range(5)]
    html = loss_charts(rows)
    charts = _charts(html)
    titles = list(charts)
    assert titles == ["G/kl (last 20)", "G/adv (last 1.2)", "G/total (last 16)", "D/real (last 0.46)",
                      "D/total (last 0.92)", "D mean logits", "images/s (last 9)"]
    # each term's y axis spans its own values: min, middle, max
    assert charts["G/kl (last 20)"]["ticks"] == [20.0, 60.0, 100.0]
    assert charts["G/adv (last 1.2)"]["ticks"] == [1.0, 1.1, 1.2]
    assert charts["D/real (last 0.46)"]["ticks"] == [0.46, 0.48, 0.5]
    assert all(c["lines"] == 1 and c["legend"] == [] for t, c in charts.items() if t != "D mean logits")
    assert charts["D mean logits"]["lines"] == 2 and charts["D mean logits"]["legend"] == ["D/logit_real",
                                                                                          "D/logit_fake"]
    assert "<h3>G losses</h3>" in html and "<h3>D losses</h3>" in html
    # x axis: training images, in short form
    assert re.findall(r'class="xtick"[^>]*>([^<]+)</text>', html)[:3] == ["0", "200", "400"]
    assert re.findall(r'class="xtick"[^>]*>([^<]+)</text>', loss_charts([{"images": 2000, "G/kl": 1.0},
                                                                     {"images": 150000, "G/kl": 2.0}])) \
        == ["2k", "76k", "150k"]
    assert "no statistics" in loss_charts([])


def test_display_scale_enlarges_small_tiles_to_about_256_px():
    assert [display_scale(t) for t in (32, 64, 96, 128, 200, 256, 512)] == [8, 4, 2, 2, 1, 1, 1]
    assert display_scale(None) == 1 and display_scale(0) == 1


def _img_attrs(html: str, src: str) -> dict[str, str]:
    tag = re.search(rf"<img [^>]*src='{re.escape(src)}'[^>]*>", html).group(0)
    return dict(re.findall(r"(\w+)='([^']*)'", tag))


def _grid(rows: int, cols: int, size: int) -> np.ndarray:
    return image_grid([torch.zeros(rows, 3, size, size) for _ in range(cols)])


def test_run_report_shows_sample_grids_enlarged(tmp_path):
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    grid = _grid(8, 4, 64)
    for name in ("init", "000000008", "000000016"):
        Image.fromarray(grid).save(run / "samples" / f"{name}.png")
    (run / "config.yaml").write_text("data:\n  name: synthetic-faces\n  resolution: 64\n")
    (run / "stats.jsonl").write_text(json.dumps({"images": 8, "G/kl": 3.0, "time": 1.0}) + "\n")
    html = write_run_report(run).read_text()
    h, w = grid.shape[:2]
    latest = _img_attrs(html, "samples/000000016.png")  # the first img of that file: the latest grid
    assert latest["class"] == "grid" and (int(latest["width"]), int(latest["height"])) == (4 * w, 4 * h)
    assert "image-rendering:pixelated" in html and "shown 4x enlarged" in html
    # progress: the first two rows of each snapshot at 2x
    crop = re.findall(r"<div class='crop' style='height:(\d+)px'><img [^>]*src='samples/init.png'[^>]*"
                      r"width='(\d+)' height='(\d+)'", html)
    assert crop == [(str(2 * grid_rows_height(2, 64) + 1), str(2 * w), str(2 * h))]  # + its top border
    # the exported model's resolution wins over the data config; large tiles stay at their size
    (run / "model").mkdir()
    (run / "model" / "config.json").write_text(json.dumps({"dataset": {"resolution": [256, 512]}}))
    html = write_run_report(run).read_text()
    latest = _img_attrs(html, "samples/000000016.png")
    assert (int(latest["width"]), int(latest["height"])) == (w, h) and "enlarged" not in html


def test_evaluation_report_enlarges_the_sample_grid(tmp_path):
    grid = _grid(3, 3, 64)
    Image.fromarray(grid).save(tmp_path / "samples.png")
    res = {"model": "m", "dataset": "synthetic-faces", "split": "val", "layouts": 3, "resolution": [64, 64],
           "metrics": {"miou": 0.5}}
    html = write_evaluation_report(tmp_path, res).read_text()
    attrs = _img_attrs(html, "samples.png")
    assert (int(attrs["width"]), int(attrs["height"])) == (4 * grid.shape[1], 4 * grid.shape[0])
