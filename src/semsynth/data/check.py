"""``semsynth data check``: scan a dataset and explain every problem before training starts.

The listing (folders, pairing, extensions, instance maps) comes from the dataset class itself, built in lenient
mode; then every label map is read in full (mode, values, per-class pixels) and every image and instance map by
its header (size) only, in a thread pool, so a few thousand files take seconds. Training and inference run the
same per-file checks (:meth:`LabelFolderDataset.__getitem__`), so they fail with the same messages.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from ..errors import DataError
from . import DATASETS
from .base import DatasetInfo
from .folder import (_READ_ERRORS, LabelFolderDataset, Problem, SampleError, SampleFiles, _open, image_size,
                     lenient_index, read_image)

# Headline of each per-file problem kind (the per-file details follow it in the report).
HEADLINES = {
    "unreadable": "unreadable or corrupt files",
    "missing-file": "files that disappeared during the scan",
    "broken-link": "symbolic links to nothing (their target does not exist)",
    "rgb-label": "label maps are colour (RGB) images where class ids are expected",
    "unsupported-mode": "files in an unsupported pixel format",
    "size-mismatch": "image / label / instance map sizes disagree",
    "unknown-colour": "label colours that are not in the palette",
    "palette-mode": "palette-mode (P) label PNGs: their palette indices are read as class ids",
    "16-bit": "16/32-bit label PNGs: their values are read as class ids",
    "rgb-gray": "label maps stored as RGB with three equal channels (read as class ids)",
    "binary-mask": "label maps holding only 0 and 255 (binary 0/255 masks?)",
}
_WARNING_KINDS = {"palette-mode", "16-bit", "rgb-gray", "binary-mask"}


@dataclass
class _Scan:
    """What one sample's files showed."""

    findings: list[tuple[str, str, str, str]] = field(default_factory=list)  # kind, file, message, fix
    hist: np.ndarray | None = None
    bad: dict[int, int] = field(default_factory=dict)
    present: set[int] = field(default_factory=set)
    mode: str = ""
    label: str = ""
    colours: Counter | None = None


@dataclass
class CheckReport:
    """Result of :func:`check_dataset`; ``text()`` is what the CLI prints, ``ok`` decides the exit code."""

    dataset: str
    root: str
    split: str
    spec: dict[str, Any]
    info: DatasetInfo | None = None
    samples: int = 0
    scanned: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hist: np.ndarray | None = None
    files_per_class: np.ndarray | None = None
    suggest: dict[str, tuple[Any, str]] = field(default_factory=dict)
    colours: Counter | None = None
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity != "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def text(self, max_files: int = 5) -> str:
        return format_report(self, max_files)


def check_dataset(name: str, root: str | os.PathLike, split: str = "train", options: Mapping[str, Any] | None = None,
                  *, limit: int | None = None, decode_images: bool = False, workers: int | None = None) -> CheckReport:
    """Scan dataset ``name`` at ``root`` (``options``: dataset options such as ``use_instance``)."""
    t0 = time.time()
    spec = {"name": name, **dict(options or {}), "root": str(root), "split": split}
    full = DATASETS.resolve(spec)  # ConfigError for unknown names/options
    report = CheckReport(name, str(root), split, full)
    with lenient_index():
        ds = DATASETS.build(full)
    if not isinstance(ds, LabelFolderDataset):
        raise DataError(f"'data check' scans datasets read from folders; {name!r} is generated in memory. Write it "
                        f"with `semsynth data make {name} --out DIR` and check that with --dataset custom --root DIR")
    report.info = ds.info
    report.problems += ds.index_problems
    report.notes += getattr(ds, "notes", [])
    report.samples = len(ds.files)
    files = ds.files[:limit] if limit else ds.files
    report.counts = {"label maps": len(ds.files), "images": sum(f.image is not None for f in ds.files),
                     "instance maps": sum(f.instance is not None for f in ds.files)}
    n = ds.info.num_classes
    hist = np.zeros(n, np.int64)
    per_class_files = np.zeros(n, np.int64)
    by_kind: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    bad_px: Counter = Counter()
    bad_files: dict[int, list[str]] = defaultdict(list)
    bad_present: set[int] = set()
    bad_modes: Counter = Counter()
    colours: Counter = Counter()
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        for scan in pool.map(lambda f: _inspect(ds, f, decode_images), files):
            report.scanned += 1
            for kind, path, msg, fix in scan.findings:
                by_kind[kind].append((_short(ds, path), msg, fix))
            if scan.hist is not None:
                hist += scan.hist
                per_class_files += scan.hist > 0
            if scan.bad:
                bad_px.update(scan.bad)
                for v in scan.bad:
                    bad_files[v].append(scan.label)
                bad_present |= scan.present
                bad_modes[scan.mode] += 1
            if scan.colours:
                colours.update(scan.colours)
    for kind, items in by_kind.items():
        report.problems.append(_group(kind, items))
    if bad_px:
        report.problems.append(_out_of_range(ds, bad_px, bad_files, bad_present, bad_modes))
    report.hist, report.files_per_class = hist, per_class_files
    report.colours = colours or None
    report.suggest = _suggestions(ds, report)
    report.seconds = time.time() - t0
    return report


