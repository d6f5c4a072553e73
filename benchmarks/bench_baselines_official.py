"""The baselines side by side with their official code (issue 13): semsynth's SPADE, CC-FPSE, pix2pixHD and
OASIS generators against the official ones, same weights, equal outputs; time, memory, FLOPs.

    python benchmarks/bench_baselines_official.py --official-spade DIR --official-ccfpse DIR \
        --official-pix2pixhd DIR --official-oasis DIR [--families spade,ccfpse,pix2pixhd,oasis] \
        [--resolution 256] [--rounds 3] [--iters 2] [--threads 1] [--json out.json]

Each ``--official-<family> DIR`` is a checkout of the official repository (``NVlabs/SPADE``,
``xh-liu/CC-FPSE``, ``NVIDIA/pix2pixHD``, ``boschresearch/OASIS``; e.g.
``git --git-dir=<mirror> archive HEAD | tar -x -C DIR``). Nothing of it is copied into semsynth: only worker
processes import it, with DIR on ``sys.path`` and stand-ins for modules it imports but does not need here
(``dill`` -> ``pickle``, ``torch._six``, ``easydict``; for SPADE the vendored ``sync_batchnorm``, absent from
its repository, as a plain ``BatchNorm2d``: one process, so the same computation). A family whose folder is
not given or is not such a checkout is skipped, with the reason printed.

The settings (batch 1, fp32, the label maps of ``bench_official.make_layout``: a COCO-Stuff sample's ids):

* **SPADE**: the released ADE20K model: the official option parser with ``--dataset_mode ade20k`` (150 classes
  + don't-care = 151 channels, no instance map, no VAE, ``ngf`` 64, ``norm_G spectralspadesyncbatch3x3``),
  ``crop_size`` = ``--resolution``; ``models.networks.define_G`` (its xavier initialisation).
* **CC-FPSE**: its ADE20K setting (``train.sh`` with ``--dataset_mode ade20k``): ``--netG condconv --use_vae``
  (z of 256), ``norm_G spectralsync_batch`` with ``mpdist`` off (plain ``BatchNorm2d``; the CPU), ``ngf`` 64;
  the generator class of ``find_network_using_name`` and its ``init_weights`` (``define_G`` without its
  ``.cuda()``).
* **pix2pixHD**: no ADE20K release; the generator of ``label2city_512p`` (semsynth's ``pix2pixhd-cityscapes``
  preset): ``--netG global``, ``ngf`` 64, 4 down-samplings, 9 residual blocks, instance norm, 35 labelIds +
  the instance-edge channel (36), at ``--resolution`` x 2 ``--resolution`` (``--loadSize`` 2R,
  ``scale_width``: 256x512 at 256, a quarter of the released 512x1024); ``networks.define_G`` as
  ``Pix2PixHDModel`` calls it. Input: the sample's ids mod 35 one-hot, and the edges of its instance map
  (``semsynth.layers.functional.instance_edges``).
* **OASIS**: its ADE20K setting (``scripts/train_ade20k.sh``): ``config.read_arguments`` with ``--dataset_mode
  ade20k``, the attributes its ADE20K loader sets (151 channels, ``crop_size`` = ``--resolution``), 3D noise
  (z of 64), ``channels_G`` 64, ``syncbatch`` param-free norm (the vendored ``SynchronizedBatchNorm2d``, a
  plain batch norm outside ``DataParallel``), ``spade_ks`` 3; ``OASIS_Generator`` with the initialisation of
  ``OASIS_model.init_networks``.

The noise is the same on both sides: a z drawn once (``torch.manual_seed(--seed + 1)``, then ``randn``) and
saved. CC-FPSE's forward takes it as ``z``; OASIS's official forward draws its own, so it runs right after the
same ``torch.manual_seed`` (which makes that draw the saved z) and semsynth's OASIS gets the saved z.

Per family: the official generator is built with a seeded initialisation, its batch-norm statistics are warmed
up (momentum 1, one train-mode forward on the benchmark input: finite eval outputs), its state dict and the
``opt.txt`` its option parser wrote go through semsynth's converter
(``semsynth.convert.<family>.convert_<family>``, the ``semsynth convert`` path), and the eval outputs are
compared: semsynth's, and semsynth's after ``semsynth.inference_prep.prepare_for_inference``, must equal the
official one within 1e-4, else the run stops.

Then, round by round (the order rotated), each variant runs in a fresh process: build, load the weights (from
an mmap-ed file), reset the peak-RSS counter (``/proc/self/clear_refs``), one untimed call, ``--iters`` timed
calls (the fastest is kept), then ``VmHWM``. Variants: ``official`` / ``semsynth`` eval forward (``no_grad``)
and train forward+backward (loss: the mean of the image) at batch 1, and ``prepared``: semsynth's eval forward
after ``prepare_for_inference(G.eval(), copy=False)`` (as ``semsynth generate`` does). "Peak RSS" is ``VmHWM``
minus the RSS of the same process after its imports and the input (weights plus activations). Both sides run
with ``--threads`` intra-op threads and glibc malloc tuned as the CLI does it (``MALLOC_ENV``, unless
``--malloc default``). FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` on one call of each. Each round
also measures the machine's 3x3-conv throughput (``bench_official.conv_throughput``).

Ratios are semsynth / official, per round (the two processes ran next to each other): below 1 is better. Where
semsynth is slower than the official code (a median ratio above 1), or with ``--profile always``, one more
process per side profiles an eval forward (and a train forward+backward, where that is the slower one): time
per top-level module (forward hooks, fastest of ``--iters``) and the top operators by self CPU time
(``torch.profiler``). Everything goes to ``--json``. Exits 0 without measuring anything when no family has a
usable folder.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
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
sys.path.insert(0, str(REPO / "src"))  # this checkout's semsynth, in the driver and in every worker
sys.path.insert(1, str(Path(__file__).resolve().parent))
# the helpers this shares with bench_official.py (machine(), make_layout(), status_kib(), reset_peak(), ...)
bench_official = importlib.import_module("bench_official")
NUM_CLASSES = bench_official.NUM_CLASSES  # ADE20K: 150 classes + "other"
CITYSCAPES_LABEL_NC = 35  # pix2pixHD: the labelIds; + 1 instance-edge channel
TOLERANCE = 1e-4  # max |diff| of the eval outputs (semsynth, prepared) against the official one
VARIANTS = [("official", "eval"), ("semsynth", "eval"), ("prepared", "eval"), ("official", "train"),
            ("semsynth", "train")]


# ------------------------------------------------------------------------------------------------------------
# The families: how each official generator is built and called (in worker processes only)


def official_options(parse, argv: list[str]):
    """``parse()`` of an official option parser with ``argv`` as the command line, its printout swallowed."""
    saved = sys.argv
    sys.argv = ["train.py", *argv]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return parse()
    finally:
        sys.argv = saved


class Family:
    """One baseline: its official checkout, options, constructor and call, and semsynth's converter for it."""

    key = ""  # the --families name; --official-<key>
    repo = ""  # the official GitHub repository
    needs: tuple[str, ...] = ()  # files a checkout has
    converter = ""  # semsynth.convert.<converter>.convert_<converter>
    channels = NUM_CLASSES  # generator input channels
    z_dim = 0  # size of the noise vector both sides get (0: none)

    def __init__(self, noise_seed: int = 1) -> None:
        self.noise_seed = noise_seed

    def size(self, resolution: int) -> tuple[int, int]:
        return resolution, resolution

    def setting(self, resolution: int) -> str:
        raise NotImplementedError

    def labels(self, kind: str, resolution: int, seed: int):
        """The generator input [1, channels, H, W]: the one-hot ADE20K-sized label map."""
        import torch

        ids = bench_official.make_layout(kind, resolution, seed)
        return torch.nn.functional.one_hot(ids, NUM_CLASSES).permute(0, 3, 1, 2).float().contiguous()

    def check(self, path: Path | None) -> str | None:
        """Why ``path`` is not a usable checkout, or None."""
        if path is None:
            return f"no --official-{self.key} DIR given"
        for rel in self.needs:
            if not (path / rel).is_file():
                return f"--official-{self.key} {path}: {rel} is missing (expected a checkout of {self.repo})"
        return None

    def install_shims(self) -> None:
        """Stand-ins for modules the official code imports but does not use here (after ``import torch``)."""
        bench_official.install_shims()  # torch._six, easydict, dill

    def import_official(self) -> None:
        """Import the official modules (before the RSS baseline, as semsynth's are on the other side)."""
        raise NotImplementedError

    def options(self, resolution: int, workdir: Path):
        """(the official options, the opt.txt its parser wrote)."""
        raise NotImplementedError

    def construct(self, opt):
        """The official generator, initialised as the official code does."""
        raise NotImplementedError

    def call_official(self, G, x, z):
        return G(x)

    def call_semsynth(self, G, x, z):
        return G(x, z) if self.z_dim else G(x)


