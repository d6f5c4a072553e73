"""Checkpoints survive crashes; signals stop cleanly; non-finite steps are skipped; options run."""

import json
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from semsynth.config import resolve_config
from semsynth.errors import ConfigError
from semsynth.training import checkpoint as ckpt_mod
from semsynth.training import load_training_state, train
from semsynth.training.checkpoint import list_checkpoints
from semsynth.utils.files import atomic_torch_save
from semsynth.training.loop import TrainingDiverged
from semsynth.training.objective import GANObjective
from tests.helpers import TINY_RAW


def _raw(**train):
    return {**TINY_RAW, "train": {**TINY_RAW["train"], **train}}


def test_torn_write_never_replaces_a_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "training-state-000000008.pt"
    atomic_torch_save({"format": "semsynth-training-state", "x": torch.ones(3)}, path)

    def crash(obj, f, *a, **k):  # the process dies half way through writing
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"format": "semsynth-training-state", "x": torch.zeros(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.ones(3))  # the good file is intact
    assert list_checkpoints(tmp_path) == [path]  # the half-written temporary is not taken for a checkpoint
    ckpt_mod.remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def _start(cfg_path, outdir, *extra):
    return subprocess.Popen([sys.executable, "-m", "semsynth", "train", "--config", str(cfg_path), "--outdir",
                             str(outdir), *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_checkpoint(outdir, proc, timeout=240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        runs = list(outdir.glob("*/checkpoints/training-state-*.pt"))
        if runs:
            return runs[0].parents[1]
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.slow
def test_sigkill_at_a_random_moment_then_resume(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(_raw(images=48, checkpoint_every=4, log_every=4, sample_every=1000)))
    proc = _start(cfg, tmp_path / "runs")
    run = _wait_for_checkpoint(tmp_path / "runs", proc)
    time.sleep(random.uniform(0.0, 3.0))  # somewhere in training, maybe in the middle of a save
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpts = list_checkpoints(run)
    assert ckpts
    for p in ckpts:  # every file that looks like a checkpoint is complete
        assert load_training_state(p)["cur_nimg"] == int(p.stem.rsplit("-", 1)[1])
    r = subprocess.run([sys.executable, "-m", "semsynth", "train", "--resume", str(run)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (run / "DONE").is_file()
    assert json.loads((run / "DONE").read_text())["images"] == 48
    assert not list((run / "checkpoints").glob(".*tmp*"))


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_exits_cleanly(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(_raw(images=4000, checkpoint_every=4, log_every=4, sample_every=100000)))
    proc = _start(cfg, tmp_path / "runs")
    run = _wait_for_checkpoint(tmp_path / "runs", proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "stopped (signal SIGTERM)" in out and "--resume" in out
    last = list_checkpoints(run)[-1]
    state = load_training_state(last)
    assert 0 < state["cur_nimg"] < 4000
    assert not (run / "DONE").exists()


def test_nan_steps_are_skipped_then_the_run_stops(tmp_path, monkeypatch):
    real_g = GANObjective.generator_loss
    calls = {"n": 0}

    def sometimes_nan(self, *a, **k):
        loss, stats, fake = real_g(self, *a, **k)
        calls["n"] += 1
        if calls["n"] >= 2:  # every step after the first is poisoned
            loss = loss * float("nan")
        return loss, stats, fake

    monkeypatch.setattr(GANObjective, "generator_loss", sometimes_nan)
    cfg = resolve_config(_raw(images=64, nan_patience=3, checkpoint_every=4), name="nan")
    with pytest.raises(TrainingDiverged) as e:
        train(cfg, outdir=tmp_path)
    msg = str(e.value)
    assert "3 consecutive non-finite steps" in msg and "training-state-000000004.pt" in msg
    log = next(tmp_path.iterdir()) / "log.txt"
    assert "non-finite generator loss or gradient, step skipped (1 bad step(s) in a row)" in log.read_text()


def test_a_skipped_step_leaves_the_weights_untouched(tmp_path, monkeypatch):
    real_d = GANObjective.discriminator_loss

    def nan_d(self, *a, **k):
        loss, stats = real_d(self, *a, **k)
        return loss * float("nan"), stats

    monkeypatch.setattr(GANObjective, "discriminator_loss", nan_d)
    cfg = resolve_config(_raw(images=4, checkpoint_every=4), name="skip")
    torch.manual_seed(0)
    run = train(cfg, outdir=tmp_path)
    state = load_training_state(list_checkpoints(run)[-1])
    from semsynth import build_discriminator

    torch.manual_seed(0)
    from semsynth.training.loop import seed_everything

    seed_everything(cfg.train.seed)
    from semsynth import build_generator

    build_generator(cfg.generator)  # the same construction order as train(): G first, then D
    D0 = build_discriminator(cfg.discriminator)
    for k, v in D0.state_dict().items():
        if not k.endswith(("_u", "_v")):
            torch.testing.assert_close(state["D"][k], v, rtol=0, atol=0)


def test_gradient_accumulation_equals_the_full_batch(tmp_path):
    raw = _raw(images=8, checkpoint_every=8)
    # deterministic G (no VAE noise, whose draws would be split differently) and no batch statistics
    raw["generator"] = {**raw["generator"], "param_free_norm": "instance", "input_mode": "label"}
    raw["encoder"] = None
    raw["optim"] = {"eps": 1.0}  # see test_distributed.py: makes parameters reflect gradients
    a = train(resolve_config(raw, name="a"), outdir=tmp_path)
    b = train(resolve_config(raw, ["train.accumulate=2"], name="b"), outdir=tmp_path)
    sa, sb = (load_training_state(list_checkpoints(r)[-1]) for r in (a, b))
    for net in ("G", "D"):
        for k, v in sa[net].items():
            if v.is_floating_point():  # spectral-norm vectors included: they advance once per step either way
                assert (v - sb[net][k]).abs().max().item() < 1e-6, f"{net} {k}"


def test_bf16_channels_last_and_bad_precision(tmp_path):
    run = train(resolve_config(_raw(images=8), ["train.precision=bf16", "train.channels_last=true"], name="bf"),
                outdir=tmp_path)
    rows = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(v)) for r in rows for k, v in r.items() if "/" in k)
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        train(resolve_config(_raw(images=8), ["train.precision=fp16"], name="x"), outdir=tmp_path)
    with pytest.raises(ConfigError, match="must be >= 1 and divide train.batch_size"):
        resolve_config(_raw(images=8), ["train.accumulate=3"])
