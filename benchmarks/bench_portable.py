"""Latency of the exported bundled model: onnxruntime (CPU) and TorchScript vs PyTorch eager, on this CPU.

    python benchmarks/bench_portable.py [--rounds 10] [--threads 2] [--model src/semsynth/assets/scgan-synthetic-faces]

The model is exported once (``semsynth.portable.export_portable``, ONNX and TorchScript) into a temporary folder.
Each variant runs the same inputs: int64 label maps [B, 64, 64] and z [B, z_dim]; eager is semsynth's own path
(one-hot + instance edges by ``semantic_input``, then ``G``, eval, ``no_grad``). Batch 1 and 8; every round runs
every (variant, batch) once, in an order rotated from round to round (so that a slow spell of a shared machine
hits all variants alike); the first round warms up. Reports the median ms per image and ratios to eager, which are
what to compare across runs (absolute times drift on a noisy machine), plus the CPU model (lscpu) and the date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from semsynth.layers import semantic_input  # noqa: E402
from semsynth.portable import export_portable  # noqa: E402
from semsynth.training.checkpoint import load_model  # noqa: E402
from semsynth.utils.runtime import tune_malloc  # noqa: E402


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
    except OSError:
        return "unknown (no lscpu)"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    parts = [fields.get("Model name", "?")]
    if "CPU family" in fields:
        parts.append(f"family {fields['CPU family']} model {fields.get('Model', '?')}")
    parts.append(f"{fields.get('CPU(s)', '?')} CPU(s)")
    return ", ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10, help="timed rounds (plus one warm-up round)")
    ap.add_argument("--threads", type=int, default=None, help="threads for torch and onnxruntime (default: torch's)")
    ap.add_argument("--model", type=Path, default=REPO / "src/semsynth/assets/scgan-synthetic-faces")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    import onnxruntime as ort

    tune_malloc()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    G, _, info, _ = load_model(args.model, "cpu")
    tmp = Path(tempfile.mkdtemp(prefix="bench-portable-"))
    res = export_portable(args.model, ["onnx", "torchscript"], out_dir=tmp)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(res.files["onnx"]), options, providers=["CPUExecutionProvider"])
    with warnings.catch_warnings():  # torch.jit.load's deprecation notice
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(res.files["torchscript"]))
    h, w = res.description["resolution"]
    z_dim = res.description["latent_dim"]
    g = torch.Generator().manual_seed(0)
    inputs = {b: (torch.randint(0, info.num_classes, (b, h, w), generator=g), torch.randn(b, z_dim, generator=g))
              for b in (1, 8)}

    def eager(label, z):
        with torch.no_grad():
            return G(semantic_input(label, info.num_classes), z if z_dim else None)

    def onnx(label, z):
        feed = {"label": label.numpy(), **({"z": z.numpy()} if z_dim else {})}
        return session.run(["image"], feed)[0]

    def torchscript(label, z):
        with torch.no_grad():
            return scripted(label, z) if z_dim else scripted(label)

    variants = {"PyTorch eager": eager, "onnxruntime": onnx, "TorchScript": torchscript}
    keys = [(v, b) for v in variants for b in (1, 8)]
    times: dict = {k: [] for k in keys}
    for r in range(args.rounds + 1):
        order = keys[r % len(keys):] + keys[: r % len(keys)]
        for name, b in order:
            label, z = inputs[b]
            t0 = time.perf_counter()
            variants[name](label, z)
            dt = time.perf_counter() - t0
            if r > 0:
                times[(name, b)].append(dt / b * 1000)
    med = {k: statistics.median(v) for k, v in times.items()}
    date = datetime.date.today().isoformat()
    print(f"{date}; CPU: {cpu_model()}; torch {torch.__version__.split('+')[0]}, onnxruntime {ort.__version__}; "
          f"{threads} threads; {args.model.name} ({info.name}, {h}x{w}); median of {args.rounds} rounds, "
          f"ms per image")
    print("| runtime | batch 1 ms | batch 8 ms | batch 1 vs eager | batch 8 vs eager |\n|---|---|---|---|---|")
    rows = []
    for name in variants:
        m1, m8 = med[(name, 1)], med[(name, 8)]
        r1, r8 = m1 / med[("PyTorch eager", 1)], m8 / med[("PyTorch eager", 8)]
        print(f"| {name} | {m1:.2f} | {m8:.2f} | {r1:.2f} | {r8:.2f} |")
        rows.append({"runtime": name, "ms_batch1": round(m1, 3), "ms_batch8": round(m8, 3),
                     "ratio_batch1": round(r1, 3), "ratio_batch8": round(r8, 3)})
    print(f"checks at export: {json.dumps(res.checks)}")
    if args.json:
        args.json.write_text(json.dumps({"date": date, "cpu": cpu_model(), "threads": threads, "rows": rows},
                                        indent=2))


if __name__ == "__main__":
    main()
