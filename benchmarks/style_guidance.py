"""How much of a face's appearance the style encoder carries (a quality check, not a timing).

    python benchmarks/style_guidance.py [--model src/semsynth/assets/scgan-synthetic-faces] [--num 200]

For N validation layouts of the model's dataset, renders each layout three ways and reports the mean absolute
pixel difference (images in [-1, 1]) to the real image of that layout:

* guided:  with z = the encoder's mean for that real image (style-guided synthesis, paper Fig. 8);
* other:   with the encoder's z of a *different* real image (the next one in the list);
* prior:   with z drawn from the prior (seed 0 for every layout).

An encoder that carries the style gives guided well below both others; a collapsed posterior gives guided about
equal to other. Paired LPIPS is the literature's measure for this (``semsynth evaluate --latent encoder
--metrics lpips``), but its ImageNet backbones are not available offline, hence this pixel measure.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from semsynth.data import build_dataset
from semsynth.inference import Synthesizer

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "semsynth" / "assets" / "scgan-synthetic-faces"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(BUNDLED), help="exported model directory with an encoder")
    ap.add_argument("--num", type=int, default=200, help="validation layouts (default 200)")
    ap.add_argument("--batch-size", type=int, default=50)
    args = ap.parse_args()
    torch.manual_seed(0)
    syn = Synthesizer.from_pretrained(args.model, "cpu")
    if syn.E is None:
        raise SystemExit(f"{args.model}: this model has no style encoder; style guidance needs a VAE model")
    spec = dict(syn.config.get("data") or {})
    spec["split"] = "val"
    ds = build_dataset(spec)
    n = min(args.num, len(ds))
    labels = torch.stack([ds[i]["label"] for i in range(n)])
    reals = torch.stack([ds[i]["image"] for i in range(n)])
    b = args.batch_size
    with torch.no_grad():
        z = torch.cat([syn.style_z(reals[i : i + b]).cpu() for i in range(0, n, b)])
        other = z.roll(1, 0)
        guided = torch.cat([syn.generate(labels[i : i + b], z=z[i : i + b]) for i in range(0, n, b)])
        others = torch.cat([syn.generate(labels[i : i + b], z=other[i : i + b]) for i in range(0, n, b)])
        prior = torch.cat([syn.generate(labels[i : i + b], seeds=[0])[:, 0] for i in range(0, n, b)])
    res = {
        "model": args.model,
        "layouts": n,
        "l1_guided": round((guided - reals).abs().mean().item(), 4),
        "l1_other_style": round((others - reals).abs().mean().item(), 4),
        "l1_prior": round((prior - reals).abs().mean().item(), 4),
        "encoder_mean_std_across_images": round(z.std(0).mean().item(), 4),
    }
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
