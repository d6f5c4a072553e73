"""On CUDA, every model gives the CPU's numbers; training, resuming and generating run there end to end.

The CPU paths take exact rewrites that CUDA does not (SPADE's piecewise modulation, the one-hot look-ups, Winograd
and matrix-product kernel gradients, packed weights), so these tests also check those rewrites against the plain
convolutions cuDNN runs. Skipped without a GPU (CI has none; run them on a CUDA machine with ``pytest -m gpu``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from semsynth.config import load_config, resolve_config
from semsynth.data import build_dataset
from semsynth.inference import Synthesizer
from semsynth.inference_prep import prepare_for_inference
from semsynth.layers import semantic_input
from semsynth.models import build_generator
from semsynth.training import export_model, load_model, load_training_state, train
from tests.helpers import TINY_RAW

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FACES = {"scgan": "scgan-synthetic-faces", "spade": "spade-synthetic-faces", "pix2pixhd": "pix2pixhd-synthetic-faces",
         "ccfpse": "ccfpse-synthetic-faces", "oasis": "oasis-synthetic-faces", "crn": "crn-synthetic-faces",
         "sims": "sims-synthetic-faces"}


@pytest.fixture(autouse=True)
def _exact_fp32():
    """TF32 off: cuDNN and cuBLAS then round as fp32 does (TF32 keeps 10 mantissa bits)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    from semsynth.sims import build_bank

    path = tmp_path_factory.mktemp("bank") / "bank.safetensors"
    build_bank(build_dataset({"name": "synthetic-faces", "resolution": 64, "num_samples": 16, "seed": 0})).save(path)
    return path


def _faces(name: str, bank):
    overrides = ["data.num_samples=16", "train.batch_size=2"] + ([f"loss.bank={bank}"] if name == "sims" else [])
    cfg = load_config(FACES[name], overrides)
    ds = build_dataset(cfg.data)
    label = torch.stack([ds[i]["label"] for i in range(2)])
    return cfg, ds.info, label


@pytest.mark.parametrize("name", sorted(FACES))
def test_generator_on_cuda_gives_the_cpus_output_and_gradients(name, bank):
    cfg, info, label = _faces(name, bank)
    torch.manual_seed(0)
    G = build_generator(cfg.generator)
    Gc = build_generator(cfg.generator).cuda()
    Gc.load_state_dict(G.state_dict())
    if name == "sims":  # its canvas is composed from a memory bank of training photos, kept on the model's device
        from semsynth.sims import load_bank

        G.attach_bank(load_bank(bank))
        Gc.attach_bank(load_bank(bank, "cuda"))
    sem = semantic_input(label, info.num_classes, None)
    z = torch.randn(2, G.latent_dim) if G.latent_dim else None

    def run(net, dev):
        return net(sem.to(dev), z.to(dev) if z is not None else None)

    # eval: the same image
    G.eval(), Gc.eval()
    with torch.no_grad():
        ref, out = run(G, "cpu"), run(Gc, "cuda").cpu()
    assert (out - ref).abs().max().item() < 1e-4, f"{name}: eval output differs by {(out - ref).abs().max():.3g}"

    # train: the same gradients (batch norms over the batch, spectral norm's power iteration)
    G.train(), Gc.train()
    (run(G, "cpu").square().mean()).backward()
    (run(Gc, "cuda").square().mean()).backward()
    pairs = [(k, p.grad, q.grad) for (k, p), (_, q) in zip(G.named_parameters(), Gc.named_parameters())]
    assert [k for k, a, b in pairs if (a is None) != (b is None)] == []
    pairs = [(k, a, b.cpu()) for k, a, b in pairs if a is not None]
    # A bias followed by a normalisation has a zero gradient in exact arithmetic; its computed gradient is rounding
    # noise of the sum over pixels, which differs between cuDNN and oneDNN. So the tolerance is relative to each
    # parameter's gradient, plus a floor relative to the largest one.
    largest = max(a.norm().item() for _, a, _ in pairs)
    errors = sorted(((b - a).norm().item() / (a.norm().item() + 1e-3 * largest), k) for k, a, b in pairs)
    print(f"{name}: largest gradient norm {largest:.3g}; worst relative differences CUDA vs CPU {errors[-3:]}")
    assert errors[-1][0] < 1e-3, f"{name}: {errors[-1][1]}: the gradient differs by {errors[-1][0]:.3g} (relative)"


