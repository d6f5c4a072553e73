"""The results of a sweep: mean +- sample standard deviation over seeds per cell, the paper's ordering against the
measured one, ``results.{csv,md,html}``, ``runs.csv`` and a bar plot per metric."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import statistics
from pathlib import Path
from typing import Any

from .plan import SweepPlan, _evaluated, _latest_run, _run_state

# metrics of an evaluation that go into the table, in this order, and whether higher is better
TABLE_METRICS = {"miou": True, "pixel_accuracy": True, "fid": False, "fid_segmenter": False, "kid": False,
                 "kid_segmenter": False, "lpips_paired": False, "lpips_diversity": True}

# ------------------------------------------------------------------------------------------------------------
# 5. Results: mean +- std over seeds, paper ordering, table files and bar plots


def _train_minutes(run_dir: Path | None) -> float | None:
    try:
        last = (run_dir / "stats.jsonl").read_text(encoding="utf-8").strip().splitlines()[-1]
        return round(float(json.loads(last)["time"]) / 60, 2)
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def summarize(plan: SweepPlan) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """(one row per run, one row per cell, the metric keys): means and sample standard deviations over seeds."""
    run_rows = []
    for run in plan.runs:
        if run.run_dir is None or run.status != "done":
            run.run_dir = _latest_run(run.out, plan.base_name)
            run.status = _run_state(run.run_dir)
        res = _evaluated(run, plan.protocol) if run.status == "done" else None
        run_rows.append({"cell": run.cell.id, **run.cell.point, "seed": run.seed, "run": run,
                         "metrics": (res or {}).get("metrics"), "train_minutes": _train_minutes(run.run_dir)})
    keys = [k for k in TABLE_METRICS if any(r["metrics"] and k in r["metrics"] for r in run_rows)]
    cell_rows = []
    for cell in plan.cells:
        mine = [r for r in run_rows if r["cell"] == cell.id and r["metrics"]]
        row: dict[str, Any] = {"cell": cell.id, **cell.point, "n": len(mine)}
        for k in keys:
            vals = [float(r["metrics"][k]) for r in mine if k in r["metrics"]]
            row[k] = vals
            row[f"{k}_mean"] = statistics.fmean(vals) if vals else None
            row[f"{k}_std"] = statistics.stdev(vals) if len(vals) > 1 else None
        minutes = [r["train_minutes"] for r in mine if r["train_minutes"] is not None]
        row["train_minutes"] = statistics.fmean(minutes) if minutes else None
        cell_rows.append(row)
    return run_rows, cell_rows, keys


def _paper_key(metric: str, keys: list[str]) -> str | None:
    for k in (metric, f"{metric}_segmenter"):
        if k in keys:
            return k
    return None


def ordering_report(plan: SweepPlan, cell_rows: list[dict[str, Any]], keys: list[str]) -> list[str]:
    """For each metric the paper gives: its order, the measured order, and how many pairs agree."""
    lines = []
    for metric, values in plan.grid.paper.items():
        if metric == "dataset":
            continue
        key = _paper_key(metric, keys)
        if key is None:
            continue
        higher = TABLE_METRICS.get(key, True)
        rows = {r["cell"]: r for r in cell_rows if r["cell"] in values and r.get(f"{key}_mean") is not None}
        if len(rows) < 2:
            continue
        paper_order = sorted(rows, key=lambda c: values[c], reverse=higher)
        measured = sorted(rows, key=lambda c: rows[c][f"{key}_mean"], reverse=higher)
        agree = clear = pairs = 0
        for a, b in itertools.combinations(rows, 2):
            if values[a] == values[b]:
                continue
            pairs += 1
            dp = values[a] - values[b]
            dm = rows[a][f"{key}_mean"] - rows[b][f"{key}_mean"]
            if dp * dm > 0:
                agree += 1
                spread = (rows[a][f"{key}_std"] or 0.0) + (rows[b][f"{key}_std"] or 0.0)
                clear += abs(dm) > spread
        better = "higher" if higher else "lower"
        lines.append(f"{key} ({better} is better), best first: paper {', '.join(paper_order)}; measured "
                     f"{', '.join(measured)}; {agree} of {pairs} pairs in the paper's order ({clear} of them apart "
                     f"by more than the two standard deviations added); the paper's best cell measured best: "
                     f"{'yes' if measured[0] == paper_order[0] else 'no'}")
    return lines


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.2f}" if abs(v) >= 10 else f"{v:.4f}"


def _mean_std(row: dict[str, Any], k: str) -> str:
    """``mean ± std`` with both at the mean's precision (``-`` when no run has the metric)."""
    m, s = row.get(f"{k}_mean"), row.get(f"{k}_std")
    if m is None:
        return "-"
    digits = 2 if abs(m) >= 10 else 4
    return f"{m:.{digits}f}" + (f" ± {s:.{digits}f}" if s is not None else "")


