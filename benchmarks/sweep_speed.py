"""Training speed of each cell of a sweep (images/s), from a short run of each: what the sweep will cost.

    python benchmarks/sweep_speed.py --config scgan-synthetic-faces --grid table3 --seconds 30 --threads 1

Each cell's own ``semsynth train`` command (as ``semsynth sweep`` writes it, seed 0) runs in a scratch folder, logging
every 8 images; once its first log line is written (start-up and the first steps excluded), it trains for --seconds
more and is stopped (SIGTERM). The rate is the images between the first and the last log line over their time. The
table gives the minutes a run of --images images takes at that rate (training only; evaluation not included).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from semsynth.utils.runtime import cpu_model  # noqa: E402



def measure(argv: list[str], out: Path, seconds: float) -> tuple[float, int]:
    """(images/s, images measured) of a training command run for ``seconds`` after its first log line."""
    proc = subprocess.Popen([sys.executable, "-m", "semsynth", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        deadline = None
        while proc.poll() is None:
            stats = list(out.glob("*/stats.jsonl"))
            if deadline is None and stats and stats[0].read_text().strip():
                deadline = time.time() + seconds
            if deadline is not None and time.time() >= deadline:
                break
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=600)
    rows = [json.loads(x) for x in next(out.glob("*/stats.jsonl")).read_text().splitlines() if x.strip()]
    if len(rows) < 2:
        raise SystemExit(f"{argv}: fewer than two log lines; raise --seconds")
    images = rows[-1]["images"] - rows[0]["images"]
    return images / (rows[-1]["time"] - rows[0]["time"]), images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="scgan-synthetic-faces")
    ap.add_argument("--grid", default="table3")
    ap.add_argument("--only", action="append", default=[], metavar="AXIS=V1,V2")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--seconds", type=float, default=30.0, help="measured seconds per cell (after start-up)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--images", type=int, default=4800, help="run length the minutes are given for")
    args = ap.parse_args()

    from semsynth.sweep import plan_sweep

    with tempfile.TemporaryDirectory() as tmp:
        plan = plan_sweep(args.config, args.grid, seeds=[0], overrides=args.set, only=args.only, threads=args.threads,
                          outdir=tmp, check_tools=False)
        print(f"{cpu_model()}, {os.cpu_count()} cores, load average before: {os.getloadavg()[0]:.2f}; "
              f"--threads {args.threads}, {args.seconds:g} s per cell")
        print(f"| cell | images/s | minutes per run of {args.images} images |")
        print("|---|---|---|")
        for run in plan.runs:
            out = Path(tmp) / "speed" / run.cell.id
            argv = plan.train_argv(run)
            argv[argv.index("--outdir") + 1] = str(out)
            argv += ["--set", "train.images=100000000", "--set", "train.log_every=8", "--set",
                     "train.sample_every=100000000", "--set", "train.checkpoint_every=100000000", "--set",
                     "train.tensorboard=false"]
            rate, _ = measure(argv, out, args.seconds)
            print(f"| {run.cell.id} | {rate:.2f} | {args.images / rate / 60:.1f} |", flush=True)


if __name__ == "__main__":
    main()
