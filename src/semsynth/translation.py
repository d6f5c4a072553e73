"""Unpaired image-to-image translation with an exported ``scgan-unpaired`` model: ``semsynth translate``.

>>> tr = Translator.from_pretrained("runs/00000-scgan-unpaired-synthetic/model")
>>> src = tr.read_image("summer.png")[None]                 # [1, 3, H, W] at the model's resolution
>>> out = tr.translate(src, tr.references([0]))             # with target-domain reference 0 of the model's data

The output depends on the source and on a target-domain *reference* image (the SVG reads it; supplement B.2). A
reference is a file (``--reference IMG``), the images of a folder chosen by ``--seeds`` (``--reference DIR``), or,
by default, image ``seed`` of the target domain of the data the model was trained on, in its ``test`` split
(``--seeds``, default 0).

:func:`evaluate_translation` scores a model on the source images of a split (``semsynth translate --evaluate``):
FID/KID of the translations to the target domain, a domain classifier's verdict on them, and content preservation:
the edge distance to the source and, for synthetic scenes with a layout, the mIoU of a segmenter's reading of the
translation against the source's layout (docs/unpaired.md).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .errors import ConfigError, DataError, SemsynthError

TRANSLATION_METRICS = ("fid", "kid", "domain", "miou", "edges")


class Translator:
    """An exported translation generator with its data facts (``config["data"]``: the data it was trained on)."""

    def __init__(self, G: torch.nn.Module, config: dict, device: torch.device, where: str = "the model") -> None:
        if not getattr(G, "translates_images", False):
            raise SemsynthError(f"{where} is a semantic-synthesis model ({config['generator'].get('name')!r}: label "
                                f"maps -> images), not an image-translation model; use 'semsynth generate', or give "
                                f"a model trained with the scgan-unpaired presets")
        self.G, self.config, self.device = G.eval(), config, device
        self.resolution = tuple(int(v) for v in config["dataset"]["resolution"])
        self._target = None

    @classmethod
    def from_pretrained(cls, model_dir: str | os.PathLike, device: str = "auto") -> Translator:
        from .training.checkpoint import load_model
        from .utils.runtime import select_device

        dev = select_device(device)
        G, _, _, config = load_model(model_dir, dev)
        return cls(G, config, dev, f"--model {model_dir}")

    # -- inputs ----------------------------------------------------------------------------------------------------

    def read_image(self, path: str | os.PathLike) -> torch.Tensor:
        """An image file -> ``[3, H, W]`` in [-1, 1] at the model's resolution (resized bicubic, as the data
        pipeline resizes evaluation images); the errors of the datasets' reader, naming the file."""
        import numpy as np
        from PIL import Image

        from .data.folder import read_image
        from .data.transforms import image_to_tensor

        img = read_image(Path(path))
        h, w = self.resolution
        if img.size != (w, h):
            img = img.resize((w, h), Image.BICUBIC)
        return image_to_tensor(np.asarray(img))

    def target_data(self):
        """The target domain of the model's training data, ``test`` split (built once)."""
        if self._target is None:
            from .data import build_dataset

            spec = self.config.get("data")
            if not isinstance(spec, dict):
                raise SemsynthError("the model's config.json records no training data, so it has no default "
                                    "references: give --reference IMAGE_OR_FOLDER (target-domain images)")
            try:
                ds = build_dataset({**spec, "split": "test", "serve": "pairs"})
            except SemsynthError as e:
                raise SemsynthError(f"the references default to the target-domain test images of the model's data, "
                                    f"which cannot be read ({str(e).splitlines()[0]}); give --reference "
                                    f"IMAGE_OR_FOLDER (target-domain images)") from None
            self._target = ds
        return self._target

    def references(self, seeds: Sequence[int]) -> torch.Tensor:
        """``[len(seeds), 3, H, W]``: target-domain image ``seed`` of the model's data (``test`` split)."""
        ds = self.target_data()
        n = ds.domain_size(1)
        bad = [int(s) for s in seeds if int(s) >= n]
        if bad:
            raise SemsynthError(f"--seeds: reference {bad[0]} does not exist: the target domain of the model's data "
                                f"({ds.info.name}, test split) has {n} image(s), seeds 0-{n - 1}")
        return torch.stack([self._fit(ds.domain_image(1, int(s))) for s in seeds])

    def _fit(self, img: torch.Tensor) -> torch.Tensor:
        if tuple(img.shape[-2:]) != self.resolution:
            img = F.interpolate(img[None], size=self.resolution, mode="bicubic", align_corners=False)[0].clamp(-1, 1)
        return img

    # -- translation -----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def translate(self, sources: torch.Tensor, references: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
        """Sources ``[B, 3, H, W]`` and references (``[B, ...]``, or ``[1, ...]`` for all) -> ``[B, 3, H, W]``."""
        if references.shape[0] == 1 and sources.shape[0] > 1:
            references = references.expand(sources.shape[0], -1, -1, -1)
        outs = []
        for a in range(0, sources.shape[0], batch_size):
            s = sources[a : a + batch_size].to(self.device)
            r = references[a : a + batch_size].to(self.device)
            outs.append(self.G(s, reference=r).float().cpu())
        return torch.cat(outs)


