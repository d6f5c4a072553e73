"""The training function. One readable function; the helpers it calls say what they do."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..config import RunConfig
from ..data import build_dataset, colorize
from ..layers import semantic_input
from ..losses import VGGLoss
from ..models import build_discriminator, build_encoder, build_generator, count_parameters
from ..utils.images import image_grid, save_png
from .ema import ema_beta, make_ema, update_ema
from .checkpoint import (
    atomic_torch_save,
    atomic_write_text,
    export_model,
    list_checkpoints,
    load_training_state,
    prune_checkpoints,
    rng_state,
    set_rng_state,
)
from .objective import GANObjective
from .sampler import ResumableSampler
from .stats import RunLog, RunningMeans, format_duration


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        from ..errors import ConfigError

        raise ConfigError(f"train.device = {name!r} but CUDA is not available here; use --set train.device=cpu")
    return dev


def new_run_dir(outdir: str | os.PathLike, name: str) -> Path:
    """``<outdir>/<NNNNN>-<name>``, numbered after the runs already there."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    ids = [int(p.name.split("-", 1)[0]) for p in out.iterdir() if p.is_dir() and p.name.split("-", 1)[0].isdigit()]
    run = out / f"{max(ids, default=-1) + 1:05d}-{name}"
    run.mkdir()
    return run


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
    out: dict = {"name": [s["name"] for s in samples], "label": torch.stack([s["label"] for s in samples])}
    if "image" in samples[0]:
        out["image"] = torch.stack([s["image"] for s in samples])
    if "instance" in samples[0]:
        out["instance"] = torch.stack([s["instance"] for s in samples])
    return out


def to_semantic(batch: dict, info, device: torch.device) -> torch.Tensor:
    label = batch["label"].to(device, non_blocking=True)
    inst = batch["instance"].to(device, non_blocking=True) if info.has_instance else None
    return semantic_input(label, info.num_classes, inst)


def save_sample_grid(path: Path, G, info, fixed: dict, device: torch.device) -> None:
    """layout | real | fake | coarse RGB, one row per fixed sample, with G in eval mode."""
    was_training = G.training
    G.eval()
    with torch.no_grad():
        sem = to_semantic(fixed, info, device)
        out = G(sem, return_aux=True)
    G.train(was_training)
    cols = [colorize(fixed["label"], info.palette), fixed["image"], out.image.cpu()]
    if out.coarse_rgb is not None:
        cols.append(out.coarse_rgb.cpu())
    save_png(image_grid(cols), path)


