"""The training function. One readable function; the helpers it calls say what they do.

Runs unchanged on one CPU process, one GPU, or several processes under ``torchrun`` (DDP).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config import RunConfig, check_models
from ..data import build_dataset, colorize
from ..errors import ConfigError, SemsynthError
from ..layers.layout import to_channels_last
from ..layers.recompute import enable_recompute, rebuild_scope
from ..layers.scc import set_scc_recompute
from ..layers import convert_sync_batchnorm, semantic_input
from ..layers.spectral import power_iteration_frozen
from ..models import build_discriminator, build_encoder, build_generator, count_parameters
from ..utils.images import image_grid, save_png
from ..utils.allocator import active_allocator
from ..utils.runtime import cpu_bf16_supported, new_run_dir, select_device
from ..utils.files import atomic_write_text
from ..objectives import build_objective
from .checkpoint import (
    export_model,
    find_resume_checkpoint,
    format_setting,
    numerics_changes,
    prune_checkpoints,
    remove_stale_temporaries,
    rng_state,
    save_training_state,
    set_aside_newer_checkpoints,
    set_rng_state,
)
from .distributed import all_reduce_mean, any_true, broadcast_object, gather_objects, init_distributed
from .distributed import shutdown as shutdown_distributed
from .ema import ema_beta, make_ema, refresh_batchnorm, update_ema
from .sampler import ResumableSampler
from .stats import RunLog, RunningMeans, TensorBoardLog, format_duration


class TrainingDiverged(SemsynthError):
    """Too many consecutive steps with a non-finite loss or gradient."""


class TrainingInterrupted(Exception):
    """Raised by :func:`train` when SIGINT or SIGTERM stopped the run, after its checkpoint was written.

    ``run_dir``, ``signal`` (the number), ``checkpoint`` (the path written; None on ranks other than 0) and
    ``images`` (seen so far); ``exit_code`` is the conventional 128 + signal (130 SIGINT, 143 SIGTERM), which
    ``semsynth train`` exits with so that a scheduler does not take the unfinished run for a finished one."""

    def __init__(self, run_dir: Path, signum: int, checkpoint: Path | None, images: int) -> None:
        self.run_dir, self.signal, self.checkpoint, self.images = Path(run_dir), int(signum), checkpoint, images
        super().__init__(f"stopped by {signal.Signals(signum).name} at {images} images; checkpoint {checkpoint}; "
                         f"continue with 'semsynth train --resume {run_dir}'")

    @property
    def exit_code(self) -> int:
        return 128 + self.signal


def lr_factor(progress: float, decay_start: float) -> float:
    """1 until ``decay_start`` (a fraction of training), then linear to 0 at the end (official schedule)."""
    if progress <= decay_start or decay_start >= 1:
        return 1.0
    return max(0.0, (1.0 - progress) / (1.0 - decay_start))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def collate(samples: list[dict]) -> dict:
    """A batch: ``name`` (list) and the stacked ``label``, ``image``, ``instance`` and (unpaired translation data)
    ``source`` tensors of the samples that have them."""
    out: dict = {"name": [s["name"] for s in samples]}
    for key in ("label", "image", "instance", "source"):
        if key in samples[0]:
            out[key] = torch.stack([s[key] for s in samples])
    return out


class SeededSamples(Dataset):
    """``dataset[i]`` served for keys ``(epoch, i)``, with torch's RNG seeded from ``(seed, epoch, i)`` during the
    call: random crops and flips then depend neither on the process that loads the sample (``train.num_workers``)
    nor on where a run was resumed, and they draw nothing from the training process's RNG."""

    def __init__(self, dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, i = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(((self.seed * 1_000_003 + epoch) * 1_000_003 + i) % 2**63)
            return self.dataset[i]


class EpochKeys(Sampler):
    """The indices of a :class:`ResumableSampler` as ``(epoch, index)`` keys for :class:`SeededSamples`."""

    def __init__(self, sampler: ResumableSampler) -> None:
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        epoch = self.sampler.epoch
        return ((epoch, i) for i in self.sampler)


def to_semantic(batch: dict, info, device: torch.device) -> torch.Tensor:
    """The generator's input: the one-hot label map (+ instance edges), or, for unpaired translation data, the
    source images (``batch["source"]``; the batch's ``image`` is then a target-domain image)."""
    if "source" in batch:
        return batch["source"].to(device, non_blocking=True)
    label = batch["label"].to(device, non_blocking=True)
    inst = batch["instance"].to(device, non_blocking=True) if info.has_instance else None
    return semantic_input(label, info.num_classes, inst)


def refresh_batches(dataset, info, batch_size: int, count: int, seed: int, device: torch.device):
    """``count`` semantic maps of ``batch_size`` random training samples (with their own seeded crops and flips),
    on which the EMA's batch-norm statistics are re-estimated (``train.ema_bn_batches``); nothing is drawn from the
    training run's random stream."""
    samples = SeededSamples(dataset, seed)
    g = torch.Generator().manual_seed(seed)
    for _ in range(count):
        idx = torch.randint(0, len(dataset), (batch_size,), generator=g).tolist()
        yield to_semantic(collate([samples[(-1, i)] for i in idx]), info, device)


def unwrap(module):
    """The plain module under DDP / torch.compile wrappers."""
    module = getattr(module, "_orig_mod", module)
    return module.module if isinstance(module, DDP) else module


@torch.no_grad()
def make_sample_grid(G, info, fixed: dict, device: torch.device) -> np.ndarray:
    """layout | real | fake | coarse RGB, one row per fixed sample, G in eval mode (unpaired translation: source |
    target-domain reference | translation | coarse RGB)."""
    was_training = G.training
    G.eval()
    z = None
    if getattr(G, "latent_dim", 0) > 0:  # a fixed latent per row, so grids are comparable over time
        from ..inference import seed_noise

        z = torch.stack([seed_noise(i, G.latent_dim) for i in range(len(fixed["name"]))]).to(device)
    translation = "source" in fixed
    extra = {"reference": fixed["image"].to(device)} if translation else {}
    out = G(to_semantic(fixed, info, device), z, return_aux=True, **extra)
    G.train(was_training)
    first = fixed["source"] if translation else colorize(fixed["label"], info.palette)
    cols = [first, fixed["image"], out.image.float().cpu()]
    if out.coarse_rgb is not None:
        cols.append(out.coarse_rgb.float().cpu())
    return image_grid(cols)


def resolve_resume(resume: str | os.PathLike) -> Path:
    """A checkpoint file, or the newest readable checkpoint of a run directory."""
    return find_resume_checkpoint(resume)[0]


def grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))


