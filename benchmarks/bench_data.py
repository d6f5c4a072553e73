"""Data-loading throughput (samples/s) at 256x256 with 0, 1 and 2 DataLoader workers.

Three sources:

* ``coco-stuff``: the 13 real COCO-Stuff samples in ``<repo>/../shared/data/coco_stuff_sample`` (JPEG images,
  label and instance PNGs; resize_and_crop 286 -> 256, flip, instance maps on), cycled;
* ``synthetic-faces``: the built-in procedural faces, rendered on the fly at 256x256;
* ``custom``: the same faces written to disk by ``semsynth data make`` (PNG) and read back as a custom folder.

Each setting loads ``--samples`` samples in batches of ``--batch-size`` (default 8, with the training
collate); the clock starts after the first batch, so worker start-up is not counted. Run::

    python benchmarks/bench_data.py            # about 1-2 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler

from semsynth.data import build_dataset
from semsynth.data.synthetic_faces import write_synthetic_faces

REPO = Path(__file__).resolve().parents[1]
COCO_SAMPLE = REPO.parent / "shared" / "data" / "coco_stuff_sample"


def collate(samples: list[dict]) -> dict:
    out = {"name": [s["name"] for s in samples]}
    for k in ("image", "label", "instance"):
        if k in samples[0]:
            out[k] = torch.stack([s[k] for s in samples])
    return out


def throughput(ds, workers: int, samples: int, batch_size: int) -> float:
    """Samples per second after the first batch."""
    g = torch.Generator().manual_seed(0)
    sampler = RandomSampler(ds, replacement=True, num_samples=samples + batch_size, generator=g)
    loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate,
                        drop_last=True)
    it = iter(loader)
    next(it)  # warm-up: worker start, first decode
    t0, n = time.perf_counter(), 0
    for batch in it:
        n += batch["label"].shape[0]
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=256, help="samples timed per setting (default 256)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads of the main process (default: torch's choice); 1 avoids OpenMP "
                         "oversubscription when the cores are busy (collate of a batch slows down 10-300x then)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    sources = {}
    if (COCO_SAMPLE / "train_label").is_dir():
        sources["coco-stuff (13 real samples, 286->256 crop, + instance)"] = build_dataset(
            {"name": "coco-stuff", "root": str(COCO_SAMPLE), "load_size": 286, "crop_size": 256})
    else:
        print(f"skipping coco-stuff: {COCO_SAMPLE} not found", file=sys.stderr)
    sources["synthetic-faces (rendered on the fly, 256)"] = build_dataset(
        {"name": "synthetic-faces", "resolution": 256, "num_samples": 10000})
    tmp = tempfile.TemporaryDirectory()
    folder = write_synthetic_faces(Path(tmp.name) / "faces", 64, size=256)
    sources["custom (synthetic-faces PNGs on disk, 256)"] = build_dataset(
        {"name": "custom", "root": str(folder), "preprocess": "none"})

    rows = []
    print(f"# data loading, batch {args.batch_size}, {args.samples} samples per setting, torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs, {torch.get_num_threads()} intra-op threads, load average "
          f"{os.getloadavg()[0]:.1f}")
    print("| source | " + " | ".join(f"{w} workers" for w in args.workers) + " |")
    print("|---|" + "---:|" * len(args.workers))
    for name, ds in sources.items():
        rates = [throughput(ds, w, args.samples, args.batch_size) for w in args.workers]
        rows.append({"source": name, **{f"workers_{w}": round(r, 1) for w, r in zip(args.workers, rates, strict=True)}})
        print(f"| {name} | " + " | ".join(f"{r:.1f}" for r in rates) + " |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
