"""Which malloc a process runs on, and where tcmalloc and jemalloc are installed (``--allocator``).

Free of torch, so that the command line can decide before its heavy imports and restart with another allocator
in ``LD_PRELOAD`` (``semsynth.cli.use_allocator``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError

# Allocators that can replace glibc's malloc for a whole process (LD_PRELOAD), by the library names Debian and
# most distributions install them under (``apt-get install libtcmalloc-minimal4`` / ``libjemalloc2``).
PRELOAD_ALLOCATORS = {"tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"), "jemalloc": ("libjemalloc.so.2",)}
_ALLOCATOR_PACKAGES = {"tcmalloc": "libtcmalloc-minimal4", "jemalloc": "libjemalloc2"}
_LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib",
                 "/lib/x86_64-linux-gnu", "/lib64", "/lib")


def find_preload_allocator(name: str) -> str:
    """The path of the shared library of allocator ``name`` (``tcmalloc`` or ``jemalloc``) on this machine; a
    :class:`ConfigError` that says how to install it when there is none."""
    if name not in PRELOAD_ALLOCATORS:
        raise ConfigError(f"allocator {name!r}: expected one of {sorted(PRELOAD_ALLOCATORS)}")
    for lib in PRELOAD_ALLOCATORS[name]:
        for d in (*os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep), *_LIBRARY_DIRS):
            if d and (Path(d) / lib).is_file():
                return str(Path(d) / lib)
    raise ConfigError(f"allocator {name!r}: none of {', '.join(PRELOAD_ALLOCATORS[name])} found in "
                      f"{', '.join(_LIBRARY_DIRS)}; install it (Debian/Ubuntu: apt-get install "
                      f"{_ALLOCATOR_PACKAGES[name]}) or use the default allocator")


def with_preload(env: Mapping[str, str], path: str) -> dict[str, str]:
    """A copy of the environment ``env`` whose ``LD_PRELOAD`` loads ``path`` first (before what it had)."""
    return {**env, "LD_PRELOAD": " ".join(filter(None, [path, env.get("LD_PRELOAD")]))}


def active_allocator() -> str:
    """``tcmalloc``, ``jemalloc`` or ``glibc``: which malloc this process runs on (its mapped libraries)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "glibc"
    for name, libs in PRELOAD_ALLOCATORS.items():
        if any(lib.split(".so")[0] + ".so" in maps for lib in libs):
            return name
    return "glibc"
