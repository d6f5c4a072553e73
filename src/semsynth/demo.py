"""The main job behind ``make demo``.

By default it starts from the SC-GANs bundled with semsynth (trained on the built-in synthetic faces and
synthetic landscapes, see ``docs/demo.md``) and writes, in a minute or two on a CPU, one HTML report per model
(``<outdir>/<world>/report.html``) and an overview beside them (``<outdir>/report.html``: both galleries side by
side with their headline metrics). Each model's report has

* a gallery: layouts of unseen faces, their real images and several samples (seeds) per layout;
* style-guided samples and one latent interpolation;
* mIoU / pixel accuracy from the bundled evaluator segmenter (and its upper bound on the real images), with
  FID/KID under the segmenter's features (the offline stand-in for Inception features);
* the semantic-vector cosine heatmap and t-SNE of paper Fig. 3.

``--train`` trains the demo preset from scratch first (about five minutes) and reports on that model instead;
``--model`` reports on a model of one's own. Both write a single report, ``<outdir>/report.html``.
"""

from __future__ import annotations

import html
import os
import shutil
import time
from pathlib import Path

import torch

from .config import load_config
from .errors import SemsynthError

DEMO_PRESET = "scgan-synthetic-faces"
ASSETS = Path(__file__).parent / "assets"
BUNDLED_MODEL = ASSETS / "scgan-synthetic-faces"
BUNDLED_SEGMENTER = ASSETS / "segmenter-synthetic-faces"
# the SC-GAN bundled for each built-in world (docs/demo.md), in the order the overview shows them
BUNDLED_MODELS = {"synthetic-faces": BUNDLED_MODEL,
                  "synthetic-landscapes": ASSETS / "scgan-synthetic-landscapes"}
# the evaluator segmenter bundled for each built-in world (docs/segmenters.md)
BUNDLED_SEGMENTERS = {"synthetic-faces": BUNDLED_SEGMENTER,
                      "synthetic-landscapes": ASSETS / "segmenter-synthetic-landscapes"}


def bundled_segmenter(dataset: str) -> Path | None:
    """The bundled evaluator segmenter of built-in world ``dataset``, or None (another dataset, or not there)."""
    path = BUNDLED_SEGMENTERS.get(dataset)
    return path if path is not None and (path / "config.json").is_file() else None


def bundled_models() -> dict[str, Path]:
    """``{world: model directory}`` of the bundled SC-GANs present in this installation."""
    return {w: d for w, d in BUNDLED_MODELS.items() if (d / "config.json").is_file()}


# how much the report computes: layouts scored for mIoU / FID / KID, layouts and t-SNE points of Fig. 3
SIZES = {"eval_layouts": 200, "vector_layouts": 100, "tsne_points": 600}


def _img(src: str, alt: str) -> str:
    """A matplotlib figure (shown at its size)."""
    return f"<img class='plot' src='{html.escape(src)}' alt='{html.escape(alt)}'>"


def _tiles(out: Path, src: str, alt: str, tile_height: int) -> str:
    """A grid of generated/real images, enlarged (nearest neighbour) so that a face is about 256 px tall."""
    from .report import pixel_img

    return pixel_img(out / src, src, alt, tile_height)


def run_demo(outdir: str | os.PathLike = "demo", train_first: bool = False, overrides: list[str] | None = None,
             num_eval: int | None = None, num_layouts: int = 6, num_seeds: int = 5,
             model: str | os.PathLike | None = None,
             segmenter: str | os.PathLike | None = None) -> Path:
    """Write the demo into ``outdir`` and return the path of the page to open: the overview of the bundled
    models, or with ``train_first`` / ``model`` the report of that one model. ``segmenter`` replaces the
    bundled evaluator (of a single model's report)."""
    from .utils.runtime import tune_malloc

    if train_first and model is not None:
        raise SemsynthError("choose one of --train (train a model first) and --model (use an existing one)")
    if overrides and not train_first:
        raise SemsynthError("--set only applies with --train (it overrides the training preset)")
    seg_dir = Path(segmenter) if segmenter else None
    if seg_dir is not None and not (seg_dir / "config.json").is_file():
        raise SemsynthError(f"--segmenter {seg_dir}: not a segmenter directory (no config.json); give one written "
                            f"by 'semsynth segmenter train'")
    tune_malloc()
    out = Path(outdir)
    sizes = {"num_eval": num_eval, "num_layouts": num_layouts, "num_seeds": num_seeds}
    if train_first:
        from .training import train

        cfg = load_config(DEMO_PRESET, overrides or [])  # a bad --set stops here, before anything is written
        out.mkdir(parents=True, exist_ok=True)
        run = train(cfg, outdir=out / "runs")
        return _model_report(out, run / "model", f"trained from scratch in this demo ({run})",
                             {**cfg.data, "split": "val"}, seg_dir, **sizes)[0]
    if model is not None:
        return _model_report(out, Path(model), f"the model in {model}", None, seg_dir, **sizes)[0]
    found = bundled_models()
    if not found:
        raise SemsynthError(f"no bundled model in {ASSETS} (expected {', '.join(d.name for d in BUNDLED_MODELS.values())}"
                            f"); run 'semsynth demo --train' to train one from scratch, or give --model DIR")
    if seg_dir is not None and len(found) > 1:
        raise SemsynthError("--segmenter scores one model: give it with --model (the bundled models are each scored "
                            "by their own bundled evaluator)")
    entries = []
    for world, model_dir in found.items():
        print(f"demo: {world}")
        report, res, gallery = _model_report(out / world, model_dir, "the model bundled with semsynth (docs/demo.md "
                                             "says how it was trained)", None, seg_dir, **sizes)
        entries.append((world, report, res, gallery))
    return _write_overview(out, entries)


