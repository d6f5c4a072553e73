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
.muted{color:#777} img.grid{image-rendering:pixelated;max-width:100%;border:1px solid #ddd}
.charts{display:flex;flex-wrap:wrap;gap:12px} .chart{border:1px solid #eee;padding:4px}
pre{background:#f6f8fa;padding:1em;overflow:auto;font-size:.85em} table{border-collapse:collapse}
td,th{padding:.25em .8em;border-bottom:1px solid #eee;text-align:left} .strip img{height:180px;margin:2px}
"""


def _esc(x: Any) -> str:
    return html.escape(str(x))


def svg_line_chart(title: str, xs: list[float], series: dict[str, list[float]], width: int = 380,
                   height: int = 220) -> str:
    """A small SVG line chart with axes and a legend."""
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
    ml, mr, mt, mb = 48, 10, 22, 28
    pw, ph = width - ml - mr, height - mt - mb

    def sx(x: float) -> float:
        return ml + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return mt + (1 - (y - y0) / (y1 - y0)) * ph

    parts = [f'<svg class="chart" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{ml}" y="15" font-size="13" font-weight="bold">{_esc(title)}</text>',
             f'<line x1="{ml}" y1="{mt + ph}" x2="{ml + pw}" y2="{mt + ph}" stroke="#999"/>',
             f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{mt + ph}" stroke="#999"/>']
    for frac in (0, 0.5, 1):
        yv = y0 + frac * (y1 - y0)
        parts.append(f'<text x="{ml - 4}" y="{sy(yv) + 4:.1f}" font-size="10" text-anchor="end">{yv:.3g}</text>')
        xv = x0 + frac * (x1 - x0)
        parts.append(f'<text x="{sx(xv):.1f}" y="{height - 8}" font-size="10" text-anchor="middle">{xv:.3g}</text>')
    for i, (name, ys) in enumerate(series.items()):
        c = colors[i % len(colors)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys) if y is not None and math.isfinite(y))
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{coords}"/>')
        parts.append(f'<text x="{ml + pw - 4}" y="{mt + 12 + 12 * i}" font-size="10" fill="{c}" '
                     f'text-anchor="end">{_esc(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


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


def loss_charts(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="muted">no statistics recorded yet</p>'
    xs = [r["images"] for r in rows]
    keys = sorted({k for r in rows for k in r if "/" in k})
    groups: dict[str, list[str]] = {}
    for k in keys:
        groups.setdefault(k.split("/")[0], []).append(k)
    charts = []
    for prefix, ks in groups.items():
        main = [k for k in ks if not k.endswith("total") and "logit" not in k] or ks
        charts.append(svg_line_chart(f"{prefix} losses", xs, {k: [r.get(k) for r in rows] for k in main}))
        logit = [k for k in ks if "logit" in k]
        if logit:
            charts.append(svg_line_chart(f"{prefix} mean logits", xs, {k: [r.get(k) for r in rows] for k in logit}))
    if any("images_per_s" in r for r in rows):
        charts.append(svg_line_chart("throughput (images/s)", xs, {"images/s": [r.get("images_per_s") for r in rows]}))
    return '<div class="charts">' + "".join(charts) + "</div>"


def write_run_report(run_dir: str | os.PathLike, extra_sections: list[tuple[str, str]] | None = None) -> Path:
    """``<run>/report.html``: latest sample grid, its progression, loss curves and the resolved config."""
    run = Path(run_dir)
    samples = sorted((run / "samples").glob("*.png"))
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
        out.append("<h2>Samples</h2><p class='muted'>columns: layout | real | generated | SVG coarse RGB "
                   f"(latest: {_esc(latest.name)})</p>")
        out.append(f"<img class='grid' src='{_esc(os.path.relpath(latest, run))}' alt='latest samples'>")
        if len(samples) > 1:
            out.append("<h2>Progress</h2><div class='strip'>")
            step = max(1, len(samples) // 8)
            for p in samples[::step]:
                out.append(f"<figure style='display:inline-block;margin:4px'><img src='"
                           f"{_esc(os.path.relpath(p, run))}'><figcaption class='muted'>{_esc(p.stem)}"
                           f"</figcaption></figure>")
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
        parts.append("<h2>Samples</h2><p class='muted'>columns: layout | real | generated</p>"
                     "<img class='grid' src='samples.png' alt='samples'>")
    if result.get("per_class_iou"):
        parts.append("<h2>Per-class IoU</h2>" + per_class_table(result["per_class_iou"],
                                                                 result.get("per_class_iou_real")))
    parts.append("<h2>Raw results</h2><pre>" + _esc(json.dumps(result, indent=2)) + "</pre></body></html>")
    path = out / "report.html"
    tmp = path.with_name(f".report.html.tmp{os.getpid()}")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, path)
    return path
