"""Generators on a CUDA GPU: time and memory per batch at each preset's setting, and SC-GAN side by side with the
official code on the same GPU.

    python benchmarks/bench_cuda.py [--presets scgan-ade20k,spade-ade20k,...] [--batch 8] [--iters 10] \
        [--rounds 3] [--official /tmp/scgan_official] [--json out.json]

For each preset the generator is built at the preset's setting (its classes and resolution, random
initialisation) and fed random ADE-like layouts (16-pixel blocks of random classes, 3 % single-pixel noise). Modes,
each timed with CUDA events over ``--iters`` calls after two untimed ones, the median over ``--rounds`` rounds (the
modes interleaved): ``eval`` (``no_grad``), ``prepared`` (after ``prepare_for_inference``, as ``semsynth generate``
runs it), ``eval-bf16`` (bf16 autocast), ``train`` (forward + backward of the image's mean, fp32) and
``train-bf16`` (bf16 autocast). "Peak" is the most CUDA memory the call allocated beyond what was allocated
before it (``torch.cuda.max_memory_allocated``; weights and input excluded). PyTorch's defaults otherwise: TF32
convolutions on, ``cudnn.benchmark`` off (``--cudnn-benchmark`` turns it on).

``--official DIR`` (a checkout of ``dvlab-research/SCGAN``, as for bench_official.py) also builds the official
``SCGGenerator`` at the ADE20K setting, converts its weights with ``semsynth.convert.scgan``, checks that the two
give the same image on the GPU in fp32 with TF32 off (within 1e-4), and times both at ``--batch`` in the same
rounds: eval and train (the official loss: mean of the image plus mean of the coarse SVG image; semsynth's the
same). Without a GPU it says so and exits 0 (nothing measured).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

PRESETS = ["scgan-ade20k", "spade-ade20k", "ccfpse-ade20k", "oasis-ade20k", "pix2pixhd-cityscapes"]
MODES = ["eval", "prepared", "eval-bf16", "train", "train-bf16"]


def layouts(num_classes: int, batch: int, size: tuple[int, int]):
    import torch

    from bench_official import make_layout

    ids = torch.cat([make_layout("blocky", size[0], seed=i, width=size[1], classes=num_classes)
                     for i in range(batch)])
    return torch.nn.functional.one_hot(ids, num_classes).permute(0, 3, 1, 2).float().contiguous()


def timed(fn, iters: int) -> tuple[float, int]:
    """(ms per call, peak bytes allocated during the calls beyond those allocated before)."""
    import torch

    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters, torch.cuda.max_memory_allocated() - base


def make_call(G, mode: str, forward):
    """One call of ``mode`` on ``G``: ``forward()`` under ``no_grad`` (eval), or the backward of the scalar it
    returns with the gradients reset first (train); bf16 autocast for the ``-bf16`` modes."""
    import torch

    def amp():
        return torch.autocast("cuda", dtype=torch.bfloat16) if mode.endswith("bf16") else contextlib.nullcontext()

    if mode.startswith("train"):
        def call():
            G.train()
            for p in G.parameters():
                p.grad = None
            with amp():
                loss = forward()
            loss.float().backward()
    else:
        def call():
            G.eval()
            with torch.no_grad(), amp():
                forward()
    return call


def bench_presets(args) -> dict:
    import torch

    from semsynth.config import load_config
    from semsynth.inference_prep import PrepareError, prepare_for_inference
    from semsynth.models import build_generator

    results: dict = {}
    calls = {}
    for preset in args.presets:
        spec = load_config(preset).generator
        torch.manual_seed(0)
        G = build_generator(spec).cuda()
        res = tuple(spec.get("resolution", (256, 256)))
        x = layouts(spec["num_classes"] + (1 if spec.get("use_instance") else 0), args.batch, res).cuda()
        if spec.get("use_instance"):  # the instance-edge channel: none here
            x[:, -1] = 0
        z = torch.randn(args.batch, G.latent_dim, device="cuda") if G.latent_dim else None
        results[preset] = {"resolution": list(res), "classes": spec["num_classes"], "batch": args.batch,
                           "params": sum(p.numel() for p in G.parameters())}
        G.train()
        with torch.no_grad():  # batch-norm statistics of a forward: finite eval outputs
            G(x, z)
        for mode in MODES:
            if mode == "prepared":
                try:
                    P = prepare_for_inference(G.eval(), copy=True)
                except PrepareError as e:
                    results[preset]["prepared"] = f"not prepared: {e}"
                    continue
                with torch.no_grad():
                    diff = (P(x, z) - G.eval()(x, z)).abs().max().item()
                results[preset]["prepared_max_abs_diff"] = diff
                calls[(preset, mode)] = make_call(P, "eval", lambda P=P, x=x, z=z: P(x, z))
            elif mode.startswith("train"):
                calls[(preset, mode)] = make_call(G, mode, lambda G=G, x=x, z=z: G(x, z).float().mean())
            else:
                calls[(preset, mode)] = make_call(G, mode, lambda G=G, x=x, z=z: G(x, z))
    times, peaks, failed = run_rounds(calls, args)
    for (preset, mode), ts in times.items():
        results[preset][mode] = {"ms_per_batch": statistics.median(ts), "rounds_ms": ts,
                                 "ms_per_image": statistics.median(ts) / args.batch,
                                 "peak_mib": peaks[(preset, mode)] / 2**20}
    for (preset, mode), error in failed.items():
        results[preset][mode] = f"failed: {error}"
    return results


def run_rounds(calls: dict, args) -> tuple[dict, dict, dict]:
    """Time every call once per round, the calls interleaved: (times per call, peak per call, the error of each call
    that raised, which is then left out of the later rounds)."""
    times: dict = {k: [] for k in calls}
    peaks: dict = {}
    failed: dict = {}
    for r in range(args.rounds):
        for key, call in calls.items():
            if key in failed:
                continue
            try:
                ms, peak = timed(call, args.iters)
            except Exception as e:  # reported in the table and the JSON; the other calls go on
                failed[key] = f"{type(e).__name__}: {str(e)[:300]}"
                times.pop(key)
                continue
            times[key].append(ms)
            peaks[key] = max(peaks.get(key, 0), peak)
            print(f"  round {r + 1}/{args.rounds} {'/'.join(key)}: {ms:.1f} ms, {peak / 2**20:.0f} MiB", flush=True)
    return times, peaks, failed


def bench_official(args) -> dict:
    import torch

    from bench_official import official_generator, official_run, semsynth_run, warm_batch_norm
    from semsynth.convert import read_opt_txt
    from semsynth.convert.scgan import convert_scgan

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        O, opt_txt = official_generator(args.official, 256, Path(tmp))
        O, x = O.cuda(), layouts(151, args.batch, (256, 256)).cuda()
        warm_batch_norm(O, x)
        state = {k: v.cpu() for k, v in O.state_dict().items()}
        S = convert_scgan(state, read_opt_txt(opt_txt), opt_path=Path(opt_txt)).generator
    O, S = O.eval(), S.cuda().eval()
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    with torch.no_grad():
        diff = (O(x)[0] - S(x)).abs().max().item()
    torch.backends.cudnn.allow_tf32 = tf32

    def loss(run, G):  # mean of the image plus mean of the coarse SVG image, as bench_official.py's train step
        image, rgb = run(G, x)
        return image.mean() + rgb.mean()

    calls = {("official", "eval"): make_call(O, "eval", lambda: O(x)),
             ("semsynth", "eval"): make_call(S, "eval", lambda: S(x)),
             ("official", "train"): make_call(O, "train", lambda: loss(official_run, O)),
             ("semsynth", "train"): make_call(S, "train", lambda: loss(semsynth_run, S))}
    times, peaks, failed = run_rounds(calls, args)
    if failed:
        return {"batch": args.batch, "max_abs_diff_fp32": diff, "failed": {f"{a}/{b}": e for (a, b), e in failed.items()}}
    out = {"batch": args.batch, "max_abs_diff_fp32": diff}
    for (side, mode), ts in times.items():
        out[f"{side}/{mode}"] = {"ms_per_batch": statistics.median(ts), "rounds_ms": ts,
                                 "peak_mib": peaks[(side, mode)] / 2**20}
    for mode in ("eval", "train"):
        out[f"ratio/{mode}"] = out[f"semsynth/{mode}"]["ms_per_batch"] / out[f"official/{mode}"]["ms_per_batch"]
        out[f"ratio/{mode}_peak"] = out[f"semsynth/{mode}"]["peak_mib"] / out[f"official/{mode}"]["peak_mib"]
    return out


def print_official(o: dict) -> None:
    print(f"official SC-GAN vs semsynth (ADE20K, 256x256, batch {o['batch']}): max |diff| fp32 "
          f"{o['max_abs_diff_fp32']:.2g}")
    if "failed" in o:
        print(f"  failed: {o['failed']}")
        return
    for mode in ("eval", "train"):
        a, b = o[f"official/{mode}"], o[f"semsynth/{mode}"]
        print(f"  {mode:5s}: official {a['ms_per_batch']:.1f} ms, {a['peak_mib']:.0f} MiB; semsynth "
              f"{b['ms_per_batch']:.1f} ms, {b['peak_mib']:.0f} MiB; ratio time {o[f'ratio/{mode}']:.2f}, "
              f"memory {o[f'ratio/{mode}_peak']:.2f}")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default=",".join(PRESETS), help="comma-separated preset names")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--official", type=Path, help="a checkout of dvlab-research/SCGAN")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    args.presets = [p for p in args.presets.split(",") if p]
    for name in ("batch", "iters", "rounds"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} {getattr(args, name)}: give a positive number")
    from semsynth.config import preset_names

    known = preset_names()
    bad = [p for p in args.presets if p not in known]
    if bad:
        ap.error(f"--presets: unknown preset(s) {', '.join(bad)}; known: {', '.join(known)}")
    if args.official is not None:
        from bench_official import check_official

        why = check_official(args.official)
        if why:
            ap.error(why)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("bench_cuda: no CUDA GPU here; nothing measured")
        return 0
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
              "cudnn": torch.backends.cudnn.version(), "cudnn_benchmark": args.cudnn_benchmark,
              "tf32_conv": torch.backends.cudnn.allow_tf32, "presets": bench_presets(args)}
    print(f"{report['gpu']}; torch {report['torch']}, CUDA {report['cuda']}, cuDNN {report['cudnn']}; "
          f"batch {args.batch}, {args.iters} calls x {args.rounds} rounds; cudnn.benchmark {args.cudnn_benchmark}")
    print(f"{'preset':24s} {'size':>9s} " + " ".join(f"{m:>16s}" for m in MODES) + "   (ms/batch, peak MiB)")
    for preset, r in report["presets"].items():
        cells = [f"{r[m]['ms_per_batch']:7.1f} {r[m]['peak_mib']:7.0f}" if isinstance(r.get(m), dict)
                 else f"{'failed' if str(r.get(m, '')).startswith('failed') else '-':>15s}" for m in MODES]
        print(f"{preset:24s} {r['resolution'][0]:>4d}x{r['resolution'][1]:<4d} " + " ".join(f"{c:>16s}" for c in cells))
        for m in MODES:
            if str(r.get(m, "")).startswith("failed"):
                print(f"  {preset} {m}: {r[m]}")
    if args.official is not None:
        report["official"] = bench_official(args)
        print_official(report["official"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
