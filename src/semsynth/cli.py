"""The ``semsynth`` command. Each subcommand parses its options and calls one library function.

User errors (bad config, data, paths) print one message and exit with code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import SemsynthError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def deco(fn):
        COMMANDS[name] = fn
        return fn

    return deco


# ------------------------------------------------------------------------------------------------------------
# models


@command("models")
def cmd_models(args: argparse.Namespace) -> int:
    from .presets import describe_models

    table = describe_models()
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    for kind in ("generators", "discriminators", "encoders", "objectives", "datasets"):
        print(f"{kind}:")
        for row in table[kind]:
            print(f"  {row['name']:<20} {row['doc']}")
    print("presets (parameters at the preset's dataset):")
    for row in table["presets"]:
        parts = [f"G {row['generator_parameters']:,}"]
        if row.get("svg_parameters") is not None:
            parts.append(f"SVG {row['svg_parameters']:,}")
        if row.get("discriminator_parameters") is not None:
            parts.append(f"D {row['discriminator_parameters']:,}")
        if row.get("encoder_parameters"):
            parts.append(f"E {row['encoder_parameters']:,}")
        print(f"  {row['name']:<30} {row['generator']}/{row['discriminator'] or 'no D'} ({row['objective']}) on "
              f"{row['dataset']}: "
              + ", ".join(parts))
    return 0


# ------------------------------------------------------------------------------------------------------------
# train


@command("train")
def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config

    if args.threads is not None:  # the same as --set train.threads=N (recorded in the run's config)
        args.set = [*args.set, f"train.threads={args.threads}"]
    resume = None
    if args.resume == "":  # --resume without a path: the latest run of this config in --outdir
        if not args.config:
            raise SemsynthError("--resume without a path needs --config (to find the latest run of that config "
                                "in --outdir); or give the run directory: --resume runs/00003-scgan-coco")
        cfg = load_config(args.config, args.set)
        resume = _latest_run(args.outdir, cfg.name)
    elif args.resume is not None:
        resume = args.resume
        cfg = load_config(args.config, args.set) if args.config else _config_of_run(args.resume, args.set)
    elif not args.config:
        raise SemsynthError("give --config PRESET_OR_YAML (e.g. --config scgan-synthetic-faces), or --resume RUN")
    else:
        cfg = load_config(args.config, args.set)
    if args.dry_run:
        print(cfg.to_yaml(), end="")
        return 0
    from .training import train
    from .training.loop import TrainingInterrupted
    from .utils.runtime import tune_malloc

    if args.force and resume is None:
        raise SemsynthError("--force only applies to --resume (it accepts settings that differ from the checkpoint's)")
    tune_malloc()
    try:
        run_dir = train(cfg, outdir=args.outdir, resume=resume, force=args.force)
    except TrainingInterrupted as e:  # checkpoint written, "stopped ... --resume" logged: not a success
        return e.exit_code
    print(f"run directory: {run_dir}")
    return 0


def _latest_run(outdir: str, name: str) -> Path:
    runs = sorted(p for p in Path(outdir).glob(f"*-{name}") if p.is_dir() and p.name.split("-", 1)[0].isdigit())
    if not runs:
        raise SemsynthError(f"--resume: no run of {name!r} in {outdir}/ to resume; give the run directory or "
                            f"checkpoint path")
    return runs[-1]


def _config_of_run(resume: str, overrides: list[str]):
    """The config stored in a run directory (or the run of a checkpoint file), plus overrides."""
    from .config import read_yaml, resolve_config

    p = Path(resume)
    if not p.exists():
        raise SemsynthError(f"--resume {resume}: no such run directory or checkpoint file")
    run = p if p.is_dir() else p.parent.parent
    cfg_file = run / "config.yaml"
    if not cfg_file.is_file():
        raise SemsynthError(f"--resume {resume}: {cfg_file} not found; give --config too")
    raw = read_yaml(cfg_file)
    # the learning rates that were derived from optim.lr and optim.ttur are dropped (so that --set optim.lr=...
    # takes effect); rates that were set explicitly stay
    from .config import OptimConfig

    optim = raw.get("optim") or {}
    derived = OptimConfig(lr=optim.get("lr", OptimConfig.lr), ttur=optim.get("ttur", OptimConfig.ttur))
    derived.resolve()
    for k in ("lr_g", "lr_d"):
        if k in optim and optim[k] == getattr(derived, k):
            optim.pop(k)
    return resolve_config(raw, overrides, name=raw.get("name"))


# ------------------------------------------------------------------------------------------------------------
# sweep


@command("sweep")
def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import parse_seed_list, plan_sweep, run_sweep
    from .training.loop import TrainingInterrupted

    plan = plan_sweep(args.config, args.grid, seeds=parse_seed_list(args.seeds), overrides=args.set, only=args.only,
                      outdir=args.outdir, jobs=args.jobs, threads=args.threads,
                      metrics=[m.strip() for m in args.metrics.split(",") if m.strip()], segmenter=args.segmenter,
                      feature_extractor=args.feature_extractor, inception=args.inception, num=args.num,
                      torchrun=args.torchrun, allocator=args.allocator)
    print(plan.describe())
    if args.dry_run:
        print("\ndry run: every cell resolved and built on the meta device; nothing written")
        return 0
    try:
        result = run_sweep(plan)
    except TrainingInterrupted as e:
        print(f"sweep stopped ({e}); run the same command again to resume", file=sys.stderr)
        return e.exit_code
    print(f"results: {result.files['md']}, {result.files['csv']}, {result.files['html']}")
    if result.failures:  # the table holds the other runs; the same command retries the failed ones
        raise SemsynthError(f"{len(result.failures)} run(s) failed and are left out of the table (run the same command "
                            f"again to retry them):\n  " + "\n  ".join(result.failures))
    return 0


# ------------------------------------------------------------------------------------------------------------
# generate


@command("generate")
def cmd_generate(args: argparse.Namespace) -> int:
    from .inference import parse_seeds, run_generate

    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    written = run_generate(args.model, args.labels, args.out, seeds=seeds, style=args.style,
                           interpolate=tuple(args.interpolate) if args.interpolate else None, steps=args.steps,
                           batch_size=args.batch_size, device=args.device, grid=args.grid,
                           resample_from=args.resample_from, resample_class=args.resample_class,
                           resample_mask=args.resample_mask, instances=args.instances)
    print(f"wrote {len(written)} image(s) to {args.out}")
    return 0


# ------------------------------------------------------------------------------------------------------------
# translate (unpaired image-to-image translation, docs/unpaired.md)


_TRANSLATE_EVAL_ONLY = ("dataset", "data_root", "split", "set", "num", "metrics", "classifier", "segmenter",
                        "feature_extractor", "inception", "no_images")  # options of --evaluate only


@command("translate")
def cmd_translate(args: argparse.Namespace) -> int:
    from .translation import evaluate_translation, parse_translation_metrics, run_translate

    if args.evaluate:
        if args.images is not None or args.seeds is not None or args.reference is not None or args.grid:
            raise SemsynthError("--evaluate translates the sources of a dataset split (the model's data, or "
                                "--dataset): drop --images, --seeds, --reference and --grid")
        spec = data_spec(args)
        res = evaluate_translation(args.model, args.out, data_spec=spec, split=args.split or "test", num=args.num,
                                   metrics=parse_translation_metrics(args.metrics), classifier=args.classifier,
                                   segmenter=args.segmenter, feature_extractor=args.feature_extractor,
                                   inception=args.inception, batch_size=args.batch_size, device=args.device,
                                   save_images=not args.no_images)
        for k, v in res["metrics"].items():
            print(f"  {k:<26} {v}")
        print(f"wrote {Path(args.out) / 'metrics.json'} and {Path(args.out) / 'grid.png'}")
        return 0
    if args.images is None:
        raise SemsynthError("give --images DIR_OR_FILE (the images to translate), or --evaluate")
    given = [f"--{k.replace('_', '-')}" for k in _TRANSLATE_EVAL_ONLY
             if getattr(args, k) not in (None, False, []) and (k, getattr(args, k)) != ("feature_extractor",
                                                                                      "classifier")]
    if given:
        raise SemsynthError(f"{', '.join(given)} only apply with --evaluate")
    from .inference import parse_seeds

    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    written = run_translate(args.model, args.images, args.out, seeds=seeds, reference=args.reference,
                            batch_size=args.batch_size, device=args.device, grid=args.grid)
    print(f"wrote {len(written)} image(s) to {args.out}")
    return 0


# ------------------------------------------------------------------------------------------------------------
# evaluate and segmenters


@command("evaluate")
def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate, parse_metrics
    from .segmenters import parse_segmenter_spec
    from .utils.runtime import tune_malloc

    tune_malloc()
    seg = parse_segmenter_spec(args.segmenter) if args.segmenter else None
    res = evaluate(args.out, args.model, dataset_spec=data_spec(args), generated=args.generated,
                   metrics=parse_metrics(args.metrics), segmenter=seg, inception=args.inception,
                   feature_extractor=args.feature_extractor, lpips_net=args.lpips_net,
                   lpips_weights=args.lpips_weights, num=args.num, diversity_seeds=args.diversity_seeds,
                   seed=args.seed, batch_size=args.batch_size, device=args.device, save_images=not args.no_images,
                   latent=args.latent)
    for k, v in res["metrics"].items():
        print(f"  {k:<22} {v}")
    print(f"wrote {Path(args.out) / 'metrics.json'} and {Path(args.out) / 'report.html'}")
    return 0


@command("segmenter")
def cmd_segmenter(args: argparse.Namespace) -> int:
    from .segmenters.cli import run_segmenter_command

    return run_segmenter_command(args)


# ------------------------------------------------------------------------------------------------------------
# analyze


def data_spec(args: argparse.Namespace) -> dict | None:
    """``--dataset NAME [--data-root DIR] [--set data.KEY=VALUE ...]`` -> a dataset spec (None: the model's)."""
    from .config import parse_override

    if args.dataset is None:
        if args.data_root or args.set:
            raise SemsynthError("--data-root / --set need --dataset NAME")
        return None
    spec: dict = {"name": args.dataset}
    if args.data_root:
        spec["root"] = args.data_root
    for text in args.set:
        keys, value = parse_override(text)
        if len(keys) != 2 or keys[0] != "data":
            raise SemsynthError(f"--set {text!r}: only data.KEY=VALUE is accepted here")
        spec[keys[1]] = value
    if args.split:
        spec["split"] = args.split
    return spec


@command("analyze")
def cmd_analyze(args: argparse.Namespace) -> int:
    from .analysis import analyze_semantic_vectors

    res = analyze_semantic_vectors(args.model, data_spec(args), args.out, num_images=args.num, scale=args.scale,
                                   space=args.space, batch_size=args.batch_size, device=args.device, seed=args.seed,
                                   max_points=args.points)
    for pair, v in res["pairs"].items():
        print(f"  cosine {pair:<16} {v['cosine']:.4f}   (centered {v['cosine_centered']:.4f})")
    print(f"wrote {args.out}/semantic_vectors.json, cosine_heatmap.png, tsne.png")
    return 0


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", help="a registered dataset (default: the one the model was trained on)")
    p.add_argument("--data-root", help="the dataset's root folder")
    p.add_argument("--split", help="dataset split (default: val)")
    p.add_argument("--set", action="append", default=[], metavar="data.KEY=VALUE", help="a dataset option")


# ------------------------------------------------------------------------------------------------------------
# export


@command("export")
def cmd_export(args: argparse.Namespace) -> int:
    import shutil

    import torch

    from .portable import PORTABLE_FORMATS, check_formats, copy_model_files, export_portable
    from .training.checkpoint import export_from_checkpoint, load_model

    if (args.checkpoint is None) == (args.model is None):
        raise SemsynthError("give one of --checkpoint RUN_OR_FILE (a training run) or --model DIR (an exported or "
                            "converted model directory)")
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    if not formats:
        raise SemsynthError(f"--format {args.format!r} names no format; give safetensors, onnx, torchscript, or "
                            f"several separated by commas (onnx,torchscript)")
    formats = check_formats(formats, args.dtype)
    if args.model is not None and args.raw:
        raise SemsynthError("--raw applies to --checkpoint (the trained G instead of its EMA); a model directory "
                            "holds one generator")
    if args.input != "label" and not any(f in PORTABLE_FORMATS for f in formats):
        raise SemsynthError(f"--input {args.input} applies to --format onnx or torchscript")
    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    portable = [f for f in formats if f in PORTABLE_FORMATS]
    out = Path(args.out)
    created = not out.exists()
    try:
        if args.checkpoint is not None:
            out = export_from_checkpoint(args.checkpoint, out, use_ema=not args.raw, dtype=dtype)
            source = out
        else:
            source = Path(args.model)
            G, E, info, config = load_model(source)  # every problem of the directory, before anything is written
            if out.exists() and not out.is_dir():
                raise SemsynthError(f"--out {out}: a file is in the way; give a folder")
            if dtype is not None:  # safetensors only (check_formats): the same model at another precision
                from .training.checkpoint import export_model

                extra = {k: v for k, v in config.items()
                         if k not in ("format", "version", "generator", "encoder", "dataset")}
                export_model(out, G, info, E, extra=extra, dtype=dtype)
                source = out
            elif not portable and out.resolve() != source.resolve():
                copy_model_files(source, out)
        if portable:  # copies the model's files into --out too
            res = export_portable(source, portable, input=args.input, out_dir=out,
                                  log=lambda m: print(m, file=sys.stderr))
    except BaseException:
        if created and out.is_dir():  # a folder this command made: leave nothing half-written behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    if portable:
        d = res.description
        names = ", ".join(f"{i['name']} {i['dtype']} {i['shape']}" for i in d["inputs"])
        print(f"inputs: {names}; output: image float32 {d['outputs'][0]['shape']} in [-1, 1]")
        for fmt, path in res.files.items():
            print(f"wrote {path} (max |difference| to semsynth {res.checks[fmt]['max_abs_diff']:.2g}, "
                  f"{res.checks[fmt]['runtime']})")
    print(f"exported to {out}")
    return 0


# ------------------------------------------------------------------------------------------------------------
# convert


@command("convert")
def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoint

    out, result = convert_checkpoint(args.source, args.checkpoint, args.out, encoder=args.encoder,
                                     discriminator=args.discriminator, preset=args.preset, overrides=args.set,
                                     opt=args.opt)
    cfg = dict(result.generator.config)
    print(f"generator {cfg.pop('name')}: " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
    for what, net in (("encoder", result.encoder), ("discriminator", result.discriminator)):
        if net is not None and getattr(net, "config", None):
            ncfg = dict(net.config)
            print(f"{what} {ncfg.pop('name')}: " + ", ".join(f"{k}={v}" for k, v in ncfg.items()))
    info = result.info
    print(f"dataset convention {info.name}: {info.num_classes} channels"
          + (f" (don't-care {info.dontcare_index})" if info.dontcare_index is not None else "")
          + (", + instance edge" if info.has_instance else "") + f", {info.resolution[0]}x{info.resolution[1]}")
    for key, src in result.sources.items():
        print(f"  {key}: from {src}")
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {out} (model.safetensors" + (", encoder.safetensors" if result.encoder is not None else "")
          + (", discriminator.safetensors" if result.discriminator is not None else "") + ", config.json)")
    return 0


# ------------------------------------------------------------------------------------------------------------
# sims


@command("sims")
def cmd_sims(args: argparse.Namespace) -> int:
    from .sims.cli import run_sims_command

    return run_sims_command(args)


# ------------------------------------------------------------------------------------------------------------
# demo


@command("demo")
def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    report = run_demo(args.outdir, train_first=args.train, overrides=args.set, model=args.model,
                      segmenter=args.segmenter)
    print(f"\ndemo finished: open {report}")
    return 0


# ------------------------------------------------------------------------------------------------------------
# serve


@command("serve")
def cmd_serve(args: argparse.Namespace) -> int:
    from .serve.server import run_server

    return run_server(args.model, host=args.host, port=args.port, threads=args.threads, workers=args.workers,
                      queue=args.queue, timeout=args.timeout, precision=args.precision)


# ------------------------------------------------------------------------------------------------------------
# data


@command("data")
def cmd_data(args: argparse.Namespace) -> int:
    from .data.cli import run_data_command

    return run_data_command(args)


# ------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="semsynth", description="Semantic image synthesis: layouts to photos.")
    p.add_argument("--version", action="version", version=f"semsynth {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    m = sub.add_parser("models", help="list registered models, datasets and presets with parameter counts")
    m.add_argument("--json", action="store_true", help="print JSON instead of a table")

    t = sub.add_parser("train", help="train a model from a preset or YAML config")
    t.add_argument("--config", help="preset name (see 'semsynth models') or a YAML file")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.batch_size=8 (repeatable)")
    t.add_argument("--outdir", default="runs", help="parent directory of run directories (default: runs)")
    t.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                   help="continue a run: a run directory or checkpoint file; without PATH, the latest run of "
                        "this config in --outdir")
    t.add_argument("--force", action="store_true",
                   help="with --resume: continue even though settings that change the results (e.g. train.threads, "
                        "loss weights) differ from the checkpoint's; the differences are logged")
    t.add_argument("--dry-run", action="store_true", help="print the fully resolved config and exit")
    t.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for torch, the same as --set train.threads=N (default: PyTorch's, one per core)")
    add_allocator_option(t)

    sw = sub.add_parser("sweep", help="run an ablation grid (table3, table4, ...) on a preset: one run per cell and "
                                      "seed, each evaluated, one results table (docs/sweep.md)")
    sw.add_argument("--config", required=True, help="the base preset name or YAML file the grid's cells modify")
    sw.add_argument("--grid", required=True, help="a built-in grid (table3, table4, table5, table5-norm, table6, "
                                                  "table8, ccfpse-report, temperature) or a grid YAML file")
    sw.add_argument("--seeds", default="0,1,2", help="training seeds of every cell, e.g. 0,1,2 or 0-4 (default 0,1,2)")
    sw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a value of every run, e.g. --set train.images=4800 (repeatable; applied after the "
                         "grid's settings, which it may not contradict)")
    sw.add_argument("--only", action="append", default=[], metavar="AXIS=V1,V2",
                    help="run only these values of an axis, e.g. --only ls=none,l1,l2 (repeatable)")
    sw.add_argument("--outdir", default="runs/sweeps", help="parent of the sweep directory <grid>-<base> (default "
                                                           "runs/sweeps)")
    sw.add_argument("--jobs", type=int, default=1, help="runs at once (default 1: one after another, in this process)")
    sw.add_argument("--threads", type=int, default=None, metavar="N",
                    help="CPU threads of each run (default: the cores divided by --jobs); part of a run's settings")
    add_allocator_option(sw)
    sw.add_argument("--metrics", default="miou,fid", help="evaluation metrics: fid, kid, lpips, diversity, miou "
                                                          "(default miou,fid)")
    sw.add_argument("--segmenter", help="for miou: a segmenter directory or NAME,weights=FILE (default on "
                                        "synthetic-faces: the bundled evaluator)")
    sw.add_argument("--feature-extractor", choices=["inception", "segmenter"], default=None,
                    help="features of FID/KID (default: the segmenter's on synthetic-faces, Inception elsewhere)")
    sw.add_argument("--inception", metavar="PATH", help="pt_inception-2015-12-05-6726825d.pth (default: the torch "
                                                        "hub cache)")
    sw.add_argument("--num", type=int, default=1000, help="validation layouts scored per run (default 1000)")
    sw.add_argument("--torchrun", type=int, default=None, metavar="N",
                    help="train each run under torchrun with N processes (one per GPU; train.batch_size is per "
                         "process)")
    sw.add_argument("--dry-run", action="store_true",
                    help="resolve and build every cell on the meta device, print the runs and their commands, write "
                         "nothing")

    g = sub.add_parser("generate", help="synthesise images from label maps with an exported model")
    g.add_argument("--model", required=True, help="an exported model directory (config.json + model.safetensors)")
    g.add_argument("--labels", required=True, help="a label PNG or a folder of them (class ids, or RGB colours "
                                                   "of the dataset's palette)")
    g.add_argument("--out", required=True, help="output folder; images are named after the label files")
    g.add_argument("--instances", metavar="DIR_OR_FILE",
                   help="instance-id maps (a folder named like the label files, or one file for one layout) for "
                        "models that read instance edges (converted COCO-Stuff and Cityscapes models)")
    g.add_argument("--seeds", help="multi-modal samples per layout, e.g. 0-7 or 1,5,9 (reproducible per seed)")
    g.add_argument("--style", metavar="IMAGE", help="take the latent from this image (style-guided synthesis)")
    g.add_argument("--interpolate", nargs=2, type=int, metavar=("SEED_A", "SEED_B"),
                   help="write the interpolation between two seeds' latents")
    g.add_argument("--steps", type=int, default=8, help="images in an interpolation (default 8)")
    g.add_argument("--resample-from", type=int, metavar="SEED",
                   help="local re-sampling: the image of SEED with the noise inside a region taken from each of "
                        "--seeds (generators that take spatial noise, such as oasis)")
    g.add_argument("--resample-class", metavar="CLASS", help="with --resample-from: the region is the pixels of these "
                                                            "classes (names or channel ids, comma-separated)")
    g.add_argument("--resample-mask", metavar="MASK.png", help="with --resample-from: the region is the non-zero "
                                                               "pixels of this PNG (painted at the layout's size)")
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    g.add_argument("--grid", action="store_true", help="also write grid.png: layout | outputs, one row per layout "
                                                       "(at most 32 layouts x 16 outputs)")
    add_threads_option(g)
    add_allocator_option(g)

    ev = sub.add_parser("evaluate", help="FID, KID, LPIPS, diversity and mIoU of a model on a dataset split")
    ev.add_argument("--model", help="an exported model directory (generates one image per layout)")
    ev.add_argument("--generated", help="a folder of already generated images, named after the layouts")
    add_data_options(ev)
    ev.add_argument("--out", required=True, help="output folder: metrics.json, report.html, images/")
    ev.add_argument("--metrics", default="fid,kid,miou",
                    help="comma-separated: fid, kid, lpips, diversity, miou (default fid,kid,miou)")
    ev.add_argument("--segmenter", help="for miou: a trained segmenter directory, or NAME,weights=FILE for "
                                        "drn-d-105 / deeplabv2 / upernet-101")
    ev.add_argument("--inception", metavar="PATH", help="pt_inception-2015-12-05-6726825d.pth (default: the torch "
                                                        "hub cache)")
    ev.add_argument("--feature-extractor", choices=["inception", "segmenter"], default="inception",
                    help="features for FID/KID: pytorch-fid's Inception, or (offline) the U-Net segmenter's")
    ev.add_argument("--lpips-net", default="alex", choices=["alex", "vgg", "squeeze"])
    ev.add_argument("--lpips-weights", metavar="DIR_OR_FILE", help="the LPIPS backbone's ImageNet weights")
    ev.add_argument("--num", type=int, help="evaluate the first N layouts (default: the whole split)")
    ev.add_argument("--diversity-seeds", type=int, default=4, help="samples per layout for diversity (default 4)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--batch-size", type=int, default=8)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--no-images", action="store_true", help="do not save the generated images")
    ev.add_argument("--latent", choices=["seed", "encoder"], default="seed",
                    help="multi-modal models: z from a seed per layout (default), or from the encoder applied to "
                         "the layout's real image (the official CelebAMask-HQ test)")
    add_threads_option(ev)
    add_allocator_option(ev)

    tl = sub.add_parser("translate", help="unpaired image-to-image translation with a scgan-unpaired model; "
                                          "--evaluate scores it (docs/unpaired.md)")
    tl.add_argument("--model", required=True, help="an exported translation model directory (a run's model/)")
    tl.add_argument("--images", metavar="DIR_OR_FILE", help="the source-domain images to translate")
    tl.add_argument("--out", required=True, help="output folder (translations named after the sources; with "
                                                 "--evaluate: metrics.json, grid.png, images/)")
    tl.add_argument("--seeds", help="target-domain references: image numbers of the --reference folder, or of the "
                                    "model's target domain (test split); e.g. 0-3 (default 0)")
    tl.add_argument("--reference", metavar="IMAGE_OR_DIR", help="target-domain reference image(s) the SVG reads "
                                                                "(default: the model's target domain)")
    tl.add_argument("--grid", action="store_true", help="also write grid.png: references on top, one row per "
                                                        "source (source, translations)")
    tl.add_argument("--evaluate", action="store_true", help="translate the sources of a dataset split and score "
                                                            "them: FID/KID, domain classifier, content")
    tl.add_argument("--dataset", help="with --evaluate: unpaired data (default: the data the model was trained on)")
    tl.add_argument("--data-root", help="with --evaluate: the dataset's root folder")
    tl.add_argument("--split", help="with --evaluate: dataset split (default: test)")
    tl.add_argument("--set", action="append", default=[], metavar="data.KEY=VALUE",
                    help="with --evaluate: a dataset option, e.g. --set data.root_a=DIR")
    tl.add_argument("--num", type=int, help="with --evaluate: the first N sources (default: the whole split)")
    tl.add_argument("--metrics", help="with --evaluate: comma-separated fid, kid, domain, miou, edges, or auto "
                                      "(default: what the given networks allow)")
    tl.add_argument("--classifier", metavar="DIR", help="with --evaluate: a domain classifier (a U-Net trained "
                                                        "with 'semsynth segmenter train --set data.serve=domains')")
    tl.add_argument("--segmenter", metavar="DIR", help="with --evaluate: a segmenter of the world's layouts (miou "
                                                       "of the translation against the source's layout)")
    tl.add_argument("--feature-extractor", choices=["classifier", "segmenter", "inception"], default="classifier",
                    help="features for FID/KID: the domain classifier's (default; offline), the segmenter's, or "
                         "pytorch-fid's Inception (--inception or the torch hub cache)")
    tl.add_argument("--inception", metavar="PATH", help="pt_inception-2015-12-05-6726825d.pth")
    tl.add_argument("--no-images", action="store_true", help="with --evaluate: do not save the translations")
    tl.add_argument("--batch-size", type=int, default=8)
    tl.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    add_threads_option(tl)

    sg = sub.add_parser("segmenter", help="train and score segmenters (the mIoU evaluators)")
    from .segmenters.cli import add_segmenter_commands

    add_segmenter_commands(sg)

    an = sub.add_parser("analyze", help="analyses of trained models")
    asub = an.add_subparsers(dest="analysis", metavar="ANALYSIS")
    asub.required = True
    sv = asub.add_parser("semantic-vectors", help="per-class mean semantic vectors: cosine heatmap and t-SNE "
                                                  "(SC-GAN paper Fig. 3)")
    sv.add_argument("--model", required=True, help="an exported SC-GAN model directory")
    add_data_options(sv)
    sv.add_argument("--out", required=True, help="output folder (JSON + PNGs)")
    sv.add_argument("--num", type=int, default=100, help="number of layouts (default 100, as the paper)")
    sv.add_argument("--scale", type=int, default=-1, help="SVG scale 1..6 (7 for 'more'); -1 = finest (default)")
    sv.add_argument("--space", choices=["features", "routing"], default="features",
                    help="SVG stage features (default) or routing weights after g")
    sv.add_argument("--batch-size", type=int, default=8)
    sv.add_argument("--device", default="auto")
    sv.add_argument("--seed", type=int, default=0)
    sv.add_argument("--points", type=int, default=1500, help="vectors in the t-SNE plot (class-balanced; default 1500)")
    add_threads_option(sv)

    ex = sub.add_parser("export", help="export a generator (safetensors + config.json; ONNX or TorchScript files "
                                       "that run without semsynth)")
    ex.add_argument("--checkpoint", help="a training-state file, or a run directory (its latest)")
    ex.add_argument("--model", help="an exported or converted model directory (config.json + model.safetensors)")
    ex.add_argument("--out", required=True, help="output model directory")
    ex.add_argument("--format", default="safetensors", metavar="FORMAT",
                    help="safetensors (default), onnx, torchscript, or several: onnx,torchscript. ONNX and "
                         "TorchScript files are written beside the safetensors with portable.json (docs/export.md)")
    ex.add_argument("--input", choices=["label", "onehot"], default="label",
                    help="what the ONNX/TorchScript graph reads: label (int64 class ids [B, H, W], one-hot inside "
                         "the graph; default) or onehot (the float one-hot map [B, C, H, W])")
    ex.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32",
                    help="storage precision of the safetensors (ONNX/TorchScript: fp32 only)")
    ex.add_argument("--raw", action="store_true", help="export the trained G, not its EMA (when one was kept)")
    add_threads_option(ex)

    cv = sub.add_parser("convert", help="convert an official checkpoint (SC-GAN, SPADE, CC-FPSE, OASIS, pix2pixHD) "
                                        "into a semsynth model directory")
    cv.add_argument("--from", dest="source", required=True, metavar="FAMILY",
                    help="the official code that wrote the checkpoint: scgan, spade, ccfpse, oasis, pix2pixhd")
    cv.add_argument("--checkpoint", required=True, help="the generator's .pth (e.g. latest_net_G.pth)")
    cv.add_argument("--encoder", help="the VAE encoder's .pth (latest_net_E.pth), for models trained with one")
    cv.add_argument("--discriminator", help="the discriminator's .pth (latest_net_D.pth), kept for fine-tuning")
    cv.add_argument("--opt", metavar="OPT_TXT", help="the official opt.txt (default: the one beside the checkpoint)")
    cv.add_argument("--preset", help="a semsynth preset for the settings the checkpoint does not determine")
    cv.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting, e.g. --set generator.temperature=0.5 (repeatable)")
    cv.add_argument("--out", required=True, help="output model directory")

    sm = sub.add_parser("sims", help="SIMS tools: build the memory bank of a dataset (semsynth sims index)")
    from .sims.cli import add_sims_commands

    add_sims_commands(sm)

    dm = sub.add_parser("demo", help="the bundled SC-GANs (synthetic faces and landscapes) side by side: gallery, "
                                     "interpolation, mIoU, semantic vectors, in HTML reports")
    dm.add_argument("--outdir", default="demo", help="where the demo writes (default: demo)")
    dm.add_argument("--train", action="store_true", help="train the demo preset from scratch first (about five "
                                                         "minutes on 2 CPU cores) and report on that model")
    dm.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="with --train: override a value of the demo preset, e.g. --set train.images=2000")
    dm.add_argument("--model", help="report on this exported model (a run's model/ directory) instead of the "
                                    "bundled one")
    dm.add_argument("--segmenter", help="with --model or --train: score with this segmenter directory instead of "
                                        "the bundled evaluator of the model's world")
    add_threads_option(dm)
    add_allocator_option(dm)

    srv = sub.add_parser("serve", help="an HTTP API and a painter in the browser (docs/serve.md)")
    srv.add_argument("--model", action="append", metavar="DIR",
                     help="a model directory to serve, or NAME=DIR (repeatable; the first is the default; without "
                          "--model: the bundled models)")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                                                         "only; other addresses are reachable from the network)")
    srv.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    srv.add_argument("--workers", type=int, default=1, help="requests computed at once (default 1)")
    srv.add_argument("--queue", type=int, default=8,
                     help="requests waiting for a worker; beyond, 503 with Retry-After (default 8)")
    srv.add_argument("--timeout", type=float, default=30.0, help="seconds per request, waiting included (default 30)")
    srv.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                     help="auto (default): bf16 where this CPU has it, it is faster and its images stay within the "
                          "stated tolerance of fp32's; fp32 otherwise")
    add_threads_option(srv)
    add_allocator_option(srv)

    d = sub.add_parser("data", help="dataset tools: check a dataset, write built-in data to disk")
    from .data.cli import add_data_commands

    add_data_commands(d)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    chosen = None
    if argv is None:  # a command line: restart on the chosen malloc now, before anything imports torch
        chosen, command_name = allocator_in_command_line(sys.argv[1:])
        if chosen is not None:
            try:
                use_allocator(chosen, None)
            except SemsynthError as e:
                print(f"semsynth {command_name}: error: {e}", file=sys.stderr)
                return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "allocator", chosen) != chosen:
            use_allocator(args.allocator, argv)
        set_threads(getattr(args, "threads", None))
        return COMMANDS[args.command](args)
    except SemsynthError as e:
        print(f"semsynth {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        from .utils.files import is_disk_full

        if is_disk_full(e):
            where = Path(e.filename).parent if e.filename else output_location(args)
            print(f"semsynth {args.command}: error: no space left on {where}: free some space there or write to "
                  f"another disk; files written before are intact", file=sys.stderr)
            return 2
        if e.filename is None:  # not a file-system problem with a path: a bug, keep the traceback
            raise
        where = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 else "")
        print(f"semsynth {args.command}: error: {where}: {e.strerror or e} ({_OS_HINTS.get(type(e), 'check the path')})",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C (130), or a second SIGTERM during training (143)
        print("interrupted", file=sys.stderr)
        return 128 + getattr(e, "signum", 2)
    except RuntimeError as e:  # torch.save and friends report a full disk without an errno
        from .utils.files import is_disk_full

        where = output_location(args)
        if is_disk_full(e, where if where.is_dir() else None):
            print(f"semsynth {args.command}: error: no space left on {where}: free some space there or write to "
                  f"another disk; files written before are intact", file=sys.stderr)
            return 2
        raise


def set_threads(threads: int | None) -> None:
    """``--threads N``: torch's CPU threads for this process (None: PyTorch's default, one per core)."""
    if threads is None:
        return
    if threads < 1:
        raise SemsynthError(f"--threads {threads}: must be >= 1")
    import torch

    torch.set_num_threads(threads)


def output_location(args: argparse.Namespace) -> Path:
    """Where a command writes (for messages about the disk it writes to)."""
    for key in ("out", "outdir"):
        value = getattr(args, key, None)
        if value:
            return Path(value)
    return Path.cwd()


def add_allocator_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allocator", choices=["auto", "glibc", "tcmalloc", "jemalloc"], default="auto",
                   help="malloc of this process: auto (default) is tcmalloc where it is installed (apt-get install "
                        "libtcmalloc-minimal4), else glibc tuned to keep large tensors in the heap; tcmalloc and "
                        "jemalloc restart the command with that library preloaded. With tcmalloc a CPU training step "
                        "held 0.77-0.84x the memory at the same speed (docs/benchmarks.md)")