class Spade(Family):
    key, repo, converter = "spade", "NVlabs/SPADE", "spade"
    needs = ("models/networks/generator.py", "options/train_options.py", "data/ade20k_dataset.py")

    def setting(self, resolution: int) -> str:
        return (f"released ADE20K setting: --dataset_mode ade20k, 151 channels, {resolution}x{resolution}, "
                f"ngf 64, norm_G spectralspadesyncbatch3x3, no VAE")

    def install_shims(self) -> None:
        import torch

        super().install_shims()
        sync = types.ModuleType("models.networks.sync_batchnorm")  # a git submodule, not in the repository

        class SynchronizedBatchNorm2d(torch.nn.BatchNorm2d):
            """One process: synchronised batch norm is batch norm."""

        sync.SynchronizedBatchNorm2d = SynchronizedBatchNorm2d
        sys.modules.setdefault("models.networks.sync_batchnorm", sync)

    def import_official(self) -> None:
        importlib.import_module("models.networks")
        importlib.import_module("options.train_options")

    def options(self, resolution: int, workdir: Path):
        from options.train_options import TrainOptions

        opt = official_options(TrainOptions().parse, [
            "--dataset_mode", "ade20k", "--crop_size", str(resolution), "--batchSize", "1", "--gpu_ids", "-1",
            "--name", "bench", "--checkpoints_dir", str(workdir / "ck")])
        return opt, workdir / "ck" / "bench" / "opt.txt"

    def construct(self, opt):
        from models import networks

        with contextlib.redirect_stdout(io.StringIO()):
            return networks.define_G(opt)


