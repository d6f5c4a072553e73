"""How fast a generator learns to follow the layout, without a GAN: train a preset's generator by plain L1
regression to the photos of synthetic-faces for a few hundred steps, then read its outputs with the bundled
evaluator segmenter (pixel accuracy and mIoU against the input layouts). Used in docs/models.md to tell an
architecture that is slow to follow layouts from a bug in adversarial training.

    python benchmarks/regression_probe.py --config pix2pixhd-synthetic-faces --steps 300
    python benchmarks/regression_probe.py --config spade-synthetic-faces --steps 300
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from semsynth.config import load_config
from semsynth.data import build_dataset
from semsynth.models import build_generator
from semsynth.segmenters import load_segmenter

SEGMENTER = "src/semsynth/assets/segmenter-synthetic-faces"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="a synthetic-faces preset")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(args.config)
    spec = dict(cfg.generator)
    if spec.get("use_vae"):  # the probe feeds layouts only: a VAE generator gets no style code
        spec["use_vae"] = False
    G = build_generator(spec).train()
    data = build_dataset({"name": "synthetic-faces", "resolution": 64, "num_samples": 4000})
    val = build_dataset({"name": "synthetic-faces", "split": "val", "resolution": 64, "num_samples": 64})
    classes = data.info.num_classes
    opt = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))

    def batch(ds, idx):
        s = [ds[i] for i in idx]
        lab = torch.stack([x["label"] for x in s])
        return F.one_hot(lab, classes).permute(0, 3, 1, 2).float(), torch.stack([x["image"] for x in s]), lab

    t = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    for step in range(args.steps):
        sem, img, _ = batch(data, torch.randint(0, len(data), (args.batch,), generator=g).tolist())
        out = G(sem)
        out = out.image if hasattr(out, "image") else out
        loss = (out - img).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t
    S, _ = load_segmenter(SEGMENTER)
    sem, img, lab = batch(val, range(64))
    G.eval()
    with torch.no_grad():
        out = G(sem)
        out = out.image if hasattr(out, "image") else out
        for name, im in (("generated", out), ("real", img)):
            pred = S(im).argmax(1)
            ious = [((pred == c) & (lab == c)).sum().item() / u for c in range(classes)
                    if (u := ((pred == c) | (lab == c)).sum().item())]
            print(f"{args.config}: {name:9s} pixel accuracy {(pred == lab).float().mean().item():.3f}  "
                  f"mIoU {sum(ious) / len(ious):.3f}")
    print(f"{args.steps} L1 steps of batch {args.batch} in {seconds:.0f} s ({args.threads} thread(s))")


if __name__ == "__main__":
    main()
