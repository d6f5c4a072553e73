"""The main job behind ``make demo``: SC-GAN on the built-in synthetic faces, on the CPU, with a report."""

from __future__ import annotations

import os
from pathlib import Path

from .config import load_config

DEMO_PRESET = "scgan-synthetic-faces"


def run_demo(outdir: str | os.PathLike = "demo", overrides: list[str] | None = None) -> Path:
    """Train the demo preset for a few minutes and write ``report.html``; returns the run directory."""
    from .training import train
    from .utils.runtime import tune_malloc

    tune_malloc()
    cfg = load_config(DEMO_PRESET, overrides or [])
    return train(cfg, outdir=outdir)