def _inspect(ds: LabelFolderDataset, f: SampleFiles, decode_images: bool) -> _Scan:
    """The per-file checks of one sample (never raises for a data problem)."""
    scan = _Scan()
    label_path = str(f.label or (f.parts[0][1] if f.parts else f.name))
    scan.label = label_path
    try:
        read = ds.read_label_raw(f)
    except SampleError as e:
        scan.findings.append((e.kind, e.path, e.detail, ""))
        if e.kind == "rgb-label":
            scan.colours = _top_colours(Path(e.path))
        return scan
    for kind, msg in read.warnings:
        scan.findings.append((kind, label_path, msg, ""))
    vals = read.values
    if vals.dtype == np.uint8:
        present = set(np.flatnonzero(np.bincount(vals.ravel(), minlength=256)).tolist())
    else:
        present = set(np.unique(vals).tolist())
    mapped, bad = ds.mapping.split(vals)
    scan.mode = read.mode
    if bad:
        scan.bad, scan.present = bad, present
    elif present == {0, 255}:
        scan.findings.append(("binary-mask", label_path, "only 0 and 255 occur; every 255 pixel is "
                              f"'{ds.info.class_names[int(mapped[vals == 255][0])]}'", ""))
    m = mapped.ravel()
    if mapped.dtype == np.uint8:
        scan.hist = np.bincount(m, minlength=256)[:ds.info.num_classes].astype(np.int64)
    else:
        scan.hist = np.bincount(m[m >= 0], minlength=ds.info.num_classes)[:ds.info.num_classes].astype(np.int64)
    h, w = vals.shape[:2]
    if ds.images and f.image is not None:
        try:
            size = read_image(f.image).size if decode_images else image_size(f.image)
            ds.check_image_size(size, (w, h), f)
        except SampleError as e:
            scan.findings.append((e.kind, e.path, e.detail, ""))
    if ds.info.has_instance and f.instance is not None:
        try:
            with Image.open(f.instance) as img:  # header only
                isize, imode = img.size, img.mode
        except _READ_ERRORS as e:
            scan.findings.append(("unreadable", str(f.instance), f"cannot read this instance map: {e}", ""))
        else:
            if isize != (w, h):
                scan.findings.append(("size-mismatch", str(f.instance), f"instance map is {isize[0]}x{isize[1]} "
                                      f"but the label map is {w}x{h}", ""))
            elif imode not in ("L", "P", "1", "I", "RGB", "RGBA") and not imode.startswith("I;16"):
                scan.findings.append(("unsupported-mode", str(f.instance), f"instance map has mode {imode}", ""))
    return scan


def _top_colours(path: Path, limit: int = 64) -> Counter:
    try:
        a = np.asarray(_open(path, "label map").convert("RGB")).reshape(-1, 3).astype(np.int32)
    except SampleError:
        return Counter()
    packed = (a[:, 0] << 16) | (a[:, 1] << 8) | a[:, 2]
    u, c = np.unique(packed, return_counts=True)
    order = np.argsort(-c)[:limit]
    return Counter({int(u[i]): int(c[i]) for i in order})


