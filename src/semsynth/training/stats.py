"""Run bookkeeping: the log file, ``stats.jsonl`` and a progress bar with ETA (``utils.progress``)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ..utils.progress import format_duration, is_terminal, progress_bar

__all__ = ["RunLog", "RunningMeans", "TensorBoardLog", "format_duration"]


class RunLog:
    """Writes messages to the terminal and ``log.txt``, records to ``stats.jsonl``. Silent when disabled
    (the non-zero ranks of a distributed run). ``bar_stream``: where the progress bar goes (default stderr)."""

    def __init__(self, run_dir: str | os.PathLike | None, enabled: bool = True, stream: TextIO | None = None,
                 bar_stream: TextIO | None = None) -> None:
        self.enabled = enabled and run_dir is not None
        self.stream = stream or sys.stdout
        self.bar_stream = bar_stream
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self._bar: Any = None
        self._bar_done = 0
        self.log_interval = 60.0

    def info(self, msg: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:  # clears a bar on the same terminal, prints, redraws it
            self._bar.write(msg, file=self.stream)
            self.stream.flush()
        else:
            print(msg, file=self.stream, flush=True)
        with open(self.run_dir / "log.txt", "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")

    def record(self, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.run_dir / "stats.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(values) + "\n")

    # progress: a tqdm bar on a terminal; elsewhere a plain line every ``log_interval`` seconds
    def progress(self, done: int, total: int, rate: float | None = None, extra: str = "", *, desc: str = "train",
                 unit: str = "img") -> None:
        """``done`` of ``total`` steps so far (``rate`` is unused: the bar measures its own)."""
        if not self.enabled:
            return
        if self._bar is None:
            if done >= total:
                return
            stream = self.bar_stream if self.bar_stream is not None else sys.stderr
            # a terminal: a tqdm bar; a log file or CI: a plain line every minute (between the log lines,
            # which come every log_every images and can be far apart on a CPU)
            self._bar = progress_bar(total, desc, unit=unit, stream=stream, initial=done, leave=False,
                                     log_interval=self.log_interval)
            self._bar_done = done
        if done > self._bar_done:
            self._bar.update(done - self._bar_done)
            self._bar_done = done
        if extra:
            self._bar.set_postfix_str(extra)
        if done >= total:
            self.close_progress()

    def close_progress(self) -> None:
        """Remove the bar (a finished run's summary line replaces it)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


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