class CCFPSE(Family):
    key, repo, converter = "ccfpse", "xh-liu/CC-FPSE", "ccfpse"
    needs = ("models/networks/generator.py", "models/networks/condconv.py", "options/train_options.py")
    z_dim = 256

    def setting(self, resolution: int) -> str:
        return (f"ADE20K setting (train.sh): --netG condconv --use_vae (z 256), 151 channels, "
                f"{resolution}x{resolution}, ngf 64, norm_G spectralsync_batch, mpdist off")

    def import_official(self) -> None:
        importlib.import_module("models.networks")
        importlib.import_module("options.train_options")

    def options(self, resolution: int, workdir: Path):
        from options.train_options import TrainOptions

        opt = official_options(TrainOptions().parse, [
            "--netG", "condconv", "--netD", "fpse", "--dataset_mode", "ade20k", "--use_vae", "--lambda_feat",
            "20", "--crop_size", str(resolution), "--batchSize", "1", "--name", "bench", "--checkpoints_dir",
            str(workdir / "ck")])
        return opt, workdir / "ck" / "bench" / "opt.txt"

    def construct(self, opt):
        from models import networks

        G = networks.find_network_using_name(opt.netG, "generator")(opt)  # define_G less its .cuda()
        G.init_weights(opt.init_type, opt.init_variance)
        return G

    def call_official(self, G, x, z):
        return G(x, z=z)


class Pix2PixHD(Family):
    key, repo, converter = "pix2pixhd", "NVIDIA/pix2pixHD", "pix2pixhd"
    needs = ("models/networks.py", "options/train_options.py", "models/pix2pixHD_model.py")
    channels = CITYSCAPES_LABEL_NC + 1

    def size(self, resolution: int) -> tuple[int, int]:
        return resolution, 2 * resolution

    def setting(self, resolution: int) -> str:
        h, w = self.size(resolution)
        return (f"label2city_512p generator (no ADE20K release): --netG global, ngf 64, 4 down-samplings, "
                f"9 blocks, instance norm, 35 labelIds + instance edge = 36 channels, {h}x{w} "
                f"(--loadSize {w})")

    def labels(self, kind: str, resolution: int, seed: int):
        """35 one-hot labelIds (the sample's ids mod 35) + the edges of its instance map: [1, 36, R, 2R]."""
        import torch

        from semsynth.layers.functional import instance_edges

        h, w = self.size(resolution)
        ids = bench_official.make_layout(kind, h, seed, width=w, classes=CITYSCAPES_LABEL_NC)
        inst = (bench_official.make_layout(kind, h, seed, width=w, classes=None, folder="train_inst")
                if kind == "coco" else ids)
        onehot = torch.nn.functional.one_hot(ids, CITYSCAPES_LABEL_NC).permute(0, 3, 1, 2).float()
        return torch.cat([onehot, instance_edges(inst)], dim=1).contiguous()

    def import_official(self) -> None:
        importlib.import_module("models.networks")
        importlib.import_module("options.train_options")

    def options(self, resolution: int, workdir: Path):
        from options.train_options import TrainOptions

        opt = official_options(TrainOptions().parse, [
            "--netG", "global", "--label_nc", str(CITYSCAPES_LABEL_NC), "--loadSize", str(2 * resolution),
            "--batchSize", "1", "--gpu_ids", "-1", "--name", "bench", "--checkpoints_dir",
            str(workdir / "ck")])
        return opt, workdir / "ck" / "bench" / "opt.txt"

    def construct(self, opt):
        from models import networks

        input_nc = opt.label_nc + (0 if opt.no_instance else 1)  # as Pix2PixHDModel.initialize
        with contextlib.redirect_stdout(io.StringIO()):
            return networks.define_G(input_nc, opt.output_nc, opt.ngf, opt.netG, opt.n_downsample_global,
                                     opt.n_blocks_global, opt.n_local_enhancers, opt.n_blocks_local, opt.norm,
                                     gpu_ids=opt.gpu_ids)


