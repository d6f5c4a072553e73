"""The SVG's finest stage with its label conv by look-ups vs the dense stage (issue 13).

    python benchmarks/bench_svg_onehot.py [--threads 1] [--rounds 2] [--generator]

``SVGStage`` of the ``scgan-ade20k`` preset (151 classes, 256x256, batch 1, fp32): the finest stage reads the
one-hot map, and its first conv's label part is computed by look-ups with an exact weight gradient
(``semsynth.layers.onehot_conv``) instead of a dense 3x3 conv over 151 + 32 channels. "dense" sets
``SVGStage.onehot_min_work`` above any size (the path off), "lookup" is the default. Timed per layout in
interleaved rounds (order alternating), the fastest of 3 calls each: the SVG alone in eval
(``torch.inference_mode``) and one training forward+backward of it; with ``--generator`` also the whole generator,
eval forward (prepared for inference, as ``semsynth generate``) and training forward+backward. Layouts: the first
COCO-Stuff sample of ``../shared`` (ids folded into 151 classes), one blocky ADE-like layout and random pixels (all
band), as in ``bench_spade_piecewise.py``. Prints max |lookup - dense| of the outputs too.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_spade_piecewise import COCO, blocky_layout, coco_layouts, machine, noise_layout, onehot


def best_of(fn, arg, n: int = 3) -> float:
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - t)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--generator", action="store_true", help="also the whole generator, eval and training")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from semsynth.config import load_config
    from semsynth.inference_prep import prepare_for_inference
    from semsynth.models import build_generator
    from semsynth.models.generators.scgan import SVGStage

    print(f"{machine()}; torch {torch.__version__}; threads {args.threads}")
    layouts = {"blocky": blocky_layout(0), "noise": noise_layout(0)}
    if COCO.is_dir():
        layouts = {"coco": coco_layouts()[0], **layouts}
    torch.manual_seed(0)
    G = build_generator(dict(load_config("scgan-ade20k").generator))
    P = prepare_for_inference(G) if args.generator else None
    default = SVGStage.onehot_min_work
    modes = {"dense": 10**12, "lookup": default}

    def svg_train(sem):
        feats, rgb = G.svg(sem)
        (rgb.square().mean() + sum(f.square().mean() for f in feats)).backward()

    def g_train(sem):
        G(sem).square().mean().backward()

    cases = {"SVG eval": lambda sem: G.svg.eval()(sem), "SVG train fwd+bwd": svg_train}
    if args.generator:
        cases.update({"G eval (prepared)": lambda sem: P(sem), "G train fwd+bwd": g_train})
    print("layout  case                 dense s  lookup s  ratio  max|diff|")
    for name, ids in layouts.items():
        sem = onehot(ids)
        for case, fn in cases.items():
            train = "train" in case
            times = {m: [] for m in modes}
            outs = {}
            for r in range(args.rounds):
                for mode in (modes if r % 2 == 0 else reversed(list(modes))):
                    SVGStage.onehot_min_work = modes[mode]
                    G.train(train)
                    G.zero_grad(set_to_none=True)
                    if train:
                        times[mode].append(best_of(fn, sem, 2))
                    else:
                        with torch.inference_mode():
                            times[mode].append(best_of(fn, sem))
                            out = fn(sem)
                            outs[mode] = out[1] if isinstance(out, tuple) else out
            SVGStage.onehot_min_work = default
            d, lk = min(times["dense"]), min(times["lookup"])
            diff = f"{(outs['lookup'] - outs['dense']).abs().max().item():.1e}" if outs else "-"
            print(f"{name:7s} {case:20s} {d:7.3f}  {lk:8.3f}  {lk / d:5.2f}  {diff}")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
