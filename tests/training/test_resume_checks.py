"""Resuming: unreadable checkpoints are passed over or reported, settings that change the numerics are refused
(unless --force), bookkeeping and length changes go through, and a signal surfaces as TrainingInterrupted."""

import os
import shutil
import signal

import pytest
import torch

from semsynth.cli import main
from semsynth.config import resolve_config
from semsynth.training import load_training_state, train
from semsynth.training.checkpoint import format_setting, list_checkpoints, numerics_changes
from semsynth.training.loop import EpochKeys, SeededSamples, TrainingInterrupted
from semsynth.objectives.gan import GANObjective
from semsynth.training.sampler import ResumableSampler
from tests.helpers import TINY_RAW

RAW = {**TINY_RAW, "train": {**TINY_RAW["train"], "images": 16, "checkpoint_every": 4, "log_every": 4,
                             "sample_every": 100000, "keep_checkpoints": 3, "threads": 2, "tensorboard": False}}


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A run of 16 images stopped at 12, with checkpoints at 4, 8 and 12 images."""
    n = torch.get_num_threads()
    try:
        run = train(resolve_config(RAW, name="r"), outdir=tmp_path_factory.mktemp("runs"), stop_after=12)
    finally:
        torch.set_num_threads(n)
    assert [p.name for p in list_checkpoints(run)] == [f"training-state-{i:09d}.pt" for i in (4, 8, 12)]
    return run


@pytest.fixture
def run(stopped_run, tmp_path):
    return shutil.copytree(stopped_run, tmp_path / stopped_run.name)


def _ckpt(run, images):
    return run / "checkpoints" / f"training-state-{images:09d}.pt"


def _damage(path):
    path.write_bytes(path.read_bytes()[:1000])  # truncated: the zip's central directory is gone
    return path.read_bytes()


def _new_log(run, before):
    return (run / "log.txt").read_text()[len(before):]


# ------------------------------------------------------------------------------------------------------------
# unreadable checkpoints


def test_resume_of_a_run_passes_over_an_unreadable_newest_checkpoint(run, capsys):
    torn = _damage(_ckpt(run, 12))
    assert main(["train", "--resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"warning: training checkpoint: cannot read {_ckpt(run, 12)}" in out
    assert f"; resuming from {_ckpt(run, 8)} instead, the newest readable one" in out
    assert f"resumed from {_ckpt(run, 8)} at 8 images" in out
    # the unreadable file is kept, out of the way of a later --resume
    kept = run / "checkpoints" / "set-aside" / "training-state-000000012.pt"
    assert kept.read_bytes() == torn
    assert f"moved 1 checkpoint(s) newer than the resume point to {kept.parent}" in out
    assert [p.name for p in list_checkpoints(run)] == [f"training-state-{i:09d}.pt" for i in (8, 12, 16)]
    assert load_training_state(_ckpt(run, 12))["cur_nimg"] == 12  # written again by the resumed run
    assert load_training_state(_ckpt(run, 16))["cur_nimg"] == 16 and (run / "DONE").is_file()


def test_resume_from_an_unreadable_checkpoint_file_lists_the_readable_ones(run, capsys):
    torn = _damage(_ckpt(run, 12))
    assert main(["train", "--resume", str(_ckpt(run, 12))]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"semsynth train: error: --resume {_ckpt(run, 12)}: training checkpoint: cannot read "
                          f"{_ckpt(run, 12)}: ")
    assert (f"Readable checkpoints of run {run}, newest first: training-state-000000008.pt (8 images), "
            f"training-state-000000004.pt (4 images). Resume from one with: semsynth train --resume "
            f"{_ckpt(run, 8)}\n") in err
    assert _ckpt(run, 12).read_bytes() == torn and not (run / "checkpoints" / "set-aside").exists()


def test_resume_with_no_readable_checkpoint_says_so(run, capsys):
    for i in (4, 8, 12):
        _ckpt(run, i).write_bytes(b"not a checkpoint")
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"--resume {run}: none of its 3 checkpoint(s) can be read (training-state-000000012.pt: " in err
    assert "training-state-000000008.pt: " in err and "training-state-000000004.pt: " in err
    assert (f"so the run cannot be continued; start it again with 'semsynth train --config {run / 'config.yaml'}' "
            f"(the unreadable files are left in place)") in err
    assert all(_ckpt(run, i).read_bytes() == b"not a checkpoint" for i in (4, 8, 12))


# ------------------------------------------------------------------------------------------------------------
# changed settings


def test_a_threads_change_is_refused_with_both_values(run, capsys):
    log_before = (run / "log.txt").read_text()
    assert main(["train", "--resume", str(run), "--set", "train.threads=1"]) == 2
    err = capsys.readouterr().err
    assert (f"semsynth train: error: --resume: 1 setting(s) differ from those stored in {_ckpt(run, 12)} and would "
            f"change the results:\n  train.threads: 2 -> 1\n") in err
    assert "add --force to continue with the new settings anyway" in err
    assert (run / "log.txt").read_text() == log_before and not (run / "DONE").exists()
    assert [p.name for p in list_checkpoints(run)][-1] == "training-state-000000012.pt"


def test_force_accepts_a_threads_change_and_logs_it(run):
    before = (run / "log.txt").read_text()
    assert main(["train", "--resume", str(run), "--set", "train.threads=1", "--force"]) == 0
    assert (f"warning: --force: continuing with 1 setting(s) that differ from those stored in {_ckpt(run, 12)}, so "
            f"the run no longer matches an uninterrupted one:\n  train.threads: 2 -> 1\n") in _new_log(run, before)
    state = load_training_state(_ckpt(run, 16))
    assert state["cur_nimg"] == 16 and state["config"]["train"]["threads"] == 1


def test_bookkeeping_changes_go_through_and_change_nothing(stopped_run, tmp_path):
    plain = shutil.copytree(stopped_run, tmp_path / "plain")
    changed = shutil.copytree(stopped_run, tmp_path / "changed")
    before = (changed / "log.txt").read_text()
    assert main(["train", "--resume", str(plain)]) == 0
    assert main(["train", "--resume", str(changed), "--set", "train.log_every=8", "--set", "train.num_workers=1",
                 "--set", "train.keep_checkpoints=1", "--set", "train.nan_patience=5"]) == 0
    assert "warning" not in _new_log(changed, before)
    assert [p.name for p in list_checkpoints(changed)] == ["training-state-000000016.pt"]
    a, b = load_training_state(_ckpt(plain, 16)), load_training_state(_ckpt(changed, 16))
    for net in ("G", "D", "E"):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net} {k}"


def test_extending_a_run_notes_the_restretched_schedule(run, capsys):
    before = (run / "log.txt").read_text()
    assert main(["train", "--resume", str(run), "--set", "train.images=24"]) == 0
    assert ("note: the run's length changes from 16 to 24 images; the learning-rate schedule is re-stretched over "
            "the new length (its factor at 12 images becomes 1, it was 0.5)\n") in _new_log(run, before)
    assert load_training_state(_ckpt(run, 24))["cur_nimg"] == 24
    # shorter than what the checkpoint has seen: refused
    assert main(["train", "--resume", str(run), "--set", "train.images=20"]) == 2
    assert "the checkpoint has already seen 24; give train.images of at least 24" in capsys.readouterr().err


def test_a_new_base_learning_rate_rederives_both_rates(run, capsys):
    assert main(["train", "--resume", str(run), "--set", "optim.lr=0.001"]) == 2
    err = capsys.readouterr().err
    assert ("would change the results:\n  optim.lr: 0.0002 -> 0.001\n  optim.lr_d: 0.0004 -> 0.002\n"
            "  optim.lr_g: 0.0001 -> 0.0005\na resumed run") in err


def test_force_without_resume_is_an_error(capsys):
    assert main(["train", "--config", "scgan-synthetic-faces", "--force"]) == 2
    assert "--force only applies to --resume" in capsys.readouterr().err


def test_numerics_changes_ignore_bookkeeping_and_length():
    old = {"name": "a", "data": {"name": "x", "root": "/a"}, "encoder": None,
           "train": {"log_every": 1, "images": 8, "epochs": 1.0, "threads": None, "num_workers": 0},
           "generator": {"res": (64, 64), "flag": True}}
    new = {"name": "b", "data": {"name": "x", "root": "/b"}, "encoder": {"name": "conv"},
           "train": {"log_every": 2, "images": 16, "epochs": 2.0, "threads": 1, "num_workers": 4},
           "generator": {"res": [64, 64], "flag": 1}}
    got = [f"{k}: {format_setting(a)} -> {format_setting(b)}" for k, a, b in numerics_changes(old, new)]
    assert got == ["encoder: null -> (not set)", "encoder.name: (not set) -> conv", "generator.flag: true -> 1",
                   "train.threads: null -> 1"]


def test_sample_augmentation_is_the_same_with_any_number_of_workers():
    class Noisy(torch.utils.data.Dataset):  # a random "flip" drawn from torch's global RNG, as the transforms do
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return torch.tensor([float(i), torch.rand(()).item()])

    def batches(workers):
        sampler = ResumableSampler(8, 2, seed=3)
        sampler.set_epoch(1)
        loader = torch.utils.data.DataLoader(SeededSamples(Noisy(), 3), batch_size=2, sampler=EpochKeys(sampler),
                                             num_workers=workers, generator=torch.Generator().manual_seed(3))
        return torch.cat(list(loader))

    torch.manual_seed(0)
    expected_next = torch.rand(3)
    torch.manual_seed(0)
    a = batches(0)
    assert torch.equal(torch.rand(3), expected_next)  # the training process's RNG is not drawn from
    b = batches(2)
    assert torch.equal(a, b)
    assert sorted(a[:, 0].tolist()) == list(range(8)) and len(set(a[:, 1].tolist())) == 8


def test_a_signal_raises_training_interrupted_after_the_checkpoint(tmp_path, monkeypatch):
    real_g = GANObjective.generator_loss
    calls = {"n": 0}

    def signalled(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # during the second step
            os.kill(os.getpid(), signal.SIGTERM)
        return real_g(self, *a, **k)

    monkeypatch.setattr(GANObjective, "generator_loss", signalled)
    raw = {**RAW, "train": {**RAW["train"], "checkpoint_every": 1000}}
    with pytest.raises(TrainingInterrupted) as e:
        train(resolve_config(raw, name="sig"), outdir=tmp_path)
    run = tmp_path / "00000-tiny"
    assert e.value.run_dir == run and e.value.signal == signal.SIGTERM and e.value.exit_code == 143
    assert e.value.checkpoint == _ckpt(run, 8) and e.value.images == 8
    assert load_training_state(_ckpt(run, 8))["cur_nimg"] == 8 and not (run / "DONE").exists()
    assert (f"stopped (signal SIGTERM) at 8 of 16 images; checkpoint {_ckpt(run, 8)}; continue with 'semsynth "
            f"train --resume {run}'") in (run / "log.txt").read_text()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is restored
