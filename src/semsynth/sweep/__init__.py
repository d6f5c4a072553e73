"""``semsynth sweep``: an ablation grid run on any preset, every cell an ordinary run, one results table.

A **grid** (built-in: ``src/semsynth/grids/*.yaml``, or a YAML file of the same form, see ``docs/sweep.md``) has
named axes; each value of an axis is an **overlay**: ``{dotted.key: value}`` settings, applied like ``--set``. A
cell is one value per axis; a run is a cell and a seed. Each run's config is, in this order,

    base preset -> grid ``common`` -> each axis's value -> grid ``per_dataset`` -> the sweep's ``--set`` ->
    ``train.seed`` and ``train.threads``

One rule differs from ``--set``: an overlay that changes ``<section>.name`` of a model section (generator,
discriminator, encoder, loss) keeps the options the new class also takes and drops the others (so swapping
the FPSE discriminator for OASIS's keeps ``init_gain`` and drops ``width``). Every run is then written as the
``semsynth train --config BASE --set ...`` command that makes exactly that config (sections that lost keys are
set whole), and that command is what runs: ``load_config(BASE, sets)``.

Runs live in ``<outdir>/<grid>-<base>/<cell>/seed-<s>/`` (the run directory ``NNNNN-<name>`` made by ``train``,
and ``eval/``). A restarted sweep skips finished runs (``DONE``), resumes interrupted ones from their newest
checkpoint, and refuses runs made with other settings. Each finished run is evaluated with one protocol
(:func:`semsynth.evaluation.evaluate`); ``results.{csv,md,html}``, ``runs.csv`` and one bar plot per metric
summarise mean +- sample standard deviation over seeds, with every run's exact commands.
"""

from __future__ import annotations

from .grid import (
                   GRID_DIR,
                   Cell,
                   Grid,
                   Requirement,
                   apply_overlay,
                   cell_id,
                   check_user_sets,
                   expand_cells,
                   grid_names,
                   load_grid,
                   overrides_between,
                   parse_grid,
                   parse_only,
                   parse_seed_list,
                   yaml_value,
)
from .plan import Run, SweepPlan, SweepResult, plan_sweep, run_sweep
from .results import TABLE_METRICS, ordering_report, summarize, write_results

__all__ = ["GRID_DIR", "TABLE_METRICS", "Cell", "Grid", "Requirement", "Run", "SweepPlan", "SweepResult",
           "apply_overlay", "cell_id", "check_user_sets", "expand_cells", "grid_names", "load_grid",
           "ordering_report", "overrides_between", "parse_grid", "parse_only", "parse_seed_list", "plan_sweep",
           "run_sweep", "summarize", "write_results", "yaml_value"]
