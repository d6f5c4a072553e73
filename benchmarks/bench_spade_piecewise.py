"""SPADE modulation by exact algebra on piecewise-constant layouts vs the dense convs (issue 13).

    python benchmarks/bench_spade_piecewise.py [--threads 1] [--reps 3] [--generator] [--rounds 2]

Times ``semsynth.inference_prep.PreparedSPADE`` with its piecewise-constant path (per-class table in region
interiors, exact look-ups + matrix product on the band within 2 pixels of a boundary or the border) against the
same module's dense path (``piecewise = False``: shared 3x3 conv, ReLU, merged gamma/beta conv), on the four
learned-shortcut SPADE layers of the ``scgan-ade20k`` preset at their real sizes (151 label channels, 128 hidden;
512 x 32², 256 x 64², 128 x 128², 64 x 256²), batch 1, fp32, interleaved (dense, piecewise, dense, ...; the
fastest of ``--reps`` kept). Layouts, 256x256, resized per layer with nearest as the generator does:

* ``coco``: the COCO-Stuff label maps in ``../shared/data/coco_stuff_sample/train_label`` (nearest-resized to
  256x256, ids folded into 151 classes: 255 -> 0, else id % 150 + 1);
* ``blocky``: ADE-like layouts, 24 random axis-aligned rectangles (16-160 px) painted over a background class;
* ``noise``: an independent random class per pixel (the worst case: everything is boundary).

Each case also checks max |piecewise - dense|. ``--generator`` then times the whole prepared ``scgan-ade20k``
generator's eval forward at 256x256 with the path on and off, ``--rounds`` interleaved rounds per layout (first
COCO sample, one blocky, one noise). Prints the band fraction and the ratios (piecewise / dense: below 1 is faster).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
COCO = REPO.parent / "shared" / "data" / "coco_stuff_sample" / "train_label"
L = 151
LAYERS = [(512, 32), (256, 64), (128, 128), (64, 256)]


def coco_layouts(size: int = 256) -> list[torch.Tensor]:
    from PIL import Image

    out = []
    for f in sorted(COCO.glob("*.png")):
        a = np.array(Image.open(f).resize((size, size), Image.NEAREST)).astype(np.int64)
        out.append(torch.from_numpy(np.where(a == 255, 0, a % 150 + 1)))
    return out


def blocky_layout(seed: int, size: int = 256, rects: int = 24) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((size, size), int(torch.randint(0, L, (1,), generator=g)))
    for _ in range(rects):
        h, w = (int(v) for v in torch.randint(16, 161, (2,), generator=g))
        y, x = int(torch.randint(0, size - h + 1, (1,), generator=g)), int(torch.randint(0, size - w + 1, (1,),
                                                                                          generator=g))
        ids[y:y + h, x:x + w] = int(torch.randint(0, L, (1,), generator=g))
    return ids


def noise_layout(seed: int, size: int = 256) -> torch.Tensor:
    return torch.randint(0, L, (size, size), generator=torch.Generator().manual_seed(seed))


def onehot(ids: torch.Tensor) -> torch.Tensor:
    return F.one_hot(ids, L).permute(2, 0, 1).unsqueeze(0).float().contiguous()


def machine() -> str:
    model = platform.processor()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{model}, {os.cpu_count()} CPUs, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}"


def make_layer(c: int, seed: int):
    from semsynth.inference_prep import PreparedSPADE
    from semsynth.layers import SPADE

    torch.manual_seed(seed)
    s = SPADE(c, L, 128, 3, "syncbatch")
    s.param_free_norm.running_mean.normal_()
    s.param_free_norm.running_var.uniform_(0.5, 2)
    return PreparedSPADE(s.eval()).eval()


def timed(fn, *args) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


@torch.no_grad()
def bench_layers(layouts: dict[str, list[torch.Tensor]], reps: int) -> None:
    from semsynth.inference_prep import resize_nearest

    print("layout  layer          band%   dense ms  piecewise ms  ratio  max|diff|")
    for name, maps in layouts.items():
        tot = {"dense": 0.0, "piecewise": 0.0}
        for i, (c, r) in enumerate(LAYERS):
            P = make_layer(c, i)
            x = torch.randn(1, c, r, r)
            best = {"dense": [], "piecewise": []}
            band, diff = [], 0.0
            for ids in maps:
                seg = onehot(ids)
                P.piecewise = False
                ref = P(x, seg)
                P.piecewise = True
                out = P(x, seg)
                diff = max(diff, (out - ref).abs().max().item())
                band.append(_band_fraction(resize_nearest(seg, (r, r))))
                t = {"dense": [], "piecewise": []}
                for _ in range(reps):
                    for mode in ("dense", "piecewise"):
                        P.piecewise = mode == "piecewise"
                        t[mode].append(timed(P, x, seg)[0])
                for mode, times in t.items():
                    best[mode].append(min(times))
            d, p = sum(best["dense"]), sum(best["piecewise"])
            tot["dense"] += d
            tot["piecewise"] += p
            print(f"{name:7s} {c:4d} x {r:3d}^2  {100 * np.mean(band):5.1f}  {1e3 * d / len(maps):9.1f} "
                  f"{1e3 * p / len(maps):12.1f}  {p / d:5.2f}  {diff:.1e}")
        print(f"{name:7s} all four layers              {1e3 * tot['dense'] / len(maps):9.1f} "
              f"{1e3 * tot['piecewise'] / len(maps):12.1f}  {tot['piecewise'] / tot['dense']:5.2f}")


def _band_fraction(seg: torch.Tensor) -> float:
    ids = seg.argmax(1, keepdim=True).float()
    same = F.max_pool2d(ids, 5, 1) == -F.max_pool2d(-ids, 5, 1)
    return 1 - same.sum().item() / ids.numel()  # the 2-pixel border is band too


@torch.no_grad()
def bench_generator(layouts: dict[str, list[torch.Tensor]], rounds: int) -> None:
    from semsynth.config import load_config
    from semsynth.inference_prep import PreparedSPADE, prepare_for_inference
    from semsynth.models import build_generator

    G = build_generator(dict(load_config("scgan-ade20k").generator))
    G = prepare_for_inference(G, copy=False)
    spades = [m for m in G.modules() if isinstance(m, PreparedSPADE)]
    z = None  # input_mode "label": no latent
    G(onehot(next(iter(layouts.values()))[0]))  # warm-up (allocator, kernels)
    print("generator eval forward, scgan-ade20k prepared, 256x256, batch 1")
    print("layout  round  dense s  piecewise s  ratio  max|diff|")
    for name, maps in layouts.items():
        seg = onehot(maps[0])
        for r in range(rounds):
            order = ("dense", "piecewise") if r % 2 == 0 else ("piecewise", "dense")
            t, outs = {}, {}
            for mode in order:
                for m in spades:
                    m.piecewise = mode == "piecewise"
                t[mode], outs[mode] = timed(G, seg, z)
            diff = (outs["piecewise"] - outs["dense"]).abs().max().item()
            print(f"{name:7s} {r:5d}  {t['dense']:7.3f}  {t['piecewise']:11.3f}  "
                  f"{t['piecewise'] / t['dense']:5.2f}  {diff:.1e}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--generator", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-band", type=float, default=None, help="PreparedSPADE.max_band (default: the class's)")
    ap.add_argument("--layers", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.max_band is not None:
        from semsynth.inference_prep import PreparedSPADE

        PreparedSPADE.max_band = args.max_band
    print(f"{machine()}; torch {torch.__version__}; threads {args.threads}")
    layouts = {"blocky": [blocky_layout(s) for s in range(3)], "noise": [noise_layout(0)]}
    if COCO.is_dir():
        layouts = {"coco": coco_layouts(), **layouts}
    else:
        print(f"{COCO} not found: COCO layouts skipped", file=sys.stderr)
    if args.layers:
        bench_layers(layouts, args.reps)
    if args.generator:
        bench_generator(layouts, args.rounds)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
