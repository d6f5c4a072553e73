"""Checkpoints survive crashes; signals stop cleanly; non-finite steps are skipped; options run."""

import json
import os
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
from semsynth.training.checkpoint import PAUSE_IN_CHECKPOINT_ENV, list_checkpoints
from semsynth.utils.files import atomic_torch_save
from semsynth.training.loop import TrainingDiverged
from semsynth.objectives.gan import GANObjective
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
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_writes_a_checkpoint_and_exits_128_plus_the_signal(tmp_path, sig, code):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(_raw(images=4000, checkpoint_every=4, log_every=4, sample_every=100000,
                                       tensorboard=False)))
    proc = _start(cfg, tmp_path / "runs")
    run = _wait_for_checkpoint(tmp_path / "runs", proc)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == code, out  # a scheduler must not take the unfinished run for a finished one
    last = list_checkpoints(run)[-1]
    state = load_training_state(last)
    assert 0 < state["cur_nimg"] < 4000
    assert (f"stopped (signal {sig.name}) at {state['cur_nimg']} of 4000 images; checkpoint {last}; continue with "
            f"'semsynth train --resume {run}'\n") in out
    assert "Traceback" not in out and "run directory: " + str(run) + "\n" not in out.split("stopped")[1]
    assert not (run / "DONE").exists()


def _same(a, b, where=""):
    """Exact equality of two checkpoint values (tensors bit for bit)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _wait_for(cond, proc, what, timeout=240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        found = cond()
        if found:
            return found
        assert proc.poll() is None, f"the run ended before {what}: " + getattr(proc, "out", lambda: "")()[-3000:]
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_sigkill_anywhere_even_inside_a_checkpoint_write_then_resume_is_exact(tmp_path):
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    note = f"(random seed {seed})"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(_raw(images=48, checkpoint_every=8, log_every=8, sample_every=24, keep_checkpoints=2,
                                       threads=1, tensorboard=False)))
    ref = subprocess.run([sys.executable, "-m", "semsynth", "train", "--config", str(cfg), "--outdir",
                          str(tmp_path / "ref")], capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    pause = {**os.environ, PAUSE_IN_CHECKPOINT_ENV: "120"}  # the process stops inside every checkpoint write
    run = tmp_path / "runs" / "00000-tiny"

    def start(args, env=None):
        out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}.txt"
        with open(out, "w") as f:
            proc = subprocess.Popen([sys.executable, "-m", "semsynth", "train", *args], stdout=f,
                                    stderr=subprocess.STDOUT, env=env)
        proc.out = out.read_text
        return proc

    def kill(proc, finished_is_ok=False):
        proc.send_signal(signal.SIGKILL)
        rc = proc.wait(timeout=60)
        assert rc == -signal.SIGKILL or (finished_is_ok and rc == 0), f"{note} rc {rc}: {proc.out()[-3000:]}"
        for p in list_checkpoints(run):  # whatever looks like a checkpoint is complete
            assert load_training_state(p)["cur_nimg"] == int(p.stem.rsplit("-", 1)[1]), note

    # 1. a fresh run, killed at a random moment after its first checkpoint
    proc = start(["--config", str(cfg), "--outdir", str(tmp_path / "runs")])
    _wait_for(lambda: list_checkpoints(run), proc, "the first checkpoint")
    time.sleep(rng.uniform(0.0, 1.5))
    kill(proc, finished_is_ok=True)
    for cycle in range(3):
        # 2. / 4. resumed, killed while the temporary of a checkpoint is on disk (before its rename);
        # 3. resumed, killed at a random moment (perhaps before it got anywhere)
        inside = cycle != 1
        proc = start(["--resume", str(run)], env=pause if inside else None)
        if inside:
            # this process's temporary (an older one, left by a killed process, may still be there)
            tmp = _wait_for(lambda: list((run / "checkpoints").glob(f".training-state-*.tmp{proc.pid}")), proc,
                            "a checkpoint write")[0]
            kill(proc)
            assert tmp.exists(), note  # it was killed inside the write
        else:
            time.sleep(rng.uniform(0.0, 6.0))
            kill(proc, finished_is_ok=True)
    final = subprocess.run([sys.executable, "-m", "semsynth", "train", "--resume", str(run)], capture_output=True,
                           text=True, timeout=600)
    assert final.returncode == 0, note + final.stdout[-3000:] + final.stderr[-3000:]
    assert json.loads((run / "DONE").read_text())["images"] == 48
    assert [p.relative_to(run) for p in run.rglob(".*tmp*")] == [], note  # no temporaries left anywhere
    a = load_training_state(tmp_path / "ref" / "00000-tiny" / "checkpoints" / "training-state-000000048.pt")
    b = load_training_state(run / "checkpoints" / "training-state-000000048.pt")
    for key in ("G", "D", "E", "opt_G", "opt_D", "cur_nimg", "cur_iter", "rng"):
        _same(a[key], b[key], f"{key} {note}")


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
            # spectral-norm vectors included: they advance once per step either way. The micro-batches' sums run
            # in another order (oneDNN's AVX2 kernels on AMD Zen 3 leave D's weights 1.3-2.2e-6 apart after the
            # two steps, other CPUs below 1e-6); unscaled micro-batch losses (the bug this guards against) leave
            # them 3e-3 to 1e-2 apart
            if v.is_floating_point():
                assert (v - sb[net][k]).abs().max().item() < 1e-5, f"{net} {k}"


def test_bf16_channels_last_and_bad_precision(tmp_path):
    run = train(resolve_config(_raw(images=8), ["train.precision=bf16", "train.channels_last=true"], name="bf"),
                outdir=tmp_path)
    rows = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(v)) for r in rows for k, v in r.items() if "/" in k)
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        train(resolve_config(_raw(images=8), ["train.precision=fp16"], name="x"), outdir=tmp_path)
    with pytest.raises(ConfigError, match="must be >= 1 and divide train.batch_size"):
        resolve_config(_raw(images=8), ["train.accumulate=3"])
