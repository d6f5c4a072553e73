"""``semsynth sweep``: the built-in grids on the presets, the overlay rules, the command of every run, the errors, and a
real sweep at tiny size (results table = the runs' own metrics; a restarted sweep trains nothing)."""

from __future__ import annotations

import io
import json
import os
import statistics
from contextlib import redirect_stderr, redirect_stdout

import pytest
import yaml

from semsynth.cli import main
from semsynth.config import load_config, read_yaml
from semsynth.errors import ConfigError, SemsynthError
from semsynth.sweep import (
    apply_overlay,
    grid_names,
    load_grid,
    overrides_between,
    parse_grid,
    parse_only,
    parse_seed_list,
    plan_sweep,
    yaml_value,
)
from tests.helpers import TINY_RAW


def run_cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue() + err.getvalue()


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# -- the built-in grids ----------------------------------------------------------------------------------------

BASES = {"table3": "scgan-synthetic-faces", "table4": "scgan-synthetic-faces", "table5": "scgan-synthetic-faces",
         "table5-norm": "scgan-synthetic-faces", "table6": "scgan-synthetic-faces", "table8": "scgan-synthetic-faces",
         "ccfpse-report": "ccfpse-synthetic-faces", "temperature": "scgan-synthetic-faces"}
# (cell, {resolved key: value}) checked in the config of the cell's command
EXPECT = {
    "table3": [("conv=conv_norm=bn", {"generator.conv_type": "conv", "generator.norm_type": "batch"}),
               ("conv=scc_norm=bn", {"generator.conv_type": "scc", "generator.norm_type": "batch"}),
               ("conv=scc_norm=scn", {"generator.conv_type": "scc", "generator.norm_type": "scn"})],
    "table4": [("ls=none", {"loss.semantic": 0.0}), ("ls=l2", {"loss.semantic": 2.0, "loss.semantic_loss": "l2"}),
               ("ls=vgg", {"loss.semantic": 2.0, "loss.semantic_loss": "vgg"})],
    "table5": [("n=1", {"generator.conv_candidates": 1, "generator.norm_candidates": 4}),
               ("n=8", {"generator.conv_candidates": 8, "generator.norm_candidates": 4})],
    "table5-norm": [("n=2", {"generator.conv_candidates": 3, "generator.norm_candidates": 2})],
    "table6": [(f"g={g}", {"generator.mapping": g, "generator.temperature": 0.05})
               for g in ("sigmoid", "tanh", "relu", "none", "softmax")],
    "table8": [("d=fpse", {"discriminator.name": "fpse", "discriminator.width": 32, "encoder": None,
                           "generator.input_mode": "label", "train.ema": False, "loss.name": "gan"}),
               ("d=oasis", {"discriminator.name": "oasis", "discriminator.channels": 8, "encoder": None,
                            "discriminator.init_gain": 1.0, "loss.name": "oasis", "loss.semantic": 2.0,
                            "loss.feature_matching": 0.0, "train.ema": True})],
    "temperature": [(f"tau={t}", {"generator.temperature": v}) for t, v in (("0.05", 0.05), ("0.5", 0.5), ("1", 1.0))],
    "ccfpse-report": [("g=ccfpse_d=fp", {"generator.name": "ccfpse", "discriminator.name": "fp"}),
                      ("g=spade_d=fpse", {"generator.name": "spade", "generator.ngf": 8, "generator.z_dim": 64,
                                          "discriminator.name": "fpse", "discriminator.width": 32})],
}


def test_the_builtin_grids_are_the_papers_tables():
    assert set(grid_names()) == set(BASES)
    sizes = {name: [len(v) for v in load_grid(name).axes.values()] for name in grid_names()}
    assert sizes == {"table3": [2, 2], "table4": [4], "table5": [4], "table5-norm": [4], "table6": [5], "table8": [2],
                     "ccfpse-report": [2, 2], "temperature": [3]}
    t6 = load_grid("table6")
    assert [p["g"] for p in t6.points()] == ["sigmoid", "tanh", "relu", "none", "softmax"]
    assert t6.paper["miou"]["g=softmax"] == 66.9 and t6.paper["fid"]["g=none"] == 73.9


