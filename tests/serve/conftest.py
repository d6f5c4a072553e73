"""Tiny models for the server's tests, exported from freshly built networks (no training): an SC-GAN with a style
encoder (composite re-sampling), an OASIS generator (spatial noise: local re-sampling) and a deterministic SC-GAN.

Their weights are initialised with gain 1 (not the training init's 0.02), so that their pictures have contrast: with
the training init an untrained network answers a near-flat grey, and a stroke moves its pixels by less than one grey
level. The OASIS model has 2 residual blocks (it starts at 32x32, not 2x2), so that its receptive field is local:
pixels far from a changed region do not move at all.

``live_server`` runs ``semsynth serve`` in a subprocess on a free loopback port (the end-to-end and load tests).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import TINY_RAW
from tests.serve.live import start_server, stop_server


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)


def face_layout(h: int = 64, w: int = 64) -> np.ndarray:
    """Class ids of the faces model: background, a skin ellipse, hair on top, two eyes."""
    y, x = np.mgrid[:h, :w]
    lab = np.zeros((h, w), np.uint8)
    lab[((x - w / 2) / (w * 0.3)) ** 2 + ((y - h / 2) / (h * 0.4)) ** 2 < 1] = 1
    lab[: h // 4, w // 4 : 3 * w // 4] = 13
    lab[h // 2 - 3 : h // 2, w // 3 - 3 : w // 3 + 3] = 3
    lab[h // 2 - 3 : h // 2, 2 * w // 3 - 3 : 2 * w // 3 + 3] = 4
    return lab


def oasis_layout() -> np.ndarray:
    lab = np.zeros((64, 64), np.uint8)
    lab[:24] = 1  # sky
    lab[40:, 8:40] = 2  # trees
    return lab


def export_tiny(out: Path, kind: str) -> Path:
    from semsynth.config import resolve_config
    from semsynth.data import DatasetInfo, build_dataset
    from semsynth.models import build_encoder, build_generator
    from semsynth.training import export_model

    torch.manual_seed(0)
    if kind == "oasis":
        G = build_generator({"name": "oasis", "channels": 2, "num_res_blocks": 2, "spade_hidden": 4, "z_dim": 3,
                             "init_gain": 1.0}, num_classes=4, resolution=64)
        info = DatasetInfo(name="custom", num_classes=4, class_names=["ground", "sky", "tree", "road"],
                           resolution=(64, 64))
        return export_model(out, G, info)
    gen = {**TINY_RAW["generator"], "init_gain": 1.0, **({"input_mode": "label"} if kind == "det" else {})}
    enc = {**TINY_RAW["encoder"], "init_gain": 1.0}
    cfg = resolve_config({**TINY_RAW, "generator": gen, "encoder": None if kind == "det" else enc}, name="x")
    info = build_dataset(cfg.data).info
    G = build_generator(cfg.generator)
    E = build_encoder(cfg.encoder) if cfg.encoder else None
    return export_model(out, G, info, E, extra={"data": cfg.data})


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve-models")
    return {kind: export_tiny(root / kind, kind) for kind in ("faces", "oasis", "det")}


@pytest.fixture(scope="session")
def served(tiny_dirs):
    from semsynth.serve import load_models

    specs = [f"{kind}={path}" for kind, path in tiny_dirs.items()]
    return load_models(specs, precision="fp32")


@pytest.fixture(scope="session")
def client(served):
    from fastapi.testclient import TestClient

    from semsynth.serve import create_app

    with TestClient(create_app(served, workers=1, queue=8, timeout=60)) as c:
        yield c


@pytest.fixture(scope="session")
def live_server(tiny_dirs, tmp_path_factory):
    """``semsynth serve`` with the tiny SC-GAN (``faces``, the default) and OASIS (``oasis``) models, one worker
    of one thread, a queue of 32 (more than the load test's 16 clients), fp32."""
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    server = start_server(["--model", f"faces={tiny_dirs['faces']}", "--model", f"oasis={tiny_dirs['oasis']}",
                           "--threads", "1", "--workers", "1", "--queue", "32", "--precision", "fp32"], log)
    yield server
    stop_server(server.proc)
