import json
import subprocess
import sys

import pytest

from semsynth.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "semsynth", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_subcommands():
    r = run_cli("--help")
    assert r.returncode == 0
    for sub in ("models", "train", "demo", "data"):
        assert sub in r.stdout


def test_models_json_has_presets_with_official_counts(capsys):
    assert main(["models", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert "scgan" in [g["name"] for g in table["generators"]]
    assert {"fpse", "fp", "multiscale"} <= {d["name"] for d in table["discriminators"]}
    presets = {p["name"]: p for p in table["presets"]}
    assert presets["scgan-ade20k"]["generator_parameters"] == 60_854_662
    assert presets["scgan-ade20k"]["svg_parameters"] == 6_126_531
    assert presets["scgan-ade20k"]["discriminator_parameters"] == 5_190_593
    assert presets["scgan-coco"]["generator_parameters"] == 41_846_838
    assert presets["scgan-celeba"]["generator_parameters"] == 147_570_054
    assert presets["scgan-celeba"]["encoder_parameters"] == 6_672_656
    assert presets["scgan-celeba"]["discriminator_parameters"] == 5_566_594


def test_models_table(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "scgan-ade20k" in out and "G 60,854,662" in out


def test_train_dry_run_prints_resolved_config(capsys):
    assert main(["train", "--config", "scgan-ade20k", "--set", "train.batch_size=2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "batch_size: 2" in out and "num_classes: 151" in out and "conv_candidates: 3" in out


@pytest.mark.parametrize("args,msg", [
    (["train", "--config", "nope"], "neither a file nor a preset"),
    (["train", "--config", "scgan-ade20k", "--set", "generator.ngf=8", "--dry-run"], "valid options are"),
    (["train", "--config", "scgan-ade20k", "--set", "train.batch_size=0", "--dry-run"], "must be >= 1"),
    (["train"], "give --config"),
    (["data", "make", "synthetic-faces", "--out", "/tmp/x", "--num", "0"], "--num 0"),
])
def test_bad_input_exits_2_without_traceback(args, msg):
    r = run_cli(*args)
    assert r.returncode == 2, r.stderr
    assert msg in r.stderr and "Traceback" not in r.stderr


def test_data_make_writes_folders(tmp_path, capsys):
    assert main(["data", "make", "synthetic-faces", "--out", str(tmp_path / "faces"), "--num", "3", "--size", "64"]) == 0
    assert len(list((tmp_path / "faces" / "images").glob("*.png"))) == 3
    assert len(list((tmp_path / "faces" / "labels").glob("*.png"))) == 3
    assert (tmp_path / "faces" / "dataset.yaml").is_file()


def test_resume_flag_errors():
    r = run_cli("train", "--resume")
    assert r.returncode == 2 and "needs --config" in r.stderr
    r = run_cli("train", "--resume", "/nonexistent/run")
    assert r.returncode == 2 and "no such run directory" in r.stderr
    r = run_cli("train", "--config", "scgan-synthetic-faces", "--resume", "--outdir", "/nonexistent")
    assert r.returncode == 2 and "no run of 'scgan-synthetic-faces'" in r.stderr


def test_file_in_the_way_of_an_output_folder(tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    r = run_cli("data", "make", "synthetic-faces", "--out", str(blocker / "faces"), "--num", "2", "--size", "32")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert str(blocker) in r.stderr and ("give a folder" in r.stderr or "in the way" in r.stderr)
