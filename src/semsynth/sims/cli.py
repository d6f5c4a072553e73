"""``semsynth sims ...`` subcommands (wired into the main parser by ``semsynth.cli``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import SemsynthError

MAX_GRID = 256  # cells on a grid's short side


def add_sims_commands(parser: argparse.ArgumentParser) -> None:
    ssub = parser.add_subparsers(dest="sims_command", metavar="SUBCOMMAND")
    ssub.required = True
    ix = ssub.add_parser("index", help="build the memory bank of a dataset's training photos (one safetensors file) "
                                       "for the sims objective and generator")
    ix.add_argument("--dataset", required=True, help="a registered dataset (the one the SIMS model trains on)")
    ix.add_argument("--data-root", help="the dataset's root folder")
    ix.add_argument("--split", default="train", help="split whose photos go into the bank (default train)")
    ix.add_argument("--set", action="append", default=[], metavar="data.KEY=VALUE",
                    help="a dataset option, as in the training config's data section (repeatable)")
    ix.add_argument("--out", required=True, help="the bank file to write, e.g. banks/synthetic-faces.safetensors")
    ix.add_argument("--mask-size", type=int, default=32, help="cells on the short side of the shape grid retrieval "
                                                              "compares masks on (default 32)")
    ix.add_argument("--context-size", type=int, default=8, help="cells on the short side of the context grid "
                                                                "(default 8)")
    ix.add_argument("--min-area", type=float, default=0.002,
                    help="the smallest segment, as a fraction of the image (default 0.002)")
    ix.add_argument("--max-images", type=int, default=None, help="take only the first N photos")
    ix.add_argument("--order", metavar="CLASSES",
                    help="the depth order, back to front: every class name (or id), comma-separated (default: "
                         "learnt from the label maps)")
    ix.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for torch (default: "
                                                                           "PyTorch's)")


def run_sims_command(args: argparse.Namespace) -> int:
    if args.sims_command == "index":
        return run_index(args)
    raise SemsynthError(f"unknown sims command {args.sims_command!r}")


def run_index(args: argparse.Namespace) -> int:
    """``semsynth sims index``: build and write the memory bank; prints what it holds."""
    from ..cli import data_spec
    from ..data import build_dataset
    from .bank import build_bank
    from .ordering import parse_order

    if not 1 <= args.mask_size <= MAX_GRID:
        raise SemsynthError(f"--mask-size {args.mask_size}: must be 1..{MAX_GRID}")
    if not 1 <= args.context_size <= MAX_GRID:
        raise SemsynthError(f"--context-size {args.context_size}: must be 1..{MAX_GRID}")
    if not 0 <= args.min_area < 1:
        raise SemsynthError(f"--min-area {args.min_area}: must be a fraction of the image, 0 <= A < 1")
    if args.max_images is not None and args.max_images < 1:
        raise SemsynthError(f"--max-images {args.max_images}: must be >= 1")
    out = Path(args.out)
    if out.is_dir():
        raise SemsynthError(f"--out {out}: a folder; give the bank's file name, e.g. {out / 'bank.safetensors'}")
    spec = data_spec(args)
    dataset = build_dataset(spec)
    order = None
    if args.order:
        try:
            order = parse_order(args.order, dataset.info.class_names)
        except ValueError as e:
            raise SemsynthError(f"--order: {e}") from None
    t0 = time.time()
    bank = build_bank(dataset, data_spec=spec, mask_size=args.mask_size, context_size=args.context_size,
                      min_area=args.min_area, max_images=args.max_images, order=order, progress=sys.stderr.isatty())
    out.parent.mkdir(parents=True, exist_ok=True)
    bank.save(out)
    print(bank.describe())
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.time() - t0:.1f} s")
    return 0