@pytest.mark.parametrize("name", ["scgan", "spade", "oasis"])
def test_prepared_generation_on_cuda_gives_the_cpus_images(name, bank, tmp_path):
    cfg, info, label = _faces(name, bank)
    torch.manual_seed(0)
    G = build_generator(cfg.generator).eval()
    model_dir = export_model(tmp_path / "model", G, info, None, extra={"data": cfg.data})
    cpu = Synthesizer.from_pretrained(model_dir, "cpu")
    gpu = Synthesizer.from_pretrained(model_dir, "cuda")
    plain = Synthesizer.from_pretrained(model_dir, "cuda")
    assert cpu.prepare_for_inference()
    assert not plain.prepare_for_inference()  # on a GPU semsynth generate runs the model as loaded (faster there)
    gpu.G = prepare_for_inference(gpu.G, copy=False)  # the preparation itself works on CUDA
    seeds = [0, 1] if cpu.multimodal else None
    a = cpu.generate(label, seeds=seeds)
    b = gpu.generate(label, seeds=seeds)
    c = plain.generate(label, seeds=seeds)
    assert a.device.type == "cpu" and b.shape == a.shape == c.shape
    assert (b.cpu() - a).abs().max().item() < 1e-4 and (c.cpu() - a).abs().max().item() < 1e-4


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_on_cuda_in_each_precision(precision, tmp_path):
    raw = {**TINY_RAW, "train": {**TINY_RAW["train"], "device": "cuda", "precision": precision}}
    run = train(resolve_config(raw, name=f"cuda-{precision}"), outdir=tmp_path)
    log = (run / "log.txt").read_text()
    assert f"device cuda:0; precision {precision}" in log or f"device cuda; precision {precision}" in log, log[-800:]
    rows = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert rows[-1]["images"] == 16
    assert all(np.isfinite(v) for r in rows for v in r.values() if isinstance(v, float))
    state = load_training_state(run / "checkpoints" / "training-state-000000016.pt")
    assert "cuda" in state["rng"][0]  # the GPU's random state is kept for a resume
    assert all(t.device.type == "cpu" for t in state["G"].values())  # a checkpoint loads on a CPU-only machine
    # the exported model runs on the CPU
    G, _, info, _ = load_model(run / "model")
    sem = semantic_input(torch.zeros(1, 64, 64, dtype=torch.long), info.num_classes)
    out = G(sem, torch.randn(1, G.latent_dim))
    assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()


RESUME = """
import json, sys, warnings
from pathlib import Path

import torch

from semsynth.config import resolve_config
from semsynth.training import load_training_state, train
from tests.helpers import TINY_RAW

torch.use_deterministic_algorithms(True, warn_only=True)
out = Path(sys.argv[1])
raw = {**TINY_RAW, "train": {**TINY_RAW["train"], "device": "cuda", "images": 16, "checkpoint_every": 8}}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    straight = train(resolve_config(raw, name="a"), outdir=out)
    again = train(resolve_config(raw, name="a"), outdir=out)
    first = train(resolve_config(raw, name="b"), outdir=out, stop_after=8)
    resumed = train(resolve_config(raw, name="b"), outdir=out, resume=first)


def worst(p, q):
    a = load_training_state(p / "checkpoints" / "training-state-000000016.pt")
    b = load_training_state(q / "checkpoints" / "training-state-000000016.pt")
    return max((v - b[net][k]).abs().max().item() for net in ("G", "D", "E") for k, v in a[net].items()
               if v.is_floating_point())


nondeterministic = sorted({str(w.message)[:160] for w in caught if "deterministic" in str(w.message)})
print(json.dumps({"again": worst(straight, again), "resumed": worst(straight, resumed),
                  "nondeterministic": nondeterministic}))
"""


def test_resume_on_cuda_continues_exactly(tmp_path):
    """Stopped at 8 images and resumed, a run ends where the straight run ends: the CUDA random state is restored
    (the encoder's z is drawn on the GPU). With torch's deterministic algorithms (cuBLAS's fixed workspace), in a
    process of its own since the setting must come before cuBLAS starts."""
    env = {**os.environ, "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "PYTHONPATH": os.pathsep.join(
        [REPO, os.path.join(REPO, "src"), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", RESUME, str(tmp_path)], capture_output=True, text=True, cwd=REPO,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    print(res)
    assert res["nondeterministic"] == [], res  # every operator of the step has a deterministic CUDA kernel
    assert res["again"] == 0.0  # two straight runs agree bit for bit
    assert res["resumed"] == 0.0  # and the resumed run with them


def test_generate_cli_on_cuda_writes_the_cpus_images(tmp_path):
    model = os.path.join(REPO, "src/semsynth/assets/scgan-synthetic-faces")
    ds = build_dataset({"name": "synthetic-faces", "resolution": 64, "num_samples": 2, "seed": 3})
    labels = tmp_path / "labels"
    labels.mkdir()
    for i in range(2):
        Image.fromarray(ds[i]["label"].numpy().astype(np.uint8)).save(labels / f"{i}.png")
    outs = {}
    for dev in ("cpu", "cuda"):
        r = subprocess.run([sys.executable, "-m", "semsynth", "generate", "--model", model, "--labels", str(labels),
                            "--out", str(tmp_path / dev), "--seeds", "0-1", "--device", dev],
                           capture_output=True, text=True, cwd=REPO, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        outs[dev] = {p.name: np.asarray(Image.open(p), dtype=np.int16) for p in sorted((tmp_path / dev).glob("*.png"))}
    assert outs["cpu"].keys() == outs["cuda"].keys() and len(outs["cpu"]) >= 2
    for k in outs["cpu"]:
        assert np.abs(outs["cpu"][k] - outs["cuda"][k]).max() <= 1, k
