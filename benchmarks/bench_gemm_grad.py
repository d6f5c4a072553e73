"""The backward of a 3x3 convolution by matrix products (``semsynth.layers.gemm_grad``) vs oneDNN's, per shape.

    python benchmarks/bench_gemm_grad.py --threads 1
    python benchmarks/bench_gemm_grad.py --threads 1 --shapes 1024x1024@18x34/0,512x1536@16

Per shape (``CINxCOUT@HxW``, ``/0`` for no zero padding: the conv after pix2pixHD's reflection pad): the kernel
gradient by the direct convolution's own backward (oneDNN) and by im2col and one matrix product, and a whole
forward+backward by ``F.conv2d`` and by ``GemmGradConv2d`` (the same forward and input gradient), alternated, fastest of ``--reps`` calls per round and
``--rounds`` rounds; the max |difference| of the gradients. Prints which shapes
:class:`semsynth.layers.gemm_grad.GemmGradPolicy` takes. Writes JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_winograd import best, machine, setup

from semsynth.layers.gemm_grad import (
    GemmGradConv2d,
    GemmGradPolicy,
    cpu_takes_gemm_grad,
    gemm_conv_backward,
    gemm_grad_pays,
)
from semsynth.utils.runtime import cpu_model

# SC-GAN ADE20K's stacked SC convs (n = 3) on small maps, its 663 -> 256 SVG conv, pix2pixHD's 1024-channel
# residual blocks at 256x512 (reflection-padded 16x32) and 128x256, and larger maps where nothing is won
SHAPES = "512x1536@8,512x1536@16,663x256@16,1024x1024@18x34/0,1024x1024@10x18/0,1024x1024@16x32,512x768@32,512x512@32x64"


def parse_shapes(text: str) -> list[tuple[int, int, int, int, int]]:
    """``CINxCOUT@HxW[/PAD],...`` (``@S`` for a square map, padding 1 unless ``/0``) -> (cin, cout, h, w, pad)."""
    shapes = []
    for item in filter(None, text.split(",")):
        try:
            spec, _, pad = item.partition("/")
            ch, size = spec.split("@")
            cin, cout = (int(v) for v in ch.split("x"))
            h, w = (int(v) for v in size.split("x")) if "x" in size else (int(size), int(size))
            pad = int(pad) if pad else 1
            if pad not in (0, 1) or min(cin, cout, h, w) < 1 or (pad == 0 and min(h, w) < 3):
                raise ValueError
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{item!r}: expected CINxCOUT@HxW with an optional /0 (no padding; the map at least 3x3), e.g. "
                "1024x1024@18x34/0") from None
        shapes.append((cin, cout, h, w, pad))
    return shapes


def _onednn_backward(g, x, w, pad: int, need_x: bool, need_w: bool):
    return torch.ops.aten.convolution_backward(g, x, w, None, [1, 1], [pad] * 2, [1, 1], False, [0, 0], 1,
                                               [need_x, need_w, False])


def _cases(x, w, g, pad: int) -> dict:
    """name -> (oneDNN's call, the matrix-product call)."""
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
    return {
        "dw": (lambda: _onednn_backward(g, x, w, pad, False, True),
               lambda: gemm_conv_backward(g, x, w, pad, False, True)),
        "train": (lambda: torch.autograd.grad(F.conv2d(xg, wg, None, 1, pad), (xg, wg), g),
                  lambda: torch.autograd.grad(GemmGradConv2d.apply(xg, wg, None, pad), (xg, wg), g)),
    }


def _rule(x, cin: int, cout: int) -> bool:
    """The policy's shape rule with it enabled (what it takes on the CPU kind it was measured on)."""
    was = GemmGradPolicy.enabled
    GemmGradPolicy.enabled = True
    try:
        return gemm_grad_pays(x, cin, cout, True)
    finally:
        GemmGradPolicy.enabled = was


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--shapes", type=parse_shapes, default=parse_shapes(SHAPES), metavar="CINxCOUT@HxW[/0],...")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    for name in ("threads", "reps", "rounds", "batch"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    cpu = setup(args.threads)
    print(f"{machine(cpu, args.threads, args.batch)}; the default policy takes it on this CPU: "
          f"{cpu_takes_gemm_grad()}")
    rows = []
    for cin, cout, h, w_, pad in args.shapes:
        x = torch.randn(args.batch, cin, h, w_)
        w = torch.randn(cout, cin, 3, 3) / (9 * cin) ** 0.5
        g = torch.randn(args.batch, cout, h + 2 * pad - 2, w_ + 2 * pad - 2)

        cases = _cases(x, w, g, pad)
        times = {k: ([], []) for k in cases}
        for r in range(args.rounds):
            for k, (a, b) in cases.items():
                order = (0, 1) if r % 2 == 0 else (1, 0)
                for i in order:
                    times[k][i].append(best((a, b)[i], args.reps))
        ref = _onednn_backward(g, x, w, pad, True, True)
        ours = gemm_conv_backward(g, x, w, pad)
        diff = max((a - b).abs().max().item() / b.abs().max().item() for a, b in zip(ours, ref[:2]))
        row = {"cin": cin, "cout": cout, "size": [h, w_], "padding": pad, "max_rel_diff": diff,
               "policy": gemm_grad_pays(x, cin, cout, True), "rule": _rule(x, cin, cout)}
        line = f"{cin:4d} -> {cout:4d} at {h}x{w_} pad {pad}:"
        for k, (a, b) in times.items():
            ta, tb = min(a), min(b)
            row.update({f"{k}_onednn_ms": ta * 1e3, f"{k}_gemm_ms": tb * 1e3, f"{k}_ratio": tb / ta})
            line += f" {k} {ta * 1e3:6.1f} -> {tb * 1e3:6.1f} ms ({tb / ta:.2f});"
        rows.append(row)
        print(f"{line} max rel diff {diff:.1e}; the rule {'takes' if row['rule'] else 'leaves'} it, here "
              f"{'taken' if row['policy'] else 'not taken'}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_model(), "cpu_family": cpu["family"], "threads": args.threads,
                                         "batch": args.batch, "torch": torch.__version__, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