ALLOCATOR_COMMANDS = ("train", "sweep", "generate", "evaluate", "demo", "serve")


def allocator_in_command_line(words: Sequence[str]) -> tuple[str | None, str | None]:
    """``(--allocator value, command)`` of a command line before argparse reads it (so that the restart comes
    before the heavy imports); the value None when the command has no such option or the value is not a valid
    choice (argparse then reports it). Unambiguous prefixes count, as argparse accepts them."""
    command_name = next((w for w in words if not w.startswith("-")), None)
    if command_name not in ALLOCATOR_COMMANDS:
        return None, command_name
    value = "auto"
    for i, w in enumerate(words):
        if w == "--":
            break
        name, eq, v = w.partition("=")
        if len(name) >= 4 and "--allocator".startswith(name):
            value = v if eq else (words[i + 1] if i + 1 < len(words) else "")
    return (value if value in ("auto", "glibc", "tcmalloc", "jemalloc") else None), command_name


def allocator_to_preload(name: str, from_command_line: bool, restarted: bool = False) -> str | None:
    """The library ``--allocator NAME`` restarts this process with, or None to stay on the running malloc
    (``glibc``; NAME already running; ``auto`` without tcmalloc installed, or called from Python). ``restarted``:
    this process is that restart (then NAME should be running)."""
    from .utils.allocator import active_allocator, find_preload_allocator

    running = active_allocator()
    if name == "glibc" or running == name or (name == "auto" and running != "glibc"):
        return None
    if name == "auto":
        if not from_command_line or restarted:
            return None
        try:
            return find_preload_allocator("tcmalloc")
        except SemsynthError:
            return None
    if restarted:  # the loader ignored LD_PRELOAD: say so instead of restarting again
        raise SemsynthError(f"--allocator {name}: restarted with it in LD_PRELOAD, but {name} is not loaded (a "
                            f"setuid interpreter or a sanitizer ignores LD_PRELOAD); run with --allocator glibc")
    path = find_preload_allocator(name)
    if not from_command_line:
        raise SemsynthError(f"--allocator {name} applies when a process starts: run semsynth from the command line, "
                            f"or start Python with LD_PRELOAD={path}")
    return path


