"""The figure of the row-by-row comparison (docs/models.md): the same validation layouts rendered by every model of
``benchmarks/compare_faces.py`` (seed 0 for the multi-modal ones), one column per model.

    python benchmarks/compare_faces_figure.py --runs runs/compare --out docs/img/compare-faces.png --num 6
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from semsynth.data import build_dataset
from semsynth.inference import Synthesizer

MODELS = ["scgan", "spade", "ccfpse", "oasis", "pix2pixhd", "crn", "sims"]


def to_uint8(img: torch.Tensor) -> np.ndarray:
    return ((img.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="runs/compare")
    ap.add_argument("--out", default="docs/img/compare-faces.png")
    ap.add_argument("--num", type=int, default=6, help="validation layouts (rows)")
    ap.add_argument("--scale", type=int, default=2, help="pixel repetition of the 64x64 images")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = build_dataset({"name": "synthetic-faces", "split": "val", "resolution": 64, "num_samples": 1000})
    samples = [data[i] for i in range(args.num)]
    labels = torch.stack([s["label"] for s in samples])
    palette = np.asarray(data.info.palette, dtype=np.uint8)
    columns = [("layout", [palette[s["label"].numpy()] for s in samples]),
               ("real", [to_uint8(s["image"]) for s in samples])]
    for m in MODELS:
        runs = sorted(Path(args.runs).glob(f"*-{m}-synthetic-faces"))
        if not runs or not (runs[-1] / "model").is_dir():
            print(f"skipping {m}: no finished run under {args.runs}")
            continue
        syn = Synthesizer.from_pretrained(runs[-1] / "model", device="cpu")
        columns.append((m, [to_uint8(x) for x in syn.generate(labels)]))
    s, pad, head = 64 * args.scale, 4, 16
    sheet = Image.new("RGB", (len(columns) * (s + pad) + pad, head + args.num * (s + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for c, (name, images) in enumerate(columns):
        x = pad + c * (s + pad)
        draw.text((x + 2, 2), name, fill="black")
        for r, im in enumerate(images):
            sheet.paste(Image.fromarray(im).resize((s, s), Image.NEAREST), (x, head + pad + r * (s + pad)))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out} ({len(columns)} columns x {args.num} rows)")


if __name__ == "__main__":
    main()