def list_images(path: str | os.PathLike, option: str = "--images") -> list[Path]:
    """The image files of ``option``: the file itself, or the images of a folder (files with other extensions are
    skipped with a line on stderr). A folder without images, or a path that does not exist, is a DataError."""
    from .data.folder import IMAGE_EXTS, is_broken_link, link_target, list_files

    p = Path(path)
    if p.is_file():
        return [p]
    if is_broken_link(p):
        raise DataError(f"{option} {p}: a symbolic link to {link_target(p)}, which does not exist")
    if not p.is_dir():
        raise DataError(f"{option} {p}: no such file or folder")
    listed = list_files(p)
    files = [f for f in listed if f.suffix.lower() in IMAGE_EXTS]
    others = [f.name for f in listed if f.suffix.lower() not in IMAGE_EXTS]
    if not files:
        raise DataError(f"{option} {p}: no images ({', '.join(IMAGE_EXTS)}) in this folder"
                        + (f" ({len(others)} other file(s): {', '.join(others[:3])})" if others else ""))
    if others:
        print(f"semsynth translate: skipped {len(others)} file(s) in {p} that are not images: "
              + ", ".join(others[:10]) + (" ..." if len(others) > 10 else ""), file=sys.stderr)
    return files


def run_translate(model: str | os.PathLike, images: str | os.PathLike, out: str | os.PathLike,
                  seeds: Sequence[int] | None = None, reference: str | os.PathLike | None = None,
                  batch_size: int = 8, device: str = "auto", grid: bool = False, progress: bool = True) -> list[Path]:
    """``semsynth translate``: translate every image of ``images`` (a file or folder) into ``out``; returns the
    written paths.

    References: ``reference`` a file (one image for all; no ``seeds``), a folder (its sorted images; ``seeds``
    index them, default 0), or none (image ``seed`` of the model's target domain, test split; default seed 0).
    Outputs are named ``<stem>.png`` with one reference, ``<stem>_ref<seed>.png`` with ``--seeds``. ``grid``: also
    ``grid.png`` (supplement Fig. 11's arrangement): the references on top, one row per source: the source, then
    its translations (at most 16 sources x 8 references).
    """
    from .utils.images import image_grid, save_png, to_uint8
    from .utils.progress import progress_bar

    if not isinstance(batch_size, int) or not 1 <= batch_size <= 4096:
        raise SemsynthError(f"--batch-size {batch_size}: must be between 1 and 4096")
    if seeds is not None and len(seeds) == 0:
        raise SemsynthError("--seeds: no seeds given")
    ref_files = None
    if reference is not None:
        ref_files = list_images(reference, "--reference")
        if Path(reference).is_file() and seeds is not None:
            raise SemsynthError(f"--seeds with --reference {reference} (one image): seeds choose among the images of "
                                f"a --reference folder, or of the model's target domain; drop one of them")
        bad = [int(s) for s in (seeds or []) if int(s) >= len(ref_files)]
        if bad:
            raise SemsynthError(f"--seeds: reference {bad[0]} does not exist: --reference {reference} holds "
                                f"{len(ref_files)} image(s), seeds 0-{len(ref_files) - 1}")
    tr = Translator.from_pretrained(model, device)
    files = list_images(images)
    use = list(seeds) if seeds is not None else [0]
    if ref_files is not None:
        refs = torch.stack([tr.read_image(ref_files[int(s)]) for s in use])
    else:
        refs = tr.references(use)
    for f in files:  # every source is read before anything is written: a bad file stops us early
        tr.read_image(f)
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rows: list[list[torch.Tensor]] = []
    with progress_bar(len(files) * len(use), "translate", unit="img", enabled=progress) as bar:
        for a in range(0, len(files), batch_size):
            chunk = files[a : a + batch_size]
            src = torch.stack([tr.read_image(f) for f in chunk])
            per_ref = []
            for j, s in enumerate(use):
                fake = tr.translate(src, refs[j : j + 1], batch_size)
                per_ref.append(fake)
                for img, f in zip(to_uint8(fake), chunk):
                    name = f"{f.stem}.png" if seeds is None else f"{f.stem}_ref{int(s)}.png"
                    written.append(save_png(img, outdir / name))
                bar.update(len(chunk))
            if grid:
                for i in range(len(chunk)):
                    if len(rows) < 16:
                        rows.append([src[i]] + [p[i] for p in per_ref[:8]])
    if grid and rows:
        blank = torch.ones_like(rows[0][0])
        top = [blank] + list(refs[:8])
        table = [top] + rows
        cols = [torch.stack([r[j] for r in table]) for j in range(len(top))]
        written.append(save_png(image_grid(cols), outdir / "grid.png"))
    return written


