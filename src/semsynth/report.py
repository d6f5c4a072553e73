"""Static HTML reports (open from disk, no server, no JavaScript): sample grids, loss curves, config."""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222;
padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
.muted{color:#777} img.grid{image-rendering:pixelated;max-width:100%;height:auto;border:1px solid #ddd}
img.plot{max-width:100%;height:auto}
.charts{display:flex;flex-wrap:wrap;gap:8px} .chart{border:1px solid #eee;padding:2px}
h3{font-size:1em;margin:1em 0 .3em}
pre{background:#f6f8fa;padding:1em;overflow:auto;font-size:.85em} table{border-collapse:collapse}
td,th{padding:.25em .8em;border-bottom:1px solid #eee;text-align:left}
.strip{display:flex;flex-wrap:wrap;gap:8px} .strip figure{margin:0} .crop{overflow:hidden}
.crop img.grid{max-width:none}
"""


def _esc(x: Any) -> str:
    return html.escape(str(x))


# Images: sample grids hold tiles of the model's resolution (64x64 for the demo), far too small to see at their
# pixel size. They are shown enlarged by an integer factor with nearest-neighbour rendering, so that a tile is
# about TILE_DISPLAY_PX tall; tiles of 256 px and more are shown as they are.
TILE_DISPLAY_PX = 256


def png_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(width, height)`` of an image file (its header only), or None when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError):
        return None


def display_scale(tile_height: int | None, target: int = TILE_DISPLAY_PX) -> int:
    """The integer enlargement that shows a tile ``tile_height`` px tall at most ``target`` px (at least 1)."""
    if not tile_height or tile_height <= 0:
        return 1
    return max(1, target // int(tile_height))


def pixel_img(path: str | os.PathLike, src: str, alt: str, tile_height: int | None, *, scale: int | None = None,
              crop_height: int | None = None) -> str:
    """An ``<img>`` for the image file ``path`` (referred to as ``src``) whose tiles are ``tile_height`` px tall,
    enlarged by ``display_scale`` (or ``scale``) with nearest-neighbour rendering; it shrinks to the page width
    keeping its aspect ratio. ``crop_height``: show only the top rows, this many source pixels."""
    size = png_size(path)
    if size is None:
        return f"<img class='grid' src='{_esc(src)}' alt='{_esc(alt)}'>"
    s = scale if scale is not None else display_scale(tile_height)
    w, h = size
    img = f"<img class='grid' src='{_esc(src)}' alt='{_esc(alt)}' width='{w * s}' height='{h * s}'>"
    if crop_height is not None and crop_height < h:
        return f"<div class='crop' style='height:{crop_height * s + 1}px'>{img}</div>"
    return img


def grid_rows_height(rows: int, tile_height: int, pad: int = 2) -> int:
    """Source pixels taken by the first ``rows`` rows of a ``utils.images.image_grid`` (padding included)."""
    return rows * (tile_height + pad) + pad


def _run_tile_height(run: Path) -> int | None:
    """The tile height of a run's sample grids: its exported model's resolution, else the data config's."""
    try:
        cfg = json.loads((run / "model" / "config.json").read_text(encoding="utf-8"))
        res = (cfg.get("dataset") or {}).get("resolution")
        if res:
            return int(res[0]) if isinstance(res, (list, tuple)) else int(res)
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    try:
        import yaml

        data = (yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}).get("data") or {}
        res = data.get("resolution") or data.get("crop_size")
        if res:
            return int(res[0]) if isinstance(res, (list, tuple)) else int(res)
    except Exception:  # a missing or malformed config.yaml (yaml.YAMLError, ...): images at pixel size
        pass
    return None


def svg_line_chart(title: str, xs: list[float], series: dict[str, list[float]], width: int = 380,
                   height: int = 220) -> str:
    """A small SVG line chart with axes; a legend when it has several series. Its y range is that of its own
    series."""
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
    pts = [(x, y) for ys in series.values() for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
    if not pts:
        return ""
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1
    legend = len(series) > 1  # one line per series, under the title, above the plot
    ml, mr, mt, mb = 48, 12, 22 + (12 * len(series) if legend else 0), 28
    pw, ph = width - ml - mr, height - mt - mb

    def sx(x: float) -> float:
        return ml + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return mt + (1 - (y - y0) / (y1 - y0)) * ph

    parts = [f'<svg class="chart" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{ml}" y="15" font-size="13" font-weight="bold">{_esc(title)}</text>',
             f'<line x1="{ml}" y1="{mt + ph}" x2="{ml + pw}" y2="{mt + ph}" stroke="#999"/>',
             f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{mt + ph}" stroke="#999"/>']
    for frac, anchor in ((0, "middle"), (0.5, "middle"), (1, "end")):  # the last x label ends at the edge
        yv = y0 + frac * (y1 - y0)
        parts.append(f'<text class="ytick" x="{ml - 4}" y="{sy(yv) + 4:.1f}" font-size="10" '
                     f'text-anchor="end">{yv:.3g}</text>')
        xv = x0 + frac * (x1 - x0)
        parts.append(f'<text class="xtick" x="{sx(xv) + (4 if anchor == "end" else 0):.1f}" y="{height - 8}" '
                     f'font-size="10" text-anchor="{anchor}">{_short_number(xv)}</text>')
    for i, (name, ys) in enumerate(series.items()):
        c = colors[i % len(colors)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys) if y is not None and math.isfinite(y))
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{coords}"/>')
        if legend:
            parts.append(f'<text x="{ml + pw}" y="{30 + 12 * i}" font-size="10" fill="{c}" '
                         f'text-anchor="end">{_esc(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _short_number(v: float) -> str:
    """Axis labels for counts: 76000 -> 76k, 1500000 -> 1.5M."""
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def read_stats(path: str | os.PathLike) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.is_file():
        return []
    rows = []
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line torn by a crash
                continue
    return rows


CHART_SIZE = (270, 165)  # one small chart per loss term


def _last_value(values: list[Any]) -> str:
    last = next((v for v in reversed(values) if isinstance(v, (int, float)) and math.isfinite(v)), None)
    return "" if last is None else f" (last {last:.4g})"


def loss_charts(rows: list[dict[str, Any]]) -> str:
    """Small multiples: one chart per loss term (``G/kl``, ``G/adv``, ..., ``D/total``), each with its own y
    range, so a large term (the KL) does not flatten the others; grouped by network. The mean logits of real
    and fake images share one chart (their gap is the information), and the throughput has its own."""
    if not rows:
        return '<p class="muted">no statistics recorded yet</p>'
    xs = [r["images"] for r in rows]
    keys = list(dict.fromkeys(k for r in rows for k in r if "/" in k))  # the training's order: terms, then total
    groups: dict[str, list[str]] = {}
    for k in keys:
        groups.setdefault(k.split("/")[0], []).append(k)
    w, h = CHART_SIZE
    out = []
    for prefix, ks in groups.items():
        terms = [k for k in ks if "logit" not in k]
        charts = []
        for k in sorted(terms, key=lambda k: k.endswith("total")):  # total last
            ys = [r.get(k) for r in rows]
            charts.append(svg_line_chart(k + _last_value(ys), xs, {k: ys}, width=w, height=h))
        logit = [k for k in ks if "logit" in k]
        if logit:
            charts.append(svg_line_chart(f"{prefix} mean logits", xs, {k: [r.get(k) for r in rows] for k in logit},
                                         width=w, height=h))
        out.append(f"<h3>{_esc(prefix)} losses</h3><div class='charts'>{''.join(charts)}</div>")
    if any("images_per_s" in r for r in rows):
        ys = [r.get("images_per_s") for r in rows]
        out.append("<h3>Throughput</h3><div class='charts'>" + svg_line_chart(
            "images/s" + _last_value(ys), xs, {"images/s": ys}, width=w, height=h) + "</div>")
    return "".join(out)


def write_run_report(run_dir: str | os.PathLike, extra_sections: list[tuple[str, str]] | None = None) -> Path:
    """``<run>/report.html``: latest sample grid, its progression, loss curves and the resolved config."""
    run = Path(run_dir)
    samples = sorted((run / "samples").glob("*.png"), key=lambda p: (p.stem != "init", p.stem))  # init first
    numbered = [p for p in samples if p.stem.isdigit()]
    latest = numbered[-1] if numbered else (samples[-1] if samples else None)
    rows = read_stats(run / "stats.jsonl")
    cfg_text = (run / "config.yaml").read_text(encoding="utf-8") if (run / "config.yaml").is_file() else ""
    last = rows[-1] if rows else {}
    out = ["<!doctype html><html><head><meta charset='utf-8'>", f"<title>semsynth run {_esc(run.name)}</title>",
           f"<style>{_CSS}</style></head><body>", f"<h1>semsynth run <code>{_esc(run.name)}</code></h1>"]
    if last:
        out.append(f"<p class='muted'>{last.get('images', 0)} training images seen, "
                   f"{last.get('time', 0):.0f} s, {last.get('images_per_s', 0):.1f} images/s at the end.</p>")
    if latest is not None:
        tile = _run_tile_height(run)
        scale = display_scale(tile)
        enlarged = f", shown {scale}x enlarged" if scale > 1 else ""
        out.append("<h2>Samples</h2><p class='muted'>columns: layout | real | generated | SVG coarse RGB "
                   f"(latest: {_esc(latest.name)}{enlarged})</p>")
        out.append(pixel_img(latest, os.path.relpath(latest, run), "latest samples", tile))
        if len(samples) > 1:
            # the first two rows of each snapshot, at half the enlargement, side by side
            small = max(1, scale // 2)
            crop = grid_rows_height(2, tile) if tile else None
            what = "first two samples of each snapshot" if crop else "snapshots"
            out.append(f"<h2>Progress</h2><p class='muted'>{what} over training (file name: training images "
                       "seen)</p><div class='strip'>")
            step = max(1, len(samples) // 8)
            for p in samples[::step]:
                img = pixel_img(p, os.path.relpath(p, run), p.stem, tile, scale=small, crop_height=crop)
                out.append(f"<figure>{img}<figcaption class='muted'>{_esc(p.stem)}</figcaption></figure>")
            out.append("</div>")
    out.append("<h2>Losses</h2>" + loss_charts(rows))
    for title, body in extra_sections or []:
        out.append(f"<h2>{_esc(title)}</h2>{body}")
    out.append(f"<h2>Resolved configuration</h2><pre>{_esc(cfg_text)}</pre>")
    out.append("</body></html>")
    path = run / "report.html"
    tmp = path.with_name(f".report.html.tmp{os.getpid()}")
    tmp.write_text("\n".join(out), encoding="utf-8")
    os.replace(tmp, path)
    return path


_METRIC_DOC = {
    "fid": "FID (pytorch-fid TF-Inception), lower is better",
    "fid_segmenter": "FID with the segmenter's features (offline stand-in), lower is better",
    "kid": "KID (Inception), lower is better", "kid_std": "KID standard deviation over subsets",
    "kid_segmenter": "KID with the segmenter's features", "kid_segmenter_std": "its standard deviation",
    "lpips_paired": "LPIPS between each generated image and the real image of its layout, lower is closer",
    "lpips_diversity": "mean LPIPS between samples of different seeds for one layout, higher is more diverse",
    "miou": "mIoU of the segmenter on generated images vs the layouts", "pixel_accuracy": "pixel accuracy, generated",
    "mean_class_accuracy": "mean class accuracy, generated",
    "miou_real": "mIoU of the same segmenter on the real images (upper bound)",
    "pixel_accuracy_real": "pixel accuracy on the real images (upper bound)",
}


def metrics_table(metrics: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td><code>{_esc(k)}</code></td><td><b>{_esc(v if not isinstance(v, float) else f'{v:.4f}')}"
                   f"</b></td><td class='muted'>{_esc(_METRIC_DOC.get(k, ''))}</td></tr>" for k, v in metrics.items())
    return f"<table><tr><th>metric</th><th>value</th><th></th></tr>{rows}</table>"


def per_class_table(fake: dict[str, Any] | None, real: dict[str, Any] | None) -> str:
    if not fake:
        return ""
    rows = []
    for name, v in fake.items():
        r = (real or {}).get(name)
        fmt = (lambda x: "—" if x is None else f"{x:.3f}")
        rows.append(f"<tr><td>{_esc(name)}</td><td>{fmt(v)}</td><td>{fmt(r)}</td></tr>")
    return ("<table><tr><th>class</th><th>IoU generated</th><th>IoU real</th></tr>" + "".join(rows) + "</table>")


def write_evaluation_report(out_dir: str | os.PathLike, result: dict[str, Any], title: str | None = None,
                            extra_sections: list[tuple[str, str]] | None = None) -> Path:
    """``<out>/report.html`` for ``semsynth evaluate``: metrics, sample grid, per-class IoU, extra sections."""
    out = Path(out_dir)
    head = title or f"semsynth evaluation: {result.get('model') or result.get('generated')}"
    parts = ["<!doctype html><html><head><meta charset='utf-8'>", f"<title>{_esc(head)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>{_esc(head)}</h1>",
             f"<p class='muted'>{_esc(result.get('dataset'))}, split {_esc(result.get('split'))}, "
             f"{result.get('layouts')} layouts at {_esc('x'.join(map(str, result.get('resolution', []))))}; "
             f"{_esc(result.get('seconds'))} s</p>"]
    for title_, body in extra_sections or []:
        parts.append(f"<h2>{_esc(title_)}</h2>{body}")
    parts.append("<h2>Metrics</h2>" + metrics_table(result.get("metrics", {})))
    if result.get("feature_extractor"):
        parts.append(f"<p class='muted'>FID/KID features: {_esc(result['feature_extractor'])}</p>")
    if (out / "samples.png").is_file():
        res = result.get("resolution") or []
        tile = int(res[0]) if res else None
        scale = display_scale(tile)
        enlarged = f" (shown {scale}x enlarged)" if scale > 1 else ""
        parts.append(f"<h2>Samples</h2><p class='muted'>columns: layout | real | generated{enlarged}</p>"
                     + pixel_img(out / "samples.png", "samples.png", "samples", tile))
    if result.get("per_class_iou"):
        parts.append("<h2>Per-class IoU</h2>" + per_class_table(result["per_class_iou"],
                                                                 result.get("per_class_iou_real")))
    parts.append("<h2>Raw results</h2><pre>" + _esc(json.dumps(result, indent=2)) + "</pre></body></html>")
    path = out / "report.html"
    tmp = path.with_name(f".report.html.tmp{os.getpid()}")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, path)
    return path
