"""Built-in worlds: milliseconds to make one sample, class frequencies, and the contact sheet of docs/data.md.

For each world (``synthetic-faces``, ``synthetic-landscapes``) and resolution, ``--samples`` samples are made
through ``dataset[i]`` (the tensors a training loader gets) in ``--rounds`` interleaved rounds, with one torch
thread; the table gives the median round's milliseconds per sample, as wall time and as the process's CPU time
(CPU time is less disturbed by other jobs on a shared machine). Then the class frequencies of the first
``--freq-samples`` landscapes at 128x128: the share of scenes that hold each class, its share of all pixels.
``--sheet PATH`` also writes the contact sheet of docs/data.md (the first 32 training scenes at 128x128, each
label map above its picture, quantised to 256 colours). Run::

    python benchmarks/bench_worlds.py                # about 1 minute on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from semsynth.data.worlds import builtin_worlds, class_frequencies
from semsynth.utils.runtime import cpu_model



def contact_sheet(path: Path, num: int = 32, resolution: int = 128, cols: int = 8) -> int:
    """The first ``num`` training landscapes (seed 0), label map above picture; returns the file's bytes."""
    from PIL import Image

    from semsynth.data.synthetic_landscapes import PALETTE, SyntheticLandscapes

    ds = SyntheticLandscapes("train", resolution=resolution, num_samples=num, seed=0)
    pal = np.array(PALETTE, np.uint8)
    rows = (num + cols - 1) // cols
    sheet = Image.new("RGB", (cols * resolution, rows * 2 * resolution), "white")
    for i in range(num):
        image, label = ds.sample_arrays(i)
        r, c = divmod(i, cols)
        sheet.paste(Image.fromarray(pal[label]), (c * resolution, 2 * r * resolution))
        sheet.paste(Image.fromarray(image), (c * resolution, (2 * r + 1) * resolution))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path.stat().st_size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=30, help="samples per round and setting (default 30)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds, median reported (default 5)")
    ap.add_argument("--resolutions", default="64,128,256", help="comma-separated (default 64,128,256)")
    ap.add_argument("--freq-samples", type=int, default=500, help="landscapes counted for class frequencies")
    ap.add_argument("--sheet", type=Path, default=None, help="also write the contact sheet PNG here")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    sizes = [int(r) for r in args.resolutions.split(",")]
    worlds = builtin_worlds()
    sets = {(name, r): cls("train", resolution=r, num_samples=args.samples * args.rounds, seed=0)
            for name, cls in worlds.items() for r in sizes}
    for ds in sets.values():
        ds[0]  # warm-up: texture tiles, imports
    wall: dict = {k: [] for k in sets}
    cpu: dict = {k: [] for k in sets}
    for rnd in range(args.rounds):
        for key, ds in sets.items():
            idx = range(rnd * args.samples, (rnd + 1) * args.samples)
            t0, c0 = time.perf_counter(), time.process_time()
            for i in idx:
                ds[i]
            wall[key].append((time.perf_counter() - t0) / args.samples * 1000)
            cpu[key].append((time.process_time() - c0) / args.samples * 1000)
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, numpy {np.__version__}; one torch thread")
    print(f"ms per sample (dataset[i]), median of {args.rounds} rounds of {args.samples}: wall / CPU time")
    print("| world | " + " | ".join(f"{r}x{r}" for r in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    results: dict = {"cpu": cpu_model(), "ms": {}, "frequencies": {}}
    for name in worlds:
        cells = []
        for r in sizes:
            w, c = statistics.median(wall[(name, r)]), statistics.median(cpu[(name, r)])
            results["ms"][f"{name}@{r}"] = {"wall": w, "cpu": c}
            cells.append(f"{w:.1f} / {c:.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    land = worlds["synthetic-landscapes"]("train", resolution=128, num_samples=args.freq_samples, seed=0)
    freq = class_frequencies(land)
    results["frequencies"] = freq
    print(f"\nsynthetic-landscapes, first {args.freq_samples} training scenes at 128x128:")
    print("| class | scenes holding it | share of pixels |")
    print("|---|---:|---:|")
    for cls_name, (scenes, pixels) in freq.items():
        print(f"| {cls_name} | {scenes:.1%} | {pixels:.2%} |")
    if args.sheet is not None:
        print(f"\ncontact sheet: {args.sheet} ({contact_sheet(args.sheet) / 1024:.0f} KB)")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
