"""The one progress display every command uses.

``progress_bar(total, desc, unit)`` gives

* on a terminal: a tqdm bar (on stderr unless another ``stream`` is given);
* on anything else (CI logs, ``> file``): no carriage returns, but a plain line every ``log_interval`` seconds
  and one at the end, e.g. ``generate: 120/400 img (30%) 4.1 img/s ETA 01:08``;
* with ``enabled=False``: nothing.

Whatever the mode, the object has ``update(n=1)``, ``set_postfix_str(s)``, ``close()`` and ``write(msg, file)``
(print a message without tearing the bar), and is a context manager that closes it.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, TextIO


def _clock() -> float:
    """Seconds for rate and interval computations (a function so that tests can replace it)."""
    return time.monotonic()


def format_duration(seconds: float) -> str:
    """``MM:SS`` or ``H:MM:SS``; ``?`` for an unknown (infinite / NaN) duration."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def _terminal_columns(stream: Any) -> int:
    """The terminal's width, 0 when unknown (no file descriptor, or a pseudo-terminal created without a size,
    as by ``script`` or ``docker run -t``, where tqdm would draw an empty bar)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 0


class _Progress:
    """Base: a context manager that closes itself; ``write`` prints a message line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.n = 0

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass

    def write(self, msg: str, file: TextIO | None = None, end: str = "\n") -> None:
        fp = file if file is not None else self.stream
        fp.write(msg + end)
        fp.flush()


class _Disabled(_Progress):
    """``enabled=False``: counts, prints no progress (``write`` still prints the caller's message)."""


class _Lines(_Progress):
    """Not a terminal: one plain line at most every ``log_interval`` seconds, and one when closed."""

    def __init__(self, total: int | None, desc: str, unit: str, stream: TextIO, log_interval: float,
                 initial: int = 0) -> None:
        super().__init__(stream)
        self.total, self.desc, self.unit, self.log_interval = total, desc, unit, log_interval
        self.n = self._initial = initial
        self._start = self._last_line = _clock()
        self._postfix = ""
        self._closed = False

    def update(self, n: int = 1) -> None:
        if self._closed:
            return
        self.n += n
        now = _clock()
        if now - self._last_line >= self.log_interval:
            self._emit(now)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self._postfix = str(s)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._emit(_clock(), final=True)

    def line(self, now: float, final: bool = False) -> str:
        elapsed = now - self._start
        rate = (self.n - self._initial) / elapsed if elapsed > 0 else 0.0
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            parts = [f"{head}{self.n}/{self.total} {self.unit} ({100 * self.n / self.total:.0f}%)"]
        else:
            parts = [f"{head}{self.n} {self.unit}"]
        if rate > 0:
            parts.append(f"{_format_rate(rate)} {self.unit}/s")
        if final:
            parts.append(f"in {format_duration(elapsed)}")
        elif self.total and rate > 0:
            parts.append(f"ETA {format_duration(max(0, self.total - self.n) / rate)}")
        if self._postfix:
            parts.append(self._postfix)
        return " ".join(parts)

    def _emit(self, now: float, final: bool = False) -> None:
        self.stream.write(self.line(now, final) + "\n")
        self.stream.flush()
        self._last_line = now


def _format_rate(rate: float) -> str:
    if rate >= 100:
        return f"{rate:.0f}"
    if rate >= 1:
        return f"{rate:.1f}"
    return f"{rate:.2g}"


def progress_bar(total: int | None, desc: str, unit: str = "it", enabled: bool = True, stream: TextIO | None = None,
                 log_interval: float = 30.0, *, initial: int = 0, leave: bool = True) -> Any:
    """A progress display for ``total`` steps (``None``: unknown) named ``desc``, counted in ``unit``.

    ``stream``: where it goes (default ``sys.stderr``); a terminal gets a tqdm bar, anything else a plain line
    every ``log_interval`` seconds plus one at the end. ``enabled=False``: no output at all. ``initial``: steps
    already done (a resumed run; they do not count towards the rate). ``leave``: keep the finished tqdm bar on
    the screen (``False`` erases it when closed)."""
    fp = stream if stream is not None else sys.stderr
    if not enabled:
        return _Disabled(fp)
    if is_terminal(fp):
        from tqdm import tqdm

        width = {"dynamic_ncols": True} if _terminal_columns(fp) > 0 else {"ncols": 100, "nrows": 20}
        return tqdm(total=total, desc=desc, unit=unit, file=fp, initial=initial, leave=leave, **width)
    return _Lines(total, desc, unit, fp, log_interval, initial=initial)
