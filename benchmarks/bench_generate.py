"""Generation latency per image on this machine (eval mode, no_grad, fp32).

    python benchmarks/bench_generate.py [--rounds 5] [--bundled src/semsynth/assets/scgan-synthetic-faces]

Generators: the bundled demo model (its trained weights at 64x64; the same architecture with random weights at
256x256, since latency depends on the architecture only) and the official ADE20K preset (random weights, batch
norm statistics warmed up first). Batch 1 and 8; median over rounds, variants interleaved; ms per image.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from semsynth import build_generator, one_hot_label  # noqa: E402
from semsynth.config import load_config  # noqa: E402
from semsynth.utils.runtime import tune_malloc  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bundled", type=Path, default=REPO / "src/semsynth/assets/scgan-synthetic-faces")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    tune_malloc()
    torch.manual_seed(0)
    from semsynth.inference import Synthesizer

    gens = {}
    bundled = Synthesizer.from_pretrained(args.bundled, "cpu")
    cfg64 = dict(bundled.config["generator"])
    gens[("bundled", 64)] = bundled.G
    cfg256 = {**cfg64, "resolution": [256, 256]}
    gens[("bundled", 256)] = build_generator(cfg256)
    ade = load_config("scgan-ade20k").generator
    for res in (64, 256):
        gens[("scgan-ade20k", res)] = build_generator({**ade, "resolution": [res, res]})
    results: dict = {k + (b,): [] for k in gens for b in (1, 8)}
    inputs = {}
    for (name, res), G in gens.items():
        c = G.in_channels
        for b in (1, 8):
            inputs[(name, res, b)] = one_hot_label(torch.randint(0, c, (b, res, res)), c)
        if name != "bundled" or res != 64:  # random weights: warm the batch-norm statistics up first
            G.train()
            with torch.no_grad():
                for _ in range(3):
                    G(inputs[(name, res, 8)])
        G.eval()
    z_dim = cfg64.get("z_dim", 0)
    for r in range(args.rounds + 1):  # the first round warms up
        for key in results:
            name, res, b = key
            G = gens[(name, res)]
            x = inputs[key]
            z = torch.randn(b, z_dim) if G.input_mode == "noise" else None
            with torch.no_grad():
                t0 = time.perf_counter()
                G(x, z)
                dt = time.perf_counter() - t0
            if r > 0:
                results[key].append(dt / b * 1000)
    rows = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.rounds} rounds, "
          f"ms per image\n| generator | parameters | resolution | batch 1 | batch 8 |\n|---|---|---|---|---|")
    for (name, res), G in gens.items():
        n = sum(p.numel() for p in G.parameters())
        m1 = statistics.median(results[(name, res, 1)])
        m8 = statistics.median(results[(name, res, 8)])
        rows.append({"generator": name, "resolution": res, "parameters": n, "ms_batch1": round(m1, 1),
                     "ms_batch8": round(m8, 1)})
        print(f"| {name} | {n:,} | {res}x{res} | {m1:.1f} | {m8:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
