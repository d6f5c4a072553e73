"""``semsynth segmenter ...`` subcommands (wired into the main parser by ``semsynth.cli``).

* ``semsynth segmenter train --dataset NAME [--data-root DIR] [--set data.KEY=VALUE] --arch unet|deeplabv3
  [--set model.KEY=VALUE] --outdir DIR --epochs N --batch-size B [--lr LR] [--device DEV]``
* ``semsynth segmenter eval --segmenter DIR_OR_SPEC --dataset NAME [--data-root DIR] [--split val]``: mIoU and
  pixel accuracy of a segmenter on the dataset's real images (the upper bound for generated ones).
* ``semsynth segmenter list``: the registered segmenters and their label spaces.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import ConfigError, SemsynthError


def add_segmenter_commands(parser: argparse.ArgumentParser) -> None:
    from . import SEGMENTERS

    sub = parser.add_subparsers(dest="segmenter_command", metavar="SUBCOMMAND")
    sub.required = True

    tr = sub.add_parser("train", help="train a segmenter (an mIoU evaluator) on the real images of a dataset")
    _data_args(tr)
    tr.add_argument("--arch", default="unet", choices=SEGMENTERS.names(),
                    help="segmenter to train: unet (small, fast on CPU) or deeplabv3 (torchvision); default unet")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="data.KEY=VALUE (dataset option) or model.KEY=VALUE (segmenter option, e.g. "
                         "model.width=24, model.backbone=mobilenet_v3_large); values parsed as YAML; repeatable")
    tr.add_argument("--outdir", default="runs/segmenters", help="parent of the run directory (default "
                                                                "runs/segmenters)")
    tr.add_argument("--epochs", type=float, default=10, help="passes over the training set (default 10)")
    tr.add_argument("--batch-size", type=int, default=16, help="default 16")
    tr.add_argument("--lr", type=float, default=1e-3, help="initial learning rate, poly decay (default 1e-3)")
    tr.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    tr.add_argument("--weight-decay", type=float, default=0.0)
    tr.add_argument("--val", default="auto",
                    help="validation data: auto (the 'val' split, else 10%% held out), a split name, a fraction "
                         "to hold out (0.1), or none")
    tr.add_argument("--val-limit", type=int, default=1000, help="score at most N validation images per epoch "
                                                                "(default 1000; 0 = all)")
    tr.add_argument("--label-space", choices=["dataset", "dataset-eval"], default=None,
                    help="ids to predict: the dataset's channels, or its evaluation ids (e.g. Cityscapes "
                         "trainIds; the default when the dataset has them)")
    tr.add_argument("--flip", action="store_true", help="random horizontal flips (not for datasets with left/right "
                                                        "classes, e.g. faces)")
    tr.add_argument("--cache", action="store_true", help="keep samples in memory after first use (for costly, "
                                                         "deterministic samples such as synthetic-faces)")
    tr.add_argument("--max-minutes", type=float, default=None, help="stop after this much time (the LR schedule "
                                                                     "ends there)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    tr.add_argument("--workers", type=int, default=0, help="data loader processes (default 0)")
    tr.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's); 1 is fastest on a CPU busy with other jobs")
    tr.add_argument("--log-every", type=int, default=50, help="iterations between log lines (default 50)")

    ev = sub.add_parser("eval", help="mIoU / pixel accuracy of a segmenter on a dataset's real images")
    ev.add_argument("--segmenter", required=True, metavar="DIR_OR_SPEC",
                    help="a trained segmenter directory (or its run directory), a name (drn-d-105, deeplabv2, "
                         "upernet-101: weights from the torch hub cache), 'NAME,weights=PATH', or a mapping "
                         "'{name: drn-d-105, weights: PATH, input_size: [512, 1024]}'")
    _data_args(ev)
    ev.add_argument("--split", default="val", help="split to score (default val)")
    ev.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="data.KEY=VALUE dataset option (repeatable)")
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--limit", type=int, default=None, help="score only the first N images")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--workers", type=int, default=0)
    ev.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ev.add_argument("--per-class", action="store_true", help="also print the IoU of every class")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")

    sub.add_parser("list", help="registered segmenters, their label spaces and default weights")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="registered dataset: synthetic-faces, synthetic-landscapes, "
                                                    "custom, cityscapes, ade20k, coco-stuff, celebamask-hq")
    p.add_argument("--data-root", default=None, help="dataset root folder (datasets read from disk)")


def _split_sets(sets: list[str], allowed: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    from ..config import parse_override

    out: dict[str, dict[str, Any]] = {k: {} for k in allowed}
    for text in sets:
        keys, value = parse_override(text)
        if len(keys) != 2 or keys[0] not in allowed:
            raise ConfigError(f"--set {text!r}: expected {' or '.join(f'{a}.KEY=VALUE' for a in allowed)}")
        out[keys[0]][keys[1]] = value
    return out


def _dataset_spec(args: argparse.Namespace, data_opts: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": args.dataset, **data_opts}
    if args.data_root is not None:
        spec["root"] = args.data_root
    return spec


def run_segmenter_command(args: argparse.Namespace) -> int:
    if args.segmenter_command == "train":
        return _train(args)
    if args.segmenter_command == "eval":
        return _eval(args)
    if args.segmenter_command == "list":
        from . import LABEL_SPACES, SEGMENTERS

        for name in SEGMENTERS.names():
            defaults = SEGMENTERS.defaults(name)
            space = defaults.get("label_space", "dataset")
            print(f"  {name:<12} {SEGMENTERS.doc(name)}")
            print(f"  {'':<12} label space {space}: {LABEL_SPACES.get(space, '')}")
        return 0
    raise SemsynthError(f"unknown segmenter subcommand {args.segmenter_command!r}")


def _train(args: argparse.Namespace) -> int:
    from .train import train_segmenter

    sets = _split_sets(args.set, ("data", "model"))
    val: Any = args.val
    if isinstance(val, str) and val.lower() == "none":
        val = None
    run = train_segmenter(
        _dataset_spec(args, sets["data"]), {"name": args.arch, **sets["model"]}, args.outdir,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        weight_decay=args.weight_decay, val=val, val_limit=args.val_limit or None, seed=args.seed,
        device=args.device, num_workers=args.workers, log_every=args.log_every, flip=args.flip, cache=args.cache,
        max_minutes=args.max_minutes, label_space=args.label_space, threads=args.threads)
    print(f"run directory: {run}\nsegmenter: {run / 'segmenter'}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader, Subset

    from ..data import build_dataset
    from .io import check_segmenter_dataset, load_segmenter, parse_segmenter_spec
    from .scoring import evaluate_segmenter
    from .train import _collate, select_device

    sets = _split_sets(args.set, ("data",))
    dev = select_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    model, config = load_segmenter(parse_segmenter_spec(args.segmenter), dev)
    spec = {**_dataset_spec(args, sets["data"]), "split": args.split}
    ds = build_dataset(spec)
    info = ds.info
    check_segmenter_dataset(config, info)
    if args.limit is not None:
        if args.limit < 1:
            raise ConfigError(f"--limit {args.limit}: must be >= 1")
        ds = Subset(ds, list(range(min(args.limit, len(ds)))))
    loader = DataLoader(ds, batch_size=args.batch_size, shuffle=False, num_workers=args.workers,
                        collate_fn=_collate)
    with torch.inference_mode():
        res = evaluate_segmenter(model, loader, info, device=dev)
    res = {"segmenter": config["segmenter"].get("name"), "dataset": args.dataset, "split": args.split, **res}
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"{res['segmenter']} on {args.dataset} ({args.split}, {res['images']} real images, label space "
          f"{res['label_space']}): mIoU {res['miou']:.4f}, pixel accuracy {res['pixel_accuracy']:.4f}")
    if args.per_class:
        for name, iou in res.get("per_class_iou", {}).items():
            print(f"  {name:<24} {'-' if iou is None else f'{iou:.4f}'}")
    return 0