def _minutes(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _plot(plan: SweepPlan, cell_rows: list[dict[str, Any]], key: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["cell"] for r in cell_rows]
    means = [r.get(f"{key}_mean") if r.get(f"{key}_mean") is not None else 0.0 for r in cell_rows]
    stds = [r.get(f"{key}_std") or 0.0 for r in cell_rows]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(names) + 1.5), 3.4))
    xs = range(len(names))
    ax.bar(xs, means, yerr=stds, capsize=4, color="#8fb3d9", edgecolor="#33557a")
    for x, r in zip(xs, cell_rows):
        vals = r.get(key) or []
        ax.plot([x] * len(vals), vals, "o", color="#222", markersize=3)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=30 if len(names) > 3 else 0, ha="right" if len(names) > 3 else "center",
                       fontsize=8)
    better = "higher" if TABLE_METRICS.get(key, True) else "lower"
    ax.set_title(f"{plan.grid.name} on {plan.config}: {key} ({better} is better)", fontsize=9)
    ax.set_ylabel(f"{key}, mean ± std over seeds", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_results(plan: SweepPlan) -> tuple[dict[str, Path], list[dict[str, Any]]]:
    """``results.csv`` (per cell), ``runs.csv`` (per run), ``results.md``, ``results.html``, ``plot-<metric>.png``."""
    from ..report import _CSS, _esc
    from ..utils.files import atomic_write_text

    run_rows, cell_rows, keys = summarize(plan)
    d = plan.directory
    files: dict[str, Path] = {}
    axes = list(plan.grid.axes)
    paper = {m: v for m, v in plan.grid.paper.items() if m != "dataset"}
    paper_cols = [(m, _paper_key(m, keys)) for m in paper if _paper_key(m, keys)]

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["cell", *axes, "seeds_done"] + [f"{k}_{s}" for k in keys for s in ("mean", "std")]
               + [f"paper_{m}" for m, _ in paper_cols] + ["train_minutes_mean"])
    for r in cell_rows:
        w.writerow([r["cell"], *(r[a] for a in axes), r["n"]]
                   + [("" if r.get(f"{k}_{s}") is None else repr(round(r[f"{k}_{s}"], 6))) for k in keys
                      for s in ("mean", "std")]
                   + [paper[m].get(r["cell"], "") for m, _ in paper_cols]
                   + ["" if r["train_minutes"] is None else round(r["train_minutes"], 2)])
    files["csv"] = atomic_write_text(buf.getvalue(), d / "results.csv")

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["cell", *axes, "seed", "run_dir", *keys, "train_minutes", "train_command", "evaluate_command"])
    for r in run_rows:
        run = r["run"]
        w.writerow([r["cell"], *(r[a] for a in axes), r["seed"], run.run_dir or ""]
                   + [("" if not r["metrics"] or k not in r["metrics"] else r["metrics"][k]) for k in keys]
                   + ["" if r["train_minutes"] is None else r["train_minutes"], plan.train_command(run),
                      plan.eval_command(run)])
    files["runs_csv"] = atomic_write_text(buf.getvalue(), d / "runs.csv")

    order = ordering_report(plan, cell_rows, keys)
    for k in keys:
        if any(r.get(f"{k}_mean") is not None for r in cell_rows):
            files[f"plot_{k}"] = _plot(plan, cell_rows, k, d / f"plot-{k}.png")

    g = plan.grid
    head = [f"Grid **{g.name}** ({g.title}) on **{plan.config}** ({plan.dataset}); seeds {', '.join(map(str, plan.seeds))}"
            + (f"; --set {' '.join(plan.user_sets)}" if plan.user_sets else ""),
            f"Reproduces: {g.reproduces or '-'}. Expected: {g.expect or '-'}.",
            f"Evaluation: {', '.join(plan.protocol['metrics'])} on {plan.protocol['num']} validation layouts"
            + (f", segmenter {plan.protocol['segmenter']}" if plan.protocol.get("segmenter") else "")
            + (f", FID/KID features: {plan.protocol['feature_extractor']}" if plan.protocol.get("feature_extractor")
               else "") + ". Values: mean ± sample standard deviation over the seeds done (n)."]
    cols = ["cell", *axes, "n", *keys, *(f"paper {m}" + (f" ({g.paper.get('dataset')})" if g.paper.get("dataset")
                                                           else "") for m, _ in paper_cols), "train min"]
    md = [f"# Sweep {g.name} on {plan.config}", "", *[h + "  " for h in head], "",
          "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in cell_rows:
        md.append("| " + " | ".join([r["cell"], *(r[a] for a in axes), str(r["n"])]
                                    + [_mean_std(r, k) for k in keys]
                                    + [_fmt(paper[m].get(r["cell"])) for m, _ in paper_cols]
                                    + [_minutes(r["train_minutes"])]) + " |")
    if order:
        md += ["", "## Ordering against the paper", "", *[f"- {line}" for line in order]]
    md += ["", "## Plots", "", *[f"![{k}](plot-{k}.png)" for k in keys if f"plot_{k}" in files]]
    md += ["", "## Commands (every run)", "", "```bash"]
    for r in run_rows:
        md.append(plan.train_command(r["run"]))
        md.append(plan.eval_command(r["run"]))
    md.append("```")
    notes = [f"- {c.id}: {'; '.join(c.notes)}" for c in plan.cells if c.notes]
    if notes:
        md += ["", "## Notes", "", *notes]
    files["md"] = atomic_write_text("\n".join(md) + "\n", d / "results.md")

    rows_html = "".join(
        "<tr>" + "".join(f"<td>{_esc(x)}</td>" for x in
                         [r["cell"], *(r[a] for a in axes), r["n"], *(_mean_std(r, k) for k in keys),
                          *(_fmt(paper[m].get(r["cell"])) for m, _ in paper_cols), _minutes(r["train_minutes"])])
        + "</tr>" for r in cell_rows)
    page = [(f"<!doctype html><html><head><meta charset='utf-8'><title>sweep {_esc(g.name)}</title>"
            f"<style>{_CSS}</style></head><body><h1>Sweep {_esc(g.name)} on {_esc(plan.config)}</h1>"),
            *[f"<p>{_esc(h.replace('**', ''))}</p>" for h in head],
            "<table><tr>" + "".join(f"<th>{_esc(c)}</th>" for c in cols) + "</tr>" + rows_html + "</table>"]
    if order:
        page.append("<h2>Ordering against the paper</h2><ul>" + "".join(f"<li>{_esc(x)}</li>" for x in order)
                    + "</ul>")
    page.append("<h2>Plots</h2>" + "".join(f"<img class='plot' src='plot-{_esc(k)}.png' alt='{_esc(k)}'>"
                                           for k in keys if f"plot_{k}" in files))
    page.append("<h2>Commands (every run)</h2><pre>" + _esc("\n".join(
        f"{plan.train_command(r['run'])}\n{plan.eval_command(r['run'])}" for r in run_rows)) + "</pre>")
    page.append("</body></html>")
    files["html"] = atomic_write_text("\n".join(page), d / "results.html")
    return files, cell_rows