class OASIS(Family):
    key, repo, converter = "oasis", "boschresearch/OASIS", "oasis"
    needs = ("models/generator.py", "models/norms.py", "config.py")
    z_dim = 64

    def setting(self, resolution: int) -> str:
        return (f"ADE20K setting (scripts/train_ade20k.sh): 151 channels + 3D noise (z 64), "
                f"{resolution}x{resolution}, channels_G 64, 6 blocks, param_free_norm syncbatch, spade_ks 3, "
                f"spectral norm")

    def import_official(self) -> None:
        importlib.import_module("config")
        importlib.import_module("models.generator")
        importlib.import_module("models.models")

    def options(self, resolution: int, workdir: Path):
        import config

        opt = official_options(lambda: config.read_arguments(train=True), [
            "--dataset_mode", "ade20k", "--batch_size", "1", "--gpu_ids", "-1", "--name", "bench",
            "--checkpoints_dir", str(workdir / "ck")])
        # what its ADE20K loader (dataloaders/Ade20kDataset.py) sets on the options, at the benchmark's size
        opt.label_nc, opt.contain_dontcare_label, opt.semantic_nc = 150, True, NUM_CLASSES
        opt.crop_size, opt.aspect_ratio = resolution, 1.0
        return opt, workdir / "ck" / "bench" / "opt.txt"

    def construct(self, opt):
        from models import generator, models

        G = generator.OASIS_Generator(opt)
        # OASIS_model.init_networks on the generator alone (the model would build D and the EMA copy too)
        holder = types.SimpleNamespace(opt=types.SimpleNamespace(phase="test"), netG=G)
        models.OASIS_model.init_networks(holder)
        return G

    def call_official(self, G, x, z):
        import torch

        torch.manual_seed(self.noise_seed)  # its forward draws z: the saved one
        return G(x)


FAMILIES = {f.key: f for f in (Spade, CCFPSE, Pix2PixHD, OASIS)}


# ------------------------------------------------------------------------------------------------------------
# Worker processes


def load_inputs(workdir: Path):
    import torch

    x = torch.load(workdir / "input.pt", weights_only=True)
    z = torch.load(workdir / "z.pt", weights_only=True) if (workdir / "z.pt").is_file() else None
    return x, z


def enter_official(fam: Family, official: Path) -> None:
    import torch  # noqa: F401  (before the shims)

    fam.install_shims()
    sys.path.insert(0, str(official))


