"""Training a segmenter (an evaluator for mIoU) on the real images of any registered dataset.

``train_segmenter`` writes a run directory ``<outdir>/<NNNNN>-<arch>-<dataset>/`` with ``config.yaml``,
``log.txt``, ``stats.jsonl`` (training records and one validation record per epoch) and ``segmenter/`` (the
exported segmenter with the best validation mIoU: ``segmenter.safetensors`` + ``config.json``).

Cross-entropy with the dataset's don't-care ignored, Adam or SGD (momentum 0.9) with the poly learning-rate
schedule ``lr * (1 - progress) ** 0.9``; progress is the fraction of iterations done, or of ``max_minutes`` when
that is reached first. Optional random horizontal flips (off by default: datasets with left/right classes,
such as face parsing, must not be flipped).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader, Dataset, Subset

from ..data import DatasetInfo, build_dataset
from ..errors import ConfigError, SemsynthError
from . import SEGMENTERS, build_segmenter
from .base import check_label_space, label_space_classes, target_for_segmenter
from .io import save_segmenter
from .scoring import evaluate_segmenter
from ..utils.runtime import new_run_dir, select_device


def _collate(samples: list[dict]) -> dict:
    if "image" not in samples[0]:
        raise ConfigError("training a segmenter needs images; this dataset was built label-only (images=false)")
    return {"image": torch.stack([s["image"] for s in samples]), "label": torch.stack([s["label"] for s in samples])}


class _Cached(Dataset):
    """Samples read once and kept in memory (images as float16): for datasets whose samples are costly to make
    and identical every epoch (e.g. ``synthetic-faces``)."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        self.items: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        if i not in self.items:
            s = self.ds[i]
            self.items[i] = (s["image"].to(torch.float16), s["label"].to(torch.uint8 if s["label"].max() < 256
                                                                           else torch.int64))
        img, lab = self.items[i]
        return {"image": img.float(), "label": lab.long()}


def _datasets(dataset_spec: Mapping[str, Any], val: str | float | Mapping[str, Any] | None, seed: int, log
              ) -> tuple[Dataset, Dataset | None, DatasetInfo, dict[str, Any] | str | float | None]:
    spec = dict(dataset_spec)
    if "name" not in spec:
        raise ConfigError("the dataset spec needs a 'name'")
    spec.setdefault("split", "train")
    train_ds = build_dataset(spec)
    info: DatasetInfo = train_ds.info
    if val is None:
        return train_ds, None, info, None
    if isinstance(val, float) or (isinstance(val, str) and _is_float(val)):
        frac = float(val)
        if not 0 < frac < 1:
            raise ConfigError(f"val fraction {frac} must be between 0 and 1")
        return (*_holdout(train_ds, frac, seed), info, frac)
    if val == "auto":
        try:
            val_ds = build_dataset({**spec, "split": "val"})
        except SemsynthError as e:
            log(f"no usable 'val' split ({str(e).splitlines()[0][:200]}); holding out 10% of the training set")
            return (*_holdout(train_ds, 0.1, seed), info, 0.1)
        val_spec: dict[str, Any] = {**spec, "split": "val"}
    else:
        val_spec = {**spec, **dict(val)} if isinstance(val, Mapping) else {**spec, "split": str(val)}
        val_ds = build_dataset(val_spec)
    vinfo = val_ds.info
    if vinfo.num_classes != info.num_classes or list(vinfo.class_names) != list(info.class_names):
        raise ConfigError(f"the validation data's classes ({vinfo.num_classes}) differ from the training data's "
                          f"({info.num_classes})")
    return train_ds, val_ds, info, val_spec


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _holdout(ds: Dataset, frac: float, seed: int) -> tuple[Dataset, Dataset]:
    n = len(ds)
    n_val = max(1, round(n * frac))
    if n_val >= n:
        raise ConfigError(f"cannot hold out {frac:.0%} of {n} samples for validation and still train")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(ds, order[n_val:]), Subset(ds, order[:n_val])