def _model_report(out: Path, model_dir: Path, origin: str, data_spec: dict | None, seg_dir: Path | None, *,
                  num_eval: int | None, num_layouts: int, num_seeds: int) -> tuple[Path, dict, Path]:
    """One model's report in ``out``: ``(report.html, its results, the gallery image)``."""
    from .analysis import analyze_semantic_vectors
    from .data import build_dataset, colorize
    from .evaluation import evaluate
    from .inference import Synthesizer
    from .report import write_evaluation_report
    from .utils.images import image_grid, save_png

    t0 = time.time()
    syn = Synthesizer.from_pretrained(model_dir, "cpu")
    spec = dict(data_spec or syn.config.get("data") or {"name": "synthetic-faces", "resolution": 64})
    spec["split"] = "val"
    ds = build_dataset(spec)
    out.mkdir(parents=True, exist_ok=True)
    print(f"demo: {origin}")

    # 1. gallery: layout | real | samples (seeds), and style-guided samples -----------------------------------
    idx = list(range(num_layouts))
    labels = torch.stack([ds[i]["label"] for i in idx])
    reals = torch.stack([ds[i]["image"] for i in idx])
    if syn.multimodal:
        samples = syn.generate(labels, seeds=list(range(num_seeds)))  # [L, S, 3, H, W]
        what = f"{num_seeds} samples, seeds 0..{num_seeds - 1}"
    else:  # a deterministic model: one image per layout
        samples, what = syn.generate(labels)[:, None], "the generated image (a deterministic model)"
    cols = [colorize(labels, syn.info.palette), reals] + [samples[:, s] for s in range(samples.shape[1])]
    tile = int(samples.shape[-2])  # the height of one image in the grids below
    save_png(image_grid(cols), out / "gallery.png")
    sections = [("Gallery", "<p class='muted'>unseen layouts (validation split) | their real images | "
                            f"{what}</p>" + _tiles(out, "gallery.png", "gallery", tile))]
    if syn.E is not None:
        # style-guided: every layout rendered in the style of each of the first three real images
        styles = syn.style_z(reals[:3])
        cols = [colorize(labels, syn.info.palette)]
        for k in range(styles.shape[0]):
            cols.append(syn.generate(labels, z=styles[k : k + 1].expand(len(idx), -1).cpu()))
        save_png(image_grid([reals[k : k + 1] for k in range(styles.shape[0])]), out / "styles.png")
        save_png(image_grid(cols), out / "style_guided.png")
        sections.append(("Style-guided synthesis", "<p class='muted'>layout | rendered in the style of real "
                         "images 1, 2, 3 (their encoder latents); the style images:</p>"
                         + _tiles(out, "styles.png", "styles", tile) + "<br>"
                         + _tiles(out, "style_guided.png", "style-guided", tile)))
    if syn.multimodal:  # a deterministic model (label input, no encoder) has no latent to interpolate
        steps = 8
        inter = syn.interpolate(labels[0], 0, 1, steps)
        save_png(image_grid([inter[i : i + 1] for i in range(steps)]), out / "interpolation.png")
        sections.append(("Interpolation", f"<p class='muted'>layout 1, latent of seed 0 to seed 1 in {steps} "
                                          "steps (paper Fig. 8, bottom)</p>"
                         + _tiles(out, "interpolation.png", "interpolation", tile)))
    print(f"demo: gallery, style-guided samples and interpolation written ({time.time() - t0:.0f} s)")

    # training curves of the model, where its statistics travel with it (bundled) or sit in its run directory
    stats = next((p for p in (model_dir / "stats.jsonl", model_dir.parent / "stats.jsonl") if p.is_file()), None)
    if stats is not None:
        from .report import loss_charts, read_stats

        sections.append(("Training curves", f"<p class='muted'>from {html.escape(str(stats))}; x axis: training "
                         "images seen</p>" + loss_charts(read_stats(stats))))

    # 2. semantic vectors (paper Fig. 3) -------------------------------------------------------------------------
    sv = analyze_semantic_vectors(model_dir, spec, out / "semantic_vectors", num_images=SIZES["vector_layouts"],
                                  max_points=SIZES["tsne_points"],
                                  device="cpu")
    pairs = "".join(f"<tr><td>{html.escape(k)}</td><td>{v['cosine']:.4f}</td><td>{v['cosine_centered']:.4f}</td>"
                    f"</tr>" for k, v in sv["pairs"].items())
    sections.append(("Semantic vectors", "<p class='muted'>cosine similarity of the classes' mean semantic vectors "
                     f"(SVG scale {sv['scale']}, {sv['dims']}-d, {sv['images']} layouts) and a t-SNE of sampled "
                     "vectors (paper Fig. 3)</p><table><tr><th>pair</th><th>cosine</th><th>centred</th></tr>"
                     f"{pairs}</table>" + _img("semantic_vectors/cosine_heatmap.png", "heatmap")
                     + _img("semantic_vectors/tsne.png", "t-SNE")))
    print(f"demo: semantic vectors analysed ({time.time() - t0:.0f} s)")

    # 3. metrics with the bundled evaluator ----------------------------------------------------------------------
    seg = seg_dir or bundled_segmenter(syn.info.name)  # the evaluator of the model's world
    metrics = ["miou", "fid", "kid"] if seg is not None else []
    if syn.multimodal and _lpips_ok():  # sample diversity needs LPIPS's ImageNet backbone, absent offline
        metrics.append("diversity")
    if metrics:
        res = evaluate(out / "evaluation", model_dir, dataset_spec=spec, metrics=metrics,
                       segmenter=str(seg) if seg else None, feature_extractor="segmenter",
                       num=num_eval if num_eval is not None else SIZES["eval_layouts"],
                       save_images=False, progress=False)
        shutil.copy(out / "evaluation" / "samples.png", out / "samples.png")
    else:
        res = {"dataset": syn.info.name, "split": "val", "layouts": 0, "resolution": list(syn.resolution),
               "metrics": {}}
    res["model"] = str(model_dir)
    res["seconds"] = round(time.time() - t0, 1)
    print(f"demo: metrics computed ({time.time() - t0:.0f} s)")
    report = write_evaluation_report(out, res, title=f"semsynth demo: SC-GAN on {syn.info.name} — {origin}",
                                     extra_sections=sections)
    return report, res, out / "gallery.png"


