"""Side by side with the official SC-GAN generator (issue 13): same weights, equal outputs, time, memory, FLOPs.

    python benchmarks/bench_official.py --official /tmp/scgan_official [--resolution 256] [--rounds 3] \
        [--threads 1] [--json out.json]

``--official DIR`` is a checkout of ``dvlab-research/SCGAN`` (e.g. ``git --git-dir=<mirror> archive HEAD | tar -x -C
DIR``). Nothing of it is copied into semsynth: a worker process puts DIR on ``sys.path`` with three shims for
modules it imports but does not need here (``torch._six``, ``easydict``, ``dill``), builds the options as the
official ``train.py`` does (``TrainOptions().parse()`` with ``--netG scg --dataset_mode ade20k --netD fpse --config
config/scgan_ade20k.yml --gpu_ids -1``, then the YAML over them; ``crop_size`` = ``--resolution``) and builds
``SCGGenerator`` with its own random initialisation. Its batch-norm statistics are warmed up (momentum 1, one
train-mode forward on the benchmark layout) so that eval outputs are finite, then its state dict and ``opt.txt`` go
through ``semsynth.convert.scgan.convert_scgan`` (the ``semsynth convert --from scgan`` path) to semsynth's
``scgan-ade20k`` generator, and the two eval outputs are compared (they must agree within 1e-4).

Then, round by round (the order rotated), each variant runs in a fresh process: build, load the weights (from an
mmap-ed file), reset the peak-RSS counter (``/proc/self/clear_refs``), one untimed call, ``--iters`` timed calls
(the fastest is kept: on a busy machine the others mostly measure the other work), then ``VmHWM``. Variants:

* ``official`` / ``semsynth``: eval forward (``no_grad``; semsynth returns the image alone, as ``semsynth
  generate`` calls it, the official generator always computes its coarse SVG image too) and train forward+backward
  (loss: mean of the image plus mean of the coarse SVG image) at batch 1; and ``gd``, a training step of G and the config's FPSE discriminator
  together as the official ``Pix2PixModel`` does it (G step with hinge and feature-matching losses through D, then
  D step on a fresh fake; no optimiser updates, no VGG loss; see ``make_step``), the official D converted as
  ``semsynth convert --from scgan --discriminator`` does it and its outputs compared (within 1e-4);
* ``dense``: semsynth with its exact algebra on one-hot maps switched off (SPADE's piecewise path,
  ``layers/spade_piecewise.py``, and the SVG finest stage's look-ups, ``layers/onehot_conv.py``): their convs run
  densely over the label map (the A/B of those paths);
* ``prepared``: semsynth's eval forward after ``semsynth.inference_prep.prepare_for_inference`` (exact: checked
  against the unprepared model within 1e-5);
* ``conv``: the machine's 3x3-conv throughput in the same run (256 -> 256 channels on 1x256x64x64, fp32,
  GFLOP/s); with the FLOPs of a forward (``torch.utils.flop_counter.FlopCounterMode``) it gives the "floor", the
  time a forward would take if all its FLOPs ran at that speed.

"Peak RSS" is ``VmHWM`` minus ``VmRSS`` of the same process after its imports and the input (before the model):
weights plus activations ("above the model": minus the RSS after loading the weights, the same weights on both
sides: activations and what the allocator keeps). It depends on the allocator (two identical processes can differ by 100 MiB), so each
variant also runs once more under ``semsynth.utils.memory.TensorPeak``: the exact peak of the bytes of tensors the
call creates and holds at once (weights and input excluded; operator-internal scratch memory not seen), with the
largest tensors alive at that peak. Both sides run with the same environment (glibc malloc tuned as the CLI does it, unless
``--malloc default``) and ``--threads`` intra-op threads. Finally one more semsynth process times each component of
the eval forward with forward hooks (and the top operators with ``torch.profiler``).

Prints the ratios (semsynth / official: below 1 is better) and writes everything to ``--json``. Without a usable
``--official`` it prints why and exits 0 (nothing measured).
"""

from __future__ import annotations

import argparse
import collections.abc
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NUM_CLASSES = 151  # ADE20K: 150 classes + "other" (SC-GAN's label convention), no instance map
SIDES_TIMED = [("official", "eval"), ("semsynth", "eval"), ("dense", "eval"), ("prepared", "eval"),
               ("official", "train"), ("semsynth", "train"), ("dense", "train"), ("recompute", "train"),
               ("official", "gd"), ("semsynth", "gd"), ("trainer", "gd"), ("conv", "-")]
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "68719476736",
              "MALLOC_TOP_PAD_": "536870912"}  # = semsynth.utils.runtime.tune_malloc


# ------------------------------------------------------------------------------------------------------------
# The machine