def train_segmenter(dataset_spec: Mapping[str, Any], segmenter_spec: Mapping[str, Any] | str,
                    outdir: str | os.PathLike, *, epochs: float = 10, batch_size: int = 16, lr: float = 1e-3,
                    optimizer: str = "adam", weight_decay: float = 0.0,
                    val: str | float | Mapping[str, Any] | None = "auto", val_limit: int | None = 1000,
                    seed: int = 0, device: str = "auto", num_workers: int = 0, log_every: int = 50,
                    flip: bool = False, cache: bool = False, max_minutes: float | None = None,
                    channels_last: bool = True, label_space: str | None = None, threads: int | None = None) -> Path:
    """Train a segmenter on the real images of ``dataset_spec`` (``{"name": ..., **options}``; the split
    defaults to ``train``). Returns the run directory; the segmenter is in ``<run>/segmenter/``.

    ``segmenter_spec``: ``{"name": "unet" | "deeplabv3" | ..., **options}``. ``val``: ``"auto"`` (the
    dataset's ``val`` split, else 10% of the training set held out), a split name, a fraction to hold out, a
    dataset-spec mapping (merged over ``dataset_spec``) or ``None``. ``val_limit``: score at most this many
    validation images per epoch. ``epochs`` may be fractional. ``max_minutes``: stop (and finish the LR
    schedule) after this much wall time. ``label_space``: ``dataset`` (default) or ``dataset-eval`` (the
    dataset's evaluation ids, e.g. Cityscapes trainIds; the default when the dataset has an eval map).
    ``threads``: torch intra-op threads (``torch.set_num_threads``); 1 is much faster on a CPU shared with other
    jobs, where spinning OpenMP threads wait for each other.
    """
    if epochs <= 0 or batch_size < 1 or lr <= 0 or log_every < 1:
        raise ConfigError(f"need epochs > 0, batch_size >= 1, lr > 0 and log_every >= 1 (got {epochs}, "
                          f"{batch_size}, {lr}, {log_every})")
    if optimizer not in ("adam", "sgd"):
        raise ConfigError(f"optimizer {optimizer!r}: valid are adam, sgd")
    dev = select_device(device)
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train(dataset_spec, segmenter_spec, outdir, dev, epochs=epochs, batch_size=batch_size, lr=lr,
                      optimizer=optimizer, weight_decay=weight_decay, val=val, val_limit=val_limit, seed=seed,
                      num_workers=num_workers, log_every=log_every, flip=flip, cache=cache, max_minutes=max_minutes,
                      channels_last=channels_last, label_space=label_space)
    finally:
        torch.set_num_threads(previous_threads)