_FIXES = {
    "unreadable": "re-download or re-export these files",
    "broken-link": "repair or remove the link",
    "rgb-label": "convert them to class ids, or use --dataset custom with a palette (class name -> colour); the "
                 "colours found are listed below",
    "unsupported-mode": "save label maps as 8-bit single-channel PNGs of class ids",
    "size-mismatch": "image, label map and instance map of a sample must have the same size",
    "unknown-colour": "add the colours to the palette, or repaint those pixels (no anti-aliasing, no JPEG)",
    "palette-mode": "nothing if the indices are the class ids (as in PASCAL VOC); otherwise re-save as greyscale "
                    "ids, or decode the colours with --dataset custom and a palette",
    "16-bit": "nothing if the values are the class ids; 8-bit greyscale is smaller",
    "binary-mask": "if this is a two-class mask, save it as 0/1 (and use --dataset custom)",
}


def _group(kind: str, items: list[tuple[str, str, str]]) -> Problem:
    """One problem per kind: the headline, per-file details, the fix."""
    details = [f"{p} ({m})" if m else p for p, m, _ in items]  # paths shortened by _inspect
    severity = "warning" if kind in _WARNING_KINDS else "error"
    headline = HEADLINES.get(kind, kind)
    return Problem(kind, f"{headline}, {len(items)} file(s)", details, _FIXES.get(kind, ""), severity)


def _out_of_range(ds: LabelFolderDataset, bad_px: Counter, bad_files: dict[int, list[str]], present: set[int],
                  modes: Counter) -> Problem:
    msg, fix, cause = ds.mapping.diagnose(dict(bad_px), np.array(sorted(present)), modes.most_common(1)[0][0])
    lines = [f"value {v}: {px:,} px in {len(bad_files[v])} file(s), e.g. "
             f"{', '.join(_short(ds, p) for p in bad_files[v][:3])}" for v, px in sorted(bad_px.items())[:20]]
    nfiles = len({p for v in bad_files for p in bad_files[v]})
    prob = Problem("out-of-range", f"{msg} ({nfiles} file(s))", lines, fix)
    prob.cause = cause  # type: ignore[attr-defined]
    prob.values = sorted(bad_px)  # type: ignore[attr-defined]
    return prob


def _short(ds: LabelFolderDataset, path: str) -> str:
    """A path relative to the dataset root, when it is under it."""
    try:
        return str(Path(path).relative_to(ds.root))
    except ValueError:
        return path


def _suggestions(ds: LabelFolderDataset, rep: CheckReport) -> dict[str, tuple[Any, str]]:
    """Config keys to set, with the reason, from what the scan found."""
    out: dict[str, tuple[Any, str]] = {}
    kinds = {p.kind for p in rep.errors}
    spec = rep.spec
    if "use_instance" in spec:
        if "missing-instance" in kinds:
            out["use_instance"] = (False, "no instance maps found" if rep.counts.get("instance maps", 0) == 0
                                   else "or add the missing instance maps")
        elif spec["use_instance"] and rep.samples > 0:
            out["use_instance"] = (True, f"instance maps for all {rep.samples} samples: +1 instance-edge channel")
    if "missing-list" in kinds:
        out["split_lists"] = (False, "no train_list.txt/test_list.txt: every image in every split")
    if "missing-folder" in kinds and any("image folder" in p.message for p in rep.errors):
        out["images"] = (False, "no image folder: label maps only (inference)")
    if spec["name"] == "custom":
        facts = ds.facts  # type: ignore[attr-defined]
        if facts.inferred:
            out["num_classes"] = (facts.num_classes, f"inferred: real classes, ids 0..{facts.num_classes - 1}")
            if facts.dontcare is not None:
                out["dontcare"] = (facts.dontcare, "inferred: the label value meaning unlabeled")
        if "out-of-range" in kinds:
            bad = [p for p in rep.errors if p.kind == "out-of-range"][0]
            cause, vals = getattr(bad, "cause", None), getattr(bad, "values", [])
            top = max([v for v in vals if v != 255] + [facts.num_classes - 1])
            if cause in (None, "255") and top + 1 > facts.num_classes:
                out["num_classes"] = (top + 1, f"covers every id found (0..{top})")
            if cause == "255" or (cause is None and 255 in vals):
                out["dontcare"] = (255, "if 255 marks unlabeled pixels")
        if "rgb-label" in kinds:
            out["palette"] = ("palette.yaml", "class name -> colour, the colours found are listed above")
    if spec["name"] == "ade20k":
        out["label_convention"] = (spec["label_convention"], "spade: unlabeled -> last channel (150); scgan: "
                                   "unshifted, for the official SC-GAN ADE20K weights")
    return out


