"""The row-by-row comparison on synthetic faces (docs/models.md): every model's synthetic-faces preset trained at
one budget of images, then scored with the bundled evaluator (mIoU, FID/KID under its features).

    python benchmarks/compare_faces.py --images 24000 --jobs 2 --outdir runs/compare [--models spade,oasis]

Each row is an ordinary run directory (``semsynth train``, resumable: a re-started comparison resumes unfinished
runs and skips finished ones) and an ``evaluate`` folder; the table printed at the end has the command of each row.
SIMS first gets its memory bank (``semsynth sims index``) of the same 4,000 training faces.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MODELS = ["scgan", "spade", "pix2pixhd", "ccfpse", "oasis", "crn", "sims"]
ASSETS = "src/semsynth/assets/segmenter-synthetic-faces"


def train_command(model: str, images: int, outdir: Path, bank: Path) -> list[str]:
    cmd = ["semsynth", "train", "--config", f"{model}-synthetic-faces", "--outdir", str(outdir), "--threads", "1",
           "--set", f"train.images={images}", "--set", "data.num_samples=4000", "--set", "train.ema=true",
           "--set", "train.ema_halflife_images=10000", "--set", "train.ema_rampup=0.05",
           "--set", f"train.log_every={images // 10}", "--set", f"train.sample_every={images // 4}",
           "--set", f"train.checkpoint_every={images // 10}"]
    if model == "sims":
        cmd += ["--set", f"loss.bank={bank}"]
    return cmd


def run_dir_of(model: str, outdir: Path) -> Path | None:
    runs = sorted(outdir.glob(f"*-{model}-synthetic-faces"))
    return runs[-1] if runs else None


def one(model: str, images: int, outdir: Path, bank: Path, num: int) -> dict:
    run = run_dir_of(model, outdir)
    if run is None or not (run / "DONE").is_file():
        cmd = train_command(model, images, outdir, bank)
        if run is not None and list((run / "checkpoints").glob("*.pt")):
            cmd = ["semsynth", "train", "--resume", str(run), "--threads", "1"]
        with open(outdir / f"{model}.log", "a") as log:
            subprocess.run([sys.executable, "-m", *cmd], stdout=log, stderr=subprocess.STDOUT, check=True)
        run = run_dir_of(model, outdir)
    ev = outdir / f"eval-{model}"
    if not (ev / "metrics.json").is_file():
        cmd = ["semsynth", "evaluate", "--model", str(run / "model"), "--metrics", "miou,fid,kid", "--segmenter",
               ASSETS, "--feature-extractor", "segmenter", "--num", str(num), "--out", str(ev), "--threads", "1",
               "--no-images"]
        with open(outdir / f"{model}.log", "a") as log:
            subprocess.run([sys.executable, "-m", *cmd], stdout=log, stderr=subprocess.STDOUT, check=True)
    metrics = json.loads((ev / "metrics.json").read_text())["metrics"]
    stats = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    seconds = stats[-1]["time"] if stats else float("nan")
    return {"model": model, "run": str(run), "metrics": metrics, "train_seconds": seconds,
            "command": " ".join(train_command(model, images, outdir, bank))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=24000)
    ap.add_argument("--jobs", type=int, default=2, help="runs at once (each with one thread)")
    ap.add_argument("--outdir", default="runs/compare")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--num", type=int, default=1000, help="validation layouts scored")
    args = ap.parse_args()
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    models = [m for m in args.models.split(",") if m]
    bank = outdir / "sims-faces-4000.safetensors"
    if "sims" in models and not bank.is_file():
        subprocess.run([sys.executable, "-m", "semsynth", "sims", "index", "--dataset", "synthetic-faces", "--set",
                        "data.num_samples=4000", "--set", "data.resolution=64", "--out", str(bank), "--threads",
                        "1"], check=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(lambda m: one(m, args.images, outdir, bank, args.num), models))
    (outdir / "table.json").write_text(json.dumps(rows, indent=2))
    print("| model | mIoU | pixel acc. | FID (seg. features) | KID | train time | command |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["metrics"]
        print(f"| {r['model']} | {m.get('miou', float('nan')):.3f} | {m.get('pixel_accuracy', float('nan')):.4f} | "
              f"{m.get('fid_segmenter', float('nan')):.3f} | {m.get('kid_segmenter', float('nan')):.4f} | "
              f"{r['train_seconds'] / 60:.0f} min | `{r['command']}` |")


if __name__ == "__main__":
    main()
