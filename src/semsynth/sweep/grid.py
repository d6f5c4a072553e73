"""Grids and cells of ``semsynth sweep``: parsing a grid, applying its overlays to a base config, and writing a
cell's config as the ``--set`` arguments that make it (see the package docstring and ``docs/sweep.md``)."""

from __future__ import annotations

import copy
import itertools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import SECTIONS, apply_overrides, find_config, preset_names, read_yaml
from ..errors import ConfigError, SemsynthError
from ..registry import short_repr, type_name

GRID_DIR = Path(__file__).parent.parent / "grids"
MODEL_SECTIONS = ("generator", "discriminator", "encoder", "loss")
MAX_SEEDS = 100
_LABEL = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")  # axis names and value labels: they name directories
_GRID_KEYS = ("title", "reproduces", "expect", "requires", "common", "axes", "per_dataset", "paper")
_YAML_ERRORS = (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError)



def grid_names() -> list[str]:
    return sorted(p.stem for p in GRID_DIR.glob("*.yaml"))


# ------------------------------------------------------------------------------------------------------------
# 1. Grids


@dataclass
class Requirement:
    """A condition on the base preset (resolved, ``--set`` applied): ``one_of`` values or ``greater_than``."""

    key: str
    one_of: list[Any] | None = None
    greater_than: float | None = None
    why: str = ""

    def holds(self, value: Any) -> bool:
        if self.one_of is not None and value not in self.one_of:
            return False
        if self.greater_than is not None:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and value > self.greater_than
        return True

    def wants(self) -> str:
        if self.one_of is not None:
            return "one of: " + ", ".join(map(str, self.one_of))
        return f"> {self.greater_than:g}"


@dataclass
class Grid:
    """A parsed grid. ``axes``: axis -> value label -> overlay; ``per_dataset``: dataset name -> ``axis=label``
    -> overlay; ``paper``: ``{dataset: text, METRIC: {cell id: value}}``."""

    name: str
    source: str
    title: str = ""
    reproduces: str = ""
    expect: str = ""
    requires: list[Requirement] = field(default_factory=list)
    common: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    per_dataset: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    paper: dict[str, Any] = field(default_factory=dict)

    def points(self, only: dict[str, list[str]] | None = None) -> list[dict[str, str]]:
        """Every cell (one value per axis), in the grid's order; ``only`` keeps some values of some axes."""
        only = only or {}
        values = [[v for v in vals if axis not in only or v in only[axis]] for axis, vals in self.axes.items()]
        return [dict(zip(self.axes, combo)) for combo in itertools.product(*values)]


def cell_id(point: dict[str, str]) -> str:
    """``conv=scc_norm=scn``: the cell's name in tables and its directory."""
    return "_".join(f"{axis}={label}" for axis, label in point.items())


def _check_overlay(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: an overlay must be a mapping of settings (e.g. {{generator.mapping: tanh}}), "
                          f"got {short_repr(value)} ({type_name(value)})")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"{where}: setting {short_repr(key)} ({type_name(key)}) is not a dotted key such as "
                              f"generator.mapping")
        parts = key.split(".")
        if not all(p.strip() for p in parts) or parts != [p.strip() for p in parts]:
            raise ConfigError(f"{where}: {key!r} is not a dotted key such as generator.mapping (empty part or "
                              f"spaces)")
        if parts[0] not in SECTIONS:
            raise ConfigError(f"{where}: {key!r}: unknown section {parts[0]!r}; sections are: {', '.join(SECTIONS)}")
        if key in ("train.seed", "train.threads"):
            raise ConfigError(f"{where}: {key} is set by the sweep for every run (--seeds, --threads); a grid "
                              f"cannot set it")
    return dict(value)


