"""A ``semsynth serve`` process for tests: started on a free loopback port, stopped at the end (the end-to-end and
load tests of tests/serve, and the examples of docs/serve.md in tests/test_docs_examples.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path


class LiveServer:
    """A ``semsynth serve`` process: its ``url``, its ``log`` (stderr) and the process."""

    def __init__(self, url: str, log: Path, proc) -> None:
        self.url, self.log, self.proc = url, log, proc


def start_server(args: list[str], log: Path, wait_s: float = 120.0, cwd: Path | None = None) -> LiveServer:
    """Start ``semsynth serve ARGS --port 0`` (the last ``--port`` wins) in ``cwd``; return once it printed its
    address (its socket listens then: requests sent before uvicorn runs wait in the socket's backlog)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    err = open(log, "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen([sys.executable, "-m", "semsynth", "serve", *args, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=err, env=env, cwd=cwd)
    err.close()
    found: list[str] = []

    def read():
        for line in proc.stdout:
            m = re.search(rb"painter is at (http://\S+?)/ ", line)
            if m and not found:
                found.append(m.group(1).decode())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + wait_s
    while not found and proc.poll() is None and time.monotonic() < deadline:
        reader.join(0.05)
    if not found:
        stop_server(proc)
        raise AssertionError(f"semsynth serve did not start:\n{log.read_text()[-3000:]}")
    return LiveServer(found[0], log, proc)


def stop_server(proc) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)
