"""Any dataset: an image folder and a label folder paired by file stem, optional instance folder.

Folders: ``ROOT/<image_dir>`` and ``ROOT/<label_dir>`` (default ``images``/``labels``), or ``ROOT/<split>/...``
when that exists. Labels are class-id PNGs (one channel, pixel value = class id), or RGB colour PNGs decoded with a
palette (class name -> colour). The facts come from, in order: the data options, ``ROOT/dataset.yaml`` (or
``dataset_yaml``), and, for the number of classes only, a scan of the label maps that prints what it found.

``dataset.yaml`` (every key optional; what ``semsynth data make`` writes)::

    num_classes: 15            # real classes, ids 0..14 (the don't-care channel is extra)
    class_names: [background, skin, ...]
    palette: [[0, 0, 0], [204, 0, 0], ...]   # colours for pictures; or {name: colour} to decode RGB labels
    dontcare: 255              # raw value (or class name) meaning "unlabeled"; null = none
    label_format: auto         # ids | rgb | auto (with a name -> colour palette: RGB and palette-mode files are
                               # decoded by colour, greyscale files read as ids)

``describe`` reads that small YAML (and a palette file it names) but no image; it scans the labels only when the
number of classes is declared nowhere.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..errors import ConfigError, DataError
from . import DATASETS
from .base import DatasetInfo, default_palette
from .folder import (LabelFolderDataset, LabelRead, SampleError, SampleFiles, check_flags, colour_table, index_folders,
                     is_lenient, label_only_root, list_files, make_preprocess, match_colours, read_label,
                     resolve_split)
from .transforms import LabelMapping

FORMATS = ("auto", "ids", "rgb")
_SPLITS = {"train": "train", "val": "val", "test": "test"}
LAYOUT = "ROOT/images/*.{jpg,png} and ROOT/labels/*.png paired by stem (optional ROOT/dataset.yaml)"
# Inferred (num_classes, dontcare, note) per (label folder, its mtime, declared dontcare): describe() and the
# constructor then scan once per process.
_INFERRED: dict[tuple[str, int, Any], tuple[int, Any, str]] = {}


def _colour(c: Any, where: str) -> tuple[int, int, int]:
    """[r, g, b], "#rrggbb" or "r,g,b" -> (r, g, b)."""
    try:
        if isinstance(c, str):
            s = c.strip()
            vals = [int(s[i:i + 2], 16) for i in (1, 3, 5)] if s.startswith("#") and len(s) == 7 \
                else [int(x) for x in s.split(",")]
        else:
            vals = [int(x) for x in c]
        if len(vals) != 3 or not all(0 <= v <= 255 for v in vals):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"custom: {where}: colour {c!r} is not [r, g, b] with 0..255 or '#rrggbb'") from None
    return (vals[0], vals[1], vals[2])


def load_palette(spec: Any, base: Path | None) -> tuple[list[str] | None, list[tuple[int, int, int]]]:
    """A palette: a mapping ``name -> colour`` (names and order define the classes), a list of colours, or the
    path of a JSON/YAML file holding either. Returns (names or None, colours)."""
    where = "palette"
    if isinstance(spec, str):
        path = Path(spec)
        if not path.is_absolute() and base is not None:
            path = base / path
        if not path.is_file():
            raise ConfigError(f"custom: palette file {path} not found")
        try:
            text = path.read_text(encoding="utf-8")
            spec = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise ConfigError(f"custom: cannot read palette file {path}: {e}") from e
        where = str(path)
        if isinstance(spec, dict) and "palette" in spec and len(spec) <= 3:
            spec = spec["palette"]
    if isinstance(spec, dict):
        return [str(k) for k in spec], [_colour(v, where) for v in spec.values()]
    if isinstance(spec, list):
        return None, [_colour(v, where) for v in spec]
    raise ConfigError(f"custom: {where} must map class names to colours, or list colours; got {type(spec).__name__}")


class _Facts:
    """Resolved declarations of a custom dataset (options over dataset.yaml over the scan)."""

    def __init__(self, root: Path, opts: dict[str, Any], dataset_yaml: str | None) -> None:
        meta: dict[str, Any] = {}
        path = Path(dataset_yaml) if dataset_yaml else root / "dataset.yaml"
        if dataset_yaml and not path.is_absolute() and not path.is_file():
            path = root / dataset_yaml
        if path.is_file():
            try:
                meta = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as e:
                raise ConfigError(f"custom: cannot read {path}: {e}") from e
            if not isinstance(meta, dict):
                raise ConfigError(f"custom: {path} must be a mapping (num_classes, class_names, palette, dontcare)")
        elif dataset_yaml:
            raise ConfigError(f"custom: dataset_yaml {path} not found")
        self.meta_path = path if path.is_file() else None
        get = lambda k, d=None: opts[k] if opts.get(k) is not None else (  # noqa: E731
            meta[k] if meta.get(k) is not None else d)
        self.image_dir, self.label_dir = get("image_dir", "images"), get("label_dir", "labels")
        self.instance_dir = get("instance_dir")
        self.label_format = get("label_format", "auto")
        if self.label_format not in FORMATS:
            raise ConfigError(f"custom: label_format={self.label_format!r}; valid: {', '.join(FORMATS)}")
        names, colours = (None, [])
        if get("palette") is not None:
            names, colours = load_palette(get("palette"), path.parent)
        self.decode = names is not None  # a name -> colour mapping decodes RGB label maps
        if self.label_format == "rgb" and not self.decode:
            raise ConfigError("custom: label_format=rgb needs a palette mapping class names to colours "
                              "(data.palette or palette: in dataset.yaml)")
        self.class_names = get("class_names") or names
        n = get("num_classes")
        if n is None and self.class_names:
            n = len(self.class_names)
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ConfigError(f"custom: num_classes must be an integer >= 1, got {n!r}")
        self.num_classes: int | None = n
        self.colours = colours
        self.dontcare = get("dontcare")
        self.notes: list[str] = []
        self.inferred = False

    def infer(self, label_dir: Path, lenient: bool) -> bool:
        """Scan the label maps for the ids they hold (only when no number of classes is declared). Returns
        True when it scanned (False: declared, or the result of an earlier scan of the unchanged folder)."""
        if self.num_classes is not None:
            return False
        where = "data.num_classes, or num_classes in dataset.yaml"
        if not label_dir.is_dir():
            if lenient:  # the listing reports the missing folder
                self.num_classes = 1
                return False
            raise DataError(f"custom: label folder {label_dir} does not exist (and the number of classes, declared "
                            f"nowhere ({where}), would be inferred from it); check data.root and data.label_dir")
        key = (str(label_dir.resolve()), label_dir.stat().st_mtime_ns, self.dontcare)
        fresh = key not in _INFERRED
        if fresh:
            _INFERRED[key] = self._scan(label_dir, lenient, where)
        self.num_classes, self.dontcare, note = _INFERRED[key]
        self.inferred = True
        self.notes.append(note)
        return fresh

    def _scan(self, label_dir: Path, lenient: bool, where: str) -> tuple[int, Any, str]:
        seen = np.zeros(65536, bool)
        files = [p for p in list_files(label_dir) if p.suffix.lower() in (".png", ".bmp", ".tif", ".tiff")]
        skipped = 0
        for p in files:
            try:
                v = read_label(p).values
            except SampleError:
                if not lenient:
                    raise
                skipped += 1
                continue
            seen[np.unique(v[(v >= 0) & (v < 65536)]).astype(np.int64)] = True  # 32-bit files may hold anything
        ids = [int(i) for i in np.flatnonzero(seen)]
        dc, note = self.dontcare, ""
        if set(ids) <= {0, 255} and 255 in ids:
            note = " (only 0 and 255: binary masks saved as 0/255? they must hold 0/1)"
            ids = [0]
        elif dc is None and 255 in ids and len(ids) > 1:
            dc, note = 255, " (255 taken as the don't-care value)"
        real = [i for i in ids if i != dc]
        n = (max(real) + 1) if real else 1
        text = (f"num_classes is declared nowhere: scanned {len(files) - skipped} label maps in {label_dir}, found "
                f"ids {_ranges(real)}{note} -> num_classes={n}; declare `num_classes: {n}`"
                + (f" and `dontcare: {dc}`" if dc is not None else "")
                + " in dataset.yaml (or data.num_classes) to skip this scan"
                + (f"; {skipped} unreadable file(s) skipped" if skipped else ""))
        return n, dc, text

    def info_and_table(self, pre_resolution: tuple[int, int]) -> tuple[DatasetInfo, dict[int, int], str]:
        n = self.num_classes
        assert n is not None
        names = list(self.class_names or [f"class-{i}" for i in range(n)])
        if len(names) != n:
            raise ConfigError(f"custom: {len(names)} class names for num_classes={n}")
        palette = list(self.colours) if len(self.colours) >= n else default_palette(n)
        palette = palette[:n]
        table = {v: v for v in range(n)}
        dc, dontcare_index, valid = self.dontcare, None, f"0..{n - 1}"
        if isinstance(dc, str):
            if dc not in names:
                raise ConfigError(f"custom: dontcare={dc!r} is not a class name ({', '.join(names)})")
            dc = names.index(dc)
        if dc is not None:
            if isinstance(dc, bool) or not isinstance(dc, int) or dc < 0:
                raise ConfigError(f"custom: dontcare must be a label value >= 0, a class name, or null; got {dc!r}")
            if dc < n:
                dontcare_index = dc  # one of the declared ids is the don't-care class (OASIS-style 0)
            else:
                dontcare_index = n
                table[dc] = n
                names.append("dontcare")
                palette.append((0, 0, 0))
                valid += f" and {dc} (don't care)"
        info = DatasetInfo(name="custom", num_classes=len(names), class_names=names, dontcare_index=dontcare_index,
                           has_instance=self.instance_dir is not None, palette=palette, resolution=pre_resolution)
        return info, table, valid


def _ranges(ids: list[int]) -> str:
    if not ids:
        return "none"
    out, start, prev = [], ids[0], ids[0]
    for i in ids[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(f"{start}..{prev}" if prev > start else f"{start}")
        if i is not None:
            start = prev = i
    return ", ".join(out)


def _folders(root: Path, split: str, facts: _Facts) -> tuple[Path, Path]:
    """(base folder, label folder): ``ROOT/<split>/`` when it holds the label folder, else ``ROOT``."""
    base = root / split if (root / split / facts.label_dir).is_dir() else root
    return base, base / facts.label_dir


@DATASETS.register("custom", "your own folders: images + class-id or RGB-palette labels paired by stem, "
                             "optional instance maps; facts from dataset.yaml")
class Custom(LabelFolderDataset):
    """A custom dataset from ``root`` (see the module docstring for the layout and dataset.yaml)."""

    def __init__(self, split: str = "train", *, root: str, image_dir: str | None = None, label_dir: str | None = None,
                 instance_dir: str | None = None, num_classes: int | None = None,
                 class_names: list[str] | None = None, dontcare: int | str | None = None, palette: Any = None,
                 label_format: str | None = None, dataset_yaml: str | None = None,
                 preprocess: str = "resize_and_crop", load_size: int = 286, crop_size: int = 256,
                 aspect_ratio: float = 1.0, flip: bool = True, images: bool = True) -> None:
        opts = dict(image_dir=image_dir, label_dir=label_dir, instance_dir=instance_dir, num_classes=num_classes,
                    class_names=class_names, dontcare=dontcare, palette=palette, label_format=label_format)
        self.split, self.root, self.images = split, Path(root), images
        resolve_split("custom", split, _SPLITS)
        check_flags("custom", flip=flip, images=images)
        self.pre = make_preprocess("custom", split == "train", preprocess, load_size, crop_size, aspect_ratio, flip)
        self.facts = facts = _Facts(self.root, opts, dataset_yaml)
        base, label_dir_p = _folders(self.root, split, facts)
        if not images:
            label_dir_p = label_only_root(self.root, label_dir_p)
        fresh = not facts.decode and facts.infer(label_dir_p, is_lenient())
        self.info, table, valid = facts.info_and_table(self.pre.resolution())
        self.notes = list(facts.notes)
        if fresh and not is_lenient():  # the confirmation printout
            for note in self.notes:
                print(f"semsynth data (custom, {self.root}): {note}", file=sys.stderr)
        self._lut_colours = colour_table(facts.colours)
        self.mapping = LabelMapping(table, self.info.num_classes, valid, None,
                                    "declare the number of classes (num_classes in dataset.yaml or data.num_classes) "
                                    "and the don't-care value (dontcare) that the labels use")
        flat = label_dir_p == self.root and not (self.root / facts.label_dir).is_dir()
        inst_dir = None if facts.instance_dir is None else (self.root if flat else base) / facts.instance_dir
        self._finish_index(*index_folders(
            root=self.root, label_dir=label_dir_p, image_dir=base / facts.image_dir if images else None,
            instance_dir=inst_dir, layout=LAYOUT,
            instance_fix="add the instance maps, or remove instance_dir (data.instance_dir=null)"))

    @classmethod
    def describe(cls, split: str = "train", *, root: str, image_dir: str | None = None, label_dir: str | None = None,
                 instance_dir: str | None = None, num_classes: int | None = None,
                 class_names: list[str] | None = None, dontcare: int | str | None = None, palette: Any = None,
                 label_format: str | None = None, dataset_yaml: str | None = None,
                 preprocess: str = "resize_and_crop", load_size: int = 286, crop_size: int = 256,
                 aspect_ratio: float = 1.0, flip: bool = True, images: bool = True) -> DatasetInfo:
        """The facts from the options and ``dataset.yaml`` (no image read; the labels are scanned only when the
        number of classes is declared nowhere)."""
        resolve_split("custom", split, _SPLITS)
        check_flags("custom", flip=flip, images=images)
        pre = make_preprocess("custom", True, preprocess, load_size, crop_size, aspect_ratio, flip)
        facts = _Facts(Path(root), dict(image_dir=image_dir, label_dir=label_dir, instance_dir=instance_dir,
                                        num_classes=num_classes, class_names=class_names, dontcare=dontcare,
                                        palette=palette, label_format=label_format), dataset_yaml)
        if not facts.decode and facts.num_classes is None:
            lab = _folders(Path(root), split, facts)[1]
            if facts.infer(lab if images else label_only_root(Path(root), lab), False):
                for note in facts.notes:
                    print(f"semsynth data (custom, {root}): {note}", file=sys.stderr)
        return facts.info_and_table(pre.resolution())[0]

    def read_label_raw(self, f: SampleFiles) -> LabelRead:
        fmt = self.facts.label_format
        if not self.facts.decode or fmt == "ids":
            return read_label(f.label)
        if fmt == "auto":
            read = read_label(f.label, colours=False) if _is_grey_file(f.label) else None
            if read is not None:
                return read
        return LabelRead(self._decode(read_label(f.label, colours=True).values, f.label), "RGB")

    def _decode(self, rgb: np.ndarray, path: Path) -> np.ndarray:
        """Colours -> class ids with the palette; unknown colours raise ``unknown-colour``."""
        out, bad = match_colours(rgb, self._lut_colours)
        if bad:
            shown = ", ".join(f"#{c:06x} ({n:,} px)" for n, c in bad[:8]) + (" ..." if len(bad) > 8 else "")
            raise SampleError("unknown-colour", path, f"{len(bad)} colour(s) are not in the palette: {shown}",
                              "add them to the palette (class name -> colour), or repaint those pixels; label maps "
                              "must not be anti-aliased or saved as JPEG")
        return out.astype(np.uint8) if len(self._lut_colours) <= 256 else out.astype(np.int32)


def _is_grey_file(path: Path) -> bool:
    """True when the file holds ids (one grey channel, ``LA``'s alpha ignored), so ``label_format: auto`` reads it
    without the palette."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.mode in ("L", "LA", "I", "1") or img.mode.startswith("I;16")
    except Exception:  # noqa: BLE001 - any decoding trouble: let the full read report it
        return False