@pytest.mark.parametrize("grid", list(BASES))
def test_every_builtin_grid_on_its_faces_preset(grid, tmp_path):
    base = BASES[grid]
    plan = plan_sweep(base, grid, seeds=[0, 3], threads=1, outdir=tmp_path, check_tools=False)
    g = load_grid(grid)
    assert [c.id for c in plan.cells] == ["_".join(f"{a}={v}" for a, v in p.items()) for p in g.points()]
    assert len(plan.runs) == 2 * len(plan.cells)
    base_flat = _flat(load_config(base).to_dict())
    expect = dict(EXPECT[grid])
    for run in plan.runs:
        cfg = load_config(base, run.sets)  # what the run's command makes
        flat = _flat(cfg.to_dict())
        assert cfg.train.seed == run.seed and cfg.train.threads == 1
        assert run.out == tmp_path / f"{grid}-{base}" / run.cell.id / f"seed-{run.seed}"
        for key, value in expect.get(run.cell.id, {}).items():
            assert flat[key] == value and type(flat[key]) is type(value), (run.cell.id, key, flat[key])
        # nothing else changes: keys outside the grid's settings (and the sections it swaps) are the base's
        touched = {k for ov in [g.common, *[g.axes[a][v] for a, v in run.cell.point.items()],
                                *g.per_dataset.get("synthetic-faces", {}).values()] for k in ov}
        swapped = {k.split(".")[0] for k in touched if k.endswith(".name")}
        for key in set(flat) | set(base_flat):
            if key in ("train.seed", "train.threads") or key.split(".")[0] in swapped \
                    or any(key == t or key.startswith(t + ".") for t in touched):
                continue
            assert flat.get(key) == base_flat.get(key), (run.cell.id, key)
    assert {r.cell.id for r in plan.runs} >= set(expect)


@pytest.mark.parametrize("base,reference", [("scgan-ade20k", "scgan-ade20k-oasisd"),
                                            ("scgan-synthetic-faces", "scgan-synthetic-faces-oasisd")])
def test_table8_oasis_cell_is_the_oasisd_preset(base, reference, tmp_path):
    """The OASIS cell of Table 8, an overlay on the plain SC-GAN preset, trains what the hand-written -oasisd preset
    trains (the generator's z_dim is unused with input_mode label)."""
    plan = plan_sweep(base, "table8", seeds=[0], threads=1, outdir=tmp_path, check_tools=False, metrics=["lpips"])
    run = next(r for r in plan.runs if r.cell.id == "d=oasis")
    cell, ref = load_config(base, run.sets).to_dict(), load_config(reference, ["train.threads=1"]).to_dict()
    cell["generator"].pop("z_dim"), ref["generator"].pop("z_dim")
    for section in ("data", "generator", "discriminator", "encoder", "loss", "optim", "train"):
        assert cell[section] == ref[section], section


# -- overlays, --set and the commands --------------------------------------------------------------------------


def test_changing_a_model_name_keeps_the_options_the_new_class_takes():
    raw = {"discriminator": {"name": "fpse", "width": 32, "spectral": False, "init_gain": 1.0}, "loss": {"kl": 0.1}}
    notes = []
    apply_overlay(raw, {"discriminator.name": "oasis", "discriminator.channels": 8, "loss.name": "oasis",
                        "loss.semantic": 1.0}, "here", notes)
    assert raw["discriminator"] == {"name": "oasis", "spectral": False, "init_gain": 1.0, "channels": 8}
    assert raw["loss"] == {"name": "oasis", "semantic": 1.0}
    assert notes == ["discriminator fpse -> oasis (dropped width)", "loss gan -> oasis (dropped kl)"]
    same = {"discriminator": {"name": "fpse", "width": 32}}
    apply_overlay(same, {"discriminator.name": "fpse"}, "here", notes)  # the same name: nothing dropped
    assert same == {"discriminator": {"name": "fpse", "width": 32}} and len(notes) == 2