def machine() -> dict:
    """CPU model and flags, load average, torch version and bf16 support, for every figure."""
    import torch

    sys.path.insert(0, str(REPO / "src"))
    from semsynth.utils.runtime import cpu_identity, cpu_model

    cpu = cpu_identity()
    flags, model = cpu["flags"], cpu_model()
    if cpu["family"] >= 0 and cpu["model"] >= 0:
        model += f" ({cpu['vendor'] or '?'} family {cpu['family']:#x} model {cpu['model']:#x})"
    try:
        bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        bf16 = False
    return {"cpu": model, "cpus": os.cpu_count(), "avx512": "avx512f" in flags,
            "avx512_bf16": "avx512_bf16" in flags, "mkldnn_bf16": bf16,
            "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None, "torch": torch.__version__}


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux: ``echo 5 > /proc/self/clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------------------
# The official generator (imported from --official DIR, in worker processes only)


def check_official(path: Path | None) -> str | None:
    """Why ``path`` is not a usable official checkout, or None."""
    if path is None:
        return "no --official DIR given"
    for rel in ("model/net/generator.py", "option/train_options.py", "config/scgan_ade20k.yml"):
        if not (path / rel).is_file():
            return f"--official {path}: {rel} is missing (expected a checkout of dvlab-research/SCGAN)"
    return None


def install_shims() -> None:
    """Stand-ins for three modules the official code imports but does not use here (torch 2.x has no torch._six;
    easydict and dill are imported at module level). Call after ``import torch``."""
    six = types.ModuleType("torch._six")
    six.container_abcs, six.string_classes, six.int_classes = collections.abc, (str, bytes), int
    sys.modules.setdefault("torch._six", six)

    class EasyDict(dict):
        def __getattr__(self, k):
            try:
                return self[k]
            except KeyError as e:
                raise AttributeError(k) from e

        def __setattr__(self, k, v):
            self[k] = v

    ed = types.ModuleType("easydict")
    ed.EasyDict = EasyDict
    sys.modules.setdefault("easydict", ed)
    import pickle

    dill = types.ModuleType("dill")
    for name in ("dump", "dumps", "load", "loads"):
        setattr(dill, name, getattr(pickle, name))
    sys.modules.setdefault("dill", dill)


def official_generator(official: Path, resolution: int, workdir: Path, with_discriminator: bool = False):
    """The official ``SCGGenerator`` at the ADE20K setting, options built as train.py builds them (and its
    ``FPSEDiscriminator``, the config's ``netD``, if ``with_discriminator``: then ``(G, D, opt.txt)``)."""
    import torch  # noqa: F401  (before the shims)
    import yaml

    install_shims()
    sys.path.insert(0, str(official))
    argv = sys.argv
    sys.argv = ["train.py", "--netG", "scg", "--gpu_ids", "-1", "--dataset_mode", "ade20k", "--netD", "fpse",
                "--config", str(official / "config/scgan_ade20k.yml"), "--checkpoints_dir", str(workdir / "ck"),
                "--name", "bench", "--batchSize", "1"]
    try:
        from option.train_options import TrainOptions

        with contextlib.redirect_stdout(io.StringIO()):
            opt = TrainOptions().parse()
    finally:
        sys.argv = argv
    for k, v in yaml.safe_load((official / "config/scgan_ade20k.yml").read_text()).items():
        setattr(opt, k, v)
    opt.crop_size, opt.batchSize = resolution, 1
    import model.net as net

    with contextlib.redirect_stdout(io.StringIO()):
        G = net.define_G(opt)
        D = net.define_D(opt) if with_discriminator else None
    if with_discriminator:
        return G, D, workdir / "ck" / "bench" / "opt.txt"
    return G, workdir / "ck" / "bench" / "opt.txt"


# ------------------------------------------------------------------------------------------------------------
# Inputs


def make_layout(kind: str, resolution: int, seed: int = 0, *, width: int | None = None,
                classes: int | None = NUM_CLASSES, folder: str = "train_label"):
    """A label map [1, H, W] (H = ``resolution``, W = ``width`` or H) of class ids < ``classes``: a COCO-Stuff
    sample from ../shared (ids mod ``classes``, nearest-resized; ``folder="train_inst"``, ``classes=None``: its
    instance ids), or ADE-like blocks (random classes on a grid of 16-pixel blocks, 3 % single-pixel noise)."""
    import numpy as np
    import torch
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    width = width or resolution
    if kind == "coco":
        folder_path = REPO.parent / "shared/data/coco_stuff_sample" / folder
        files = sorted(folder_path.glob("*.png"))
        if not files:
            raise SystemExit(f"--layout coco: no PNG in {folder_path}; use --layout blocky")
        img = Image.open(files[seed % len(files)]).resize((width, resolution), Image.NEAREST)
        ids = torch.from_numpy(np.array(img).astype("int64"))
        return (ids if classes is None else ids % classes)[None]
    classes = classes or NUM_CLASSES
    ids = torch.randint(0, classes, (1, resolution // 16, width // 16), generator=g)
    ids = ids.repeat_interleave(16, 1).repeat_interleave(16, 2)
    noise = torch.rand(ids.shape, generator=g) < 0.03
    return torch.where(noise, torch.randint(0, classes, ids.shape, generator=g), ids)


def one_hot(ids):
    import torch

    return torch.nn.functional.one_hot(ids, NUM_CLASSES).permute(0, 3, 1, 2).float().contiguous()


# ------------------------------------------------------------------------------------------------------------
# Worker processes


def official_run(G, x):
    """The official generator's (image, coarse SVG image)."""
    return G(x)[:2]


def semsynth_run(G, x):
    out = G(x, return_aux=True)
    return out.image, out.coarse_rgb


def semsynth_image(G, x):
    """An eval forward as ``semsynth generate`` runs it: the image alone (the coarse SVG image feeds only a training
    loss, and semsynth does not compute it unless asked; the official generator always does)."""
    return G(x), None


def official_disc(D, images, semantic):
    """The official FPSE discriminator: (feature-matching features, the three predictions)."""
    feats, preds = D(images, semantic)
    return feats, preds


def semsynth_disc(D, images, semantic):
    out = D(images, semantic)
    return [f[-1] for f in out.features], out.logits


def build_side(side: str, args, workdir: Path, mode: str = "eval"):
    """The generator of ``side`` with the benchmark weights and its ``G, x -> (image, coarse rgb)``; for ``mode``
    "gd" also the discriminator and its ``D, images, semantic -> (features, predictions)`` (else None, None)."""
    import torch

    if side == "official":
        if mode == "gd":
            G, D, _ = official_generator(args.official, args.resolution, workdir / "w", with_discriminator=True)
            D.load_state_dict(torch.load(workdir / "official_d_state.pt", mmap=True, weights_only=True))
        else:
            (G, _), D = official_generator(args.official, args.resolution, workdir / "w"), None
        G.load_state_dict(torch.load(workdir / "official_state.pt", mmap=True, weights_only=True))
        return G, official_run, D, official_disc
    sys.path.insert(0, str(REPO / "src"))
    from semsynth.models import build_discriminator, build_generator

    G = build_generator(json.loads((workdir / "semsynth_config.json").read_text()))
    G.load_state_dict(torch.load(workdir / "semsynth_state.pt", mmap=True, weights_only=True))
    D = None
    if mode == "gd":
        D = build_discriminator(json.loads((workdir / "semsynth_d_config.json").read_text()))
        D.load_state_dict(torch.load(workdir / "semsynth_d_state.pt", mmap=True, weights_only=True))
    if side == "prepared":
        from semsynth.inference_prep import prepare_for_inference

        G = prepare_for_inference(G.eval(), copy=False)  # as semsynth generate does: no second copy
    if side == "dense":  # the exact algebra on one-hot maps off: SPADE's and the SVG's convs run densely over it
        from semsynth.layers import SPADE
        from semsynth.models.generators.scgan import SVGStage

        SPADE.piecewise_max_band = 0.0
        SVGStage.onehot_min_work = 10**12
    pixels = getattr(args, "scc_recompute_pixels", None)
    if pixels is not None and side in ("semsynth", "trainer") and mode != "eval":
        from semsynth.layers.scc import set_scc_recompute  # as train.scc_recompute_pixels sets it

        set_scc_recompute(G, pixels)
    if side == "recompute":  # train.recompute: the residual blocks recomputed in backward
        from semsynth.layers.recompute import enable_recompute

        enable_recompute(G)
    return G, semsynth_image if mode == "eval" else semsynth_run, D, semsynth_disc


def warm_batch_norm(G, x) -> None:
    """Set ``G``'s batch-norm running statistics to the statistics of one train-mode forward of ``x`` (momentum 1,
    then back to 0.1), so that a freshly initialised generator gives finite eval outputs."""
    import torch

    norms = [m for m in G.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.momentum = 1.0
    G.train()
    with torch.no_grad():
        G(x)
    for m in norms:
        m.momentum = 0.1


def worker_setup_official(args, workdir: Path) -> dict:
    """Build the official G (seeded init), warm its batch norm up, save its state, opt.txt, eval output, FLOPs."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(args.seed)
    G, D, opt_txt = official_generator(args.official, args.resolution, workdir, with_discriminator=True)
    x = torch.load(workdir / "input.pt", weights_only=True)
    warm_batch_norm(G, x)
    G.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        out = G(x)
    torch.save(out[0], workdir / "official_out.pt")
    torch.save(G.state_dict(), workdir / "official_state.pt")
    real = torch.load(workdir / "real.pt", weights_only=True)
    D.eval()
    with torch.no_grad():  # eval mode: spectral norm uses its stored vectors (no power iteration)
        feats, preds = D(torch.cat([out[0], real]), torch.cat([x, x]))
    torch.save({f"logits.{i}": p for i, p in enumerate(preds)} | {f"feature.{i}": f for i, f in enumerate(feats)},
               workdir / "official_d_out.pt")
    torch.save(D.state_dict(), workdir / "official_d_state.pt")
    G.train()
    with FlopCounterMode(display=False) as fct:
        image, rgb = G(x)[:2]
        (image.mean() + rgb.mean()).backward()
    D.train()
    G.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as fcgd:
        make_step(G, official_run, x, "gd", D, official_disc, real)()
    return {"opt_txt": str(opt_txt), "params": sum(p.numel() for p in G.parameters()),
            "params_d": sum(p.numel() for p in D.parameters()),
            "flops_eval": fc.get_total_flops(), "flops_train": fct.get_total_flops(),
            "flops_gd": fcgd.get_total_flops(), "out_absmax": out[0].abs().max().item()}


def worker_setup_semsynth(args, workdir: Path, opt_txt: str) -> dict:
    """Convert the official state with semsynth.convert, save it, compare the eval outputs, count FLOPs."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    sys.path.insert(0, str(REPO / "src"))
    from semsynth.convert import read_opt_txt
    from semsynth.convert.scgan import convert_scgan

    state = torch.load(workdir / "official_state.pt", mmap=True, weights_only=True)
    dstate = torch.load(workdir / "official_d_state.pt", mmap=True, weights_only=True)
    conv = convert_scgan(state, read_opt_txt(opt_txt), discriminator_state=dstate, opt_path=Path(opt_txt))
    G, D = conv.generator.eval(), conv.discriminator.eval()
    (workdir / "semsynth_config.json").write_text(json.dumps(G.config))
    (workdir / "semsynth_d_config.json").write_text(json.dumps(D.config))
    torch.save(G.state_dict(), workdir / "semsynth_state.pt")
    torch.save(D.state_dict(), workdir / "semsynth_d_state.pt")
    x = torch.load(workdir / "input.pt", weights_only=True)
    ref = torch.load(workdir / "official_out.pt", weights_only=True)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        out = G(x)
    res = {"config": G.config["name"], "params": sum(p.numel() for p in G.parameters()),
           "flops_eval": fc.get_total_flops(), "max_abs_diff_vs_official": (out - ref).abs().max().item()}
    try:
        from semsynth.inference_prep import prepare_for_inference
    except ImportError:
        prepare_for_inference = None
    if prepare_for_inference is not None:
        P = prepare_for_inference(G)
        with torch.no_grad(), FlopCounterMode(display=False) as fp:
            outp = P(x)
        res.update(flops_eval_prepared=fp.get_total_flops(),
                   max_abs_diff_prepared=(outp - out).abs().max().item())
    real = torch.load(workdir / "real.pt", weights_only=True)
    dref = torch.load(workdir / "official_d_out.pt", weights_only=True)
    with torch.no_grad():
        feats, preds = semsynth_disc(D, torch.cat([ref, real]), torch.cat([x, x]))
    dout = {f"logits.{i}": p for i, p in enumerate(preds)} | {f"feature.{i}": f for i, f in enumerate(feats)}
    res["d_max_abs_diff_vs_official"] = max((dout[k] - dref[k]).abs().max().item() for k in dref)
    res["params_d"] = sum(p.numel() for p in D.parameters())
    G.train()
    with FlopCounterMode(display=False) as fct:
        o = G(x, return_aux=True)
        (o.image.mean() + o.coarse_rgb.mean()).backward()
    res["flops_train"] = fct.get_total_flops()
    G.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as fcgd:
        make_step(G, semsynth_run, x, "gd", D.train(), semsynth_disc, real)()
    res["flops_gd"] = fcgd.get_total_flops()
    return res


def make_step(G, run, x, mode: str, D=None, disc=None, real=None, trainer: bool = False):
    """One call of ``mode`` on ``G``: an eval forward (``no_grad``); a train forward+backward of G (loss: mean of
    the image plus mean of the coarse SVG image) with the gradients reset first; or ("gd") a training step of G and
    D together as the official ``Pix2PixModel`` does it with the FPSE discriminator, without the optimiser updates:
    G step (fake and real through D as one batch, hinge G loss on the three predictions + feature matching L1 x 10
    against the detached real features + mean of the coarse SVG image; backward into G and D), then D step (a fresh
    fake under ``no_grad``, hinge D loss on fake and real; backward into D). ``trainer``: as ``semsynth train``
    runs it, the G step's backward reaches G only, and G's gradients are released before the D step."""
    import torch
    import torch.nn.functional as F

    if mode == "eval":
        G.eval()

        def step():
            with torch.no_grad():
                run(G, x)
    elif mode == "train":
        G.train()

        def step():
            for p in G.parameters():
                p.grad = None
            image, rgb = run(G, x)
            (image.mean() + rgb.mean()).backward()
    else:
        G.train()
        D.train()
        semantic = torch.cat([x, x])

        def step():
            for p in (*G.parameters(), *D.parameters()):
                p.grad = None
            if trainer:
                D.requires_grad_(False)
            fake, rgb = run(G, x)
            feats, preds = disc(D, torch.cat([fake, real]), semantic)
            loss = rgb.mean()
            for p in preds:
                loss = loss - p[: len(x)].mean() / len(preds)
            for f in feats:
                loss = loss + F.l1_loss(f[: len(x)], f[len(x):].detach()) * 10.0 / len(feats)
            loss.backward()
            del fake, rgb, feats, preds, loss
            if trainer:
                D.requires_grad_(True)
                for p in G.parameters():  # released after the G optimiser step (none here)
                    p.grad = None
            with torch.no_grad():
                fake = run(G, x)[0]
            preds = disc(D, torch.cat([fake, real]), semantic)[1]
            loss = sum(F.relu(1 + p[: len(x)]).mean() + F.relu(1 - p[len(x):]).mean() for p in preds) / len(preds)
            loss.backward()

    return step


def conv_throughput(iters: int) -> dict:
    """The machine's 3x3-conv throughput: 256 -> 256 channels on 1x256x64x64, fp32, the fastest of
    ``iters + 2`` calls after one untimed call (GFLOP/s)."""
    import torch

    w = torch.randn(256, 256, 3, 3)
    a = torch.randn(1, 256, 64, 64)
    flops = 2 * 256 * 256 * 9 * 64 * 64
    with torch.no_grad():
        torch.nn.functional.conv2d(a, w, padding=1)
        best = min(_timed(lambda: torch.nn.functional.conv2d(a, w, padding=1)) for _ in range(iters + 2))
    return {"seconds": best, "gflops_per_s": flops / best / 1e9}


def worker_time(args, workdir: Path, side: str, mode: str) -> dict:
    """Time ``mode`` of ``side`` in this fresh process; peak RSS above the process before the model."""
    import torch

    x = torch.load(workdir / "input.pt", weights_only=True)
    if side == "conv":
        return conv_throughput(args.iters)
    if side == "official":  # import its modules before the baseline, as semsynth's below
        install_shims()
        sys.path.insert(0, str(args.official))
        import model.net  # noqa: F401
        import option.train_options  # noqa: F401
    else:
        sys.path.insert(0, str(REPO / "src"))
        import semsynth.models  # noqa: F401
    base = status_kib("VmRSS")
    G, run, D, disc = build_side(side, args, workdir, mode)
    real = torch.load(workdir / "real.pt", weights_only=True)
    import gc

    gc.collect()
    peak_reset = reset_peak()
    after_build = status_kib("VmRSS")
    step = make_step(G, run, x, mode, D, disc, real, trainer=side == "trainer")

    step()
    best = min(_timed(step) for _ in range(args.iters))
    peak = status_kib("VmHWM")
    from semsynth.utils.allocator import active_allocator  # torch-free; after the peak is read

    return {"seconds": best, "rss_base_mib": base / 1024, "model_mib": (after_build - base) / 1024,
            "peak_above_base_mib": (peak - base) / 1024, "peak_reset": peak_reset, "allocator": active_allocator()}


def worker_tensors(args, workdir: Path, side: str, mode: str) -> dict:
    """The peak of the tensor bytes one call of ``mode`` creates (``semsynth.utils.memory.TensorPeak``: exact and
    allocator-independent, unlike peak RSS), after one untimed call; the largest tensors alive at that peak."""
    import torch

    x = torch.load(workdir / "input.pt", weights_only=True)
    if side == "official":
        install_shims()
        sys.path.insert(0, str(args.official))
    sys.path.insert(0, str(REPO / "src"))
    from semsynth.utils.memory import TensorPeak

    G, run, D, disc = build_side(side, args, workdir, mode)
    step = make_step(G, run, x, mode, D, disc, torch.load(workdir / "real.pt", weights_only=True),
                     trainer=side == "trainer")

    step()
    nets = torch.nn.ModuleList([G] if D is None else [G, D])
    for p in nets.parameters():
        p.grad = None
    with TensorPeak(modules=nets) as tp:
        step()
    return {"peak_tensors_mib": tp.peak_mib, "at": tp.peak_op,
            "largest": [[round(t.nbytes / 2**20, 1), t.op, list(t.shape), t.module] for t in tp.peak_tensors[:8]]}


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def worker_breakdown(args, workdir: Path, side: str) -> dict:
    """Where the eval forward's time goes: forward hooks per component (wall time, summed), top operators."""
    import torch

    sys.path.insert(0, str(REPO / "src"))
    from semsynth.inference_prep import PreparedSCN, PreparedSPADE
    from semsynth.layers import SPADE, SpatiallyConditionalConv2d, SpatiallyConditionalNorm2d

    G, run, _, _ = build_side(side, args, workdir)
    G.eval()
    x = torch.load(workdir / "input.pt", weights_only=True)
    spent: dict[str, float] = collections.defaultdict(float)
    start: dict[int, float] = {}

    def category(name: str, m) -> str | None:
        if name == "svg":
            return "SVG (semantic vector generator)"
        if isinstance(m, (SPADE, PreparedSPADE)):
            return "SPADE norms of the learned shortcuts"
        if name.endswith("conv_s"):
            return "shortcut convs (conv_s)"
        if isinstance(m, SpatiallyConditionalConv2d):
            return "SC convolutions"
        if isinstance(m, (SpatiallyConditionalNorm2d, PreparedSCN)):
            return "SC norms"
        if name in ("fc", "conv_img"):
            return "first conv (fc) and conv_img"
        return None

    for name, m in G.named_modules():
        cat = category(name, m)
        if cat is None:
            continue
        m.register_forward_pre_hook(lambda mod, inp: start.__setitem__(id(mod), time.perf_counter()))
        m.register_forward_hook(lambda mod, inp, out, cat=cat: spent.__setitem__(
            cat, spent[cat] + time.perf_counter() - start[id(mod)]))
    with torch.no_grad():
        run(G, x)
        runs = []
        for _ in range(args.iters):
            spent.clear()
            t = time.perf_counter()
            run(G, x)
            runs.append((time.perf_counter() - t, dict(spent)))
    total, parts = min(runs, key=lambda r: r[0])
    parts["other (routing, up-sampling between blocks, activations)"] = total - sum(parts.values())
    with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        run(G, x)
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:10]
    return {"total_s": total, "parts_s": parts,
            "top_ops_self_ms": {e.key: e.self_cpu_time_total / 1000 for e in ops}}


# ------------------------------------------------------------------------------------------------------------
# The driver


def worker_env(args) -> dict:
    """The environment of both sides' worker processes: threads and the allocator (``--malloc``, ``--malloc-env``)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    if args.malloc == "tuned":
        env.update(MALLOC_ENV)
    elif args.malloc in ("tcmalloc", "jemalloc"):
        from semsynth.utils.allocator import find_preload_allocator, with_preload

        env = with_preload(env, find_preload_allocator(args.malloc))
    env.update(dict(args.malloc_env or []))
    return env


def spawn(args, workdir: Path, *extra: str) -> dict:
    env = worker_env(args)
    cmd = [sys.executable, __file__, "--worker", *extra, "--workdir", str(workdir), "--resolution",
           str(args.resolution), "--threads", str(args.threads), "--iters", str(args.iters), "--seed", str(args.seed)]
    if args.official is not None:
        cmd += ["--official", str(args.official)]
    if getattr(args, "scc_recompute_pixels", None) is not None:
        cmd += ["--scc-recompute-pixels", str(args.scc_recompute_pixels)]
    if getattr(args, "winograd", "auto") != "auto":
        cmd += ["--winograd", args.winograd]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"worker {' '.join(extra)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return check_allocator(args, json.loads(p.stdout.strip().splitlines()[-1]))


def check_allocator(args, result: dict) -> dict:
    expected = args.malloc if args.malloc in ("tcmalloc", "jemalloc") else "glibc"
    if result.get("allocator", expected) != expected:
        raise SystemExit(f"--malloc {args.malloc}: the worker ran on {result['allocator']} (LD_PRELOAD not honoured)")
    return result


def _env_setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not (name.startswith("MALLOC_") or name == "GLIBC_TUNABLES"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE with a MALLOC_* name or GLIBC_TUNABLES")
    return name, value


def add_round_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of the interleaved fresh-process rounds (shared with bench_baselines_official.py)."""
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=2, help="timed calls per process (the fastest is kept)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--layout", choices=["coco", "blocky"], default="coco")
    ap.add_argument("--malloc", choices=["tuned", "default", "tcmalloc", "jemalloc"], default="tuned",
                    help="tuned: glibc as the CLI sets it; default: glibc's defaults; tcmalloc/jemalloc: that library "
                         "by LD_PRELOAD for both sides (installed: apt-get install libtcmalloc-minimal4 / libjemalloc2)")
    ap.add_argument("--malloc-env", nargs="+", type=_env_setting, metavar="NAME=VALUE",
                    help="glibc settings over --malloc for both sides, e.g. MALLOC_MMAP_THRESHOLD_=4194304 "
                         "GLIBC_TUNABLES=glibc.malloc.hugetlb=1")
    ap.add_argument("--no-train", action="store_true", help="time eval forwards only")


def add_worker_arguments(ap: argparse.ArgumentParser) -> None:
    """--seed, --json and the hidden options of the worker processes."""
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", type=Path, help="a checkout of dvlab-research/SCGAN")
    ap.add_argument("--resolution", type=int, default=256, help="square size, a multiple of 32 (default 256)")
    add_round_arguments(ap)
    ap.add_argument("--variants", help="comma-separated subset of " + ",".join(f"{s}/{m}" for s, m in SIDES_TIMED)
                    + " (default: all)")
    ap.add_argument("--scc-recompute-pixels", type=int, metavar="N",
                    help="semsynth's training steps as with train.scc_recompute_pixels=N: SCC layers with at least N "
                         "output pixels recompute their stacked convolution in backward instead of keeping it")
    ap.add_argument("--winograd", choices=["auto", "on", "off"], default="auto",
                    help="semsynth's F(2x2, 3x3) convolutions: auto = WinogradPolicy's default for this CPU "
                         "(cpu_takes_winograd), on / off = forced (WinogradPolicy.enabled True / False)")
    add_worker_arguments(ap)
    args = ap.parse_args()
    if args.scc_recompute_pixels is not None and args.scc_recompute_pixels < 1:
        ap.error(f"--scc-recompute-pixels {args.scc_recompute_pixels}: use a number of pixels >= 1")
    if args.resolution % 32 or args.resolution < 32:
        ap.error(f"--resolution {args.resolution}: use a multiple of 32 (the generator starts at 1/32 of it)")

    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        if args.winograd != "auto":
            sys.path.insert(0, str(REPO / "src"))
            from semsynth.layers.winograd import WinogradPolicy

            WinogradPolicy.enabled = args.winograd == "on"
        kind = args.worker[0]
        if kind == "setup-official":
            res = worker_setup_official(args, args.workdir)
        elif kind == "setup-semsynth":
            res = worker_setup_semsynth(args, args.workdir, args.worker[1])
        elif kind == "time":
            res = worker_time(args, args.workdir, args.worker[1], args.worker[2])
        elif kind == "tensors":
            res = worker_tensors(args, args.workdir, args.worker[1], args.worker[2])
        else:
            res = worker_breakdown(args, args.workdir, args.worker[1])
        print(json.dumps(res))
        return

    why = check_official(args.official)
    if why:
        print(f"bench_official: skipped: {why}. Bring the official code with e.g. `git --git-dir=<mirror of "
              f"dvlab-research/SCGAN> archive HEAD | tar -x -C /tmp/scgan_official` and pass --official "
              f"/tmp/scgan_official.")
        return
    args.official = args.official.resolve()
    import torch

    info = machine()
    print(f"CPU {info['cpu']} ({info['cpus']} CPUs), avx512 {info['avx512']}, avx512_bf16 {info['avx512_bf16']}, "
          f"mkldnn bf16 {info['mkldnn_bf16']}, torch {info['torch']}, load average {info['loadavg']}")
    print(f"{args.resolution}x{args.resolution}, batch 1, fp32, {args.threads} thread(s), malloc {args.malloc} "
          f"{dict(args.malloc_env or [])}, "
          f"layout {args.layout}, {args.rounds} rounds x {args.iters} timed calls per process, winograd {args.winograd}")
    workdir = Path(tempfile.mkdtemp(prefix="bench_official_"))
    torch.save(one_hot(make_layout(args.layout, args.resolution, args.seed)), workdir / "input.pt")
    g = torch.Generator().manual_seed(args.seed + 1)  # the "real" image of the G+D step
    torch.save(torch.rand(1, 3, args.resolution, args.resolution, generator=g) * 2 - 1, workdir / "real.pt")
    t0 = time.time()
    setup_off = spawn(args, workdir, "setup-official")
    setup_sem = spawn(args, workdir, "setup-semsynth", setup_off["opt_txt"])
    print(f"official {setup_off['params']:,} parameters, semsynth {setup_sem['params']:,}; eval output max |diff| "
          f"{setup_sem['max_abs_diff_vs_official']:.2e} (official |out| max {setup_off['out_absmax']:.3f}); forward "
          f"GFLOP official {setup_off['flops_eval'] / 1e9:.1f}, semsynth {setup_sem['flops_eval'] / 1e9:.1f}"
          + (f", prepared {setup_sem['flops_eval_prepared'] / 1e9:.1f} (max |diff| vs unprepared "
             f"{setup_sem['max_abs_diff_prepared']:.2e})" if "flops_eval_prepared" in setup_sem else "")
          + f"  [setup {time.time() - t0:.0f} s]")
    print(f"discriminator (FPSE): official {setup_off['params_d']:,} parameters, semsynth {setup_sem['params_d']:,};"
          f" logits and features max |diff| {setup_sem['d_max_abs_diff_vs_official']:.2e}; G+D step GFLOP "
          f"official {setup_off['flops_gd'] / 1e9:.1f}, semsynth {setup_sem['flops_gd'] / 1e9:.1f}")
    if setup_sem["d_max_abs_diff_vs_official"] > 1e-4:
        raise SystemExit("semsynth's discriminator outputs differ from the official ones by more than 1e-4")
    if setup_sem["max_abs_diff_vs_official"] > 1e-4:
        raise SystemExit("semsynth's eval output differs from the official one by more than 1e-4: not comparable")
    if setup_sem.get("max_abs_diff_prepared", 0) > 1e-5:
        raise SystemExit("the prepared model's output differs from the unprepared one by more than 1e-5")

    variants = [(s, m) for s, m in SIDES_TIMED if not (args.no_train and m in ("train", "gd"))
                and not (s == "prepared" and "flops_eval_prepared" not in setup_sem)]
    if args.variants:
        wanted = set(args.variants.split(",")) | {"conv/-"}
        wanted |= {f"official/{k.split('/')[1]}" for k in wanted if k != "conv/-"}  # the reference of each ratio
        variants = [(s, m) for s, m in variants if f"{s}/{m}" in wanted]
    results: dict[str, list[dict]] = {f"{s}/{m}": [] for s, m in variants}
    for r in range(args.rounds):
        order = variants[r % len(variants):] + variants[: r % len(variants)]
        for s, m in order:
            results[f"{s}/{m}"].append(spawn(args, workdir, "time", s, m))
        print(f"  round {r + 1}/{args.rounds} done [{time.time() - t0:.0f} s], load {os.getloadavg()}")
    tensors = {f"{s}/{m}": spawn(args, workdir, "tensors", s, m) for s, m in variants if s != "conv"}
    breakdown = {s: spawn(args, workdir, "breakdown", s) for s in ("semsynth", "prepared")
                 if f"{s}/eval" in results and not args.variants}

    med = {k: statistics.median(x["seconds"] for x in v) for k, v in results.items()}
    rss = {k: statistics.median(x["peak_above_base_mib"] for x in v) for k, v in results.items() if k != "conv/-"}
    act = {k: statistics.median(x["peak_above_base_mib"] - x["model_mib"] for x in v)
           for k, v in results.items() if k != "conv/-"}
    gflops = statistics.median(x["gflops_per_s"] for x in results["conv/-"])
    floor_eval = setup_off["flops_eval"] / (gflops * 1e9)
    print(f"\nconv throughput {gflops:.1f} GFLOP/s -> floor of the official eval forward "
          f"({setup_off['flops_eval'] / 1e9:.1f} GFLOP): {floor_eval:.3f} s; train fwd+bwd "
          f"({setup_off['flops_train'] / 1e9:.1f} GFLOP): {setup_off['flops_train'] / (gflops * 1e9):.3f} s")
    print("| variant | time s (median of per-process best) | / official | / floor | peak RSS above base MiB | / official "
          "| above the model MiB | / official | peak tensors MiB | / official |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ratios = {}
    for k in med:
        if k == "conv/-":
            continue
        mode = k.split("/")[1]
        ref = f"official/{mode}"
        floor = setup_off[f"flops_{mode}"] / (gflops * 1e9)
        per_round = [a["seconds"] / b["seconds"] for a, b in zip(results[k], results[ref])]
        ratios[k] = {"time": med[k] / med[ref], "time_median_of_rounds": statistics.median(per_round),
                     "time_per_round": per_round, "rss": rss[k] / rss[ref], "time_per_floor": med[k] / floor,
                     "rss_above_model": act[k] / act[ref],
                     "tensors": tensors[k]["peak_tensors_mib"] / tensors[ref]["peak_tensors_mib"]}
        print(f"| {k} | {med[k]:.3f} | {ratios[k]['time']:.2f} (rounds: {', '.join(f'{r:.2f}' for r in per_round)})"
              f" | {ratios[k]['time_per_floor']:.2f} | {rss[k]:.0f} | {ratios[k]['rss']:.2f} | {act[k]:.0f} "
              f"| {ratios[k]['rss_above_model']:.2f} "
              f"| {tensors[k]['peak_tensors_mib']:.1f} | {ratios[k]['tensors']:.2f} |")
    for k, t in tensors.items():
        print(f"  {k}: peak of live tensors {t['peak_tensors_mib']:.1f} MiB at {t['at']}; largest then: "
              + ", ".join(f"{mib} MiB {op} {shape} ({mod})" for mib, op, shape, mod in t["largest"][:4]))
    for s, b in breakdown.items():
        print(f"\n{s} eval forward, {b['total_s']:.3f} s (forward hooks, fastest of {args.iters}):")
        for name, sec in sorted(b["parts_s"].items(), key=lambda kv: -kv[1]):
            print(f"  {name:60s} {sec:7.3f} s  {100 * sec / b['total_s']:5.1f} %")
        print("  top operators (self CPU ms): " + ", ".join(f"{k} {v:.0f}" for k, v in
                                                             list(b["top_ops_self_ms"].items())[:6]))
    info["loadavg_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                                         "setup": {"official": setup_off, "semsynth": setup_sem},
                                         "conv_gflops_per_s": gflops, "floor_eval_s": floor_eval,
                                         "median_s": med, "peak_rss_above_base_mib": rss,
                                         "peak_rss_above_model_mib": act, "ratios": ratios,
                                         "peak_tensors": tensors,
                                         "raw": results, "breakdown": breakdown}, indent=2))
    print(f"\nload average at the end {info['loadavg_end']}; total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
