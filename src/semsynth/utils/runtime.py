"""Process-level tuning."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

import torch

from ..errors import ConfigError
from .allocator import active_allocator

# glibc mallopt parameters
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def cpu_model() -> str:
    """The CPU's model name as ``/proc/cpuinfo`` gives it (benchmark records name the CPU of every figure)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def cpu_identity() -> dict:
    """The first CPU's ``vendor_id``, ``cpu family``, ``model`` (integers) and ``flags`` (a set) from
    ``/proc/cpuinfo``; empty values where it cannot be read (not Linux, not x86)."""
    info: dict = {"vendor": "", "family": -1, "model": -1, "flags": frozenset()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "vendor_id":
            info["vendor"] = value
        elif key in ("cpu family", "model") and value.isdigit():
            info["family" if key == "cpu family" else "model"] = int(value)
        elif key == "flags":
            info["flags"] = frozenset(value.split())
    return info


def tune_malloc() -> bool:
    """Keep large tensor allocations in the heap instead of a fresh mmap each time (glibc only).

    With glibc's defaults every large tensor is a new mmap whose pages fault in on first touch; on CPU that
    cost 13-35% of the time of a GAN step here (docs/benchmarks.md). Equivalent to running with
    ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=536870912``.
    Returns whether the settings were applied (not under another allocator, e.g. tcmalloc by ``LD_PRELOAD``).
    """
    if not sys.platform.startswith("linux") or active_allocator() != "glibc":
        return False  # another malloc (LD_PRELOAD) has its own policy; glibc's mallopt would not reach it
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
        ok &= libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
        ok &= libc.mallopt(_M_TOP_PAD, 512 * 1024 * 1024)
        return bool(ok)
    except (OSError, AttributeError):
        return False


def cpu_bf16_supported() -> bool:
    """Whether this CPU computes bfloat16 natively (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``: AVX-512 BF16,
    AMX). Without it, bf16 autocast sends every convolution to a generic kernel, about 400x slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def select_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``; under DDP ``cuda`` means the process's
    ``local_rank`` GPU. A CUDA device where there is none is a :class:`ConfigError`."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"device {name!r}: {e}; use auto, cpu, cuda or cuda:N") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r}, but CUDA is not available here; use cpu")
        if local_rank is not None and dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


def new_run_dir(outdir: str | os.PathLike, name: str) -> Path:
    """``<outdir>/<NNNNN>-<name>``, numbered after the runs already there."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    ids = [int(p.name.split("-", 1)[0]) for p in out.iterdir() if p.is_dir() and p.name.split("-", 1)[0].isdigit()]
    run = out / f"{max(ids, default=-1) + 1:05d}-{name}"
    run.mkdir()
    return run