def warm_batch_norm(G, forward) -> None:
    """Running statistics = those of one train-mode forward (momentum 1), so that eval outputs are finite."""
    import torch

    norms = [m for m in G.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 1.0
    G.train()
    with torch.no_grad():
        forward()
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    G.eval()


def worker_setup_official(fam: Family, args, workdir: Path) -> dict:
    """Build the official G (seeded init), warm its batch norm up; save its state and eval output; FLOPs."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    enter_official(fam, args.official)
    opt, opt_txt = fam.options(args.resolution, workdir)
    torch.manual_seed(args.seed)
    G = fam.construct(opt)
    x, z = load_inputs(workdir)
    warm_batch_norm(G, lambda: fam.call_official(G, x, z))
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        out = fam.call_official(G, x, z)
    torch.save(out, workdir / "official_out.pt")
    torch.save(G.state_dict(), workdir / "official_state.pt")
    G.train()
    with FlopCounterMode(display=False) as fct:
        fam.call_official(G, x, z).mean().backward()
    return {"opt_txt": str(opt_txt), "params": sum(p.numel() for p in G.parameters()),
            "flops_eval": fc.get_total_flops(), "flops_train": fct.get_total_flops(),
            "out_absmax": out.abs().max().item(), "out_finite": bool(torch.isfinite(out).all())}


def worker_setup_semsynth(fam: Family, args, workdir: Path, opt_txt: str) -> dict:
    """Convert the official state with semsynth's converter, save it, compare the eval outputs; FLOPs."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from semsynth.convert import read_opt_txt
    from semsynth.inference_prep import prepare_for_inference

    module = importlib.import_module(f"semsynth.convert.{fam.converter}")
    convert = getattr(module, f"convert_{fam.converter}")
    state = torch.load(workdir / "official_state.pt", mmap=True, weights_only=True)
    G = convert(state, read_opt_txt(opt_txt)).generator.eval()
    (workdir / "semsynth_config.json").write_text(json.dumps(G.config))
    torch.save(G.state_dict(), workdir / "semsynth_state.pt")
    x, z = load_inputs(workdir)
    ref = torch.load(workdir / "official_out.pt", weights_only=True)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        out = fam.call_semsynth(G, x, z)
    P = prepare_for_inference(G)  # a prepared copy (G is trained below)
    with torch.no_grad(), FlopCounterMode(display=False) as fp:
        outp = fam.call_semsynth(P, x, z)
    G.train()
    with FlopCounterMode(display=False) as fct:
        fam.call_semsynth(G, x, z).mean().backward()
    return {"config": G.config, "params": sum(p.numel() for p in G.parameters()),
            "flops_eval": fc.get_total_flops(), "flops_eval_prepared": fp.get_total_flops(),
            "flops_train": fct.get_total_flops(), "max_abs_diff_vs_official": (out - ref).abs().max().item(),
            "max_abs_diff_prepared_vs_official": (outp - ref).abs().max().item(),
            "max_abs_diff_prepared_vs_unprepared": (outp - out).abs().max().item()}


def build_side(fam: Family, side: str, args, workdir: Path):
    """The generator of ``side`` with the benchmark weights, and its call ``(G, x, z) -> image``."""
    import torch

    if side == "official":
        opt, _ = fam.options(args.resolution, workdir / "w")
        G = fam.construct(opt)
        G.load_state_dict(torch.load(workdir / "official_state.pt", mmap=True, weights_only=True))
        return G, fam.call_official
    from semsynth.models import build_generator

    G = build_generator(json.loads((workdir / "semsynth_config.json").read_text()))
    G.load_state_dict(torch.load(workdir / "semsynth_state.pt", mmap=True, weights_only=True))
    if side == "prepared":
        from semsynth.inference_prep import prepare_for_inference

        G = prepare_for_inference(G.eval(), copy=False)  # as semsynth generate does: no second copy
    return G, fam.call_semsynth


def make_step(G, call, x, z, mode: str):
    """One call of ``mode``: an eval forward (``no_grad``), or a train forward+backward (loss: the image's
    mean) with the gradients reset first."""
    import torch

    if mode == "eval":
        G.eval()

        def step():
            with torch.no_grad():
                call(G, x, z)
    else:
        G.train()

        def step():
            for p in G.parameters():
                p.grad = None
            call(G, x, z).mean().backward()

    return step


def worker_time(fam: Family, args, workdir: Path, side: str, mode: str) -> dict:
    """Time ``mode`` of ``side`` in this fresh process; peak RSS above the process before the model."""
    import gc

    x, z = load_inputs(workdir)
    if side == "official":  # import its modules before the baseline, as semsynth's below
        enter_official(fam, args.official)
        fam.import_official()
    else:
        import semsynth.models  # noqa: F401
    base = bench_official.status_kib("VmRSS")
    G, call = build_side(fam, side, args, workdir)
    gc.collect()
    peak_reset = bench_official.reset_peak()
    after_build = bench_official.status_kib("VmRSS")
    step = make_step(G, call, x, z, mode)
    step()
    best = min(bench_official._timed(step) for _ in range(args.iters))
    peak = bench_official.status_kib("VmHWM")
    from semsynth.utils.allocator import active_allocator  # torch-free; after the peak is read

    return {"seconds": best, "rss_base_mib": base / 1024, "model_mib": (after_build - base) / 1024,
            "peak_above_base_mib": (peak - base) / 1024, "peak_reset": peak_reset,
            "allocator": active_allocator()}


def profile_units(G) -> list[tuple[str, object]]:
    """The modules whose forward times add up to (most of) the forward: G's children, descending into
    containers (``nn.ModuleList``, ``nn.Sequential``: nothing of their own between their members) and into a
    child that holds all of its parent's parameters (a generator wrapping one network)."""
    import torch

    units = []

    def visit(prefix: str, m) -> None:
        kids = list(m.named_children())
        with_params = [c for _, c in kids if any(True for _ in c.parameters())]
        for name, c in kids:
            container = isinstance(c, (torch.nn.ModuleList, torch.nn.Sequential))
            if container or (with_params == [c] and len(list(c.children())) > 1):
                visit(f"{prefix}{name}.", c)
            else:
                units.append((f"{prefix}{name}", c))

    visit("", G)
    return units


def worker_profile(fam: Family, args, workdir: Path, side: str, mode: str = "eval") -> dict:
    """Where one call of ``mode`` of ``side`` goes: wall time per top-level module's forward (forward hooks; a
    train step's backward is in the rest), for the fastest of ``--iters`` calls, and the top operators by self
    CPU time (``torch.profiler``, forward and backward)."""
    import torch

    if side == "official":
        enter_official(fam, args.official)
    x, z = load_inputs(workdir)
    G, call = build_side(fam, side, args, workdir)
    spent: dict[str, float] = {}
    start: dict[int, float] = {}
    for name, m in profile_units(G):
        m.register_forward_pre_hook(lambda mod, inp: start.__setitem__(id(mod), time.perf_counter()))
        m.register_forward_hook(lambda mod, inp, out, name=name: spent.__setitem__(
            name, spent.get(name, 0.0) + time.perf_counter() - start[id(mod)]))
    step = make_step(G, call, x, z, mode)
    step()
    runs = []
    for _ in range(max(1, args.iters)):
        spent.clear()
        runs.append((bench_official._timed(step), dict(spent)))
    total, parts = min(runs, key=lambda r: r[0])
    parts = {f"{k} ({type(G.get_submodule(k)).__name__})": v for k, v in parts.items()}
    rest = "(between the modules)" if mode == "eval" else "(backward, and between the modules)"
    parts[rest] = total - sum(parts.values())
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    return {"mode": mode, "total_s": total, "parts_s": dict(sorted(parts.items(), key=lambda kv: -kv[1])),
            "top_ops_self_ms": {e.key: e.self_cpu_time_total / 1000 for e in ops},
            "top_ops_calls": {e.key: e.count for e in ops}}


# ------------------------------------------------------------------------------------------------------------
# The driver


def spawn(args, workdir: Path, family: str, *extra: str) -> dict:
    env = bench_official.worker_env(args)
    cmd = [sys.executable, __file__, "--worker", extra[0], family, *extra[1:], "--workdir", str(workdir),
           "--resolution", str(args.resolution), "--threads", str(args.threads), "--iters", str(args.iters),
           "--seed", str(args.seed)]
    official = getattr(args, f"official_{family}")
    if official is not None:
        cmd += [f"--official-{family}", str(official)]
    p = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"worker {family} {' '.join(extra)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return bench_official.check_allocator(args, json.loads(p.stdout.strip().splitlines()[-1]))


def setup_family(fam: Family, args, workdir: Path) -> dict:
    """Inputs, the official G and its conversion; the outputs compared (the run stops beyond TOLERANCE)."""
    import torch

    workdir.mkdir(parents=True)
    torch.save(fam.labels(args.layout, args.resolution, args.seed), workdir / "input.pt")
    if fam.z_dim:
        torch.manual_seed(args.seed + 1)  # the draw OASIS's official forward makes after the same seed
        torch.save(torch.randn(1, fam.z_dim), workdir / "z.pt")
    t0 = time.time()
    off = spawn(args, workdir, fam.key, "setup-official")
    sem = spawn(args, workdir, fam.key, "setup-semsynth", off["opt_txt"])
    h, w = fam.size(args.resolution)
    print(f"\n[{fam.key}] {fam.setting(args.resolution)}")
    print(f"  official {off['params']:,} parameters, semsynth {sem['params']:,} ({sem['config']['name']}); "
          f"eval output max |diff| vs official: semsynth {sem['max_abs_diff_vs_official']:.2e}, prepared "
          f"{sem['max_abs_diff_prepared_vs_official']:.2e} (official |out| max {off['out_absmax']:.3f}); "
          f"GFLOP eval official {off['flops_eval'] / 1e9:.1f}, semsynth {sem['flops_eval'] / 1e9:.1f}, "
          f"prepared {sem['flops_eval_prepared'] / 1e9:.1f}; train official {off['flops_train'] / 1e9:.1f}, "
          f"semsynth {sem['flops_train'] / 1e9:.1f}  [input {fam.channels}x{h}x{w}; setup "
          f"{time.time() - t0:.0f} s]")
    if not off["out_finite"]:
        raise SystemExit(f"{fam.key}: the official eval output is not finite; nothing to compare")
    worst = max(sem["max_abs_diff_vs_official"], sem["max_abs_diff_prepared_vs_official"])
    if not worst <= TOLERANCE:
        raise SystemExit(f"{fam.key}: semsynth's eval output differs from the official one by {worst:.2e} > "
                         f"{TOLERANCE:g}: not the same network, nothing to compare")
    return {"setting": fam.setting(args.resolution), "input": [fam.channels, h, w], "official": off,
            "semsynth": sem}


def summarise(fam: Family, setup: dict, results: dict[str, list[dict]]) -> dict:
    """Medians, per-round ratios against the official process of the same round; printed as a table."""
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in results.items()}
    rss = {k: statistics.median(r["peak_above_base_mib"] for r in v) for k, v in results.items()}
    off, sem = setup["official"], setup["semsynth"]
    flops = {"official/eval": off["flops_eval"], "semsynth/eval": sem["flops_eval"],
             "prepared/eval": sem["flops_eval_prepared"], "official/train": off["flops_train"],
             "semsynth/train": sem["flops_train"]}
    ratios = {}
    print(f"\n[{fam.key}] | variant | time s (median) | / official: median of rounds (rounds) | peak RSS "
          f"above base MiB | / official | GFLOP |")
    print("|---|---|---|---|---|---|")
    for k, runs in results.items():
        ref = f"official/{k.split('/')[1]}"
        per_round = [a["seconds"] / b["seconds"] for a, b in zip(runs, results[ref])]
        ratios[k] = {"time_median_of_rounds": statistics.median(per_round), "time_per_round": per_round,
                     "time_of_medians": med[k] / med[ref], "rss": rss[k] / rss[ref]}
        rounds = ", ".join(f"{r:.2f}" for r in per_round)
        print(f"| {k} | {med[k]:.3f} | {ratios[k]['time_median_of_rounds']:.2f} ({rounds}) | {rss[k]:.0f} | "
              f"{ratios[k]['rss']:.2f} | {flops[k] / 1e9:.1f} |")
    return {"median_s": med, "peak_rss_above_base_mib": rss, "gflop": {k: v / 1e9 for k, v in flops.items()},
            "ratios": ratios, "raw": results}