def train(cfg: RunConfig, outdir: str | os.PathLike = "runs", resume: str | os.PathLike | None = None,
          run_dir: str | os.PathLike | None = None, stop_after: int | None = None) -> Path:
    """Train ``cfg``; returns the run directory (config.yaml, log.txt, stats.jsonl, samples/, checkpoints/,
    model/, report.html). ``resume``: a training-state file, or a run directory (its latest checkpoint).
    ``stop_after``: leave after this many images (of the whole run) with a checkpoint, to be resumed later
    (for time-limited jobs); the schedule is that of the full run."""
    t_start = time.time()
    tc = cfg.train

    # 1. Device, seeds, run directory -----------------------------------------------------------------------
    device = select_device(tc.device)
    seed_everything(tc.seed)
    state = None
    if resume is not None:
        resume = Path(resume)
        if resume.is_dir():
            ckpts = list_checkpoints(resume)
            if not ckpts:
                from ..errors import SemsynthError

                raise SemsynthError(f"no checkpoint in {resume / 'checkpoints'} to resume from")
            resume = ckpts[-1]
        state = load_training_state(resume)
        run_dir = Path(run_dir) if run_dir else resume.parent.parent
    run_dir = Path(run_dir) if run_dir else new_run_dir(outdir, cfg.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(run_dir)
    atomic_write_text(cfg.to_yaml(), run_dir / "config.yaml")

    # 2. Data -----------------------------------------------------------------------------------------------
    dataset = build_dataset(cfg.data)
    info = dataset.info
    sampler = ResumableSampler(len(dataset), tc.batch_size, seed=tc.seed)
    loader = DataLoader(dataset, batch_size=tc.batch_size, sampler=sampler, num_workers=tc.num_workers,
                        collate_fn=collate, drop_last=True, pin_memory=device.type == "cuda",
                        persistent_workers=False,
                        # its own generator: creating an iterator must not draw from the global RNG, or a
                        # resumed run would diverge from an uninterrupted one
                        generator=torch.Generator().manual_seed(tc.seed))
    total_images = tc.images if tc.images is not None else int(round(tc.epochs * len(dataset)))
    fixed = collate([dataset[i] for i in range(min(tc.num_samples, len(dataset)))])

    # 3. Networks -------------------------------------------------------------------------------------------
    G = build_generator(cfg.generator).to(device).train()
    D = build_discriminator(cfg.discriminator).to(device).train()
    E = build_encoder(cfg.encoder).to(device).train() if cfg.encoder else None
    G_ema = make_ema(G) if tc.ema else None

    # 4. Optimisers and objective (TTUR: two learning rates) ------------------------------------------------
    betas = (float(cfg.optim.beta1), float(cfg.optim.beta2))
    g_params = list(G.parameters()) + (list(E.parameters()) if E is not None else [])
    opt_G = torch.optim.Adam(g_params, lr=cfg.optim.lr_g, betas=betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.optim.lr_d, betas=betas)
    lo = cfg.loss
    needs_vgg = lo.perceptual > 0 or (lo.semantic > 0 and lo.semantic_loss == "vgg")
    vgg = VGGLoss(lo.vgg_weights, imagenet_normalize=lo.vgg_imagenet_normalize).to(device) if needs_vgg else None
    objective = GANObjective(lo, vgg)

    # 5. Resume ---------------------------------------------------------------------------------------------
    cur_nimg, cur_iter = 0, 0
    if state is not None:
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
        if E is not None:
            E.load_state_dict(state["E"])
        if G_ema is not None:
            G_ema.load_state_dict(state["G_ema"] if state.get("G_ema") is not None else state["G"])
        opt_G.load_state_dict(state["opt_G"])
        opt_D.load_state_dict(state["opt_D"])
        cur_nimg, cur_iter = state["cur_nimg"], state["cur_iter"]
        set_rng_state(state["rng"])
        log.info(f"resumed from {resume} at {cur_nimg} images")
    else:
        log.info(f"run directory: {run_dir}")
    n_g, n_d = count_parameters(G), count_parameters(D)
    log.info(f"G {cfg.generator['name']}: {n_g:,} parameters; D {cfg.discriminator['name']}: {n_d:,}"
             + (f"; E: {count_parameters(E):,}" if E is not None else "") + f"; device {device}")
    log.info(f"data {info.name}: {len(dataset)} samples, {info.num_classes} classes, "
             f"{info.resolution[0]}x{info.resolution[1]}; batch {tc.batch_size}; {total_images} images in all")

    def save_checkpoint() -> None:
        atomic_torch_save({
            "format": "semsynth-training-state", "version": 1, "config": cfg.to_dict(),
            "G": G.state_dict(), "D": D.state_dict(), "E": E.state_dict() if E is not None else None,
            "G_ema": G_ema.state_dict() if G_ema is not None else None,
            "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(),
            "cur_nimg": cur_nimg, "cur_iter": cur_iter, "rng": rng_state(),
        }, run_dir / "checkpoints" / f"training-state-{cur_nimg:09d}.pt")
        prune_checkpoints(run_dir, tc.keep_checkpoints)
        export_model(run_dir / "model", G_out, info, E, extra={"images_seen": cur_nimg, "ema": G_ema is not None})

    G_out = G_ema if G_ema is not None else G  # what samples and the exported model use

    # 6. Loop -----------------------------------------------------------------------------------------------
    means = RunningMeans()
    batches_per_epoch = sampler.batches_per_epoch
    next_log = (cur_nimg // tc.log_every + 1) * tc.log_every
    next_sample = (cur_nimg // tc.sample_every + 1) * tc.sample_every
    next_ckpt = (cur_nimg // tc.checkpoint_every + 1) * tc.checkpoint_every
    if cur_nimg == 0:
        save_sample_grid(run_dir / "samples" / "init.png", G_out, info, fixed, device)
    t_last, nimg_last = time.time(), cur_nimg
    end = total_images if stop_after is None else min(total_images, stop_after)
    while cur_nimg < end:
        epoch, start_batch = divmod(cur_iter, batches_per_epoch)
        sampler.set_epoch(epoch, start_batch)
        for batch in loader:
            if cur_nimg >= end:
                break
            progress = cur_nimg / total_images
            f = lr_factor(progress, tc.decay_start)
            for group in opt_G.param_groups:
                group["lr"] = cfg.optim.lr_g * f
            for group in opt_D.param_groups:
                group["lr"] = cfg.optim.lr_d * f
            real = batch["image"].to(device, non_blocking=True)
            semantic = to_semantic(batch, info, device)

            # G step (every d_steps_per_g iterations), then D step
            fake = None
            if cur_iter % tc.d_steps_per_g == 0:
                D.requires_grad_(False)
                opt_G.zero_grad(set_to_none=True)
                g_loss, g_stats, fake = objective.generator_loss(G, D, E, semantic, real)
                g_loss.backward()
                opt_G.step()
                D.requires_grad_(True)
                means.add(g_stats)
                if G_ema is not None:
                    update_ema(G_ema, G, ema_beta(real.shape[0], tc.ema_halflife_images, cur_nimg, tc.ema_rampup))
            if fake is None or tc.d_fakes == "regenerate":
                fake = objective.generate(G, E, semantic, real)
            opt_D.zero_grad(set_to_none=True)
            d_loss, d_stats = objective.discriminator_loss(D, semantic, real, fake)
            d_loss.backward()
            opt_D.step()
            means.add(d_stats)

            cur_iter += 1
            cur_nimg += real.shape[0]
            now = time.time()
            rate = (cur_nimg - nimg_last) / max(now - t_last, 1e-9)
            log.progress(cur_nimg, total_images, rate)

            # maintenance ticks
            if cur_nimg >= next_log or cur_nimg >= total_images:
                vals = means.read()
                elapsed = now - t_start
                eta = (total_images - cur_nimg) / rate if rate > 0 else float("nan")
                rec = {"images": cur_nimg, "iter": cur_iter, "epoch": cur_nimg / len(dataset),
                       "time": round(elapsed, 2), "images_per_s": round(rate, 3), "lr_g": cfg.optim.lr_g * f,
                       "lr_d": cfg.optim.lr_d * f, **{k: round(v, 5) for k, v in vals.items()}}
                log.record(rec)
                terms = "  ".join(f"{k} {v:.3f}" for k, v in vals.items())
                log.info(f"img {cur_nimg}/{total_images}  ep {rec['epoch']:.2f}  {rate:.1f} img/s  "
                         f"ETA {format_duration(eta)}  {terms}")
                next_log += tc.log_every
                t_last, nimg_last = now, cur_nimg
            if cur_nimg >= next_sample:
                save_sample_grid(run_dir / "samples" / f"{cur_nimg:09d}.png", G_out, info, fixed, device)
                next_sample += tc.sample_every
            if cur_nimg >= next_ckpt:
                save_checkpoint()
                next_ckpt += tc.checkpoint_every

    # 7. Finish: final checkpoint, exported model, samples, report ------------------------------------------
    save_checkpoint()
    if cur_nimg < total_images:
        log.info(f"stopped at {cur_nimg} of {total_images} images; continue with --resume {run_dir}")
        return run_dir
    save_sample_grid(run_dir / "samples" / f"{cur_nimg:09d}.png", G_out, info, fixed, device)
    from ..report import write_run_report

    report = write_run_report(run_dir)
    log.info(f"done: {cur_nimg} images in {format_duration(time.time() - t_start)}; model in {run_dir / 'model'}; "
             f"report: {report}")
    (run_dir / "DONE").write_text(json.dumps({"images": cur_nimg}), encoding="utf-8")
    return run_dir