def _label(value: Any, what: str, where: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _LABEL.match(value):
        raise ConfigError(f"{where}: {what} {short_repr(value)} must be lower-case letters, digits, '.', '+' or '-' "
                          f"(it names a directory), starting with a letter or digit")
    return value


def parse_grid(data: Any, name: str, source: str) -> Grid:
    """A grid from its YAML mapping (see ``docs/sweep.md``); every problem names ``source`` and the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a grid must be a mapping with 'axes' (and optionally {', '.join(_GRID_KEYS)}), "
                          f"got {short_repr(data)} ({type_name(data)})")
    unknown = [k for k in data if k not in _GRID_KEYS]
    if unknown:
        raise ConfigError(f"{source}: unknown grid field(s) {', '.join(map(repr, unknown))}; fields are: "
                          f"{', '.join(_GRID_KEYS)}")
    grid = Grid(name=name, source=source)
    for k in ("title", "reproduces", "expect"):
        v = data.get(k, "")
        if not isinstance(v, str):
            raise ConfigError(f"{source}: {k} must be text, got {short_repr(v)} ({type_name(v)})")
        setattr(grid, k, v)
    axes = data.get("axes")
    if not isinstance(axes, dict) or not axes:
        raise ConfigError(f"{source}: 'axes' must be a non-empty mapping axis -> {{value: {{setting: value}}}}, e.g. "
                          f"axes: {{g: {{tanh: {{generator.mapping: tanh}}, softmax: {{generator.mapping: softmax}}}}}}")
    for axis, values in axes.items():
        axis = _label(axis, "axis name", f"{source}: axes")
        if not isinstance(values, dict) or not values:
            raise ConfigError(f"{source}: axes.{axis} must be a non-empty mapping value -> {{setting: value}}, got "
                              f"{short_repr(values)} ({type_name(values)})")
        grid.axes[axis] = {}
        for label, overlay in values.items():
            label = _label(label, "value", f"{source}: axes.{axis}")
            if label in grid.axes[axis]:
                raise ConfigError(f"{source}: axes.{axis} names the value {label!r} twice")
            grid.axes[axis][label] = _check_overlay(overlay, f"{source}: axes.{axis}.{label}")
    grid.common = _check_overlay(data.get("common"), f"{source}: common")
    per = data.get("per_dataset") or {}
    if not isinstance(per, dict):
        raise ConfigError(f"{source}: per_dataset must be a mapping dataset -> {{axis=value: {{setting: value}}}}")
    for dataset, cells in per.items():
        if not isinstance(cells, dict):
            raise ConfigError(f"{source}: per_dataset.{dataset} must be a mapping axis=value -> {{setting: value}}")
        grid.per_dataset[str(dataset)] = {}
        for sel, overlay in cells.items():
            axis, _, label = str(sel).partition("=")
            if axis not in grid.axes or label not in grid.axes[axis]:
                raise ConfigError(f"{source}: per_dataset.{dataset}: {sel!r} is not AXIS=VALUE of this grid (axes: "
                                  + "; ".join(f"{a}: {', '.join(v)}" for a, v in grid.axes.items()) + ")")
            grid.per_dataset[str(dataset)][str(sel)] = _check_overlay(overlay, f"{source}: per_dataset.{dataset}.{sel}")
    req = data.get("requires") or {}
    if not isinstance(req, dict):
        raise ConfigError(f"{source}: requires must be a mapping key -> {{one_of: [...], why: ...}}")
    for key, cond in req.items():
        if not isinstance(cond, dict) or not ({"one_of", "greater_than"} & set(cond)) \
                or set(cond) - {"one_of", "greater_than", "why"}:
            raise ConfigError(f"{source}: requires.{key} must be {{one_of: [values], why: text}} or "
                              f"{{greater_than: number, why: text}}, got {short_repr(cond)}")
        one_of, gt = cond.get("one_of"), cond.get("greater_than")
        if one_of is not None and not isinstance(one_of, list):
            raise ConfigError(f"{source}: requires.{key}.one_of must be a list")
        if gt is not None and (isinstance(gt, bool) or not isinstance(gt, (int, float))):
            raise ConfigError(f"{source}: requires.{key}.greater_than must be a number")
        grid.requires.append(Requirement(str(key), one_of, gt, str(cond.get("why", ""))))
    paper = data.get("paper") or {}
    if not isinstance(paper, dict):
        raise ConfigError(f"{source}: paper must be a mapping {{dataset: text, METRIC: {{cell: value}}}}")
    cells = {cell_id(p) for p in grid.points()}
    for metric, values in paper.items():
        if metric == "dataset":
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: paper.{metric} must be a mapping cell -> value")
        for cell, v in values.items():
            if cell not in cells:
                raise ConfigError(f"{source}: paper.{metric}: {cell!r} is not a cell of this grid; cells: "
                                  f"{', '.join(sorted(cells))}")
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{source}: paper.{metric}.{cell} must be a number, got {short_repr(v)}")
    grid.paper = paper
    return grid


def load_grid(name_or_path: str | os.PathLike) -> Grid:
    """A built-in grid by name (``table3``) or a grid YAML file."""
    text = str(name_or_path)
    p = Path(text).expanduser()
    if p.is_file():
        path, name, source = p, p.stem, str(p)
    elif (GRID_DIR / f"{text}.yaml").is_file() and "/" not in text and "\\" not in text:
        path, name, source = GRID_DIR / f"{text}.yaml", text, f"built-in grid {text}"
    else:
        raise ConfigError(f"--grid {text!r}: neither a built-in grid nor a file; built-in grids: "
                          f"{', '.join(grid_names())} (or give a grid YAML file, docs/sweep.md)")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file in UTF-8 ({e.reason} at byte {e.start}); give a grid YAML "
                          f"file") from None
    except _YAML_ERRORS as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$", name):
        raise ConfigError(f"{source}: the file's name {name!r} names the sweep directory: use letters, digits, '.', "
                          f"'_', '+' or '-'")
    return parse_grid(data, name, source)


def parse_only(items: Sequence[str], grid: Grid) -> dict[str, list[str]]:
    """``--only AXIS=V1,V2`` (repeatable) -> {axis: [values]}, checked against the grid."""
    out: dict[str, list[str]] = {}
    axes_text = "; ".join(f"{a}: {', '.join(v)}" for a, v in grid.axes.items())
    for item in items:
        axis, eq, values = item.partition("=")
        axis = axis.strip()
        if not eq or not axis:
            raise ConfigError(f"--only {item!r}: expected AXIS=VALUE[,VALUE...], e.g. --only "
                              f"{next(iter(grid.axes))}={next(iter(next(iter(grid.axes.values()))))}")
        if axis not in grid.axes:
            raise ConfigError(f"--only {item!r}: grid {grid.name} has no axis {axis!r}; its axes and values: "
                              f"{axes_text}")
        if axis in out:
            raise ConfigError(f"--only {item!r}: axis {axis!r} is restricted twice; give its values in one --only")
        labels = [v.strip() for v in values.split(",")]
        bad = [v for v in labels if v not in grid.axes[axis]]
        if bad or not labels:
            raise ConfigError(f"--only {item!r}: {', '.join(map(repr, bad)) or 'no value'} is not a value of axis "
                              f"{axis!r}; its values: {', '.join(grid.axes[axis])}")
        out[axis] = labels
    return out


def parse_seed_list(text: str) -> list[int]:
    """``--seeds 0,1,2`` or ``0-2`` (or ``0-2,7``) -> [0, 1, 2] (distinct, non-negative, at most MAX_SEEDS)."""
    usage = "write the training seeds like 0,1,2 or 0-4"
    seeds: list[int] = []
    items = [p.strip() for p in str(text).split(",")]
    if not any(items):
        raise ConfigError(f"--seeds {text!r}: no seeds given; {usage}")
    for item in items:
        lo, sep, hi = item.partition("-")
        if not lo.strip().isdigit() or (sep and not hi.strip().isdigit()):
            raise ConfigError(f"--seeds {text!r}: {item!r} is not a seed or a range of seeds; {usage}")
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ConfigError(f"--seeds {text!r}: the range {item} ends before it starts; write {b}-{a}")
        if b - a >= MAX_SEEDS or len(seeds) + b - a + 1 > MAX_SEEDS:
            raise ConfigError(f"--seeds {text!r}: more than {MAX_SEEDS} seeds (one training run per cell each)")
        if b >= 2**63:
            raise ConfigError(f"--seeds {text!r}: seed {b} is too large; seeds go from 0 to 2^63 - 1")
        for s in range(a, b + 1):
            if s in seeds:
                raise ConfigError(f"--seeds {text!r}: seed {s} is given twice (each seed is one run of a cell); list "
                                  f"every seed once")
            seeds.append(s)
    return seeds


# ------------------------------------------------------------------------------------------------------------
# 2. Cells: overlays -> raw config -> the --set arguments that make it


def _registry(section: str):
    from ..models import DISCRIMINATORS, ENCODERS, GENERATORS
    from ..objectives import OBJECTIVES

    return {"generator": GENERATORS, "discriminator": DISCRIMINATORS, "encoder": ENCODERS, "loss": OBJECTIVES}[section]


def _section_name(raw: dict[str, Any], section: str) -> str | None:
    value = raw.get(section)
    if section == "loss" and value is None:
        return "gan"
    if not isinstance(value, dict):
        return None
    return value.get("name", "gan" if section == "loss" else None)


def _set_path(raw: dict[str, Any], keys: list[str], value: Any, where: str) -> None:
    node = raw
    for depth, k in enumerate(keys[:-1]):
        if node.get(k) is None:
            node[k] = {}
        if not isinstance(node[k], dict):
            at = ".".join(keys[: depth + 1])
            raise ConfigError(f"{where}: {'.'.join(keys)}: {at} is {short_repr(node[k])} ({type_name(node[k])}), not a "
                              f"mapping, so it has no key {keys[depth + 1]!r}")
        node = node[k]
    node[keys[-1]] = copy.deepcopy(value)


def apply_overlay(raw: dict[str, Any], overlay: dict[str, Any], where: str, notes: list[str]) -> None:
    """Apply one overlay to ``raw`` (in place). A changed ``<model section>.name`` keeps the options the new class
    takes; a model option the section's class does not have is an error naming ``where`` and the key. The
    ``<section>.name`` settings of an overlay apply first, so its other settings are options of the new class."""
    names_first = sorted(overlay.items(), key=lambda kv: not (kv[0].endswith(".name") and kv[0].count(".") == 1))
    for key, value in names_first:
        keys = key.split(".")
        sec = keys[0]
        if sec in MODEL_SECTIONS and len(keys) == 2 and keys[1] == "name":
            reg = _registry(sec)
            if not isinstance(value, str) or value not in reg:
                raise ConfigError(f"{where}: {key}: unknown {reg.kind} {short_repr(value)}; valid {reg.kind}s are: "
                                  f"{', '.join(reg.names())}")
            current, old = raw.get(sec), _section_name(raw, sec)
            if old != value:
                current = current if isinstance(current, dict) else {}
                params = reg.parameters(value)
                kept = {k: v for k, v in current.items() if k != "name" and k in params}
                dropped = sorted(k for k in current if k != "name" and k not in params)
                raw[sec] = {"name": value, **copy.deepcopy(kept)}
                notes.append(f"{sec} {old or '(none)'} -> {value}" + (f" (dropped {', '.join(dropped)})" if dropped
                                                                      else ""))
            continue
        if sec in MODEL_SECTIONS and len(keys) >= 2:
            name = _section_name(raw, sec)
            if name is None:
                raise ConfigError(f"{where}: {key}: the config has no {sec} here ({sec}: null), so it has no option "
                                  f"{keys[1]!r}")
            reg = _registry(sec)
            if name in reg and keys[1] not in reg.parameters(name):
                havers = [n for n in reg.names() if keys[1] in reg.parameters(n)]
                raise ConfigError(f"{where}: {key}: the {reg.kind} here is {name!r}, which has no option {keys[1]!r}"
                                  + (f" ({reg.kind}s that have it: {', '.join(havers)})" if havers else ""))
        _set_path(raw, keys, value, where)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return type(a) is type(b) and a == b
    return type(a) is type(b) and a == b


def yaml_value(value: Any) -> str:
    """A value as ``--set`` parses it back (YAML flow style, one line)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False, allow_unicode=True)
    text = text.strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")].strip()
    elif text.endswith("..."):
        text = text[:-3].strip()
    if not _equal(yaml.safe_load(text) if text else None, value):
        raise ConfigError(f"the value {short_repr(value)} cannot be written as a --set argument")
    return text


