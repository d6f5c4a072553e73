"""Training throughput (images/s) of a preset on this machine, for one or more variants.

    python benchmarks/bench_train.py [--config scgan-synthetic-faces] [--images 640] [--rounds 2] \
        [--variant NAME=KEY=VALUE[,KEY=VALUE...]] ...

Each variant is a set of ``--set`` overrides (``base`` = the preset as is). Variants run in separate
processes, interleaved round by round; a run's throughput is measured after its first log interval (warm-up,
first sample grid) from its ``stats.jsonl``. The median over rounds is reported, with the ratio to the first
variant.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_once(config: str, images: int, overrides: list[str], outdir: Path, cmd_prefix: list[str]) -> float:
    log_every = max(images // 4, 8)
    args = [*cmd_prefix, "-m", "semsynth", "train", "--config", config, "--outdir", str(outdir),
            "--set", f"train.images={images}", "--set", f"train.log_every={log_every}",
            "--set", f"train.sample_every={10 * images}", "--set", f"train.checkpoint_every={10 * images}"]
    for o in overrides:
        args += ["--set", o]
    r = subprocess.run(args, capture_output=True, text=True, cwd=REPO)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{r.stderr[-3000:]}")
    run = sorted(p for p in outdir.iterdir() if p.is_dir())[-1]
    rows = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    steady = rows[1:] or rows
    imgs = steady[-1]["images"] - (rows[0]["images"] if len(rows) > 1 else 0)
    secs = steady[-1]["time"] - (rows[0]["time"] if len(rows) > 1 else 0)
    return imgs / secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="scgan-synthetic-faces")
    ap.add_argument("--images", type=int, default=640)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME=KEY=VALUE[,KEY=VALUE...]; NAME=torchrun:K runs K processes with torchrun")
    args = ap.parse_args()
    variants: dict[str, list[str]] = {"base": []}
    for v in args.variant:
        name, _, sets = v.partition("=")
        variants[name] = [s for s in sets.split(",") if s]
    results: dict[str, list[float]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, sets in variants.items():
                prefix = [sys.executable]
                extra = [s for s in sets if not s.startswith("torchrun:")]
                for s in sets:
                    if s.startswith("torchrun:"):
                        k = int(s.split(":")[1])
                        prefix = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  f"--nproc_per_node={k}"]
                out = Path(tmp) / f"{name}-{r}"
                out.mkdir()
                results[name].append(run_once(args.config, args.images, extra, out, prefix))
                print(f"round {r} {name}: {results[name][-1]:.2f} img/s", file=sys.stderr)
    base = statistics.median(results["base"])
    print(f"| variant | overrides | images/s (median of {args.rounds}) | vs base |\n|---|---|---|---|")
    for name, vals in results.items():
        med = statistics.median(vals)
        print(f"| {name} | {' '.join(variants[name]) or '(preset)'} | {med:.2f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
