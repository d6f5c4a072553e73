"""SCC speed and memory: the fast path against Alg. 1's per-candidate loop and against the floor.

    python benchmarks/bench_scc.py [--batch 1] [--rounds 7] [--spectral both|on|off] [--json out.json]

Variants, each with n = 3 candidates:

* ``fast``  — ``SpatiallyConditionalConv2d``: one convolution with n*Cout outputs (the stacked candidates, no
  copy), 1/sigma folded into the routing, a fused multiply-add mix with a hand-written backward;
* ``loop``  — supplementary Alg. 1: one convolution per candidate (kernel / sigma), stack, multiply, sum;
* ``floor`` — a single plain ``nn.Conv2d`` with n*Cout outputs and nothing else: the FLOPs SCC cannot avoid.

With ``--spectral on`` (SC-GAN's setting) fast and loop apply spectral norm per candidate (one power
iteration per training forward) and the floor is the plain conv under PyTorch's spectral-norm
parametrisation; with ``off`` nobody normalises.

Timings interleave the variants round by round and report medians; the ratios (fast/floor, loop/floor) come
from the same run, so machine noise affects them less than the absolute times. "saved" is the memory that
autograd keeps for the backward pass (unique storages of the saved tensors), measured exactly with
``torch.autograd.graph.saved_tensors_hooks``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from semsynth.layers import SpatiallyConditionalConv2d  # noqa: E402
from semsynth.utils.runtime import tune_malloc  # noqa: E402

SHAPES = [(512, 16), (256, 64), (64, 256)]  # (Cin = Cout, H = W)
N = 3


def make_variants(c: int, spectral: bool):
    scc = SpatiallyConditionalConv2d(c, c, N, 3, spectral=spectral).train()
    floor = torch.nn.Conv2d(c, N * c, 3, padding=1, bias=False)
    if spectral:
        floor = torch.nn.utils.parametrizations.spectral_norm(floor)

    def fast(x, r):
        return scc(x, r)

    def loop(x, r):
        kernels = scc.candidate_weights()  # k_i / sigma_i
        outs = [F.conv2d(x, kernels[i], None, 1, 1).unsqueeze(1) for i in range(N)]
        return (torch.cat(outs, 1) * r.unsqueeze(2)).sum(1)

    def plain(x, r):
        return floor(x)

    params = {"fast": list(scc.parameters()), "loop": list(scc.parameters()), "floor": list(floor.parameters())}
    return {"fast": fast, "loop": loop, "floor": plain}, params


def saved_bytes(fn, x, r) -> int:
    storages: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(x, r)
    del y
    return sum(storages.values())


def run(batch: int, rounds: int, spectral: bool) -> list[dict]:
    results = []
    for c, s in SHAPES:
        variants, params = make_variants(c, spectral)
        x = torch.randn(batch, c, s, s, requires_grad=True)
        r = torch.softmax(torch.randn(batch, N, s, s), 1).requires_grad_(True)
        times = {(k, mode): [] for k in variants for mode in ("fwd", "fwd+bwd")}
        for name, fn in variants.items():  # warm-up
            fn(x, r).sum().backward()
        for _ in range(rounds):
            for name, fn in variants.items():
                with torch.no_grad():
                    t0 = time.perf_counter()
                    fn(x, r)
                    times[(name, "fwd")].append(time.perf_counter() - t0)
                for p in params[name] + [x, r]:
                    p.grad = None
                t0 = time.perf_counter()
                fn(x, r).sum().backward()
                times[(name, "fwd+bwd")].append(time.perf_counter() - t0)
        row = {"channels": c, "size": s, "batch": batch, "n": N, "spectral": spectral}
        for (name, mode), ts in times.items():
            row[f"{name}_{mode}_ms"] = round(statistics.median(ts) * 1000, 2)
        for mode in ("fwd", "fwd+bwd"):
            floor_t = row[f"floor_{mode}_ms"]
            row[f"fast/floor_{mode}"] = round(row[f"fast_{mode}_ms"] / floor_t, 3)
            row[f"loop/floor_{mode}"] = round(row[f"loop_{mode}_ms"] / floor_t, 3)
            row[f"fast/loop_{mode}"] = round(row[f"fast_{mode}_ms"] / row[f"loop_{mode}_ms"], 3)
        for name, fn in variants.items():
            row[f"{name}_saved_MiB"] = round(saved_bytes(fn, x, r) / 2**20, 1)
        results.append(row)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--spectral", choices=["both", "on", "off"], default="both")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    tune_malloc()
    torch.manual_seed(0)
    results = []
    for sn in {"both": (False, True), "on": (True,), "off": (False,)}[args.spectral]:
        results += run(args.batch, args.rounds, sn)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, n={N}, "
          f"median of {args.rounds} interleaved rounds")
    head = ("SN", "C x HxW", "mode", "floor ms", "fast ms", "loop ms", "fast/floor", "loop/floor", "fast/loop")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in results:
        for mode in ("fwd", "fwd+bwd"):
            print(f"| {'on' if r['spectral'] else 'off'} | {r['channels']} x {r['size']}x{r['size']} | {mode} | "
                  f"{r[f'floor_{mode}_ms']} | "
                  f"{r[f'fast_{mode}_ms']} | {r[f'loop_{mode}_ms']} | {r[f'fast/floor_{mode}']} | "
                  f"{r[f'loop/floor_{mode}']} | {r[f'fast/loop_{mode}']} |")
    print("\nmemory saved for backward (MiB): fast / loop / floor")
    for r in results:
        print(f"  SN {'on' if r['spectral'] else 'off'}, {r['channels']} x {r['size']}x{r['size']}: {r['fast_saved_MiB']} / {r['loop_saved_MiB']} / "
              f"{r['floor_saved_MiB']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