def use_allocator(name: str, argv: Sequence[str] | None) -> None:
    """``--allocator NAME``: restart the command (same process id, arguments and environment) with the library of
    :func:`allocator_to_preload` in ``LD_PRELOAD``, or return. Only a command line (``argv`` None) is restarted.
    After the restart the library is taken out of the environment again, so that the processes this command starts
    (a sweep's runs, ``torchrun``'s workers) choose for themselves."""
    preloaded = os.environ.pop("SEMSYNTH_PRELOADED", None)  # the library our own restart added
    if preloaded:
        rest = [p for p in os.environ.get("LD_PRELOAD", "").split() if p != preloaded]
        if rest:
            os.environ["LD_PRELOAD"] = " ".join(rest)
        else:
            os.environ.pop("LD_PRELOAD", None)
    path = allocator_to_preload(name, from_command_line=argv is None, restarted=preloaded is not None)
    if path is None:
        return
    from .utils.allocator import with_preload

    env = {**with_preload(os.environ, path), "SEMSYNTH_PRELOADED": path}
    # tcmalloc reports every allocation above 1 GiB on stderr by default; a large batch makes many
    env.setdefault("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD", str(1 << 40))
    sys.stdout.flush()
    sys.stderr.flush()
    # the same interpreter, options and entry (``semsynth ...``, ``python -m semsynth ...``, torchrun's workers)
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def add_threads_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for torch (default: PyTorch's, one per core); on a machine shared with other "
                        "jobs 1-2 threads are often several times faster")


_OS_HINTS = {
    FileExistsError: "a file is in the way of a folder the command writes; choose another path or remove it",
    NotADirectoryError: "a file stands where a folder was expected; give a folder",
    IsADirectoryError: "a folder stands where a file was expected; give a file",
    PermissionError: "no permission; choose a folder you can write to",
    FileNotFoundError: "no such file or folder; check the path",
}


if __name__ == "__main__":
    sys.exit(main())
