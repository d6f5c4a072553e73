"""``semsynth data ...`` subcommands (wired into the main parser by ``semsynth.cli``)."""

from __future__ import annotations

import argparse

from ..errors import ConfigError, SemsynthError


MAX_MAKE_NUM = 1_000_000  # samples one `data make` writes
MAX_MAKE_SIZE = 1024  # pixels


def add_data_commands(parser: argparse.ArgumentParser) -> None:
    dsub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    dsub.required = True
    mk = dsub.add_parser("make", help="write a built-in procedural dataset to disk (image/label folders)")
    mk.add_argument("dataset", help="a built-in world: synthetic-faces, synthetic-landscapes")
    mk.add_argument("--out", required=True, help="output directory")
    mk.add_argument("--num", type=int, default=100, help="number of samples (default 100)")
    mk.add_argument("--size", "--resolution", dest="size", type=int, default=None, metavar="PIXELS",
                    help="image size in pixels, a multiple of 32 (default: the world's own, 64 for faces, 128 for "
                         "landscapes)")
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--split", default="train", choices=["train", "val", "test"])
    mk.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for torch (default: "
                                                                        "PyTorch's)")

    ck = dsub.add_parser(
        "check", help="scan a dataset: pairing, unreadable files, sizes, label values, instance maps, class "
                      "histogram, and what to set in the config (exit 0 clean, 2 with problems)")
    ck.add_argument("--dataset", help="registered dataset name: coco-stuff, ade20k, cityscapes, celebamask-hq, "
                                      "custom (default: the data section of --config)")
    ck.add_argument("--root", help="dataset root folder (default: the data section of --config)")
    ck.add_argument("--split", default="train", help="split to scan (default train)")
    ck.add_argument("--config", help="take the dataset name and options from this preset or run config")
    ck.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="dataset option, e.g. use_instance=false, label_convention=scgan, num_classes=19 "
                         "(repeatable; values parsed as YAML)")
    ck.add_argument("--label-only", action="store_true", help="no images (images=false): check label maps only")
    ck.add_argument("--decode-images", action="store_true",
                    help="decode every image fully (finds truncated files; slower) instead of reading headers")
    ck.add_argument("--limit", type=int, default=None, help="scan only the first N samples (listing is complete)")
    ck.add_argument("--workers", type=int, default=None, help="reader threads (default: CPU count, at most 8)")
    ck.add_argument("--max-files", type=int, default=5, help="files listed per problem (default 5)")


def _data_spec(args: argparse.Namespace) -> tuple[str, str, dict]:
    """(dataset name, root, options) from --config, --dataset, --root and --set."""
    from ..config import parse_override

    options: dict = {}
    name, root = args.dataset, args.root
    if args.config:
        from ..config import find_config, read_yaml

        data = dict(read_yaml(find_config(args.config)).get("data") or {})
        cfg_name = data.pop("name", None)
        if name is None or name == cfg_name:  # the config's options only apply to its own dataset
            name = cfg_name
            options.update({k: v for k, v in data.items() if k not in ("root", "split")})
        root = root or data.get("root")
    if not name or not root:
        raise ConfigError("data check needs --dataset NAME and --root DIR (or --config with a data section)")
    for text in args.set:
        keys, value = parse_override(text)
        if keys[0] == "data":
            keys = keys[1:]
        if len(keys) != 1:
            raise ConfigError(f"--set {text!r}: give a dataset option, e.g. --set use_instance=false")
        options[keys[0]] = value
    if args.label_only:
        options["images"] = False
    return name, str(root), options


def run_data_command(args: argparse.Namespace) -> int:
    if args.data_command == "make":
        from .worlds import default_resolution, world_class, write_world

        cls = world_class(args.dataset)
        if not 1 <= args.num <= MAX_MAKE_NUM:
            raise SemsynthError(f"--num {args.num}: must be between 1 and {MAX_MAKE_NUM:,} samples")
        low, step = cls.MIN_RESOLUTION, cls.RESOLUTION_STEP
        size = default_resolution(cls) if args.size is None else args.size
        if not (low <= size <= MAX_MAKE_SIZE and size % step == 0):
            raise SemsynthError(f"--size/--resolution {size}: {args.dataset} needs a multiple of {step} between "
                                f"{low} and {MAX_MAKE_SIZE} pixels")
        if args.seed < 0:
            raise SemsynthError(f"--seed {args.seed}: must be >= 0")
        ds = cls(args.split, resolution=size, num_samples=args.num, seed=args.seed)
        out = write_world(ds, args.out)
        print(f"wrote {args.num} {args.dataset} samples at {size}x{size} to {out}")
        return 0
    if args.data_command == "check":
        from .check import check_dataset

        if args.limit is not None and args.limit < 1:
            raise ConfigError(f"--limit {args.limit}: must be >= 1")
        name, root, options = _data_spec(args)
        report = check_dataset(name, root, args.split, options, limit=args.limit,
                               decode_images=args.decode_images, workers=args.workers)
        print(report.text(args.max_files))
        return 0 if report.ok else 2
    raise SemsynthError(f"unknown data subcommand {args.data_command!r}")