# ------------------------------------------------------------------------------------------------------------
# evaluation


def parse_translation_metrics(text: str | None) -> list[str] | None:
    """``"fid,domain,edges"`` -> a list; ``None`` / ``"auto"`` -> None (every metric the given inputs allow)."""
    if text is None or text.strip() == "auto":
        return None
    names = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in TRANSLATION_METRICS]
    if bad or not names:
        raise ConfigError(f"--metrics {text!r}: unknown {', '.join(bad) or '(none given)'}; choose from "
                          f"{', '.join(TRANSLATION_METRICS)}, or auto")
    return names


def _image_ids_check(seg_cfg: dict, class_names: list[str], what: str, fix: str) -> None:
    trained = seg_cfg.get("dataset") or {}
    if list(trained.get("class_names") or []) != list(class_names):
        raise ConfigError(f"{what} was trained on the classes {trained.get('class_names')} of "
                          f"{trained.get('name')!r}, not on {class_names}: {fix}")


def _domain_share(seg, images: torch.Tensor, device) -> torch.Tensor:
    """Per image, the share of pixels the domain classifier gives to domain B (channel 1)."""
    with torch.no_grad():
        pred = seg.predict(images.to(device))
    return (pred == 1).float().mean((1, 2)).cpu()


def evaluate_translation(model: str | os.PathLike, out: str | os.PathLike, *, data_spec: dict | None = None,
                         split: str = "test", num: int | None = None, metrics: Sequence[str] | None = None,
                         classifier: str | os.PathLike | None = None, segmenter: Any = None,
                         feature_extractor: str = "classifier", inception: str | None = None, batch_size: int = 8,
                         device: str = "auto", save_images: bool = True, progress: bool = True) -> dict[str, Any]:
    """Translate the first ``num`` sources of ``split`` (each with its target image in the split's fixed pairing)
    and score the translations; writes ``metrics.json``, ``grid.png`` (source | reference | translation) and
    ``images/``. ``metrics=None``: every metric the inputs allow (see docs/unpaired.md):

    * ``fid`` / ``kid``: translations vs the split's target images; also ``fid_source`` / ``kid_source``, the
      untranslated sources vs the same targets (the gap translation should close). Features: ``classifier`` (the
      U-Net domain classifier's encoder statistics; offline), ``segmenter`` (the U-Net segmenter's) or
      ``inception`` (pytorch-fid's, needs its weights);
    * ``domain``: share of translations the domain classifier (``classifier``: a U-Net trained with ``semsynth
      segmenter train`` on ``serve=domains`` data; an image goes to the domain most of its pixels are given) puts
      in the target domain; also its accuracy on the real sources and targets;
    * ``miou``: (synthetic scenes) the segmenter's reading of each translation against the source's layout;
      ``miou_source`` (the source itself: the upper bound) and ``miou_reference`` (the unrelated reference: what
      ignoring the source scores);
    * ``edges``: edge distance (``losses/structure.py``) of each translation to its source;
      ``edge_distance_reference``: of the reference to the source (an unrelated image).
    """
    from .data import DATASETS, build_dataset
    from .data.unpaired import UnpairedDataset
    from .evaluation import SegmenterFeatures
    from .losses.structure import edge_distance
    from .metrics import (
        FeatureAccumulator,
        InceptionFeatures,
        fid_from_features,
        images_to_uint8,
        kid_from_features,
    )
    from .utils.images import image_grid, save_png
    from .utils.progress import progress_bar

    t0 = time.time()
    if feature_extractor not in ("classifier", "segmenter", "inception"):
        raise ConfigError(f"--feature-extractor {feature_extractor!r}: choose classifier, segmenter or inception")
    if num is not None and num < 1:
        raise SemsynthError(f"--num {num}: must be >= 1")
    if not isinstance(batch_size, int) or not 1 <= batch_size <= 4096:
        raise SemsynthError(f"--batch-size {batch_size}: must be between 1 and 4096")
    tr = Translator.from_pretrained(model, device)
    dev = tr.device
    spec = dict(data_spec) if data_spec else dict(tr.config.get("data") or {})
    if not spec:
        raise SemsynthError("give --dataset NAME (the model's config.json records no training data)")
    cls = DATASETS.get(str(spec.get("name")))  # an unknown name: the registry's error, listing the datasets
    if not (isinstance(cls, type) and issubclass(cls, UnpairedDataset)):
        raise SemsynthError(f"--dataset {spec.get('name')!r} is not unpaired two-domain data; use unpaired-folder or "
                            f"synthetic-unpaired")
    spec.update({"split": split, "serve": "pairs"})
    ds = build_dataset(spec)
    n = len(ds) if num is None else min(num, len(ds))
    has_layouts = "source_label" in ds[0]

    # what can be computed, and the networks for it (a missing file stops us before any work)
    want = list(metrics) if metrics is not None else None
    if want is not None:
        bad = [m for m in want if m not in TRANSLATION_METRICS]
        if bad:
            raise ConfigError(f"unknown metric(s) {bad}; choose from {', '.join(TRANSLATION_METRICS)}")
    extractor_source = {"classifier": classifier, "segmenter": segmenter, "inception": True}[feature_extractor]
    if want is None:
        want = ["edges"] + (["domain"] if classifier is not None else []) \
            + (["miou"] if segmenter is not None and has_layouts else []) \
            + (["fid", "kid"] if extractor_source is not None and feature_extractor != "inception" else [])
    if "domain" in want and classifier is None:
        raise SemsynthError("the domain metric needs --classifier: a domain classifier trained with 'semsynth "
                            "segmenter train --dataset <the data> --set data.serve=domains' (docs/unpaired.md)")
    if "miou" in want:
        if segmenter is None:
            raise SemsynthError("the miou metric needs --segmenter: a segmenter of the world's scenes, e.g. trained "
                                "with 'semsynth segmenter train --dataset synthetic-landscapes' (docs/unpaired.md)")
        if not has_layouts:
            raise SemsynthError(f"the miou metric needs the sources' layouts, which {ds.info.name} does not have "
                                f"(only synthetic-unpaired does); use the edges metric for content")
    need_feats = any(m in want for m in ("fid", "kid"))
    if need_feats and extractor_source is None:
        raise SemsynthError(f"fid/kid with --feature-extractor {feature_extractor} need --{feature_extractor}")
    from .segmenters import load_segmenter

    cls_net = seg_net = None
    if classifier is not None and ("domain" in want or (need_feats and feature_extractor == "classifier")):
        from .data.unpaired import unpaired_info

        cls_net, cls_cfg = load_segmenter(classifier, dev)
        names = unpaired_info(ds.info.name, "domains", ds.info.resolution, ds.domains).class_names
        _image_ids_check(cls_cfg, names, f"--classifier {classifier}",
                         "train it on this data's domains with --set data.serve=domains")
    if segmenter is not None and ("miou" in want or (need_feats and feature_extractor == "segmenter")):
        seg_net, seg_cfg = load_segmenter(segmenter, dev)
        if has_layouts:
            world_info = ds.worlds[0].info
            _image_ids_check(seg_cfg, world_info.class_names, f"--segmenter {segmenter}",
                             f"train it on {world_info.name} ('semsynth segmenter train --dataset {world_info.name}')")
    if need_feats:
        if feature_extractor == "inception":
            extractor = InceptionFeatures(inception)
        else:
            extractor = SegmenterFeatures(cls_net if feature_extractor == "classifier" else seg_net)
        extractor = extractor.to(dev).eval()
        acc = {k: FeatureAccumulator(extractor, batch_size=40, device=dev) for k in ("fake", "real", "source")}
    if "miou" in want:
        from .metrics import SegmentationScore

        k = seg_net.num_classes
        scores = {key: SegmentationScore(k, class_names=list(ds.worlds[0].info.class_names))
                  for key in ("fake", "source", "reference")}

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sums = {"edges": 0.0, "edges_ref": 0.0, "dom_fake": 0, "dom_a": 0, "dom_b": 0, "share_fake": 0.0}
    n_b = 0
    grid: dict[str, list[torch.Tensor]] = {"source": [], "reference": [], "fake": []}
    bar = progress_bar(n, "evaluate", unit="img", enabled=progress)
    for a in range(0, n, batch_size):
        samples = [ds[i] for i in range(a, min(n, a + batch_size))]
        src = torch.stack([tr._fit(s["source"]) for s in samples])
        ref = torch.stack([tr._fit(s["image"]) for s in samples])
        fake_u8 = images_to_uint8(tr.translate(src, ref, batch_size))  # scored as the saved PNGs hold them
        fake = fake_u8.float() / 127.5 - 1
        distinct = [j for j in range(len(samples)) if a + j < ds.domain_size(1)]  # each target image once
        if save_images:
            for img, s in zip(fake_u8.permute(0, 2, 3, 1).numpy(), samples):
                save_png(img, out / "images" / f"{s['name']}.png")
        if "edges" in want:
            sums["edges"] += float(edge_distance(fake, src, reduce=False).sum())
            sums["edges_ref"] += float(edge_distance(ref, src, reduce=False).sum())
        if "domain" in want:
            share = _domain_share(cls_net, fake, dev)
            sums["share_fake"] += float(share.sum())
            sums["dom_fake"] += int((share > 0.5).sum())
            sums["dom_a"] += int((_domain_share(cls_net, src, dev) <= 0.5).sum())
            sums["dom_b"] += int((_domain_share(cls_net, ref[distinct], dev) > 0.5).sum()) if distinct else 0
        n_b += len(distinct)
        if need_feats:
            acc["fake"].add(fake_u8)
            acc["source"].add(images_to_uint8(src))
            if distinct:
                acc["real"].add(images_to_uint8(ref[distinct]))
        if "miou" in want:
            target = torch.stack([s["source_label"] for s in samples])
            if tuple(target.shape[-2:]) != tr.resolution:
                target = F.interpolate(target[:, None].float(), size=tr.resolution, mode="nearest")[:, 0].long()
            with torch.no_grad():
                for key, x in (("fake", fake), ("source", src), ("reference", ref)):
                    scores[key].update(seg_net.predict(x.to(dev)).cpu(), target)
        if len(grid["source"]) < 8:
            take = 8 - len(grid["source"])
            grid["source"] += list(src[:take])
            grid["reference"] += list(ref[:take])
            grid["fake"] += list(fake[:take])
        bar.update(len(samples))
    bar.close()

    res: dict[str, Any] = {"model": str(model), "dataset": ds.info.name, "domains": list(ds.domains),
                           "split": split, "images": n, "target_images": n_b, "resolution": list(tr.resolution),
                           "metrics": {}}
    m = res["metrics"]
    if need_feats:
        ff, fr, fs = acc["fake"].result(), acc["real"].result(), acc["source"].result()
        res["feature_extractor"] = {"classifier": f"domain classifier {classifier} (U-Net encoder statistics, "
                                                  f"{fr.shape[1]}-d; offline)",
                                    "segmenter": f"segmenter {segmenter} (U-Net encoder statistics, {fr.shape[1]}-d; "
                                                 f"offline)",
                                    "inception": "pytorch-fid TF-Inception pool3 (2048-d)"}[feature_extractor]
        if "fid" in want:
            m["fid"] = round(fid_from_features(ff, fr), 4)
            m["fid_source"] = round(fid_from_features(fs, fr), 4)
        if "kid" in want:
            sub = min(1000, max(2, min(n, n_b) // 2))
            m["kid"], m["kid_std"] = (round(v, 6) for v in kid_from_features(ff, fr, subset_size=sub))
            m["kid_source"], m["kid_source_std"] = (round(v, 6) for v in kid_from_features(fs, fr, subset_size=sub))
    if "domain" in want:
        m["domain_accuracy"] = round(sums["dom_fake"] / n, 5)
        m["domain_pixel_share"] = round(sums["share_fake"] / n, 5)
        m["domain_accuracy_real_a"] = round(sums["dom_a"] / n, 5)
        m["domain_accuracy_real_b"] = round(sums["dom_b"] / max(1, n_b), 5)
    if "miou" in want:
        for key, name in (("fake", "miou"), ("source", "miou_source"), ("reference", "miou_reference")):
            m[name] = scores[key].result()["miou"]
    if "edges" in want:
        m["edge_distance"] = round(sums["edges"] / n, 5)
        m["edge_distance_reference"] = round(sums["edges_ref"] / n, 5)
    res["seconds"] = round(time.time() - t0, 1)
    cols = [torch.stack(grid[k]) for k in ("source", "reference", "fake")]
    save_png(image_grid(cols), out / "grid.png")
    from .utils.files import atomic_write_text

    atomic_write_text(json.dumps(res, indent=2), out / "metrics.json")
    return res


__all__ = ["TRANSLATION_METRICS", "Translator", "evaluate_translation", "list_images", "parse_translation_metrics",
           "run_translate"]
