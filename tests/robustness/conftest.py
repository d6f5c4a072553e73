"""The workspace of the bad-input suite: tiny models, a run with checkpoints, label files, hostile files.

Everything is built once per session in a temporary folder; every case gets its own output folder.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from semsynth.config import resolve_config
from semsynth.data import build_dataset
from semsynth.data.synthetic_faces import PALETTE, write_synthetic_faces
from semsynth.segmenters import build_segmenter, save_segmenter
from semsynth.models import build_encoder, build_generator
from semsynth.training import export_model, train
from tests.helpers import TINY_RAW

MARKER_NAME = "PAYLOAD-RAN"


class Payload:
    """Unpickling this creates a marker folder: proof that a loader ran code from a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def write_payloads(folder: Path, marker: Path) -> dict[str, Path]:
    """Pickle payloads in the shapes loaders meet: a torch zip file, a raw pickle, a pickle named .npz/.json."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    out["torch"] = folder / "payload.pt"
    torch.save({"state_dict": {"w": torch.ones(1)}, "x": Payload(marker)}, out["torch"])
    out["raw"] = folder / "payload-raw.pth"
    with open(out["raw"], "wb") as f:
        pickle.dump({"w": Payload(marker)}, f, protocol=2)
    out["npz"] = folder / "payload.npz"
    with open(out["npz"], "wb") as f:
        pickle.dump(Payload(marker), f)
    out["yaml"] = folder / "payload.yaml"
    out["yaml"].write_text(f"!!python/object/apply:os.makedirs ['{marker}']\n")
    out["yaml_in_section"] = folder / "payload-section.yaml"
    out["yaml_in_section"].write_text("name: x\ndata: !!python/object/apply:os.makedirs ['" + str(marker) + "']\n")
    return out


def _tiny_model(tmp: Path, name: str, **gen) -> Path:
    raw = {**TINY_RAW, "generator": {**TINY_RAW["generator"], **gen},
           "train": {**TINY_RAW["train"], "images": 4, "checkpoint_every": 4, "sample_every": 1000,
                     "log_every": 4}}
    if gen.get("input_mode") == "label":
        raw["encoder"] = None
    run = train(resolve_config(raw, name=name), outdir=tmp)
    return run


def _exported(out: Path, **gen) -> Path:
    cfg = resolve_config({**TINY_RAW, "generator": {**TINY_RAW["generator"], **gen},
                          "encoder": None if gen.get("input_mode") == "label" else TINY_RAW["encoder"]}, name="x")
    info = build_dataset(cfg.data).info
    G = build_generator(cfg.generator)
    E = build_encoder(cfg.encoder) if cfg.encoder else None
    return export_model(out, G, info, E, extra={"data": cfg.data})


@pytest.fixture(scope="session")
def ws(tmp_path_factory) -> dict[str, Path]:
    """Paths of the shared workspace (read-only for the cases: a case that edits copies first)."""
    root = tmp_path_factory.mktemp("robust")
    torch.manual_seed(0)
    w: dict[str, Path] = {"root": root}
    run = _tiny_model(root / "runs", "tiny")
    w["run"] = run
    w["model"] = run / "model"
    w["ckpt"] = sorted((run / "checkpoints").glob("training-state-*.pt"))[-1]
    # a deterministic model, and the tiny model at another width (for config/weights mismatches): exported
    # straight from freshly built networks, no training needed
    w["model_det"] = _exported(root / "det", input_mode="label")
    w["model_wide"] = _exported(root / "wide", srg_width=8)
    faces = write_synthetic_faces(root / "faces", 2, size=64, seed=3, split="val")
    w["faces"] = faces
    w["labels"] = faces / "labels"
    w["label"] = sorted(w["labels"].iterdir())[0]
    w["image"] = sorted((faces / "images").iterdir())[0]
    ids = np.asarray(Image.open(w["label"]))
    bad = root / "bad"
    bad.mkdir()
    w["bad"] = bad
    Image.fromarray(np.full((64, 64), 40, np.uint8)).save(bad / "out-of-range.png")
    rgb = np.asarray(PALETTE, dtype=np.uint8)[ids]
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(bad / "unknown-colour.png")
    (bad / "not-an-image.png").write_bytes(b"this is not a PNG")
    png = (w["label"]).read_bytes()
    (bad / "truncated.png").write_bytes(png[: len(png) // 2])
    Image.fromarray(np.zeros((64, 64), np.float32), mode="F").save(bad / "float.tif")
    Image.fromarray(ids).convert("LA").save(bad / "grey-alpha.png")
    (bad / "empty").mkdir()
    (bad / "text.txt").write_text("hello")
    seg = build_segmenter({"name": "unet", "width": 4, "depth": 2}, num_classes=15).eval()
    info = build_dataset({"name": "synthetic-faces", "resolution": 64, "num_samples": 16}).info
    w["seg"] = save_segmenter(root / "seg" / "segmenter", seg, info, {})
    # generated images at 32x32 and 64x64, named after the val layouts
    ds = build_dataset({"name": "synthetic-faces", "resolution": 64, "num_samples": 16, "split": "val"})
    for size in (32, 64):
        d = root / f"generated{size}"
        d.mkdir()
        for i in range(len(ds)):
            Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(d / f"{ds[i]['name']}.png")
        w[f"generated{size}"] = d
    w["marker"] = root / MARKER_NAME
    w.update({f"payload_{k}": v for k, v in write_payloads(root / "payloads", w["marker"]).items()})
    # a folder dataset (custom) with images of 256x256 for the evaluate geometry case
    custom = root / "custom"
    (custom / "images").mkdir(parents=True)
    (custom / "labels").mkdir()
    for i in range(3):
        Image.fromarray(np.full((256, 256, 3), 100, np.uint8)).save(custom / "images" / f"s{i}.png")
        Image.fromarray(np.full((256, 256), i % 2, np.uint8)).save(custom / "labels" / f"s{i}.png")
    w["custom"] = custom
    gen_custom = root / "generated-custom64"
    gen_custom.mkdir()
    for i in range(3):
        Image.fromarray(np.full((64, 64, 3), 100, np.uint8)).save(gen_custom / f"s{i}.png")
    w["generated_custom64"] = gen_custom
    return w


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_json(path: Path, **changes) -> None:
    d = json.loads(path.read_text())
    for k, v in changes.items():
        d[k] = v
    path.write_text(json.dumps(d))


# -- a small full disk ---------------------------------------------------------------------------------------


@pytest.fixture
def full_disk(tmp_path):
    """A 24 MiB tmpfs (root only) and a function that fills it up to ``keep`` free bytes."""
    if os.geteuid() != 0:
        pytest.skip("full-disk cases mount a small tmpfs, which needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")

    def fill(keep: int = 0) -> None:
        free = shutil.disk_usage(mnt).free
        with open(mnt / "filler", "ab") as f:
            if free - keep > 0:
                f.write(b"\0" * (free - keep))
        while shutil.disk_usage(mnt).free > keep + 4096:  # tmpfs rounds to pages
            with open(mnt / "filler", "ab") as f:
                f.write(b"\0" * 4096)

    try:
        yield mnt, fill
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
