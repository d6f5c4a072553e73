"""Planning and running a sweep: every run's command, the runs already on disk, training and evaluation."""

from __future__ import annotations

import itertools
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import find_config, load_config, read_yaml
from ..errors import ConfigError, SemsynthError
from ..registry import short_repr
from .grid import Cell, Grid, _flat, check_user_sets, expand_cells, load_grid, parse_only


@dataclass
class Run:
    """A cell at one seed: where it lives and the command that makes it."""

    cell: Cell
    seed: int
    out: Path  # --outdir of its ``semsynth train``: the run directory NNNNN-<name> goes in here
    sets: list[str]  # every --set of its command, seed and threads included
    threads: int | None
    status: str = "new"  # new | partial (checkpoints: resumed) | done (DONE: skipped)
    run_dir: Path | None = None
    reused: bool = False  # done: a finished run of another sweep with the same settings (not in ``out``)

    @property
    def eval_dir(self) -> Path:
        return self.out / "eval"


@dataclass
class SweepPlan:
    grid: Grid
    config: str  # --config as given (preset name or file)
    base_name: str
    dataset: str
    directory: Path
    seeds: list[int]
    user_sets: list[str]
    cells: list[Cell]
    runs: list[Run]
    jobs: int
    threads: int | None
    torchrun: int | None
    protocol: dict[str, Any]
    allocator: str = "auto"  # --allocator of the runs' commands (auto: not written)

    def _allocator_argv(self) -> list[str]:
        return [] if self.allocator == "auto" else ["--allocator", self.allocator]

    def train_argv(self, run: Run, resume: bool = False) -> list[str]:
        argv = ["train", "--config", self.config, "--outdir", str(run.out)]
        for s in run.sets:
            argv += ["--set", s]
        return argv + (["--resume"] if resume else []) + self._allocator_argv()

    def train_command(self, run: Run, resume: bool = False) -> str:
        argv = self.train_argv(run, resume)
        if self.torchrun:
            head = ["torchrun", "--standalone", "--nproc_per_node", str(self.torchrun), "-m", "semsynth"]
        else:
            head = ["semsynth"]
        return shlex.join(head + argv)

    def eval_argv(self, run: Run) -> list[str]:
        p = self.protocol
        model = (run.run_dir / "model") if run.run_dir is not None else run.out / f"NNNNN-{self.base_name}" / "model"
        argv = ["evaluate", "--model", str(model), "--out", str(run.eval_dir), "--metrics", ",".join(p["metrics"]),
                "--num", str(p["num"]), "--seed", str(p["seed"]), "--no-images"]
        if p.get("segmenter"):
            argv += ["--segmenter", str(p["segmenter"])]
        if p.get("feature_extractor"):
            argv += ["--feature-extractor", p["feature_extractor"]]
        if p.get("inception"):
            argv += ["--inception", str(p["inception"])]
        if run.threads:
            argv += ["--threads", str(run.threads)]
        return argv + self._allocator_argv()

    def eval_command(self, run: Run) -> str:
        return shlex.join(["semsynth", *self.eval_argv(run)])

    def describe(self) -> str:
        g = self.grid
        lines = [f"grid {g.name} ({g.source}): {g.title}", f"base: {self.config} ({self.dataset})",
                 f"sweep directory: {self.directory}",
                 f"{len(self.cells)} cell(s) x {len(self.seeds)} seed(s) = {len(self.runs)} run(s); "
                 f"{self.jobs} at once" + (f", {self.threads} thread(s) each" if self.threads else "")
                 + (f", each under torchrun with {self.torchrun} processes" if self.torchrun else ""),
                 f"evaluation: {', '.join(self.protocol['metrics'])} on {self.protocol['num']} layouts"
                 + (f", segmenter {self.protocol['segmenter']}" if self.protocol.get("segmenter") else "")]
        for cell in self.cells:
            lines.append(f"\ncell {cell.id}" + (f"  [{'; '.join(cell.notes)}]" if cell.notes else ""))
            for run in (r for r in self.runs if r.cell is cell):
                status = {"new": "", "partial": "  # resumes " + str(run.run_dir),
                          "done": ("  # done in another sweep, reused: " if run.reused else "  # done: ")
                          + str(run.run_dir)}[run.status]
                lines.append(f"  {self.train_command(run, resume=run.status == 'partial')}{status}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------
# 3. Planning: resolve every cell, find the runs already there


def _latest_run(out: Path, name: str) -> Path | None:
    if not out.is_dir():
        return None
    runs = sorted(p for p in out.glob(f"*-{name}") if p.is_dir() and p.name.split("-", 1)[0].isdigit())
    return runs[-1] if runs else None


def _settings_changes(stored: dict[str, Any], mine: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, stored, mine)`` for every setting that changes what a run computes, its length included."""
    from ..training.checkpoint import LENGTH_KEYS, numerics_changes

    flat_old, flat_new = _flat(stored), _flat(mine)
    return numerics_changes(stored, mine) + [(k, flat_old.get(k), flat_new.get(k)) for k in sorted(LENGTH_KEYS)
                                             if flat_old.get(k) != flat_new.get(k)]


def _finished_twin(outdir: Path, directory: Path, name: str, seed: int, mine: dict[str, Any]) -> Path | None:
    """A finished run of another sweep under ``outdir`` (``<sweep>/<cell>/seed-<seed>/NNNNN-<name>``) with no
    :func:`_settings_changes` against ``mine``; else None."""
    if not outdir.is_dir():
        return None
    for sweep in sorted(p for p in outdir.iterdir() if p.is_dir() and p.resolve() != directory.resolve()):
        for run_dir in sorted(sweep.glob(f"*/seed-{seed}/*-{name}")):
            if _run_state(run_dir) == "done" and (run_dir / "config.yaml").is_file() \
                    and not _settings_changes(read_yaml(run_dir / "config.yaml"), mine):
                return run_dir
    return None


def _run_state(run_dir: Path | None) -> str:
    from ..training.checkpoint import list_checkpoints

    if run_dir is None:
        return "new"
    if (run_dir / "DONE").is_file() and (run_dir / "model").is_dir():
        return "done"
    return "partial" if list_checkpoints(run_dir) else "new"


def _eval_protocol(dataset: str, metrics: Sequence[str], segmenter: str | None, feature_extractor: str | None,
                   inception: str | None, num: int) -> dict[str, Any]:
    from ..evaluation import METRIC_NAMES

    metrics = list(metrics)
    bad = [m for m in metrics if m not in METRIC_NAMES]
    if bad or not metrics:
        raise ConfigError(f"--metrics {','.join(metrics)!r}: unknown {', '.join(bad) or '(none given)'}; choose from "
                          f"{', '.join(METRIC_NAMES)}")
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ConfigError(f"--num {num}: the number of validation layouts scored per run must be >= 1")
    from ..demo import BUNDLED_SEGMENTERS, bundled_segmenter

    if segmenter is None and bundled_segmenter(dataset) is not None:
        segmenter = str(bundled_segmenter(dataset))  # a built-in world's bundled evaluator, as `semsynth demo`
    feats = any(m in metrics for m in ("fid", "kid"))
    if feature_extractor is None and feats:  # a built-in world: its segmenter's features (no Inception offline)
        feature_extractor = "segmenter" if segmenter is not None and dataset in BUNDLED_SEGMENTERS else "inception"
    if feature_extractor not in (None, "inception", "segmenter"):
        raise ConfigError(f"--feature-extractor {feature_extractor!r}: choose inception or segmenter")
    needs_seg = "miou" in metrics or (feats and feature_extractor == "segmenter")
    if needs_seg and segmenter is None:
        raise ConfigError(f"--metrics {','.join(metrics)}: miou (and --feature-extractor segmenter) need --segmenter "
                          f"for {dataset} (bundled evaluators exist for {' and '.join(BUNDLED_SEGMENTERS)} only): a directory written "
                          f"by 'semsynth segmenter train', or NAME,weights=FILE (docs/evaluation.md); or leave miou "
                          f"out of --metrics")
    return {"metrics": metrics, "segmenter": segmenter if needs_seg else None,
            "feature_extractor": feature_extractor if feats else None,
            "inception": inception if feats and feature_extractor == "inception" else None, "num": num, "seed": 0}


def _check_eval_tools(protocol: dict[str, Any], base_cfg) -> None:
    """The evaluation's networks exist and fit the dataset (so that a sweep does not train for hours first)."""
    from ..config import dataset_info

    if protocol.get("segmenter"):
        from ..segmenters import check_segmenter_dataset, load_segmenter, parse_segmenter_spec

        seg, seg_cfg = load_segmenter(parse_segmenter_spec(str(protocol["segmenter"])), "cpu")
        check_segmenter_dataset(seg_cfg, dataset_info(base_cfg.data))
        del seg
    if protocol.get("feature_extractor") == "inception":
        from ..metrics import InceptionFeatures

        InceptionFeatures(protocol.get("inception"))  # raises MissingWeightsError naming the file


def plan_sweep(config: str, grid: str | Grid, *, seeds: Sequence[int] = (0, 1, 2), overrides: Sequence[str] = (),
               only: Sequence[str] = (), outdir: str | os.PathLike = "runs/sweeps", jobs: int = 1,
               threads: int | None = None, metrics: Sequence[str] = ("miou", "fid"), segmenter: str | None = None,
               feature_extractor: str | None = None, inception: str | None = None, num: int = 1000,
               torchrun: int | None = None, check_tools: bool = True, allocator: str = "auto") -> SweepPlan:
    """Expand and validate a sweep without writing anything: every cell's config is resolved and its networks
    built on the meta device (as ``semsynth train --dry-run``), weights the runs or the evaluation need are
    looked up, and runs already in the sweep directory are found (and refused when made with other settings)."""
    from ..objectives import build_objective

    g = grid if isinstance(grid, Grid) else load_grid(grid)
    for name, v, lo in (("--jobs", jobs, 1), ("--threads", threads, 1), ("--torchrun", torchrun, 1)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < lo):
            raise ConfigError(f"{name} {v}: must be an integer >= {lo}")
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds) or any(not isinstance(s, int) or s < 0 for s in seeds):
        raise ConfigError(f"--seeds {seeds}: give distinct non-negative seeds, e.g. --seeds 0,1,2")
    only_map = parse_only(list(only), g)
    check_user_sets(g, list(overrides))
    base_path = find_config(config)
    base_raw = read_yaml(base_path)
    base_cfg = load_config(config, list(overrides))  # the base itself (with the sweep's --set) must be valid
    base_label = str(config)
    dataset = base_cfg.data["name"]
    protocol = _eval_protocol(dataset, metrics, segmenter, feature_extractor, inception, num)
    if check_tools:
        _check_eval_tools(protocol, base_cfg)
    if threads is None and not any(s.split("=", 1)[0].strip() == "train.threads" for s in overrides):
        threads = max(1, (os.cpu_count() or 1) // (jobs * (torchrun or 1)))
    cells = expand_cells(g, base_raw, base_cfg, base_label, overrides, only_map)
    directory = Path(outdir) / f"{g.name}-{base_path.stem}"
    runs: list[Run] = []
    vgg_checked = False
    base_objective = build_objective(base_cfg.loss)
    if check_tools and getattr(base_objective, "needs_vgg", False):  # every cell would need VGG19
        try:
            base_objective.vgg_weights_path()
        except SemsynthError as e:
            raise type(e)(f"base preset {base_label} (every cell of the sweep): {e}") from None
        vgg_checked = True
    for cell in cells:
        run_sets = cell.sets + [f"train.seed={seeds[0]}"] + ([f"train.threads={threads}"] if threads else [])
        try:
            cfg = load_config(config, run_sets)
        except ConfigError as e:
            raise ConfigError(f"grid {g.name} on {base_label}, cell {cell.id}: {e}") from None
        objective = build_objective(cfg.loss)
        if check_tools and getattr(objective, "needs_vgg", False) and not vgg_checked:
            try:
                objective.vgg_weights_path()
            except SemsynthError as e:
                others = [f"--only {a}=" + ",".join(v for v in g.axes[a] if v != label and v in only_map.get(a, g.axes[a]))
                          for a, label in cell.point.items() if len(only_map.get(a, g.axes[a])) > 1]
                raise type(e)(f"grid {g.name} on {base_label}, cell {cell.id}: {e}"
                              + (f"; or leave this cell out: {' or '.join(others)}" if others else "")) from None
            vgg_checked = True
        for seed in seeds:
            out = directory / cell.id / f"seed-{seed}"
            run_dir = _latest_run(out, cfg.name)
            status = _run_state(run_dir)
            run_threads = threads
            if status != "new":  # keep the thread count the run was started with (it is part of its numerics)
                stored = read_yaml(run_dir / "config.yaml")
                run_threads = (stored.get("train") or {}).get("threads")
            sets = cell.sets + [f"train.seed={seed}"] + ([f"train.threads={run_threads}"] if run_threads else [])
            run = Run(cell, seed, out, sets, run_threads, status, run_dir if status != "new" else None)
            if status == "new":  # the same run finished in another sweep (e.g. the base preset's cell of every grid)
                twin = _finished_twin(Path(outdir), directory, cfg.name, seed, load_config(config, sets).to_dict())
                if twin is not None:
                    run.status, run.run_dir, run.reused = "done", twin, True
            if status != "new":
                changes = _settings_changes(stored, load_config(config, sets).to_dict())
                if changes:
                    listing = "; ".join(f"{k}: {short_repr(a)} -> {short_repr(b)}" for k, a, b in changes)
                    raise ConfigError(f"grid {g.name}, cell {cell.id}, seed {seed}: the run {run_dir} was made with "
                                      f"other settings ({listing}); give another --outdir, or delete that run to "
                                      f"make it again with these settings")
            runs.append(run)
    return SweepPlan(grid=g, config=str(config), base_name=base_cfg.name, dataset=dataset, directory=directory,
                     seeds=seeds, user_sets=list(overrides), cells=cells, runs=runs, jobs=jobs, threads=threads,
                     torchrun=torchrun, protocol=protocol, allocator=allocator)


# ------------------------------------------------------------------------------------------------------------
# 4. Running: train (or resume, or skip), then evaluate


def _evaluated(run: Run, protocol: dict[str, Any]) -> dict[str, Any] | None:
    """The run's metrics when its evaluation was made with ``protocol`` on its current model, else None."""
    try:
        stamp = json.loads((run.eval_dir / "protocol.json").read_text(encoding="utf-8"))
        metrics = json.loads((run.eval_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return metrics if stamp == _eval_stamp(run, protocol) else None


def _eval_stamp(run: Run, protocol: dict[str, Any]) -> dict[str, Any]:
    done = (run.run_dir / "DONE").read_text(encoding="utf-8") if run.run_dir else ""
    return {**protocol, "run": str(run.run_dir), "done": done}


def _subprocess(argv: list[str], log: Path, torchrun: int | None = None) -> int:
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}", "-m",
               "semsynth", *argv]
    else:
        cmd = [sys.executable, "-m", "semsynth", *argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False).returncode


def _do_run(plan: SweepPlan, run: Run, in_process: bool, say: Callable[[str], None]) -> str | None:
    """Train (new / resume) or skip a run, then evaluate it; returns an error text, or None."""
    name = f"{run.cell.id} seed {run.seed}"
    if run.status == "done":
        say(f"{name}: finished before ({run.run_dir}{', another sweep with the same settings' if run.reused else ''})"
            f", not trained again")
    else:
        resume = run.status == "partial"
        say(f"{name}: {'resuming ' + str(run.run_dir) if resume else 'training'}")
        t0 = time.time()
        if in_process:
            from ..training import train

            try:
                cfg = load_config(plan.config, run.sets)
                train(cfg, outdir=run.out, resume=run.run_dir if resume else None)
            except (SemsynthError, RuntimeError) as e:
                return f"{name}: training failed: {e}"
        else:
            rc = _subprocess(plan.train_argv(run, resume), run.out / "sweep.log", plan.torchrun)
            if rc != 0:
                return f"{name}: training exited {rc}; see {run.out / 'sweep.log'}"
        run.run_dir = _latest_run(run.out, plan.base_name)
        run.status = _run_state(run.run_dir)
        if run.status != "done":
            return f"{name}: training stopped before the end; see {run.run_dir}/log.txt"
        say(f"{name}: trained in {(time.time() - t0) / 60:.1f} min")
    if _evaluated(run, plan.protocol) is not None:
        return None
    (run.eval_dir / "protocol.json").unlink(missing_ok=True)
    p = plan.protocol
    if in_process:
        from ..evaluation import evaluate
        from ..segmenters import parse_segmenter_spec

        if run.threads:
            import torch

            torch.set_num_threads(run.threads)
        try:
            evaluate(run.eval_dir, run.run_dir / "model", metrics=p["metrics"],
                     segmenter=parse_segmenter_spec(p["segmenter"]) if p.get("segmenter") else None,
                     inception=p.get("inception"), feature_extractor=p.get("feature_extractor") or "inception",
                     num=p["num"], seed=p["seed"], save_images=False, progress=False)
        except (SemsynthError, RuntimeError) as e:
            return f"{name}: evaluation failed: {e}"
    else:
        rc = _subprocess(plan.eval_argv(run), run.out / "sweep.log")
        if rc != 0:
            return f"{name}: evaluation exited {rc}; see {run.out / 'sweep.log'}"
    from ..utils.files import atomic_write_text

    atomic_write_text(json.dumps(_eval_stamp(run, p), indent=2), run.eval_dir / "protocol.json")
    return None


@dataclass
class SweepResult:
    plan: SweepPlan
    failures: list[str]
    files: dict[str, Path]
    rows: list[dict[str, Any]]


def run_sweep(plan: SweepPlan, say: Callable[[str], None] = print) -> SweepResult:
    """Run every run of ``plan`` (``jobs`` at once; in this process when one at a time without torchrun), then write
    the results table. Failed runs are listed and left out of the table; the others go on."""
    from ..utils.runtime import tune_malloc

    tune_malloc()
    plan.directory.mkdir(parents=True, exist_ok=True)
    _write_plan(plan)
    in_process = plan.jobs == 1 and not plan.torchrun
    total = len(plan.runs)
    counter = itertools.count(1)

    lock = threading.Lock()  # runs in threads: one whole line at a time

    def say_line(msg: str) -> None:
        with lock:
            say(msg)

    def job(run: Run) -> str | None:
        k = next(counter)
        return _do_run(plan, run, in_process, lambda msg: say_line(f"[{k}/{total}] {msg}"))

    if in_process:
        failures = [f for f in map(job, plan.runs) if f]
    else:
        with ThreadPoolExecutor(max_workers=plan.jobs) as pool:
            failures = [f for f in pool.map(job, plan.runs) if f]
    from .results import write_results

    files, rows = write_results(plan)
    return SweepResult(plan, failures, files, rows)


def _write_plan(plan: SweepPlan) -> None:
    from ..utils.files import atomic_write_text

    doc = {"grid": plan.grid.name, "grid_source": plan.grid.source, "config": plan.config, "dataset": plan.dataset,
           "seeds": plan.seeds, "set": plan.user_sets, "protocol": plan.protocol, "jobs": plan.jobs,
           "torchrun": plan.torchrun,
           "cells": [{"id": c.id, "values": c.point, "notes": c.notes, "set": c.sets} for c in plan.cells],
           "runs": [{"cell": r.cell.id, "seed": r.seed, "train": plan.train_command(r),
                    **({"reused": str(r.run_dir)} if r.reused else {})} for r in plan.runs]}
    atomic_write_text(json.dumps(doc, indent=2), plan.directory / "sweep.json")