def _write_overview(out: Path, entries: list[tuple[str, Path, dict, Path]]) -> Path:
    """``<out>/report.html``: the bundled models side by side: each one's gallery, headline metrics and a link to
    its full report."""
    from .report import _CSS, pixel_img

    def fmt(x, spec):
        return "—" if x is None else format(x, spec)

    def rel(p: Path) -> str:
        return p.relative_to(out).as_posix()

    cols = []
    for world, report, res, gallery in entries:
        m = res.get("metrics", {})
        res_txt = "x".join(map(str, res.get("resolution", [])))
        rows = (f"<tr><td>mIoU generated / real</td><td>{fmt(m.get('miou'), '.3f')} / "
                f"{fmt(m.get('miou_real'), '.3f')}</td></tr>"
                f"<tr><td>FID (evaluator features)</td><td>{fmt(m.get('fid_segmenter'), '.3f')}</td></tr>"
                f"<tr><td>layouts scored</td><td>{res.get('layouts')}</td></tr>")
        tile = int(res["resolution"][0]) if res.get("resolution") else None
        cols.append(f"<div class='world'><h2>{html.escape(world)} ({html.escape(res_txt)})</h2>"
                    f"<p><a href='{html.escape(rel(report))}'>full report</a> · {res.get('seconds')} s</p>"
                    f"<table>{rows}</table><p class='muted'>unseen layouts | real | samples</p>"
                    + pixel_img(gallery, rel(gallery), f"{world} gallery", tile, scale=1 if (tile or 0) >= 128 else 2)
                    + "</div>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>semsynth demo: the bundled models</title>"
            f"<style>{_CSS}.worlds{{display:flex;flex-wrap:wrap;gap:2em}}.world{{flex:1 1 480px}}</style></head>"
            "<body><h1>semsynth demo: the bundled models</h1><p class='muted'>each SC-GAN shipped with semsynth, "
            "on unseen layouts of its built-in world, scored by that world's bundled evaluator segmenter "
            "(docs/demo.md)</p><div class='worlds'>" + "".join(cols) + "</div></body></html>")
    path = out / "report.html"
    tmp = path.with_name(f".report.html.tmp{os.getpid()}")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path




def _lpips_ok() -> bool:
    """Whether LPIPS's AlexNet backbone weights are in the torch hub cache (diversity needs them)."""
    from .metrics.weights import LPIPS_BACKBONES, hub_checkpoint_dir

    return (hub_checkpoint_dir() / LPIPS_BACKBONES["alex"].filename).is_file()
