"""Run bookkeeping: the log file, ``stats.jsonl`` and a progress line with ETA."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class RunLog:
    """Writes messages to the terminal and ``log.txt``, records to ``stats.jsonl``. Silent when disabled
    (the non-zero ranks of a distributed run)."""

    def __init__(self, run_dir: str | os.PathLike | None, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.enabled = enabled and run_dir is not None
        self.stream = stream or sys.stdout
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self._progress_shown = False

    def info(self, msg: str) -> None:
        if not self.enabled:
            return
        self._clear_progress()
        print(msg, file=self.stream, flush=True)
        with open(self.run_dir / "log.txt", "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")

    def record(self, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.run_dir / "stats.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(values) + "\n")

    # progress bar (terminal only; log lines cover non-terminals)
    def progress(self, done: int, total: int, rate: float, extra: str = "") -> None:
        if not self.enabled or not self.stream.isatty():
            return
        frac = min(1.0, done / max(total, 1))
        width = 28
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        eta = (total - done) / rate if rate > 0 else float("inf")
        line = f"\r[{bar}] {frac * 100:5.1f}% {done}/{total} img  {rate:.1f} img/s  ETA {format_duration(eta)}  {extra}"
        self.stream.write(line[: 160])
        self.stream.flush()
        self._progress_shown = True

    def _clear_progress(self) -> None:
        if self._progress_shown:
            self.stream.write("\r" + " " * 160 + "\r")
            self._progress_shown = False


class RunningMeans:
    """Averages of scalar tensors between two log points (kept on device until read: no per-step sync)."""

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict[str, Any]) -> None:
        for k, v in values.items():
            if hasattr(v, "detach"):
                v = v.detach().float()
            self.sums[k] = self.sums.get(k, 0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def read(self) -> dict[str, float]:
        out = {k: float(v) / self.counts[k] for k, v in self.sums.items()}
        self.sums.clear()
        self.counts.clear()
        return out


class TensorBoardLog:
    """TensorBoard events (scalars and sample grids) beside ``stats.jsonl``; inert when tensorboard is absent."""

    def __init__(self, log_dir: str | os.PathLike) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the package is optional at run time
            self.writer = None
            return
        self.writer = SummaryWriter(str(log_dir))

    def scalars(self, record: dict[str, Any], step: int) -> None:
        if self.writer is None:
            return
        for k, v in record.items():
            if k not in ("images", "iter") and isinstance(v, (int, float)):
                self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def image(self, tag: str, grid, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, grid, step, dataformats="HWC")
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
