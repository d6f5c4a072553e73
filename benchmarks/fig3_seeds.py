"""SC-GAN paper Fig. 3 over several models (seeds, training lengths): the cosine similarity of the per-class mean
semantic vectors for the eye pair, the lip pair and skin/nose (and the other pairs `semsynth analyze` reports),
as mean ± sample standard deviation over the models of each group.

    python benchmarks/fig3_seeds.py --group "4.8k images=runs/sweeps/table3-scgan-synthetic-faces/conv=scc_norm=scn/seed-*/model" --out fig3.json

Each ``--group NAME=GLOB`` is one row: the exported SC-GAN models its glob matches (run directories' ``model/``
folders). Every model is analysed on the same 100 validation layouts (``semsynth analyze semantic-vectors``,
finest scale, SVG features).
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
import tempfile
from pathlib import Path

from semsynth.analysis import analyze_semantic_vectors

PAIRS = ["l_eye/r_eye", "u_lip/l_lip", "skin/nose", "l_brow/r_brow", "l_ear/r_ear", "skin/hair"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--group", action="append", required=True, help="NAME=GLOB of model directories (repeatable)")
    ap.add_argument("--num", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, help="write every model's pairs and the summary as JSON")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    rows, every = [], {}
    for spec in args.group:
        name, _, pattern = spec.partition("=")
        models = sorted(glob.glob(pattern))
        if not models:
            raise SystemExit(f"--group {spec!r}: no model directory matches {pattern!r}")
        values: dict[str, list[float]] = {p: [] for p in PAIRS}
        for m in models:
            with tempfile.TemporaryDirectory() as tmp:
                pairs = analyze_semantic_vectors(m, None, tmp, num_images=args.num, device="cpu")["pairs"]
            every[m] = pairs
            for p in PAIRS:
                if p in pairs:
                    values[p].append(pairs[p]["cosine"])
        rows.append((name, len(models), values))
    print("| models | n | " + " | ".join(PAIRS) + " |")
    print("|---|---|" + "---|" * len(PAIRS))
    summary = {}
    for name, n, values in rows:
        cells = []
        for p in PAIRS:
            v = values[p]
            mean = statistics.fmean(v) if v else float("nan")
            std = statistics.stdev(v) if len(v) > 1 else 0.0
            summary.setdefault(name, {})[p] = {"mean": mean, "std": std, "values": v}
            cells.append(f"{mean:.4f} ± {std:.4f}" if len(v) > 1 else f"{mean:.4f}")
        print(f"| {name} | {n} | " + " | ".join(cells) + " |")
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "models": every}, indent=2))


if __name__ == "__main__":
    main()
