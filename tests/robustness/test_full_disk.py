"""A full disk: every writing command exits 2 with "no space left on <path>", removes its temporaries and leaves
what was written before intact. Runs on a 24 MiB tmpfs (root only; skipped otherwise, with the reason)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from semsynth.training import load_training_state
from semsynth.training.checkpoint import list_checkpoints
from tests.helpers import TINY_RAW
from tests.robustness.test_cli_bad_inputs import _temporaries, run_main


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _check(rc: int, text: str, where: Path, mnt: Path) -> None:
    assert rc == 2, text[-3000:]
    assert f"no space left on {where}" in text, text[-3000:]
    assert "Traceback" not in text
    assert not _temporaries(mnt), "temporaries were left on the full disk"


def test_generate_on_a_full_disk(ws, full_disk):
    mnt, fill = full_disk
    out = mnt / "out"
    out.mkdir()
    (out / "earlier.png").write_bytes(b"an earlier output")
    fill(keep=20_000)  # room for a few 64x64 PNGs, not for 40
    rc, text = run_main(["generate", "--model", str(ws["model"]), "--labels", str(ws["labels"]), "--out", str(out),
                         "--seeds", "0-19"])
    _check(rc, text, out, mnt)
    assert (out / "earlier.png").read_bytes() == b"an earlier output"
    for p in out.glob("*.png"):  # what was written is complete
        assert p.stat().st_size > 0


def test_export_on_a_full_disk_keeps_the_earlier_export(ws, full_disk):
    mnt, fill = full_disk
    out = mnt / "model"
    assert run_main(["export", "--checkpoint", str(ws["ckpt"]), "--out", str(out), "--dtype", "fp16"])[0] == 0
    before = _digest(out)
    fill(keep=0)
    rc, text = run_main(["export", "--checkpoint", str(ws["ckpt"]), "--out", str(out)])
    _check(rc, text, out, mnt)
    assert _digest(out) == before


def test_data_make_on_a_full_disk(full_disk):
    mnt, fill = full_disk
    fill(keep=30_000)
    rc, text = run_main(["data", "make", "synthetic-faces", "--out", str(mnt / "faces"), "--num", "50"])
    assert rc == 2 and "no space left on" in text and str(mnt / "faces") in text, text[-2000:]
    assert "Traceback" not in text and not _temporaries(mnt)


def test_train_on_a_full_disk_keeps_its_checkpoints(ws, full_disk, tmp_path):
    mnt, fill = full_disk
    run = mnt / "run"
    shutil.copytree(ws["run"], run, ignore=shutil.ignore_patterns("tensorboard", "samples", "report.html"))
    last = list_checkpoints(run)[-1]
    before = last.read_bytes()
    fill(keep=0)
    rc, text = run_main(["train", "--resume", str(run), "--force", "--set", "train.images=12",
                         "--set", "train.tensorboard=false"])
    assert rc == 2 and "no space left on" in text, text[-3000:]
    assert "Traceback" not in text and not _temporaries(mnt)
    assert last.read_bytes() == before and load_training_state(last)["cur_nimg"] == 4


def test_a_new_run_on_a_full_disk(full_disk, tmp_path):
    mnt, fill = full_disk
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**TINY_RAW, "train": {**TINY_RAW["train"], "images": 8, "tensorboard": False}}))
    fill(keep=8_000)
    rc, text = run_main(["train", "--config", str(cfg), "--outdir", str(mnt / "runs")])
    assert rc == 2 and "no space left on" in text, text[-3000:]
    assert "Traceback" not in text and not _temporaries(mnt)


def test_evaluate_on_a_full_disk(ws, full_disk):
    mnt, fill = full_disk
    fill(keep=0)
    out = mnt / "eval"
    rc, text = run_main(["evaluate", "--model", str(ws["model"]), "--out", str(out), "--num", "4", "--metrics",
                         "miou", "--segmenter", str(ws["seg"])])
    _check(rc, text, out, mnt)


def test_the_disk_check_is_not_fooled(tmp_path):
    """Errors that are not about space are not reported as a full disk."""
    from semsynth.utils.files import DiskFullError, atomic_write

    def boom(tmp):
        tmp.write_text("half")
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        atomic_write(tmp_path / "x.txt", boom)
    assert not _temporaries(tmp_path) and not (tmp_path / "x.txt").exists()

    def full(tmp):
        raise OSError(28, "No space left on device")

    with pytest.raises(DiskFullError, match=f"no space left on {tmp_path}"):
        atomic_write(tmp_path / "y.txt", full)