class SignalExit(KeyboardInterrupt):
    """A second SIGINT / SIGTERM: leave at once; the CLI exits with 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class StopFlag:
    """Set by SIGINT / SIGTERM; the loop checkpoints and leaves at the end of the current step."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> StopFlag:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: no signal handling
            pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:  # a second signal: stop now (exit code 128 + signal, no checkpoint)
            raise SignalExit(signum)
        self.signal = signum

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train(cfg: RunConfig, outdir: str | os.PathLike = "runs", resume: str | os.PathLike | None = None,
          run_dir: str | os.PathLike | None = None, stop_after: int | None = None, force: bool = False) -> Path:
    """Train ``cfg``; returns the run directory (config.yaml, log.txt, stats.jsonl, samples/, checkpoints/,
    model/, report.html, tensorboard/).

    ``resume``: a training-state file, or a run directory (its newest readable checkpoint); the run continues
    exactly. A ``cfg`` whose settings differ from the checkpoint's in a way that changes the numerics (anything
    but bookkeeping, see ``checkpoint.BOOKKEEPING_KEYS``, and the run's length) is refused with a
    :class:`ConfigError` listing the differences, unless ``force``.
    ``stop_after``: leave after this many images (of the whole run) with a checkpoint, to be resumed later;
    the schedule is that of the full run; returns the run directory.
    SIGINT / SIGTERM stop at the end of the current step with a checkpoint, then raise
    :class:`TrainingInterrupted` (``exit_code`` 130 / 143).
    """
    t_start = time.time()
    tc, oc = cfg.train, cfg.optim
    oc.resolve()

    # 1. Processes, device, seeds ------------------------------------------------------------------------------
    device = select_device(tc.device)
    dist_info = init_distributed(device.type)
    device = select_device(tc.device, dist_info.local_rank if dist_info.enabled else None)
    main = dist_info.is_main
    world = dist_info.world_size
    if tc.precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision=fp16 needs CUDA (gradient scaling); on CPU use bf16 or fp32")
    if tc.threads is not None:
        torch.set_num_threads(tc.threads)  # on a shared CPU, fewer threads than cores avoids spin-waiting
    seed_everything(tc.seed)  # the same on every process, so that all build identical networks

    # 2. Preflight: everything that can fail on the user's input fails before anything is written --------------
    objective = build_objective(cfg.loss).prepare(device)  # loads VGG19 etc.: a missing file stops us here
    dataset = build_dataset(cfg.data)
    info = dataset.info
    check_models(cfg, info)  # a config built or edited in Python after resolving is checked too
    if "image" not in dataset[0]:
        raise ConfigError(f"dataset {info.name} serves label maps only (images: false); training needs images")
    total_images = tc.images if tc.images is not None else int(round(tc.epochs * len(dataset)))
    state, resume_path, resume_notes = None, None, []
    if resume is not None:
        resume_path, state, unreadable = find_resume_checkpoint(resume)
        for bad, why in unreadable:
            resume_notes.append(f"warning: {why}; resuming from {resume_path} instead, the newest readable one")
        resume_notes += check_resume_settings(state, cfg, total_images, len(dataset), resume_path, force)
    init = None  # fine-tuning (train.init): the weights are checked against this run's networks now, loaded in 5.
    if tc.init is not None and state is None:
        init = load_init_weights(cfg, info)
    elif tc.init is not None:
        resume_notes.append(f"train.init {tc.init} not applied: a resumed run continues from its checkpoint's weights")

    # 3. Run directory (chosen by rank 0) ----------------------------------------------------------------------
    if main:
        if resume_path is not None:
            run_dir = Path(run_dir) if run_dir else resume_path.parent.parent
            remove_stale_temporaries(run_dir)
            # newer checkpoints (unreadable ones, or a branch abandoned by resuming from an older one) must not
            # be taken for this run's state by a later --resume RUN
            moved = set_aside_newer_checkpoints(run_dir, state["cur_nimg"])
            if moved:
                resume_notes.append(f"moved {len(moved)} checkpoint(s) newer than the resume point to "
                                    f"{moved[0].parent} (kept, out of the way of a later --resume): "
                                    + ", ".join(m.name for m in moved))
            if state["cur_nimg"] < total_images:  # the run is not finished (any more)
                (run_dir / "DONE").unlink(missing_ok=True)
        run_dir = Path(run_dir) if run_dir else new_run_dir(outdir, cfg.name)
        run_dir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(broadcast_object(str(run_dir) if main else None, dist_info))
    log = RunLog(run_dir, enabled=main)
    if main:
        atomic_write_text(cfg.to_yaml(), run_dir / "config.yaml")
    tb = TensorBoardLog(run_dir / "tensorboard") if main and tc.tensorboard else None

    # 4. Data: each process reads its own shard; one global batch = batch_size x processes ---------------------
    sampler = ResumableSampler(len(dataset), tc.batch_size, seed=tc.seed, rank=dist_info.rank, world_size=world)
    # random crops and flips seeded per sample: the same with any num_workers, and exact across resumes
    loader = DataLoader(SeededSamples(dataset, tc.seed), batch_size=tc.batch_size, sampler=EpochKeys(sampler),
                        num_workers=tc.num_workers,
                        collate_fn=collate, drop_last=True, pin_memory=device.type == "cuda",
                        # its own generator: creating an iterator must not draw from the global RNG, or a
                        # resumed run would diverge from an uninterrupted one
                        generator=torch.Generator().manual_seed(tc.seed))
    global_batch = tc.batch_size * world
    images_per_epoch = sampler.batches_per_epoch * global_batch
    fixed = collate([dataset[i] for i in range(min(tc.num_samples, len(dataset)))])
    # how raw label-file values map to channels, so that `semsynth generate` reads layouts as training did
    table = getattr(getattr(dataset, "mapping", None), "table", None)
    label_values = {str(k): int(v) for k, v in sorted(table.items())} if table else None

    # 5. Networks, EMA, DDP, optimisers (TTUR), objective, precision -------------------------------------------
    fmt = torch.channels_last if tc.channels_last else torch.contiguous_format
    G = build_generator(cfg.generator).to(device).train()
    if init is not None:  # before anything copies G (the objective, the EMA) or wraps it (DDP)
        G.load_state_dict(init.states["G"])
    objective.attach(G)  # what the objective loaded for G (SIMS: its memory bank), before EMA copies and samples
    D = build_discriminator(cfg.discriminator).to(device).train() if cfg.discriminator is not None else None
    if tc.channels_last:
        G = to_channels_last(G)
        D = to_channels_last(D) if D is not None else None
    E = build_encoder(cfg.encoder).to(device).train() if cfg.encoder else None
    for net, key in ((D, "D"), (E, "E")):
        if init is not None and init.states.get(key) is not None:
            net.load_state_dict(init.states[key])
    G_ema = make_ema(G) if tc.ema and main else None
    if tc.recompute:  # after the EMA copy, before DDP / compile wrap G (the blocks' state dicts are unchanged)
        enable_recompute(G)
    set_scc_recompute(G, tc.scc_recompute_pixels)
    opt_G = torch.optim.Adam(list(G.parameters()) + (list(E.parameters()) if E is not None else []),
                             lr=oc.lr_g, betas=(float(oc.beta1), float(oc.beta2)), eps=oc.eps)
    opt_D = torch.optim.Adam(D.parameters(), lr=oc.lr_d, betas=(float(oc.beta1), float(oc.beta2)), eps=oc.eps) \
        if D is not None else None
    if dist_info.enabled:
        if device.type == "cuda" and tc.sync_batchnorm:
            G = convert_sync_batchnorm(G)
        ids = [device.index] if device.type == "cuda" else None
        # without L_s the SVG's RGB head gets no gradient: tell DDP not to wait for it
        G = DDP(G, device_ids=ids, find_unused_parameters=objective.find_unused_parameters)
        D = DDP(D, device_ids=ids) if D is not None else None
        E = DDP(E, device_ids=ids) if E is not None else None
    if tc.compile:
        G = torch.compile(G)
        D = torch.compile(D) if D is not None else None
    G_plain, E_plain = unwrap(G), unwrap(E) if E is not None else None
    D_plain = unwrap(D) if D is not None else None
    G_out = G_ema if G_ema is not None else G_plain  # what samples and the exported model use
    precision = tc.precision
    if precision == "bf16" and device.type == "cpu" and not cpu_bf16_supported():
        precision = "fp32"  # the run's settings keep bf16 (a resume on a bf16 CPU uses it again); logged below
        log.info("warning: train.precision=bf16, but this CPU has no native bfloat16 (torch.ops.mkldnn."
                 "_is_mkldnn_bf16_supported() is False: bf16 convolutions would run about 400x slower than fp32); "
                 "this run computes in fp32 on this machine")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    use_scaler = tc.precision == "fp16"
    scaler_G = torch.amp.GradScaler(device.type, enabled=use_scaler)
    scaler_D = torch.amp.GradScaler(device.type, enabled=use_scaler)
    # the KL term is summed over the whole (global) batch, as the official code does
    kl_scale = float(world * tc.accumulate)

    # 6. Resume ---------------------------------------------------------------------------------------------------
    cur_nimg, cur_iter, bad_steps = 0, 0, 0
    last_good: Path | None = resume_path  # the newest checkpoint written outside a run of bad steps
    if state is not None:
        G_plain.load_state_dict(state["G"])
        if D_plain is not None:
            D_plain.load_state_dict(state["D"])
        if E_plain is not None:
            E_plain.load_state_dict(state["E"])
        if G_ema is not None:
            G_ema.load_state_dict(state["G_ema"] if state.get("G_ema") is not None else state["G"])
        opt_G.load_state_dict(state["opt_G"])
        if opt_D is not None:
            opt_D.load_state_dict(state["opt_D"])
        scaler_G.load_state_dict(state.get("scaler_G") or {})
        scaler_D.load_state_dict(state.get("scaler_D") or {})
        cur_nimg, cur_iter = state["cur_nimg"], state["cur_iter"]
        rngs = state["rng"]
        rngs = [rngs] if isinstance(rngs, dict) else rngs  # single-process states of format 1
        if len(rngs) == world:
            set_rng_state(rngs[dist_info.rank])
        else:
            log.info(f"the checkpoint was written by {len(rngs)} process(es), this run has {world}: the data "
                     f"order continues, random draws restart from a fresh seed")
            seed_everything(tc.seed + 7919 * (cur_iter + 1) + dist_info.rank)
        for note in resume_notes:
            log.info(note)
        log.info(f"resumed from {resume_path} at {cur_nimg} images")
    else:
        seed_everything(tc.seed + dist_info.rank)  # different noise on every process from here on
        log.info(f"run directory: {run_dir}")
        for line in init.lines if init is not None else []:
            log.info(line)
    log.info(f"G {cfg.generator['name']}: {count_parameters(G_plain):,} parameters; "
             + (f"D {cfg.discriminator['name']}: {count_parameters(D_plain):,}" if D_plain is not None else "no D")
             + (f"; E: {count_parameters(E_plain):,}" if E is not None else "") + f"; objective {cfg.loss['name']}"
             + f"; device {device}; precision {precision}"
             + (f"; malloc {active_allocator()}" if device.type == "cpu" else ""))
    log.info(f"data {info.name}: {len(dataset)} samples, {info.num_classes} classes, {info.resolution[0]}x"
             f"{info.resolution[1]}; batch {tc.batch_size} per process x {world} process(es) = {global_batch} "
             f"global" + (f" in {tc.accumulate} micro-batches" if tc.accumulate > 1 else "")
             + f"; {total_images} images in all")

    ema_refreshed_at = -1

    def refresh_ema() -> None:
        """Before the EMA is used: its own batch-norm statistics (train.ema_bn_batches; OASIS)."""
        nonlocal ema_refreshed_at
        if G_ema is not None and tc.ema_bn_batches > 0 and ema_refreshed_at != cur_nimg:
            refresh_batchnorm(G_ema, refresh_batches(dataset, info, tc.batch_size, tc.ema_bn_batches,
                                                     tc.seed + 1 + cur_nimg, device), device, tc.seed + cur_nimg)
            ema_refreshed_at = cur_nimg

    def save_checkpoint() -> Path | None:
        nonlocal last_good
        rngs = gather_objects(rng_state(), dist_info)  # collective: every process takes part
        if not main:
            return None
        refresh_ema()
        path = save_training_state({
            "format": "semsynth-training-state", "version": 1, "config": cfg.to_dict(),
            "G": G_plain.state_dict(), "D": D_plain.state_dict() if D_plain is not None else None,
            "E": E_plain.state_dict() if E_plain is not None else None,
            "G_ema": G_ema.state_dict() if G_ema is not None else None,
            "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict() if opt_D is not None else None,
            "scaler_G": scaler_G.state_dict(), "scaler_D": scaler_D.state_dict(),
            "cur_nimg": cur_nimg, "cur_iter": cur_iter, "world_size": world, "rng": rngs,
        }, run_dir / "checkpoints" / f"training-state-{cur_nimg:09d}.pt")
        prune_checkpoints(run_dir, tc.keep_checkpoints)
        export_model(run_dir / "model", G_out, info, E_plain,
                     extra={"images_seen": cur_nimg, "ema": G_ema is not None, "label_values": label_values,
                            "data": cfg.data})
        if bad_steps == 0:
            last_good = path
        return path

    def save_samples(tag: str) -> None:
        if main:
            refresh_ema()
            grid = make_sample_grid(G_out, info, fixed, device)
            save_png(grid, run_dir / "samples" / f"{tag}.png")
            if tb is not None:
                tb.image("samples", grid, cur_nimg)

    def optimizer_step(opt, scaler, params, loss_finite: bool, what: str) -> bool:
        """Step unless the loss or the gradient is not finite (same decision on every process)."""
        scaler.unscale_(opt)
        norm = grad_norm(params)
        bad = any_true(not loss_finite or (not use_scaler and not bool(torch.isfinite(norm))), dist_info, device)
        if bad:
            opt.zero_grad(set_to_none=True)
            log.info(f"step {cur_iter}: non-finite {what} loss or gradient, step skipped "
                     f"({bad_steps + 1} bad step(s) in a row)")
            scaler.update()
            return False
        scaler.step(opt)
        scaler.update()
        # the gradients are not read again: released now, G's are not held through the D step (232 MiB at the
        # ADE20K preset; the official code keeps them until its next G step)
        opt.zero_grad(set_to_none=True)
        return True

    def check_divergence(step_ok: bool) -> None:
        nonlocal bad_steps
        bad_steps = 0 if step_ok else bad_steps + 1
        if bad_steps >= tc.nan_patience:
            raise TrainingDiverged(
                f"training diverged: {bad_steps} consecutive non-finite steps, the last at step {cur_iter} "
                f"({cur_nimg} images); last good checkpoint: {last_good or 'none'}. Resume from it with "
                f"a lower learning rate (--set optim.lr=... --force) or in fp32 (--set train.precision=fp32 "
                f"--force)")

    # 7. Loop ------------------------------------------------------------------------------------------------------
    means = RunningMeans()
    next_log = (cur_nimg // tc.log_every + 1) * tc.log_every
    next_sample = (cur_nimg // tc.sample_every + 1) * tc.sample_every
    next_ckpt = (cur_nimg // tc.checkpoint_every + 1) * tc.checkpoint_every
    end = total_images if stop_after is None else min(total_images, stop_after)
    g_params = [p for p in opt_G.param_groups[0]["params"]]
    d_params = list(D_plain.parameters()) if D_plain is not None else []
    micro = tc.batch_size // tc.accumulate
    interrupted = None
    if cur_nimg == 0:
        save_samples("init")
    t_last, nimg_last = time.time(), cur_nimg
    with StopFlag() as stop:
        while cur_nimg < end and interrupted is None:
            epoch, within = divmod(cur_nimg, images_per_epoch)
            sampler.set_epoch(epoch, within // global_batch)
            for batch in loader:
                if cur_nimg >= end:
                    break
                f = lr_factor(cur_nimg / total_images, tc.decay_start)
                for group in opt_G.param_groups:
                    group["lr"] = oc.lr_g * f
                for group in opt_D.param_groups if opt_D is not None else []:
                    group["lr"] = oc.lr_d * f
                real_all = batch["image"].to(device, non_blocking=True).contiguous(memory_format=fmt)
                sem_all = to_semantic(batch, info, device).contiguous(memory_format=fmt)
                chunks = list(zip(real_all.split(micro), sem_all.split(micro)))

                # G step (every d_steps_per_g iterations) ...
                fakes: list[torch.Tensor | None] = [None] * len(chunks)
                step_ok = True
                if D is None or cur_iter % tc.d_steps_per_g == 0:
                    if D_plain is not None:
                        D_plain.requires_grad_(False)  # the G step reads D but does not train it
                    opt_G.zero_grad(set_to_none=True)
                    finite = True
                    for j, (real, sem) in enumerate(chunks):
                        with contextlib.ExitStack() as sync:
                            if dist_info.enabled and j < len(chunks) - 1:  # all-reduce once, at the last
                                for m in (G, E):
                                    if isinstance(unwrap_ddp(m), DDP):
                                        sync.enter_context(unwrap_ddp(m).no_sync())
                            if j > 0:  # spectral norm advances once per step, as with the full batch
                                sync.enter_context(power_iteration_frozen(G_plain, D_plain, E_plain))
                            with autocast(), rebuild_scope():  # kept for backward: rebuildable tensors as recipes
                                g_loss, g_stats, fakes[j] = objective.generator_loss(
                                    G, D_plain, E, sem, real, kl_scale=kl_scale)
                            scaler_G.scale(g_loss / len(chunks)).backward()
                        finite &= bool(torch.isfinite(g_loss))
                        means.add(g_stats)
                    if D_plain is not None:
                        D_plain.requires_grad_(True)
                    if not optimizer_step(opt_G, scaler_G, g_params, finite, "generator"):
                        step_ok = False
                    elif G_ema is not None:
                        update_ema(G_ema, G_plain, ema_beta(global_batch, tc.ema_halflife_images, cur_nimg,
                                                            tc.ema_rampup))

                # ... then the D step, on fresh fakes (official) or the G step's (none without a D)
                if D is not None:
                    opt_D.zero_grad(set_to_none=True)
                    finite = True
                    for j, (real, sem) in enumerate(chunks):
                        with contextlib.ExitStack() as sync:
                            if j > 0:
                                sync.enter_context(power_iteration_frozen(G_plain, D_plain, E_plain))
                            if dist_info.enabled and j < len(chunks) - 1:
                                sync.enter_context(unwrap_ddp(D).no_sync())
                            with autocast():
                                fake = fakes[j] if (fakes[j] is not None and tc.d_fakes == "reuse") else \
                                    objective.generate(G_plain, E_plain, sem, real)
                            with autocast(), rebuild_scope():
                                d_loss, d_stats = objective.discriminator_loss(D, sem, real, fake)
                            scaler_D.scale(d_loss / len(chunks)).backward()
                        finite &= bool(torch.isfinite(d_loss))
                        means.add(d_stats)
                    if not optimizer_step(opt_D, scaler_D, d_params, finite, "discriminator"):
                        step_ok = False
                check_divergence(step_ok)

                cur_iter += 1
                cur_nimg += global_batch
                now = time.time()
                rate = (cur_nimg - nimg_last) / max(now - t_last, 1e-9)
                log.progress(cur_nimg, total_images, rate)

                # maintenance: every process takes part in the collectives, rank 0 writes
                if cur_nimg >= next_log or cur_nimg >= end:
                    vals = all_reduce_mean(means.read(), dist_info, device)
                    eta = (total_images - cur_nimg) / rate if rate > 0 else float("nan")
                    rec = {"images": cur_nimg, "iter": cur_iter, "epoch": round(cur_nimg / len(dataset), 4),
                           "time": round(now - t_start, 2), "images_per_s": round(rate, 3), "lr_g": oc.lr_g * f,
                           "lr_d": oc.lr_d * f, **{k: round(v, 5) for k, v in vals.items()}}
                    log.record(rec)
                    if tb is not None:
                        tb.scalars(rec, cur_nimg)
                    log.info(f"img {cur_nimg}/{total_images}  ep {rec['epoch']:.2f}  {rate:.1f} img/s  "
                             f"ETA {format_duration(eta)}  " + "  ".join(f"{k} {v:.3f}" for k, v in vals.items()))
                    next_log += tc.log_every
                    t_last, nimg_last = now, cur_nimg
                if cur_nimg >= next_sample:
                    save_samples(f"{cur_nimg:09d}")
                    next_sample += tc.sample_every
                if cur_nimg >= next_ckpt:
                    save_checkpoint()
                    next_ckpt += tc.checkpoint_every
                if any_true(stop.signal is not None, dist_info, device):
                    interrupted = stop.signal or signal.SIGTERM
                    break

    # 8. Finish: final checkpoint, exported model, samples, report ---------------------------------------------
    path = save_checkpoint()
    if cur_nimg < total_images:  # a signal on the last step does not stop a run that has finished
        why = f"signal {signal.Signals(interrupted).name}" if interrupted is not None else "stop_after"
        log.info(f"stopped ({why}) at {cur_nimg} of {total_images} images; checkpoint {path}; continue with "
                 f"'semsynth train --resume {run_dir}'")
        if tb is not None:
            tb.close()
        shutdown_distributed(dist_info)
        if interrupted is not None:
            raise TrainingInterrupted(run_dir, interrupted, path, cur_nimg)
        return run_dir
    if main:
        save_samples(f"{cur_nimg:09d}")
        from ..report import write_run_report

        report = write_run_report(run_dir)
        log.info(f"done: {cur_nimg} images in {format_duration(time.time() - t_start)}; model in "
                 f"{run_dir / 'model'}; report: {report}")
        (run_dir / "DONE").write_text(json.dumps({"images": cur_nimg}), encoding="utf-8")
    if tb is not None:
        tb.close()
    shutdown_distributed(dist_info)
    return run_dir


class InitWeights:
    """The checked weights a new run starts from (``train.init``): ``states`` {"G", "D", "E"} (None: not given) and
    the log ``lines`` saying what was loaded from where."""

    def __init__(self, states: dict, lines: list[str]) -> None:
        self.states, self.lines = states, lines


def load_init_weights(cfg: RunConfig, info) -> InitWeights:
    """Read ``train.init`` (a model directory: ``model.safetensors``, optional ``encoder.safetensors`` and
    ``discriminator.safetensors``, ``config.json``) and check every tensor against the networks this run's config
    builds (``checkpoint._load_weights``: key, shape, dtype, finite values), before anything is written. G always;
    E and D when the directory has their weights and its config.json their section, and this run trains them."""
    from ..data import DatasetInfo
    from .checkpoint import _load_weights, read_model_config

    d = Path(cfg.train.init).expanduser()
    where = f"train.init {d}"
    try:
        config = read_model_config(d)
    except SemsynthError as e:
        raise ConfigError(f"{where}: {e}") from None
    gname = config["generator"].get("name")
    if gname != cfg.generator["name"]:
        raise ConfigError(f"{where}: the model's generator is {gname!r} (its config.json), this run trains "
                          f"{cfg.generator['name']!r}; fine-tune with the model's generator")
    lines = []
    try:
        theirs = DatasetInfo.from_dict(config["dataset"]).class_names
    except (TypeError, ValueError, KeyError):
        theirs = None
    ours = list(info.class_names or [])
    if theirs and ours and list(theirs) != ours:
        if sorted(theirs) == sorted(ours):
            k = next(i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b)
            raise ConfigError(f"{where}: the model's channel {k} is {theirs[k]!r} but this run's data puts "
                              f"{ours[k]!r} there: the same classes in another order, so the weights would paint "
                              f"the wrong classes; use the model's label convention (a model converted from SC-GAN's "
                              f"ADE20K reads data.label_convention=scgan)")
        lines.append(f"warning: {where}: the model was trained on other classes ({config['dataset'].get('name')}) "
                     f"than this run's data ({info.name}); its weights are used as they are")
    states: dict = {"G": None, "D": None, "E": None}
    loaded, skipped = [], []
    with torch.random.fork_rng(devices=[]):  # the check builds the networks once more: draw nothing from the run
        for key, section, fname in (("G", "generator", "model.safetensors"), ("E", "encoder", "encoder.safetensors"),
                                    ("D", "discriminator", "discriminator.safetensors")):
            run_spec = getattr(cfg, section)
            present = (d / fname).is_file() and (key == "G" or isinstance(config.get(section), dict))
            if key != "G" and not present:
                if run_spec is not None:
                    skipped.append(f"{key} ({fname} absent: starts from its initialisation)")
                continue
            if run_spec is None:
                skipped.append(f"{key} ({fname} not used: this run has no {section})")
                continue
            if key != "G" and config[section].get("name") != run_spec["name"]:
                raise ConfigError(f"{where}: {fname} holds a {config[section].get('name')!r} {section}, this run "
                                  f"trains {run_spec['name']!r}; use the model's {section} (or {section}: null)")
            build = {"G": build_generator, "E": build_encoder, "D": build_discriminator}[key]
            net = build(run_spec)
            try:
                _load_weights(net, d / fname, f"this run's {section} config", f"the {section}")
            except SemsynthError as e:
                why = str(e).replace("; keep config.json and the .safetensors files of one export together", "")
                raise ConfigError(f"{where}: {why}. Fine-tuning needs this run's {section} settings to be the "
                                  f"model's (its config.json)") from None
            states[key] = {k: v.detach().clone() for k, v in net.state_dict().items()}
            loaded.append(f"{key} ({fname})")
    lines.insert(0, f"initialised from {d}: {', '.join(loaded)}" + (f"; not loaded: {', '.join(skipped)}"
                                                                     if skipped else ""))
    return InitWeights(states, lines)


def check_resume_settings(state: dict, cfg: RunConfig, total_images: int, dataset_len: int, path: Path,
                          force: bool) -> list[str]:
    """Refuse a resume whose settings would change the numerics (unless ``force``); returns the lines to log:
    the accepted differences, and a note when the run's length (so its learning-rate schedule) changes."""
    notes = []
    changes = numerics_changes(state["config"], cfg.to_dict())
    listing = "".join(f"\n  {k}: {format_setting(a)} -> {format_setting(b)}" for k, a, b in changes)
    if changes and not force:
        raise ConfigError(
            f"--resume: {len(changes)} setting(s) differ from those stored in {path} and would change the "
            f"results:{listing}\na resumed run continues exactly only with the settings it was started with: drop "
            f"these --set / --config changes, or add --force to continue with the new settings anyway")
    if changes:
        notes.append(f"warning: --force: continuing with {len(changes)} setting(s) that differ from those stored "
                     f"in {path}, so the run no longer matches an uninterrupted one:{listing}")
    old_tc = state["config"]["train"]
    old_total = (old_tc["images"] if old_tc.get("images") is not None
                 else int(round(old_tc["epochs"] * dataset_len)))
    cur, decay = state["cur_nimg"], cfg.train.decay_start
    if total_images < cur:
        raise ConfigError(f"--resume {path}: the run's length is now {total_images} images, but the checkpoint "
                          f"has already seen {cur}; give train.images of at least {cur}")
    if total_images != old_total:
        notes.append(f"note: the run's length changes from {old_total} to {total_images} images; the learning-rate "
                     f"schedule is re-stretched over the new length (its factor at {cur} images becomes "
                     f"{lr_factor(cur / total_images, decay):.4g}, it was {lr_factor(cur / old_total, decay):.4g})")
    return notes


def unwrap_ddp(module):
    """The DDP wrapper under a torch.compile wrapper (or the module itself)."""
    return getattr(module, "_orig_mod", module)
