"""``semsynth evaluate``: the papers' protocol in one call (see docs/evaluation.md).

For the layouts of a dataset split: generate one image per layout (or read a folder of generated images named
after the layouts), quantise them as saved PNGs, and report

* ``fid`` / ``kid``: generated vs real images, with pytorch-fid's TF-Inception features, or (offline) with the
  features of a segmenter trained here (``feature_extractor="segmenter"``);
* ``lpips``: paired LPIPS between each generated image and the real image of its layout;
* ``diversity``: mean LPIPS between samples of different seeds for the same layout (multi-modal models);
* ``miou``: a segmenter run on the generated images, scored against the layouts (don't-care ignored); the
  same segmenter on the real images gives the upper bound.

Results go to ``metrics.json``, ``report.html`` and (optionally) the generated PNGs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError, SemsynthError

METRIC_NAMES = ("fid", "kid", "lpips", "diversity", "miou")


def parse_metrics(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in METRIC_NAMES]
    if bad or not names:
        raise ConfigError(f"--metrics {text!r}: unknown {', '.join(bad) or '(none given)'}; choose from "
                          f"{', '.join(METRIC_NAMES)}")
    return names


class SegmenterFeatures(torch.nn.Module):
    """An offline stand-in for the Inception features of FID/KID: the mean and standard deviation over space of
    every encoder level of a U-Net segmenter trained here (a domain feature extractor; numbers are comparable
    only between models scored with the same segmenter)."""

    def __init__(self, seg: torch.nn.Module) -> None:
        super().__init__()
        if not (hasattr(seg, "inc") and hasattr(seg, "down")):
            raise SemsynthError("--feature-extractor segmenter needs a U-Net segmenter trained with "
                                "'semsynth segmenter train --arch unet'")
        self.seg = seg

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = images.float() / 127.5 - 1
        x = self.seg.inc(images)
        stats = [x.mean((2, 3)), x.std((2, 3))]
        for block in self.seg.down:
            x = block(F.max_pool2d(x, 2))
            stats += [x.mean((2, 3)), x.std((2, 3))]
        return torch.cat(stats, 1)


def _resize_images(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)


def _generated_file(folder: Path, name: str) -> Path:
    p = folder / f"{name}.png"
    if p.is_file():
        return p
    cands = sorted(folder.glob(f"{name}.*"))
    if not cands:
        raise SemsynthError(f"--generated {folder}: no image named after layout {name!r} ({name}.png); name the "
                            f"generated images after the layout files, as 'semsynth generate' does")
    return cands[0]


def generated_size(folder: Path, name: str) -> tuple[int, int]:
    """``(H, W)`` of the generated image of layout ``name`` (from the file header)."""
    from PIL import Image

    p = _generated_file(folder, name)
    try:
        with Image.open(p) as img:
            w, h = img.size
    except (OSError, SyntaxError, ValueError) as e:
        raise SemsynthError(f"{p}: cannot read this generated image ({e})") from e
    return h, w


def _read_generated(folder: Path, names: list[str], size: tuple[int, int]) -> torch.Tensor:
    """The generated images of ``names``, which must all be ``size`` (H, W): they are scored as they are."""
    from PIL import Image

    out = []
    for n in names:
        p = _generated_file(folder, n)
        try:
            img = np.asarray(Image.open(p).convert("RGB"))
        except (OSError, SyntaxError, ValueError) as e:
            raise SemsynthError(f"{p}: cannot read this generated image ({e})") from e
        if img.shape[:2] != tuple(size):
            raise SemsynthError(f"{p} is {img.shape[1]}x{img.shape[0]} (WxH) but the reference images and layouts are "
                                f"{size[1]}x{size[0]}: every generated image must have the reference size (nothing "
                                f"is resized, so that the scores mean what they say)")
        out.append(torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 127.5 - 1)
    return torch.stack(out)


def evaluate(out: str | os.PathLike, model: str | os.PathLike | None = None, *, dataset_spec: dict | None = None,
             generated: str | os.PathLike | None = None, metrics: list[str] | tuple[str, ...] = ("fid", "kid", "miou"),
             segmenter: Any = None, inception: str | None = None, feature_extractor: str = "inception",
             lpips_net: str = "alex", lpips_weights: str | None = None, num: int | None = None,
             diversity_layouts: int = 16, diversity_seeds: int = 4, seed: int = 0, batch_size: int = 8,
             device: str = "auto", save_images: bool = True, report_title: str | None = None,
             progress: bool = True, latent: str = "seed") -> dict[str, Any]:
    """Evaluate a model (or a folder of generated images) on a dataset split; see the module docstring."""
    from .data import build_dataset, colorize
    from .inference import Synthesizer, seed_noise
    from .utils.runtime import select_device
    from .metrics import FeatureAccumulator, InceptionFeatures, LPIPSMetric, images_to_uint8, kid_from_features
    from .metrics import fid_from_features
    from .utils.images import image_grid, save_png

    t0 = time.time()
    metrics = list(metrics)
    bad = [m for m in metrics if m not in METRIC_NAMES]
    if bad:
        raise ConfigError(f"unknown metric(s) {bad}; choose from {', '.join(METRIC_NAMES)}")
    if model is None and generated is None:
        raise SemsynthError("give --model (to generate) or --generated DIR (images already generated), or both")
    if latent not in ("seed", "encoder"):
        raise ConfigError(f"--latent {latent!r}: choose seed or encoder")
    if feature_extractor not in ("inception", "segmenter"):
        raise ConfigError(f"--feature-extractor {feature_extractor!r}: choose inception or segmenter")
    dev = select_device(device)
    syn = Synthesizer.from_pretrained(model, device) if model is not None else None
    if "diversity" in metrics:
        if syn is None:
            raise SemsynthError("diversity needs --model (it samples several seeds per layout)")
        syn.check_multimodal("the diversity metric")

    # 1. Data: layouts and real images of the split, at the model's resolution ---------------------------------
    spec = dict(dataset_spec) if dataset_spec else dict((syn.config.get("data") if syn else None) or {})
    if not spec:
        raise SemsynthError("give --dataset NAME (the model's config.json records no dataset)")
    if not dataset_spec or "split" not in dataset_spec:
        spec["split"] = "val"
    ds = build_dataset(spec)
    info = ds.info
    if syn is not None and (info.num_classes != syn.info.num_classes or info.class_names != syn.info.class_names):
        raise SemsynthError(f"the dataset ({info.name}, {info.num_classes} classes) is not the one the model was "
                            f"trained on ({syn.info.name}, {syn.info.num_classes} classes)")
    n = len(ds) if num is None else min(num, len(ds))
    if n < 1:
        raise SemsynthError(f"--num {num}: must be >= 1")
    size = tuple(syn.resolution) if syn is not None else tuple(info.resolution)
    resized_reference = None
    if generated is not None:
        if not Path(generated).is_dir():
            raise SemsynthError(f"--generated {generated}: no such folder")
        gsize = generated_size(Path(generated), str(ds[0]["name"]))
        if gsize != size:
            if syn is None:
                fix = (f"serve the reference at {gsize[1]}x{gsize[0]} (for datasets that resize: --set "
                       f"data.load_size={gsize[1]} --set data.crop_size={gsize[1]}, or the dataset's resolution "
                       f"option) or generate at {size[1]}x{size[0]}")
            else:
                fix = f"generate them with this model (its resolution is {size[1]}x{size[0]})"
            raise SemsynthError(f"--generated {generated}: the images are {gsize[1]}x{gsize[0]} (WxH) but the "
                                f"reference images and layouts of {info.name} ({spec['split']}) are {size[1]}x"
                                f"{size[0]}; nothing is resized silently: {fix}")
    elif tuple(info.resolution) != size:
        # a model evaluated on a dataset served at another size: say what is resized
        resized_reference = {"from": list(info.resolution), "to": list(size)}
        print(f"note: {info.name} serves {info.resolution[1]}x{info.resolution[0]} (WxH) samples and the model works at "
              f"{size[1]}x{size[0]}: layouts are resized (nearest) and real images (bicubic) to {size[1]}x{size[0]} "
              f"before scoring", file=sys.stderr)

    # 2. Metric networks, built first so that a missing weights file stops us before any work -----------------
    need_feats = any(m in metrics for m in ("fid", "kid"))
    seg = seg_cfg = None
    if "miou" in metrics or (need_feats and feature_extractor == "segmenter"):
        from .segmenters import check_segmenter_dataset, load_segmenter

        if segmenter is None:
            raise SemsynthError("miou (and --feature-extractor segmenter) need --segmenter: a directory written by "
                                "'semsynth segmenter train', or a spec such as name=drn-d-105,weights=FILE")
        seg, seg_cfg = load_segmenter(segmenter, dev)
        check_segmenter_dataset(seg_cfg, info)
    extractor = None
    if need_feats:
        extractor = SegmenterFeatures(seg) if feature_extractor == "segmenter" else InceptionFeatures(inception)
        extractor = extractor.to(dev).eval()
        acc_real = FeatureAccumulator(extractor, batch_size=40, device=dev)
        acc_fake = FeatureAccumulator(extractor, batch_size=40, device=dev)
    lp = LPIPSMetric(lpips_net, weights_dir=lpips_weights, device=str(dev)) \
        if any(m in metrics for m in ("lpips", "diversity")) else None
    if "miou" in metrics:
        from .metrics import SegmentationScore
        from .segmenters import label_space_classes, target_for_segmenter

        k = label_space_classes(info, seg.label_space)
        names = None
        if seg.label_space == "dataset":
            names = list(info.class_names)
        score_fake, score_real, ignore = None, None, None

    # 3. Generate (or read), score, save ------------------------------------------------------------------------
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    img_dir = out / "images"
    lp_paired: list[float] = []
    grid_rows: dict[str, list] = {"layout": [], "real": [], "fake": []}
    from .utils.progress import progress_bar

    # a model that reads instance edges gets the dataset's instance maps, as in training (Synthesizer.prepare
    # resizes them with the layouts); a dataset served without them leaves that channel empty
    feed_instances = syn is not None and syn.info.has_instance and info.has_instance
    if syn is not None and syn.info.has_instance and not info.has_instance and generated is None:
        print(f"note: the model reads an instance-edge channel but {info.name} is served without instance maps "
              f"(use_instance false): the channel is empty", file=sys.stderr)

    def instances_of(samples: list[dict]) -> torch.Tensor | None:
        return torch.stack([s["instance"] for s in samples]) if feed_instances else None

    bar = progress_bar(n, "evaluate", unit="layout", enabled=progress)
    for a in range(0, n, batch_size):
        samples = [ds[i] for i in range(a, min(n, a + batch_size))]
        labels = torch.stack([s["label"] for s in samples])
        instances = instances_of(samples)
        names_b = [str(s["name"]) for s in samples]
        if tuple(labels.shape[-2:]) != size:
            labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
            if instances is not None:
                instances = F.interpolate(instances[:, None].double(), size=size, mode="nearest")[:, 0].long()
        real = _resize_images(torch.stack([s["image"] for s in samples]), size) if "image" in samples[0] else None
        if real is None and (need_feats or "lpips" in metrics):
            raise SemsynthError(f"{info.name} split {spec['split']} has no images (label-only); fid, kid and lpips "
                                f"need real images")
        if generated is not None:
            fake = _read_generated(Path(generated), names_b, size)
        elif latent == "encoder" and syn.multimodal:
            # the official CelebAMask-HQ test: the style latent of each layout's own ground-truth image
            if real is None:
                raise SemsynthError("--latent encoder needs the real images of the split")
            fake = syn.generate(labels, z=syn.style_z(real).cpu(), batch_size=batch_size, instances=instances)
        else:
            z = torch.stack([seed_noise(seed + a + j, syn.z_dim) for j in range(len(samples))]) \
                if syn.multimodal else None
            fake = syn.generate(labels, z=z, batch_size=batch_size, instances=instances)
        fake_u8 = images_to_uint8(fake)  # what a saved PNG holds: the protocol scores saved images
        fake_q = fake_u8.float() / 127.5 - 1
        if save_images and generated is None:
            for img, nm in zip(fake_u8.permute(0, 2, 3, 1).numpy(), names_b):
                save_png(img, img_dir / f"{nm}.png")
        if need_feats:
            acc_fake.add(fake_u8)
            acc_real.add(images_to_uint8(real))
        if "lpips" in metrics:
            lp_paired.append(float(lp.distance(fake_q, real).sum()))
        if "miou" in metrics:
            target, ignore = target_for_segmenter(labels.to(dev), info, seg.label_space)
            if score_fake is None:
                score_fake = SegmentationScore(k, ignore_index=ignore if ignore >= 0 else None, class_names=names)
                score_real = SegmentationScore(k, ignore_index=ignore if ignore >= 0 else None, class_names=names)
            with torch.no_grad():
                score_fake.update(seg.predict(fake_q.to(dev), ignore).cpu(), target.cpu())
                if real is not None:
                    score_real.update(seg.predict(real.to(dev), ignore).cpu(), target.cpu())
        shown = sum(t.shape[0] for t in grid_rows["layout"])  # images, not batches
        if shown < 8:
            take = 8 - shown
            grid_rows["layout"].append(colorize(labels[:take], info.palette))
            grid_rows["fake"].append(fake_q[:take])
            if real is not None:
                grid_rows["real"].append(real[:take])
        bar.update(len(samples))
    bar.close()

    # 4. Results ---------------------------------------------------------------------------------------------------
    res: dict[str, Any] = {"model": str(model) if model else None, "generated": str(generated) if generated else None,
                           "dataset": info.name, "split": spec["split"], "layouts": n, "latent": latent,
                           "resolution": list(size), "metrics": {}}
    if resized_reference is not None:
        res["resized_reference"] = resized_reference
    m = res["metrics"]
    if need_feats:
        fr, ff = acc_real.result(), acc_fake.result()
        tag = "" if feature_extractor == "inception" else "_segmenter"
        res["feature_extractor"] = "pytorch-fid TF-Inception pool3 (2048-d)" if feature_extractor == "inception" \
            else f"segmenter {segmenter} encoder statistics ({fr.shape[1]}-d; offline stand-in)"
        if "fid" in metrics:
            m[f"fid{tag}"] = round(fid_from_features(ff, fr), 4)
        if "kid" in metrics:
            # subsets of half the images at most, so that their spread (the std) means something
            kmean, kstd = kid_from_features(ff, fr, subset_size=min(1000, max(2, n // 2)), seed=seed)
            m[f"kid{tag}"] = round(kmean, 6)
            m[f"kid{tag}_std"] = round(kstd, 6)
    if "lpips" in metrics:
        m["lpips_paired"] = round(sum(lp_paired) / n, 5)
    if "diversity" in metrics:
        d = min(diversity_layouts, n)
        div_samples = [ds[i] for i in range(d)]
        labels = torch.stack([s["label"] for s in div_samples])
        instances = instances_of(div_samples)
        if tuple(labels.shape[-2:]) != size:
            labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
            if instances is not None:
                instances = F.interpolate(instances[:, None].double(), size=size, mode="nearest")[:, 0].long()
        seeds = [seed + 1000 + s for s in range(diversity_seeds)]
        samples = syn.generate(labels, seeds=seeds, batch_size=batch_size, instances=instances)  # [d, S, 3, H, W]
        samples = images_to_uint8(samples.flatten(0, 1)).float().view(samples.shape) / 127.5 - 1
        m["lpips_diversity"] = round(lp.diversity([samples[:, s] for s in range(diversity_seeds)]), 5)
        res["diversity"] = {"layouts": d, "seeds": diversity_seeds}
    if "miou" in metrics and score_fake is not None:
        rf = score_fake.result()
        m["miou"] = rf["miou"]
        m["pixel_accuracy"] = rf["pixel_accuracy"]
        m["mean_class_accuracy"] = rf["mean_class_accuracy"]
        if score_real is not None and score_real.confusion.sum() > 0:
            rr = score_real.result()
            m["miou_real"] = rr["miou"]
            m["pixel_accuracy_real"] = rr["pixel_accuracy"]
            res["per_class_iou_real"] = {r["name"]: r["iou"] for r in rr["per_class"]}
        res["per_class_iou"] = {r["name"]: r["iou"] for r in rf["per_class"]}
        res["segmenter"] = {"source": str(segmenter), "label_space": seg.label_space, "classes": k}
    res["seconds"] = round(time.time() - t0, 1)
    (out / "metrics.json").write_text(json.dumps(res, indent=2), encoding="utf-8")

    cols = [torch.cat(grid_rows["layout"])]
    if grid_rows["real"]:
        cols.append(torch.cat(grid_rows["real"]))
    cols.append(torch.cat(grid_rows["fake"]))
    save_png(image_grid(cols), out / "samples.png")
    from .report import write_evaluation_report

    write_evaluation_report(out, res, title=report_title)
    return res