def test_an_option_the_class_lacks_names_the_cell_the_key_and_who_has_it():
    raw = {"discriminator": {"name": "fpse", "width": 32}}
    with pytest.raises(ConfigError, match=r"cell x: discriminator.channels: the discriminator here is 'fpse', which "
                                          r"has no option 'channels' \(discriminators that have it: oasis\)"):
        apply_overlay(raw, {"discriminator.channels": 8}, "cell x", [])
    with pytest.raises(ConfigError, match="no encoder here"):
        apply_overlay({"encoder": None}, {"encoder.width": 8}, "cell x", [])
    with pytest.raises(ConfigError, match="valid generators are"):
        apply_overlay({"generator": {"name": "scgan"}}, {"generator.name": "stylegan"}, "cell x", [])


def test_set_arguments_rebuild_a_cell_and_round_trip_their_values():
    old = {"generator": {"name": "ccfpse", "ngf": 8, "hidden": 16}, "train": {"images": 10}, "encoder": None}
    new = {"generator": {"name": "spade", "ngf": 8}, "train": {"images": 10, "ema": True, "ema_rampup": None},
           "encoder": None, "loss": {"semantic_loss": "l2", "semantic": 0.0}}
    sets = overrides_between(old, new)
    assert sets == ["generator={name: spade, ngf: 8}", "train.ema=true", "train.ema_rampup=null",
                    "loss={semantic_loss: l2, semantic: 0.0}"]
    for v in (0.05, 1e-4, 110898, None, True, "l1", "1", "null", [1, 2], {"a": [0.5, "x"]}, 2**62):
        assert yaml.safe_load(yaml_value(v)) == v and type(yaml.safe_load(yaml_value(v))) is type(v)


def test_sweep_set_applies_to_every_cell_after_the_grid(tmp_path):
    plan = plan_sweep("ccfpse-synthetic-faces", "ccfpse-report", seeds=[0], threads=1, outdir=tmp_path,
                      check_tools=False, overrides=["discriminator.width=16", "train.images=96"])
    for run in plan.runs:
        cfg = load_config("ccfpse-synthetic-faces", run.sets)
        assert cfg.discriminator["width"] == 16 and cfg.train.images == 96
    assert plan.user_sets == ["discriminator.width=16", "train.images=96"]


def test_per_dataset_settings_apply_to_their_cell_on_their_dataset_only(tmp_path):
    grid = parse_grid({"axes": {"g": {"tanh": {"generator.mapping": "tanh"}, "relu": {"generator.mapping": "relu"}}},
                       "per_dataset": {"synthetic-faces": {"g=relu": {"generator.temperature": 0.5}},
                                       "ade20k": {"g=tanh": {"generator.temperature": 2.0}}}}, "g", "test grid")
    plan = plan_sweep("scgan-synthetic-faces", grid, seeds=[0], threads=1, outdir=tmp_path, check_tools=False)
    temps = {r.cell.id: load_config("scgan-synthetic-faces", r.sets).generator["temperature"] for r in plan.runs}
    assert temps == {"g=tanh": 0.05, "g=relu": 0.5}


