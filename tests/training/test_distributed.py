"""Two CPU processes under torchrun train the same model as one process with the same global batch."""

import json
import subprocess
import sys

import pytest
import yaml

from semsynth.training import load_training_state

# Deterministic generator (label input, no VAE noise) and per-sample normalisation only: with batch norm, two
# processes would normalise over half batches each (on CUDA, sync-batch norm removes that difference).
RAW = {
    "name": "ddp",
    "data": {"name": "synthetic-faces", "resolution": 64, "num_samples": 16, "seed": 0},
    "generator": {"name": "scgan", "srg_width": 4, "fc_width": 4, "svg_width": 4, "conv_candidates": 2,
                  "norm_candidates": 2, "spade_hidden": 8, "param_free_norm": "instance"},
    "discriminator": {"name": "fpse", "width": 4},
    "loss": {"perceptual": 0.0},
    # With Adam's default eps the first steps move every weight by +-lr whatever the gradient's size, so a
    # rounding-level difference in a near-zero gradient flips a sign; a large eps makes the comparison measure
    # the gradients (what DDP averages) instead of those signs.
    "optim": {"eps": 1.0},
    "train": {"images": 8, "log_every": 4, "sample_every": 4, "checkpoint_every": 4, "num_samples": 2,
              "tensorboard": True},
}


def _run(cmd, cwd):
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return r


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tmp_path):
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(yaml.safe_dump(RAW))
    base = [sys.executable, "-m", "semsynth", "train", "--config", str(cfg)]
    _run(base + ["--set", "train.batch_size=4", "--outdir", str(tmp_path / "one")], tmp_path)
    r = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "semsynth",
              "train", "--config", str(cfg), "--set", "train.batch_size=2", "--outdir", str(tmp_path / "two")],
             tmp_path)
    assert "2 process(es) = 4 global" in r.stdout

    one = next((tmp_path / "one").iterdir())
    runs = list((tmp_path / "two").iterdir())
    assert len(runs) == 1  # rank 1 made no run directory of its own
    two = runs[0]
    b = load_training_state(two / "checkpoints" / "training-state-000000008.pt")
    assert b["world_size"] == 2 and len(b["rng"]) == 2  # every process's RNG state is kept

    def worst(images: int) -> float:
        a = load_training_state(one / "checkpoints" / f"training-state-{images:09d}.pt")
        b = load_training_state(two / "checkpoints" / f"training-state-{images:09d}.pt")
        return max((v - b[net][k]).abs().max().item() for net in ("G", "D") for k, v in a[net].items()
                   if v.is_floating_point())  # weights, biases and the spectral-norm vectors

    # After the first step (4 images): the same sums in a different order, rounding-level differences (1.2e-7 on
    # an Intel Xeon); gradients summed instead of averaged, or not exchanged, would differ by about a step
    # (1e-4-ish: with eps=1 Adam's step is lr times the gradient).
    assert worst(4) < 1e-6
    # The second step starts from those slightly different weights and the differences grow: 2.2e-6 on that Intel
    # Xeon (D's first conv, whose weights move ~5e-5 in that step), below 1e-6 on the AMD Zen 4/5 machines. (Over
    # many more steps spectral norm's power iteration amplifies such differences when two singular values are
    # close.)
    assert worst(8) < 1e-5
    la = [json.loads(x) for x in (one / "stats.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (two / "stats.jsonl").read_text().splitlines()]
    assert [r["images"] for r in la] == [r["images"] for r in lb] == [4, 8]
    assert la[-1]["D/total"] == pytest.approx(lb[-1]["D/total"], abs=1e-4)

    # only rank 0 wrote: one log line per event, one set of files
    log = (two / "log.txt").read_text().splitlines()
    assert sum("run directory" in line for line in log) == 1
    assert len(list((two / "tensorboard").glob("events.*"))) == 1
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == [
        "training-state-000000004.pt", "training-state-000000008.pt"]
