"""A load test on loopback: 16 concurrent clients x 60 requests against a real ``semsynth serve`` process
(conftest.py's ``live_server``: the tiny models, 1 worker, a queue of 32).

Every request must be answered 200 with the right picture (each seed's PNG bytes are compared with a reference, so
concurrent requests cannot have mixed their inputs). A 503 (queue full) would be retried after its Retry-After, as
docs/serve.md tells clients to; with 16 clients and room for 33 requests none is expected, and the server's own
counters must say so. The latencies are printed, not asserted (benchmarks/bench_serve.py measures them).
"""

from __future__ import annotations

import statistics
import threading
import time

import httpx
import pytest

from tests.serve.conftest import face_layout, png_bytes

pytestmark = pytest.mark.slow

CLIENTS, REQUESTS, SEEDS = 16, 60, 4


def post(client: httpx.Client, label: bytes, seed: int) -> tuple[httpx.Response, int]:
    """POST /generate, retrying 503s after their Retry-After (at most 5 times): (answer, retries)."""
    for retry in range(6):
        r = client.post("/generate", files={"label": ("l.png", label, "image/png")}, data={"seed": str(seed)})
        if r.status_code != 503 or retry == 5:
            return r, retry
        time.sleep(min(float(r.headers.get("retry-after", "1")), 5.0))
    raise AssertionError("unreachable")


def test_16_clients_x_60_requests_without_an_error(live_server):
    label = png_bytes(face_layout())
    with httpx.Client(base_url=live_server.url, timeout=60) as c:
        refs = {s: c.post("/generate", files={"label": ("l.png", label, "image/png")}, data={"seed": str(s)})
                for s in range(SEEDS)}
        assert all(r.status_code == 200 for r in refs.values())
        assert len({r.content for r in refs.values()}) == SEEDS
        before = c.get("/health").json()["pool"]

    errors: list[str] = []
    latencies: list[float] = []
    retries = [0]
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def client(k: int) -> None:
        with httpx.Client(base_url=live_server.url, timeout=60) as c:
            start.wait()
            for i in range(REQUESTS):
                seed = (k + i) % SEEDS
                t = time.perf_counter()
                try:
                    r, n = post(c, label, seed)
                except httpx.HTTPError as e:
                    with lock:
                        errors.append(f"client {k} request {i}: {type(e).__name__}: {e}")
                    continue
                dt = time.perf_counter() - t
                with lock:
                    retries[0] += n
                    latencies.append(dt)
                    if r.status_code != 200:
                        errors.append(f"client {k} request {i}: {r.status_code} {r.text[:200]}")
                    elif r.content != refs[seed].content:
                        errors.append(f"client {k} request {i}: the picture of seed {seed} differs")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    wall = time.perf_counter() - t0
    assert not any(t.is_alive() for t in threads)
    assert errors == [], errors[:10]
    assert len(latencies) == CLIENTS * REQUESTS
    q = statistics.quantiles(latencies, n=100)
    print(f"\n{CLIENTS}x{REQUESTS} requests in {wall:.1f} s: {len(latencies) / wall:.0f} images/s, "
          f"p50 {q[49] * 1e3:.0f} ms, p99 {q[98] * 1e3:.0f} ms, {retries[0]} retried 503s")

    with httpx.Client(base_url=live_server.url) as c:
        after = c.get("/health").json()["pool"]
    assert after["completed"] - before["completed"] == CLIENTS * REQUESTS
    assert after["refused"] == before["refused"] and retries[0] == 0  # room for 33: no 503 with 16 clients
    assert after["timed_out"] == before["timed_out"] and after["pending"] == 0
