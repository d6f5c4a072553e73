"""F(2x2, 3x3) Winograd vs the direct 3x3 convolution (oneDNN) at the shapes of the SC-GAN ADE20K generator.

    python benchmarks/bench_winograd.py --threads 1
    python benchmarks/bench_winograd.py --threads 2 --no-train

Per shape: eval forward (no autograd; the kernel transform included, as the layers compute it per call) and training
forward+backward (input and kernel gradients), fastest of ``--reps`` calls, direct and Winograd alternated; the
max |difference| to the direct convolution. Prints which shapes :class:`semsynth.layers.winograd.WinogradPolicy`
takes. Writes JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from semsynth.layers.winograd import (  # noqa: E402
    WinogradConv3x3,
    cpu_takes_winograd,
    winograd_conv3x3,
    winograd_pays,
    winograd_weight,
)
from semsynth.utils.runtime import cpu_identity, cpu_model, tune_malloc  # noqa: E402

# (Cin, Cout, size): the stacked SCC convolutions (n = 3 candidates) and shortcut-free 3x3 convs of scgan-ade20k
SHAPES = [(512, 1536, 8), (512, 1536, 16), (512, 768, 32), (256, 768, 32), (256, 384, 64), (128, 384, 64),
          (128, 192, 128), (64, 192, 128), (64, 96, 256), (32, 96, 256)]



def parse_shapes(text: str) -> list[tuple[int, int, tuple[int, int]]]:
    """``CINxCOUT@HxW,...`` (``@S`` for a square map), e.g. ``1024x1024@16x32`` (pix2pixHD's residual blocks at
    256x512)."""
    shapes = []
    for item in filter(None, text.split(",")):
        try:
            ch, size = item.split("@")
            cin, cout = (int(v) for v in ch.split("x"))
            h, w = (int(v) for v in size.split("x")) if "x" in size else (int(size), int(size))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r}: expected CINxCOUT@HxW, e.g. 1024x1024@16x32") from None
        shapes.append((cin, cout, (h, w)))
    return shapes


def best(fn, reps: int) -> float:
    fn()
    t = float("inf")
    for _ in range(reps):
        s = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - s)
    return t


def setup(threads: int) -> dict:
    """Threads, the CLI's malloc settings and the seed, as both per-shape benchmarks run; the CPU's identity."""
    torch.set_num_threads(threads)
    tune_malloc()
    torch.manual_seed(0)
    return cpu_identity()


def machine(cpu: dict, threads: int, batch: int) -> str:
    """The header line of a per-shape benchmark: the CPU (name, vendor, family, model, AVX-512), torch, threads."""
    return (f"CPU {cpu_model()} ({cpu['vendor']} family {cpu['family']:#x} model {cpu['model']:#x}, avx512f "
            f"{'avx512f' in cpu['flags']}), torch {torch.__version__}, {threads} thread(s), batch {batch}, fp32")


def _rule_on(x, cin: int, cout: int) -> bool:
    """The policy's shape rule with Winograd enabled (what it takes on the CPU kind it was measured on)."""
    from semsynth.layers.winograd import WinogradPolicy

    was = WinogradPolicy.enabled
    WinogradPolicy.enabled = True
    try:
        return winograd_pays(x, cin, cout)
    finally:
        WinogradPolicy.enabled = was


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--shapes", type=parse_shapes, default=None, metavar="CINxCOUT@HxW,...",
                    help="these shapes instead of the SC-GAN ADE20K ones, e.g. 1024x1024@16x32")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    cpu = setup(args.threads)
    print(f"{machine(cpu, args.threads, args.batch)}; the default policy takes Winograd on this CPU: "
          f"{cpu_takes_winograd()}")
    rows = []
    for cin, cout, size in args.shapes or SHAPES:
        h, w_ = (size, size) if isinstance(size, int) else size
        x = torch.randn(args.batch, cin, h, w_)
        w = torch.randn(cout, cin, 3, 3) / (9 * cin) ** 0.5
        u = winograd_weight(w)
        with torch.no_grad():
            ref = F.conv2d(x, w, padding=1)
            diff = (winograd_conv3x3(x, u) - ref).abs().max().item()
            direct = best(lambda: F.conv2d(x, w, padding=1), args.reps)
            wino = best(lambda: winograd_conv3x3(x, winograd_weight(w)), args.reps)  # as the layers: per call
        row = {"cin": cin, "cout": cout, "size": [h, w_], "eval_direct_ms": direct * 1e3, "eval_winograd_ms": wino * 1e3,
               "eval_ratio": wino / direct, "max_abs_diff": diff, "max_abs_out": ref.abs().max().item(),
               "policy": winograd_pays(x, cin, cout),
               "policy_where_measured": _rule_on(x, cin, cout)}
        if not args.no_train:
            xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
            g = torch.randn_like(ref)

            def step(fn):
                return lambda: torch.autograd.grad(fn(xg, wg), (xg, wg), g)

            td = best(step(lambda a, b: F.conv2d(a, b, padding=1)), args.reps)
            tw = best(step(WinogradConv3x3.apply), args.reps)
            row.update(train_direct_ms=td * 1e3, train_winograd_ms=tw * 1e3, train_ratio=tw / td)
        rows.append(row)
        line = (f"{cin:4d} -> {cout:4d} at {h}x{w_}: eval {direct * 1e3:6.1f} -> {wino * 1e3:6.1f} ms "
                f"({wino / direct:.2f})")
        if "train_ratio" in row:
            line += f"; train {row['train_direct_ms']:6.1f} -> {row['train_winograd_ms']:6.1f} ms ({row['train_ratio']:.2f})"
        print(f"{line}; max |diff| {diff:.1e}; policy here {'winograd' if row['policy'] else 'direct'}, "
              f"on Zen 4 {'winograd' if row['policy_where_measured'] else 'direct'}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_model(), "cpu_family": cpu["family"], "threads": args.threads, "batch": args.batch,
                                         "torch": torch.__version__, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