def _train(dataset_spec: Mapping[str, Any], segmenter_spec: Mapping[str, Any] | str, outdir: str | os.PathLike,
           dev: torch.device, *, epochs: float, batch_size: int, lr: float, optimizer: str, weight_decay: float,
           val: Any, val_limit: int | None, seed: int, num_workers: int, log_every: int, flip: bool, cache: bool,
           max_minutes: float | None, channels_last: bool, label_space: str | None) -> Path:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)

    from ..training.stats import RunLog

    seg_spec = {"name": segmenter_spec} if isinstance(segmenter_spec, str) else dict(segmenter_spec)
    SEGMENTERS.resolve(seg_spec, num_classes=1)  # unknown names / options fail before anything is written
    notes: list[str] = []
    train_ds, val_ds, info, val_used = _datasets(dataset_spec, val, seed, notes.append)
    space = check_label_space(label_space or ("dataset-eval" if info.eval_label_map is not None else "dataset"))
    if space not in ("dataset", "dataset-eval"):
        raise ConfigError(f"a segmenter trained here predicts the dataset's own ids: label_space 'dataset' or "
                          f"'dataset-eval', not {space!r}")
    num_classes = label_space_classes(info, space)
    if "label_space" not in seg_spec:
        seg_spec["label_space"] = space
    model = build_segmenter(seg_spec, num_classes=num_classes)
    if model.num_classes != num_classes or model.label_space != space:
        raise ConfigError(f"the segmenter has {model.num_classes} outputs in label space {model.label_space!r}; "
                          f"this dataset needs {num_classes} in {space!r}")
    model.to(dev)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)

    if cache:
        train_ds = _Cached(train_ds)
        val_ds = _Cached(val_ds) if val_ds is not None else None
    if len(train_ds) < batch_size:
        raise ConfigError(f"batch_size {batch_size} is larger than the training set ({len(train_ds)} samples)")
    loader = DataLoader(train_ds, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                        collate_fn=_collate, drop_last=True, generator=torch.Generator().manual_seed(seed),
                        persistent_workers=num_workers > 0)
    val_loader = None
    if val_ds is not None:
        if val_limit is not None and len(val_ds) > val_limit:
            val_ds = Subset(val_ds, list(range(val_limit)))
        val_loader = DataLoader(val_ds, batch_size=max(batch_size, 32), shuffle=False, num_workers=num_workers,
                                collate_fn=_collate)

    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    iters_per_epoch = len(loader)
    total_iters = max(1, math.ceil(epochs * iters_per_epoch))
    n_params = sum(p.numel() for p in model.parameters())
    config = {
        "dataset": dict(dataset_spec), "val": val_used if not isinstance(val_used, Mapping) else dict(val_used),
        "segmenter": model.config, "label_space": space, "num_classes": num_classes,
        "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer,
                  "weight_decay": weight_decay, "val_limit": val_limit, "seed": seed, "device": str(dev),
                  "num_workers": num_workers, "log_every": log_every, "flip": flip, "cache": cache,
                  "max_minutes": max_minutes, "channels_last": channels_last,
                  "threads": torch.get_num_threads()},
    }
    run = new_run_dir(outdir, f"{model.config['name']}-{info.name}")
    log = RunLog(run)
    for note in notes:
        log.info(note)
    config = json.loads(json.dumps(config, default=str))  # plain YAML/JSON values only
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    log.info(f"segmenter {model.config['name']} ({n_params:,} parameters, {num_classes} classes, label space "
             f"{space}) on {info.name}: {len(train_ds)} training images, "
             f"{len(val_ds) if val_ds is not None else 0} validation images, {total_iters} iterations of "
             f"{batch_size} on {dev}")

    _, ignore = target_for_segmenter(torch.zeros(1, 1, dtype=torch.long), info, space)
    best: dict[str, Any] | None = None
    it, epoch, t0, done = 0, 0, time.time(), False
    loss_sum, loss_n, seen, t_log = 0.0, 0, 0, time.time()
    while not done:
        model.train()
        for batch in loader:
            progress = it / total_iters
            if max_minutes:
                progress = max(progress, (time.time() - t0) / 60 / max_minutes)
            if progress >= 1:
                done = True
                break
            for g in opt.param_groups:
                g["lr"] = lr * (1 - progress) ** 0.9
            images = batch["image"].to(dev, non_blocking=True)
            target = target_for_segmenter(batch["label"], info, space)[0].to(dev, non_blocking=True)
            if flip:
                mask = torch.rand(images.shape[0], device=dev) < 0.5
                images = torch.where(mask[:, None, None, None], images.flip(-1), images)
                target = torch.where(mask[:, None, None], target.flip(-1), target)
            loss = F.cross_entropy(model(images.contiguous(memory_format=memory_format)), target,
                                   ignore_index=ignore)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            it += 1
            seen += images.shape[0]
            loss_sum += float(loss.detach())
            loss_n += 1
            log.progress(it, total_iters, desc="segmenter", unit="it")
            if it % log_every == 0:
                now = time.time()
                rate = seen / max(now - t_log, 1e-9)
                rec = {"iter": it, "epoch": round(it / iters_per_epoch, 3), "loss": loss_sum / loss_n,
                       "lr": opt.param_groups[0]["lr"], "img_per_s": round(rate, 2),
                       "minutes": round((now - t0) / 60, 2)}
                log.record(rec)
                log.info(f"iter {it}/{total_iters} epoch {rec['epoch']:.2f} loss {rec['loss']:.4f} "
                         f"lr {rec['lr']:.2e} {rate:.1f} img/s")
                loss_sum, loss_n, seen, t_log = 0.0, 0, 0, now
            if it >= total_iters:
                done = True
                break
        epoch += 1
        if val_loader is None:
            continue
        res = evaluate_segmenter(model, val_loader, info, device=dev)
        minutes = (time.time() - t0) / 60
        log.record({"val_epoch": epoch, "iter": it, "val_miou": res["miou"],
                    "val_pixel_accuracy": res["pixel_accuracy"], "minutes": round(minutes, 2)})
        log.info(f"validation after epoch {epoch} (iter {it}): mIoU {res['miou']:.4f}, pixel accuracy "
                 f"{res['pixel_accuracy']:.4f} on {res['images']} images")
        if best is None or res["miou"] > best["miou"] or math.isnan(best["miou"]):
            best = {**res, "epoch": epoch, "iter": it}
            _export(run, model, best, info, config, minutes)
    if best is None:  # no validation data: the final weights
        best = {"miou": None, "pixel_accuracy": None, "epoch": epoch, "iter": it}
        _export(run, model, best, info, config, (time.time() - t0) / 60)
    log.close_progress()  # stopped early by max_minutes: the bar is not full
    log.info(f"done in {(time.time() - t0) / 60:.1f} min, {it} iterations: best validation mIoU {best['miou']} "
             f"(pixel accuracy {best['pixel_accuracy']}) after epoch {best['epoch']}; segmenter saved to "
             f"{run / 'segmenter'}")
    return run


def _export(run: Path, model: torch.nn.Module, best: dict[str, Any], info: DatasetInfo, config: dict[str, Any],
            minutes: float) -> None:
    metrics = {k: best.get(k) for k in ("miou", "pixel_accuracy", "images", "epoch", "iter", "per_class_iou")}
    training = {**config["train"], "dataset": config["dataset"], "val": config["val"], "minutes": round(minutes, 2)}
    save_segmenter(run / "segmenter", model, info, extra={"metrics": {"validation": metrics}, "training": training})