def overrides_between(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """The ``--set KEY=VALUE`` arguments that turn ``old`` into ``new``: changed leaves one by one, a mapping that
    lost keys (a swapped model section) whole."""
    out = []
    for k, v in new.items():
        if k in old and _equal(old[k], v):
            continue
        if k in old and isinstance(old[k], dict) and isinstance(v, dict) and not set(old[k]) - set(v):
            out += overrides_between(old[k], v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}={yaml_value(v)}")
    removed = [k for k in old if k not in new]
    if removed:
        raise ConfigError(f"cannot write the removal of {', '.join(prefix + k for k in removed)} as --set")
    return out


@dataclass
class Cell:
    """A grid point: its values, its raw config (before seed and threads) and the notes of its overlays."""

    id: str
    point: dict[str, str]
    raw: dict[str, Any]
    sets: list[str]  # --set arguments from the base preset to ``raw``
    notes: list[str]


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _keys_clash(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _preset_hint(req: Requirement, dataset: str) -> str:
    """A built-in preset that meets a ``generator.name`` requirement, on the same dataset when there is one."""
    if req.key != "generator.name" or not req.one_of:
        return ""
    fits = []
    for name in preset_names():
        try:
            raw = read_yaml(find_config(name))
        except SemsynthError:
            continue
        if (raw.get("generator") or {}).get("name") in req.one_of:
            fits.append((name, (raw.get("data") or {}).get("name") == dataset))
    best = [n for n, same in fits if same] or [n for n, _ in fits]
    return f"; use a base preset with that generator, e.g. {best[0]}" if best else ""


def check_user_sets(grid: Grid, user_sets: Sequence[str]) -> None:
    """The sweep's ``--set`` may not set what an axis varies (it would overrule every cell), nor the seed."""
    axis_keys = {k: axis for axis, values in grid.axes.items() for ov in values.values() for k in ov}
    for text in user_sets:
        key = str(text).split("=", 1)[0].strip()
        if key == "train.seed":
            raise ConfigError(f"--set {text!r}: the sweep sets train.seed for every run (give the seeds with --seeds)")
        for k, axis in axis_keys.items():
            if _keys_clash(key, k):
                raise ConfigError(f"--set {text!r}: grid {grid.name} sets {k} on its axis {axis!r}; a --set would "
                                  f"overrule every cell (use --only {axis}=VALUE to run some of its values)")


def expand_cells(grid: Grid, base_raw: dict[str, Any], base_cfg, base_label: str, user_sets: Sequence[str],
                 only: dict[str, list[str]] | None = None) -> list[Cell]:
    """Every selected cell's raw config (base -> common -> axes -> per_dataset -> --set) and its --set arguments."""
    points = grid.points(only)
    flat = _flat(base_cfg.to_dict())
    dataset = base_cfg.data["name"]
    for req in grid.requires:
        value = flat.get(req.key)
        if not req.holds(value):
            first = points[0]
            first_key = next((k for a in first for k in grid.axes[a][first[a]]), req.key)
            raise ConfigError(
                f"grid {grid.name} on {base_label}: cell {cell_id(first)} cannot take {first_key}: the grid needs "
                f"{req.key} {req.wants()}, and the base has {req.key} = {short_repr(value)}"
                + (f" ({req.why})" if req.why else "") + _preset_hint(req, dataset))
    check_user_sets(grid, user_sets)
    cells = []
    for point in points:
        cid = cell_id(point)
        where = f"grid {grid.name} on {base_label}, cell {cid}"
        raw, notes = copy.deepcopy(base_raw), []
        apply_overlay(raw, grid.common, f"{where} (common)", notes)
        for axis, label in point.items():
            apply_overlay(raw, grid.axes[axis][label], where, notes)
        for axis, label in point.items():
            extra = grid.per_dataset.get(dataset, {}).get(f"{axis}={label}")
            if extra:
                apply_overlay(raw, extra, f"{where} (per_dataset {dataset})", notes)
        try:
            raw = apply_overrides(raw, list(user_sets))
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        sets = overrides_between(base_raw, raw)
        assert _equal(apply_overrides(base_raw, sets), raw), f"{cid}: --set arguments do not rebuild the cell"
        cells.append(Cell(cid, point, raw, sets, notes))
    return cells