def print_profile(fam: Family, variant: str, prof: dict) -> None:
    what = "eval forward" if prof["mode"] == "eval" else "train forward+backward"
    print(f"\n[{fam.key}] {variant.split('/')[0]} {what}, {prof['total_s']:.3f} s (forward hooks, fastest "
          f"call):")
    for name, sec in list(prof["parts_s"].items())[:14]:
        print(f"  {name:60s} {sec:7.3f} s  {100 * sec / prof['total_s']:5.1f} %")
    print("  top operators, self CPU ms (calls): " + ", ".join(
        f"{k} {v:.0f} ({prof['top_ops_calls'][k]})" for k, v in list(prof["top_ops_self_ms"].items())[:8]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for key, cls in FAMILIES.items():
        ap.add_argument(f"--official-{key}", type=Path, metavar="DIR", help=f"a checkout of {cls.repo}")
    ap.add_argument("--families", default=",".join(FAMILIES),
                    help=f"comma-separated subset of {','.join(FAMILIES)} (default: all)")
    ap.add_argument("--resolution", type=int, default=256,
                    help="label-map height, a multiple of 32 (pix2pixHD: twice as wide); default 256")
    bench_official.add_round_arguments(ap)
    ap.add_argument("--profile", choices=["auto", "always", "never"], default="auto",
                    help="profile an eval forward (and a train step where that is slower) of each side: "
                         "where semsynth is slower (auto), always, never")
    bench_official.add_worker_arguments(ap)
    args = ap.parse_args()
    if args.resolution % 32 or args.resolution < 32:
        ap.error(f"--resolution {args.resolution}: use a multiple of 32 (the generators start at 1/32 of it)")

    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        kind, fam = args.worker[0], FAMILIES[args.worker[1]](noise_seed=args.seed + 1)
        args.official = getattr(args, f"official_{fam.key}")
        if kind == "setup-official":
            res = worker_setup_official(fam, args, args.workdir)
        elif kind == "setup-semsynth":
            res = worker_setup_semsynth(fam, args, args.workdir, args.worker[2])
        elif kind == "time":
            res = (bench_official.conv_throughput(args.iters) if args.worker[2] == "conv"
                   else worker_time(fam, args, args.workdir, args.worker[2], args.worker[3]))
        else:
            res = worker_profile(fam, args, args.workdir, *args.worker[2:4])
        print(json.dumps(res))
        return

    wanted = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in FAMILIES]
    if unknown:
        ap.error(f"--families: unknown {', '.join(unknown)}; choose from {', '.join(FAMILIES)}")
    families = []
    for key in wanted:
        fam = FAMILIES[key](noise_seed=args.seed + 1)
        path = getattr(args, f"official_{key}")
        why = fam.check(path)
        if why:
            print(f"bench_baselines_official: {key} skipped: {why}. Bring the official code with e.g. `git "
                  f"--git-dir=<mirror of {fam.repo}> archive HEAD | tar -x -C /tmp/off_{key}` and pass "
                  f"--official-{key} /tmp/off_{key}.")
            continue
        setattr(args, f"official_{key}", path.resolve())
        families.append(fam)
    if not families:
        print("bench_baselines_official: no family to measure")
        return

    info = bench_official.machine()
    print(f"CPU {info['cpu']} ({info['cpus']} CPUs), avx512 {info['avx512']}, avx512_bf16 "
          f"{info['avx512_bf16']}, mkldnn bf16 {info['mkldnn_bf16']}, torch {info['torch']}, load average "
          f"{info['loadavg']}")
    print(f"families {', '.join(f.key for f in families)}; resolution {args.resolution}, batch 1, fp32, "
          f"{args.threads} thread(s), malloc {args.malloc} {dict(args.malloc_env or [])}, layout {args.layout}, {args.rounds} rounds x "
          f"{args.iters} timed calls per process")
    root = Path(tempfile.mkdtemp(prefix="bench_baselines_"))
    t0 = time.time()
    setups = {f.key: setup_family(f, args, root / f.key) for f in families}

    variants = [(s, m) for s, m in VARIANTS if not (args.no_train and m == "train")]
    results = {f.key: {f"{s}/{m}": [] for s, m in variants} for f in families}
    conv = []
    for r in range(args.rounds):
        conv.append(spawn(args, root / families[0].key, families[0].key, "time", "conv"))
        for fam in families:
            for s, m in variants[r % len(variants):] + variants[: r % len(variants)]:
                results[fam.key][f"{s}/{m}"].append(spawn(args, root / fam.key, fam.key, "time", s, m))
        print(f"  round {r + 1}/{args.rounds} done [{time.time() - t0:.0f} s], load {os.getloadavg()}")

    gflops = statistics.median(c["gflops_per_s"] for c in conv)
    print(f"\n3x3-conv throughput {gflops:.1f} GFLOP/s (median of the rounds: "
          + ", ".join(f"{c['gflops_per_s']:.1f}" for c in conv) + ")")
    summary, profiles = {}, {}
    for fam in families:
        summary[fam.key] = summarise(fam, setups[fam.key], results[fam.key])
        slower = [k for k, v in summary[fam.key]["ratios"].items()
                  if not k.startswith("official/") and v["time_median_of_rounds"] > 1.0]
        if args.profile == "always" or (args.profile == "auto" and slower):
            if slower:
                print(f"[{fam.key}] semsynth slower than the official code in {', '.join(slower)}: "
                      f"profiling an eval forward of each side")
            modes = ["eval"] + (["train"] if "semsynth/train" in slower else [])  # eval, as the issue asks
            profiles[fam.key] = {f"{s}/{m}": spawn(args, root / fam.key, fam.key, "profile", s, m)
                                 for m in modes for s in ("official", "semsynth")}
            for k, prof in profiles[fam.key].items():
                print_profile(fam, k, prof)
    info["loadavg_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps({
            "machine": info, "args": {k: str(v) for k, v in vars(args).items()},
            "conv_gflops_per_s": gflops, "conv_raw": conv, "setup": setups, "results": summary,
            "profiles": profiles}, indent=2))
    print(f"\nload average at the end {info['loadavg_end']}; total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