def test_threads_default_to_the_cores_divided_by_the_jobs_and_torchrun_commands(tmp_path):
    plan = plan_sweep("scgan-synthetic-faces", "table8", seeds=[0], jobs=1, torchrun=2, outdir=tmp_path,
                      check_tools=False)
    assert plan.threads == max(1, (os.cpu_count() or 1) // 2)
    cmd = plan.train_command(plan.runs[0])
    assert cmd.startswith("torchrun --standalone --nproc_per_node 2 -m semsynth train --config scgan-synthetic-faces "
                          f"--outdir {tmp_path}/table8-scgan-synthetic-faces/d=fpse/seed-0 ")
    assert cmd.endswith(f"--set train.seed=0 --set train.threads={plan.threads}")


def test_the_runs_commands_carry_a_chosen_allocator(tmp_path):
    """sweep --allocator X reaches the runs it starts as processes (their default is auto)."""
    plan = plan_sweep("scgan-synthetic-faces", "table8", seeds=[0], threads=1, outdir=tmp_path, check_tools=False)
    assert "--allocator" not in plan.train_argv(plan.runs[0]) and "--allocator" not in plan.eval_argv(plan.runs[0])
    plan = plan_sweep("scgan-synthetic-faces", "table8", seeds=[0], threads=1, outdir=tmp_path, check_tools=False,
                      allocator="glibc")
    assert plan.train_argv(plan.runs[0], resume=True)[-3:] == ["--resume", "--allocator", "glibc"]
    assert plan.eval_argv(plan.runs[0])[-2:] == ["--allocator", "glibc"]
    assert plan.train_command(plan.runs[0]).endswith("--allocator glibc")


def test_dry_run_prints_every_run_and_writes_nothing(tmp_path):
    out = tmp_path / "sweeps"
    rc, text = run_cli(["sweep", "--config", "scgan-synthetic-faces", "--grid", "table6", "--seeds", "0,1", "--threads",
                        "1", "--outdir", str(out), "--dry-run"])
    assert rc == 0, text
    assert "5 cell(s) x 2 seed(s) = 10 run(s)" in text
    assert text.count("semsynth train --config scgan-synthetic-faces") == 10
    assert f"--outdir {out}/table6-scgan-synthetic-faces/g=relu/seed-1 --set generator.mapping=relu --set " \
           f"train.seed=1 --set train.threads=1" in text
    assert not out.exists()


# -- errors ----------------------------------------------------------------------------------------------------


def test_errors_of_grids_axes_values_and_seeds(tmp_path):
    with pytest.raises(ConfigError, match="built-in grids: ccfpse-report, table3, table4, table5, table5-norm, "
                                          "table6, table8, temperature"):
        load_grid("table7")
    t3 = load_grid("table3")
    with pytest.raises(ConfigError, match="has no axis 'op'; its axes and values: conv: conv, scc; norm: bn, scn"):
        parse_only(["op=scc"], t3)
    with pytest.raises(ConfigError, match="'sn' is not a value of axis 'norm'; its values: bn, scn"):
        parse_only(["norm=sn"], t3)
    with pytest.raises(ConfigError, match="restricted twice"):
        parse_only(["norm=bn", "norm=scn"], t3)
    assert parse_only(["norm=scn", "conv=conv,scc"], t3) == {"norm": ["scn"], "conv": ["conv", "scc"]}
    assert parse_seed_list("0-2,7") == [0, 1, 2, 7]
    for bad, says in (("a", "not a seed"), ("0,0", "given twice"), ("0-500", "more than 100"), ("3-1", "ends before"), ("", "no seeds")):
        with pytest.raises(SemsynthError, match=says):
            parse_seed_list(bad)


@pytest.mark.parametrize("data,says", [
    ([1, 2], "a grid must be a mapping"),
    ({"axes": {}}, "'axes' must be a non-empty mapping"),
    ({"axes": {"g": {"Tanh": {"generator.mapping": "tanh"}}}}, "value 'Tanh' must be lower-case"),
    ({"axes": {"g_1": {"a": {}}}}, "axis name 'g_1'"),
    ({"axes": {"g": {"a": {"gen.mapping": "tanh"}}}}, "unknown section 'gen'"),
    ({"axes": {"g": {"a": {"train.seed": 3}}}}, "set by the sweep"),
    ({"axes": {"g": {"a": ["generator.mapping"]}}}, "an overlay must be a mapping"),
    ({"axes": {"g": {"a": {}}}, "per_dataset": {"ade20k": {"g=b": {}}}}, "'g=b' is not AXIS=VALUE"),
    ({"axes": {"g": {"a": {}}}, "paper": {"miou": {"g=b": 1}}}, "'g=b' is not a cell"),
    ({"axes": {"g": {"a": {}}}, "requires": {"generator.name": "scgan"}}, "one_of"),
    ({"axes": {"g": {"a": {}}}, "colour": 1}, "unknown grid field"),
])
def test_grid_file_errors_name_the_field(data, says):
    with pytest.raises(ConfigError, match=says):
        parse_grid(data, "g", "my-grid.yaml")


def test_a_cell_the_base_cannot_take_is_an_error_naming_cell_key_and_why(tmp_path):
    with pytest.raises(ConfigError) as e:
        plan_sweep("spade-synthetic-faces", "table3", seeds=[0], outdir=tmp_path, check_tools=False)
    msg = str(e.value)
    for part in ("grid table3 on spade-synthetic-faces", "cell conv=conv_norm=bn cannot take generator.conv_type",
                 "generator.name = 'spade'", "options of the SC-GAN generator", "e.g. scgan-synthetic-faces"):
        assert part in msg, msg
    grid = tmp_path / "mine.yaml"  # a switch the discriminator of the cell does not have
    grid.write_text(yaml.safe_dump({"axes": {"d": {"fp": {"discriminator.name": "fp", "discriminator.channels": 8}}}}))
    with pytest.raises(ConfigError, match=r"cell d=fp: discriminator.channels: the discriminator here is 'fp', which "
                                          r"has no option 'channels'"):
        plan_sweep("scgan-synthetic-faces", str(grid), seeds=[0], outdir=tmp_path, check_tools=False)
    tiny = tmp_path / "tiny.yaml"  # a value the base's sizes cannot take: SVG stages narrower than n
    tiny.write_text(yaml.safe_dump(TINY_RAW))
    with pytest.raises(ConfigError, match=r"cell n=8: --set 'generator.conv_candidates=8'.*raise svg_width"):
        plan_sweep(str(tiny), "table5", seeds=[0], outdir=tmp_path, check_tools=False)


def test_set_may_not_contradict_the_grid_nor_set_the_seed(tmp_path):
    with pytest.raises(ConfigError, match="grid table6 sets generator.mapping on its axis 'g'"):
        plan_sweep("scgan-synthetic-faces", "table6", seeds=[0], overrides=["generator.mapping=tanh"], outdir=tmp_path,
                   check_tools=False)
    with pytest.raises(ConfigError, match="grid table3 sets generator.conv_type"):
        plan_sweep("scgan-synthetic-faces", "table3", seeds=[0], overrides=["generator={name: scgan}"],
                   outdir=tmp_path, check_tools=False)
    with pytest.raises(ConfigError, match="give the seeds with --seeds"):
        plan_sweep("scgan-synthetic-faces", "table6", seeds=[0], overrides=["train.seed=4"], outdir=tmp_path,
                   check_tools=False)


def test_missing_weights_of_one_cell_say_how_to_leave_it_out(tmp_path):
    with pytest.raises(SemsynthError, match=r"cell ls=vgg: VGG19 .* leave this cell out: --only ls=none,l1,l2"):
        plan_sweep("scgan-synthetic-faces", "table4", seeds=[0], outdir=tmp_path,
                   overrides=["loss.vgg_weights=" + str(tmp_path / "vgg19.pth")])


# -- a real sweep at tiny size ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_sweep_table_matches_its_runs_and_a_restart_trains_nothing(tmp_path):
    from semsynth.demo import BUNDLED_SEGMENTER
    from semsynth.evaluation import evaluate
    from semsynth.training import train

    raw = {**TINY_RAW, "train": {**TINY_RAW["train"], "images": 8, "checkpoint_every": 4, "log_every": 4,
                                 "sample_every": 1000, "tensorboard": False}}
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(yaml.safe_dump(raw))
    out = tmp_path / "sweeps"
    argv = ["sweep", "--config", str(tiny), "--grid", "table6", "--only", "g=tanh,softmax", "--seeds", "0,1",
            "--threads", "1", "--metrics", "miou", "--num", "4", "--outdir", str(out)]
    plan = plan_sweep(str(tiny), "table6", only=["g=tanh,softmax"], seeds=[0, 1], threads=1, num=4, outdir=out,
                      metrics=["miou"])
    # one run was interrupted earlier (a checkpoint at 4 of 8 images): the sweep resumes it
    interrupted = next(r for r in plan.runs if r.cell.id == "g=softmax" and r.seed == 1)
    train(load_config(str(tiny), interrupted.sets), outdir=interrupted.out, stop_after=4)

    rc, text = run_cli(argv)
    assert rc == 0, text[-3000:]
    sweep_dir = out / "table6-tiny"
    assert f"resuming {interrupted.out / '00000-tiny'}" in text
    assert text.count(": training\n") == 3
    runs = {(r.cell.id, r.seed): r for r in plan.runs}
    for (cell, seed), r in runs.items():
        run_dirs = sorted(r.out.glob("*-tiny"))
        assert [p.name for p in run_dirs] == ["00000-tiny"], run_dirs  # resumed in place, no second run directory
        assert (run_dirs[0] / "DONE").is_file()
        # the run's config is exactly the one its command makes
        assert read_yaml(run_dirs[0] / "config.yaml") == yaml.safe_load(load_config(str(tiny), r.sets).to_yaml())
    assert "resumed from" in (interrupted.out / "00000-tiny" / "log.txt").read_text()

    # the table: mean and sample standard deviation of the metrics of each run, evaluated here directly
    with open(sweep_dir / "results.csv") as f:
        import csv

        table = {row["cell"]: row for row in csv.DictReader(f)}
    assert set(table) == {"g=tanh", "g=softmax"}
    for cell in ("g=tanh", "g=softmax"):
        direct = [evaluate(tmp_path / "direct" / cell / str(seed), runs[(cell, seed)].out / "00000-tiny" / "model",
                           metrics=["miou"], segmenter=str(BUNDLED_SEGMENTER),
                           num=4, seed=0, save_images=False, progress=False)["metrics"] for seed in (0, 1)]
        assert table[cell]["seeds_done"] == "2"
        for key in ("miou", "pixel_accuracy"):
            vals = [d[key] for d in direct]
            assert float(table[cell][f"{key}_mean"]) == pytest.approx(statistics.fmean(vals), abs=1e-6)
            assert float(table[cell][f"{key}_std"]) == pytest.approx(statistics.stdev(vals), abs=1e-6)
        assert table[cell]["paper_miou"] == {"g=tanh": "63.1", "g=softmax": "66.9"}[cell]
    md = (sweep_dir / "results.md").read_text()
    for r in plan.runs:
        assert plan.train_command(r) in md
    assert "| g=softmax | softmax | 2 |" in md and "best first: paper g=softmax, g=tanh" in md
    assert (sweep_dir / "plot-miou.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<table>" in (sweep_dir / "results.html").read_text()
    assert json.loads((sweep_dir / "sweep.json").read_text())["seeds"] == [0, 1]

    # a restart: every run is finished and evaluated, so nothing is trained or evaluated again
    files = {p: p.stat().st_mtime_ns for r in plan.runs for p in r.out.rglob("*") if p.is_file()}
    rc, text = run_cli(argv)
    assert rc == 0, text[-3000:]
    assert text.count("not trained again") == 4 and ": training" not in text
    assert {p: p.stat().st_mtime_ns for r in plan.runs for p in r.out.rglob("*") if p.is_file()} == files

    # the same sweep with other settings is refused before anything runs
    rc, text = run_cli(argv + ["--set", "train.images=12"])
    assert rc == 2 and "was made with other settings (train.images: 8 -> 12)" in text, text[-2000:]


@pytest.mark.slow
def test_parallel_jobs_run_each_command_in_its_own_process_with_the_same_result(tmp_path):
    """--jobs 2 runs the written commands as subprocesses; a run's weights equal those of the same run trained in
    this process (one thread each: the same arithmetic)."""
    import torch
    from safetensors.torch import load_file

    from semsynth.training import train

    raw = {**TINY_RAW, "train": {**TINY_RAW["train"], "images": 8, "checkpoint_every": 8, "log_every": 4,
                                 "sample_every": 1000, "tensorboard": False}}
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(yaml.safe_dump(raw))
    out = tmp_path / "sweeps"
    rc, text = run_cli(["sweep", "--config", str(tiny), "--grid", "table6", "--only", "g=relu", "--seeds", "3",
                        "--jobs", "2", "--threads", "1", "--metrics", "miou", "--num", "4", "--outdir", str(out)])
    assert rc == 0, text[-3000:]
    cell = out / "table6-tiny" / "g=relu" / "seed-3"
    log = (cell / "sweep.log").read_text()
    assert "-m semsynth train --config" in log and "-m semsynth evaluate --model" in log
    assert json.loads((cell / "eval" / "metrics.json").read_text())["metrics"]["miou"] >= 0
    plan = plan_sweep(str(tiny), "table6", only=["g=relu"], seeds=[3], threads=1, outdir=tmp_path / "x",
                      check_tools=False)
    here = train(load_config(str(tiny), plan.runs[0].sets), outdir=tmp_path / "here")
    a = load_file(str(cell / "00000-tiny" / "model" / "model.safetensors"))
    b = load_file(str(here / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_failed_run_is_reported_and_the_others_make_the_table(tmp_path, monkeypatch):
    import semsynth.training
    from semsynth.training.loop import TrainingDiverged

    real_train = semsynth.training.train

    def train(cfg, *args, **kwargs):
        if cfg.train.seed == 1:
            raise TrainingDiverged("20 consecutive non-finite steps (a stand-in)")
        return real_train(cfg, *args, **kwargs)

    monkeypatch.setattr(semsynth.training, "train", train)
    raw = {**TINY_RAW, "train": {**TINY_RAW["train"], "images": 4, "checkpoint_every": 4, "sample_every": 1000,
                                 "tensorboard": False}}
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(yaml.safe_dump(raw))
    rc, text = run_cli(["sweep", "--config", str(tiny), "--grid", "table6", "--only", "g=tanh", "--seeds", "0,1",
                        "--threads", "1", "--metrics", "miou", "--num", "2", "--outdir", str(tmp_path / "s")])
    assert rc == 2
    assert "1 run(s) failed and are left out of the table" in text
    assert "g=tanh seed 1: training failed: 20 consecutive non-finite steps" in text and "Traceback" not in text
    row = (tmp_path / "s" / "table6-tiny" / "results.csv").read_text().splitlines()[1].split(",")
    assert row[:3] == ["g=tanh", "tanh", "1"]  # one seed done


def test_a_run_finished_in_another_sweep_with_the_same_settings_is_reused(tmp_path):
    """The base preset's cell is in every grid (table3 scc+scn, table4 l1, table6 softmax, temperature 0.05): a
    sweep reuses such a run finished by another sweep under the same --outdir instead of training it again."""
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(yaml.safe_dump(TINY_RAW))
    out = tmp_path / "sweeps"
    first = plan_sweep(str(tiny), "table6", only=["g=softmax"], seeds=[0, 1], threads=1, outdir=out,
                       check_tools=False)
    for r in first.runs:  # as a finished run leaves it: config.yaml, model/, DONE
        d = r.out / "00000-tiny"
        (d / "model").mkdir(parents=True)
        images = 16 if r.seed == 0 else 32  # seed 1 was made longer: not the same run
        (d / "config.yaml").write_text(load_config(str(tiny), r.sets + [f"train.images={images}"]).to_yaml())
        (d / "DONE").write_text("")
    plan = plan_sweep(str(tiny), "temperature", only=["tau=0.05,0.5"], seeds=[0, 1], threads=1, outdir=out,
                      check_tools=False)
    got = {(r.cell.id, r.seed): (r.status, r.reused, r.run_dir) for r in plan.runs}
    assert got[("tau=0.05", 0)] == ("done", True, out / "table6-tiny" / "g=softmax" / "seed-0" / "00000-tiny")
    assert got[("tau=0.05", 1)][:2] == ("new", False)  # another length
    assert got[("tau=0.5", 0)][:2] == ("new", False) and got[("tau=0.5", 1)][:2] == ("new", False)
    assert "# done in another sweep, reused: " + str(out / "table6-tiny") in plan.describe()
    reused = next(r for r in plan.runs if r.reused)
    assert plan.eval_argv(reused)[2] == str(reused.run_dir / "model")  # evaluated here, from the twin's model
    assert reused.eval_dir == out / "temperature-tiny" / "tau=0.05" / "seed-0" / "eval"


def test_each_built_in_world_is_scored_by_its_own_bundled_segmenter(tmp_path):
    from semsynth.demo import BUNDLED_SEGMENTERS, bundled_segmenter
    from semsynth.sweep.plan import _eval_protocol

    for world in ("synthetic-faces", "synthetic-landscapes"):
        assert bundled_segmenter(world) == BUNDLED_SEGMENTERS[world]
        proto = _eval_protocol(world, ["miou", "fid"], None, None, None, 100)
        assert proto["segmenter"] == str(BUNDLED_SEGMENTERS[world]) and proto["feature_extractor"] == "segmenter"
    assert bundled_segmenter("cityscapes") is None
    with pytest.raises(ConfigError, match=r"need --segmenter for cityscapes \(bundled evaluators exist for "
                                          r"synthetic-faces and synthetic-landscapes only\)"):
        _eval_protocol("cityscapes", ["miou"], None, None, None, 100)
