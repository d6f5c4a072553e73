"""Peak CPU memory of one SC-GAN training step (G step + D step) at a preset's full size.

    python benchmarks/bench_memory.py [--config scgan-ade20k] [--batch 1] [--precision fp32|bf16] [--recompute]

Builds the preset's G, D (and encoder), a VGG19 of the same size as the perceptual loss (random weights: the
memory is the same), both Adam optimisers, and runs two training steps on a random layout and image at the
preset's resolution, in a fresh process each time. Reported: resident memory after building everything, and
the peak resident memory (``ru_maxrss``) during the first step (which also allocates Adam's state) and during
the second, and the second step's time; then a third step under ``semsynth.utils.memory.TensorPeak``: the exact
peak of the tensors the step creates and holds at once (allocator-independent, unlike the resident peak; weights
and Adam's state from the earlier steps are not counted, the gradients are). ``--recompute``: G's residual blocks recomputed in backward
(``train.recompute``). ``--allocator tcmalloc|jemalloc``: the measuring process runs on that malloc (``LD_PRELOAD``,
as ``semsynth train --allocator`` does it); default glibc, tuned as the CLI tunes it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(config: str, batch: int, precision: str, recompute: bool = False) -> dict:
    sys.path.insert(0, str(REPO / "src"))
    import torch

    from semsynth.config import load_config
    from semsynth.layers import one_hot_label
    from semsynth.models import build_discriminator, build_encoder, build_generator, count_parameters
    from semsynth.objectives import build_objective
    from semsynth.utils.allocator import active_allocator
    from semsynth.utils.runtime import tune_malloc

    tune_malloc()
    torch.manual_seed(0)
    base = rss_mib()
    cfg = load_config(config)
    cfg.optim.resolve()
    G = build_generator(cfg.generator).train()
    if recompute:
        from semsynth.layers.recompute import enable_recompute

        enable_recompute(G)
    D = build_discriminator(cfg.discriminator).train()
    E = build_encoder(cfg.encoder).train() if cfg.encoder else None
    params_g = list(G.parameters()) + (list(E.parameters()) if E is not None else [])
    opt_G = torch.optim.Adam(params_g, lr=cfg.optim.lr_g, betas=(0.0, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.optim.lr_d, betas=(0.0, 0.999))
    obj = build_objective(cfg.loss).prepare("cpu", pretrained=False)  # random VGG weights: memory is the same
    h, w = G.resolution
    c = cfg.generator["num_classes"]
    sem = one_hot_label(torch.randint(0, c, (batch, h, w)), c)
    if G.use_instance:
        sem = torch.cat([sem, torch.zeros(batch, 1, h, w)], 1)
    real = torch.rand(batch, 3, h, w) * 2 - 1
    dtype = torch.bfloat16 if precision == "bf16" else None
    built = rss_mib()

    def step():
        ctx = torch.autocast("cpu", dtype=dtype) if dtype else torch.autocast("cpu", enabled=False)
        D.requires_grad_(False)
        opt_G.zero_grad(set_to_none=True)
        with ctx:
            loss, _, _ = obj.generator_loss(G, D, E, sem, real)
        loss.backward()
        opt_G.step()
        D.requires_grad_(True)
        opt_D.zero_grad(set_to_none=True)
        with ctx:
            fake = obj.generate(G, E, sem, real)
            d_loss, _ = obj.discriminator_loss(D, sem, real, fake)
        d_loss.backward()
        opt_D.step()

    step()
    first = peak_mib()
    t = time.perf_counter()
    step()
    seconds = time.perf_counter() - t
    second = peak_mib()
    from semsynth.utils.memory import TensorPeak

    with TensorPeak() as tp:  # a third step, its tensors counted exactly (slow: every operator goes through Python)
        step()
    return {"config": config, "batch": batch, "recompute": recompute, "allocator": active_allocator(),
            "threads": torch.get_num_threads(), "second_step_s": round(seconds, 2), "resolution": [h, w], "precision": precision,
            "G_params": count_parameters(G), "D_params": count_parameters(D),
            "rss_after_import_MiB": round(base), "rss_after_build_MiB": round(built),
            "peak_first_step_MiB": round(first), "peak_second_step_MiB": round(second),
            "step_peak_above_build_MiB": round(second - built), "step_peak_tensors_MiB": round(tp.peak_mib),
            "step_peak_tensors_at": tp.peak_op}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="scgan-ade20k")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--recompute", action="store_true", help="train.recompute: G's blocks recomputed in backward")
    ap.add_argument("--allocator", choices=["glibc", "tcmalloc", "jemalloc"], default="glibc",
                    help="malloc of the measuring process (tcmalloc/jemalloc by LD_PRELOAD; default glibc, tuned)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.config, args.batch, args.precision, args.recompute)))
        return
    env = dict(os.environ)
    if args.allocator != "glibc":
        sys.path.insert(0, str(REPO / "src"))
        from semsynth.errors import ConfigError
        from semsynth.utils.allocator import find_preload_allocator, with_preload

        try:
            env = with_preload(env, find_preload_allocator(args.allocator))
        except ConfigError as e:
            ap.error(str(e))
    r = subprocess.run([sys.executable, __file__, "--child", "--config", args.config, "--batch", str(args.batch),
                        "--precision", args.precision] + (["--recompute"] if args.recompute else []),
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(r.stderr)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    for k, v in res.items():
        print(f"{k:28s} {v}")


if __name__ == "__main__":
    main()
