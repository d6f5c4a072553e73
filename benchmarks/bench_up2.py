"""Nearest 2x up-sampling on the CPU: ``F.interpolate`` against ``semsynth.layers.resize.up2_nearest``.

    python benchmarks/bench_up2.py [--threads 1] [--rounds 15]

At the shapes SC-GAN's generator up-samples (ADE20K preset, 256x256, batch 1) and a few more: the forward of
each (the fastest of ``--rounds`` calls, after one untimed call), and the backward of each (the interpolation's
``upsample_nearest2d_backward`` against up2_nearest's two strided sums), in plain (NCHW) layout. Both in one
process, alternated shape by shape: compare the ratios, not the absolute times.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from semsynth.layers.resize import _backward, up2_nearest  # noqa: E402
from semsynth.utils.runtime import cpu_model  # noqa: E402

SHAPES = [(1, 512, 8, 8), (1, 512, 16, 16), (1, 256, 32, 32), (1, 128, 64, 64), (1, 64, 128, 128),
          (1, 32, 128, 128), (4, 64, 128, 128)]


def fastest(fn, rounds: int) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU {cpu_model()}, torch {torch.__version__}, {args.threads} thread(s), fastest of {args.rounds}")
    print("| shape | forward interpolate ms | up2_nearest ms | ratio | backward aten ms | up2_nearest ms | ratio |")
    print("|---|---|---|---|---|---|---|")
    for shape in SHAPES:
        x = torch.randn(shape)
        g = torch.randn(shape[0], shape[1], 2 * shape[2], 2 * shape[3])
        assert torch.equal(up2_nearest(x), F.interpolate(x, scale_factor=2.0, mode="nearest"))
        fi = fastest(lambda: F.interpolate(x, scale_factor=2.0, mode="nearest"), args.rounds)
        fo = fastest(lambda: up2_nearest(x), args.rounds)
        bi = fastest(lambda: torch.ops.aten.upsample_nearest2d_backward(g, list(g.shape[2:]), list(shape), 2.0, 2.0),
                     args.rounds)
        bo = fastest(lambda: _backward(g), args.rounds)
        print(f"| {'x'.join(map(str, shape))} | {fi:.2f} | {fo:.2f} | {fo / fi:.2f} | {bi:.2f} | {bo:.2f} | "
              f"{bo / bi:.2f} |")


if __name__ == "__main__":
    main()