def format_report(rep: CheckReport, max_files: int = 5) -> str:
    info = rep.info
    L = [f"semsynth data check: {rep.dataset}, split {rep.split}, root {rep.root}"]
    defaults = DATASETS.defaults(rep.dataset)
    opts = {k: v for k, v in rep.spec.items() if k not in ("name", "root", "split") and defaults.get(k, v) != v}
    L.append("  options: " + (" ".join(f"{k}={_yaml_scalar(v)}" for k, v in opts.items()) or "defaults")
             + " (" + " ".join(f"{k}={_yaml_scalar(rep.spec[k])}" for k in ("preprocess", "load_size", "crop_size")
                               if k in rep.spec and k not in opts) + ")")
    if info is not None:
        dc = (f"don't-care channel {info.dontcare_index} '{info.class_names[info.dontcare_index]}'"
              if info.dontcare_index is not None else "no don't-care channel")
        L.append(f"  facts: {info.num_classes} one-hot channels ({dc}); instance maps: "
                 f"{'used' if info.has_instance else 'not used'} -> generator input {info.semantic_channels} "
                 f"channels; samples served at {info.resolution[0]}x{info.resolution[1]}"
                 + (" (nominal: preprocess=none keeps each file's size, rounded to multiples of 32)"
                    if rep.spec.get("preprocess") == "none" else ""))
    if info is not None:
        parts = ["label map"] + (["image"] if rep.spec.get("images", True) else []) \
            + (["instance map"] if info.has_instance else [])
        L.append(f"  found: {rep.samples} complete samples ({' + '.join(parts)} each)")
    L.append(f"  scanned {rep.scanned} samples in {rep.seconds:.2f} s (label maps read in full, images and instance "
             "maps by header)")
    for note in rep.notes:
        L.append(f"  note: {note}")
    for title, probs in (("errors", rep.errors), ("warnings", rep.warnings)):
        L.append("")
        L.append(f"{title} ({len(probs)}):" + (" none" if not probs else ""))
        for p in probs:
            L.append(f"  [{p.kind}] {p.message}")
            for fname in p.files[:max_files]:
                L.append(f"      {fname}")
            if len(p.files) > max_files:
                L.append(f"      ... and {len(p.files) - max_files} more")
            if p.fix:
                L.append(f"    fix: {p.fix}")
    if rep.colours:
        L.append("")
        L.append("colours found in the RGB label maps (pixels; a palette.yaml skeleton):")
        for i, (c, px) in enumerate(rep.colours.most_common(32)):
            L.append(f"  class-{i}: '#{c:06x}'   # {px:,} px")
    if info is not None and rep.hist is not None and rep.hist.sum() > 0:
        L += ["", *_histogram(info, rep.hist, rep.files_per_class)]
    L.append("")
    L.append("config (data section for your run):")
    L.append("  data:")
    L.append(f"    name: {rep.dataset}")
    L.append(f"    root: {_yaml_scalar(rep.root)}")
    for k, (v, why) in rep.suggest.items():
        L.append(f"    {k}: {_yaml_scalar(v)}   # {why}")
    L.append("")
    if rep.ok:
        L.append(f"result: OK, {rep.samples} samples, {len(rep.warnings)} warning(s) (exit 0)")
    else:
        L.append(f"result: {len(rep.errors)} problem(s) to fix before training (exit 2)")
    return "\n".join(L)


def _histogram(info: DatasetInfo, hist: np.ndarray, files: np.ndarray | None) -> list[str]:
    total = int(hist.sum())
    present = np.flatnonzero(hist)
    out = [f"pixels per class ({len(present)} of {info.num_classes} channels present, {total:,} pixels):",
           f"  {'ch':>4}  {'class':<24} {'pixels':>14} {'share':>7} {'files':>6}"]
    for c in present:
        name = info.class_names[c] + (" (don't care)" if c == info.dontcare_index else "")
        nf = int(files[c]) if files is not None else 0
        out.append(f"  {c:>4}  {name[:24]:<24} {int(hist[c]):>14,} {100 * hist[c] / total:>6.2f}% {nf:>6}")
    absent = [info.class_names[c] for c in range(info.num_classes) if hist[c] == 0]
    if absent:
        shown = ", ".join(absent[:12]) + (", ..." if len(absent) > 12 else "")
        out.append(f"  never present: {len(absent)} channel(s): {shown}")
    return out


def _yaml_scalar(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("\n...").removesuffix("...").strip()
