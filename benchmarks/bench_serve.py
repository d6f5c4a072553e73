"""End-to-end HTTP latency of ``semsynth serve``: a 256x256 layout posted to ``/generate``, the PNG read back.

    python benchmarks/bench_serve.py [--model src/semsynth/assets/scgan-synthetic-faces] [--threads 2]
        [--requests 200] [--clients 16 --per-client 60] [--precision auto] [--allocator auto] [--json out.json]

Starts ``semsynth serve --model DIR --port 0`` in a subprocess (one worker of ``--threads`` torch threads, a queue
of 32), posts one 256x256 layout of the model's built-in world (class ids, PNG; the server resizes it to the
model's resolution) as a client of the painter would, and measures on the client side:

1. sequential requests, one at a time (the painter's case): median, p90 and p99 latency, images per second, and
   the server's own ``X-Generation-Time`` (the generator) and ``X-Processing-Time`` (decode + generate + PNG);
2. the load test's pattern: ``--clients`` threads each sending ``--per-client`` requests at once: wall clock,
   images per second, p50/p99 latency, 503s (retried after Retry-After) and errors.

The clients run in this process, on the same CPU as the server: the figures include them.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from semsynth.utils.runtime import cpu_model  # noqa: E402



def start_server(args: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "semsynth", "serve", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    for line in proc.stdout:
        m = re.search(rb"painter is at (http://\S+?)/ ", line)
        if m:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
            return proc, m.group(1).decode()
    raise SystemExit(f"semsynth serve did not start (exit {proc.wait()})")


def layout_png(size: int, model: Path) -> bytes:
    """One layout of the model's own built-in world (synthetic-faces or synthetic-landscapes, from its config),
    drawn at ``size`` x ``size`` as a PNG of class ids; faces for any other model."""
    import json

    from semsynth.data.worlds import builtin_worlds

    world = json.loads((model / "config.json").read_text()).get("data", {}).get("name", "synthetic-faces")
    if world not in builtin_worlds():
        world = "synthetic-faces"
    ds = builtin_worlds()[world](split="val", resolution=size, num_samples=1)
    _, label = ds.sample_arrays(0)
    buf = io.BytesIO()
    Image.fromarray(label.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def quantile(values: list[float], q: float) -> float:
    return float(np.quantile(np.asarray(values), q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "src/semsynth/assets/scgan-synthetic-faces")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the server's worker")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--allocator", default="auto", choices=["auto", "glibc", "tcmalloc", "jemalloc"],
                    help="the server's malloc (semsynth serve --allocator; default auto: tcmalloc where installed)")
    ap.add_argument("--size", type=int, default=256, help="the layout's side in pixels")
    ap.add_argument("--requests", type=int, default=200, help="sequential requests")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--per-client", type=int, default=60)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import httpx

    proc, url = start_server(["--model", str(args.model), "--threads", str(args.threads), "--queue", "32",
                              "--precision", args.precision, "--allocator", args.allocator])
    label = layout_png(args.size, args.model)
    results: dict = {"cpu": cpu_model(), "model": str(args.model), "threads": args.threads, "size": args.size,
                     "allocator": args.allocator}
    try:
        with httpx.Client(base_url=url, timeout=120) as c:
            info = c.get("/models").json()["models"][0]
            results["precision"] = f"{info['precision']} ({info['precision_note']})"
            results["resolution"] = info["resolution"]

            def one(seed: int) -> httpx.Response:
                r = c.post("/generate", files={"label": ("layout.png", label, "image/png")},
                           data={"seed": str(seed)})
                r.raise_for_status()
                return r

            for s in range(5):  # warm-up
                one(s)
            lat, gen, proc_s = [], [], []
            t0 = time.perf_counter()
            for s in range(args.requests):
                t = time.perf_counter()
                r = one(s)
                lat.append(time.perf_counter() - t)
                gen.append(float(r.headers["x-generation-time"]))
                proc_s.append(float(r.headers["x-processing-time"]))
            wall = time.perf_counter() - t0
        results["sequential"] = {
            "requests": args.requests, "p50_ms": quantile(lat, 0.5) * 1e3, "p90_ms": quantile(lat, 0.9) * 1e3,
            "p99_ms": quantile(lat, 0.99) * 1e3, "images_per_s": args.requests / wall,
            "generator_p50_ms": quantile(gen, 0.5) * 1e3, "server_p50_ms": quantile(proc_s, 0.5) * 1e3}

        lat2: list[float] = []
        counts = {"503": 0, "errors": 0}
        lock = threading.Lock()
        barrier = threading.Barrier(args.clients)

        def client(k: int) -> None:
            with httpx.Client(base_url=url, timeout=120) as c:
                barrier.wait()
                for i in range(args.per_client):
                    t = time.perf_counter()
                    for _ in range(6):
                        try:
                            r = c.post("/generate", files={"label": ("layout.png", label, "image/png")},
                                       data={"seed": str(k * 1000 + i)})
                        except httpx.HTTPError:
                            r = None
                            break
                        if r.status_code != 503:
                            break
                        with lock:
                            counts["503"] += 1
                        time.sleep(min(float(r.headers.get("retry-after", "1")), 5))
                    with lock:
                        if r is None or r.status_code != 200:
                            counts["errors"] += 1
                        else:
                            lat2.append(time.perf_counter() - t)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        n = args.clients * args.per_client
        results["load"] = {"clients": args.clients, "per_client": args.per_client, "wall_s": wall,
                           "images_per_s": len(lat2) / wall, "p50_ms": quantile(lat2, 0.5) * 1e3 if lat2 else None,
                           "p99_ms": quantile(lat2, 0.99) * 1e3 if lat2 else None, "retried_503": counts["503"],
                           "errors": n - len(lat2)}
    finally:
        proc.terminate()
        proc.wait(30)

    s, ld = results["sequential"], results["load"]
    h, w = results["resolution"]
    print(f"CPU: {results['cpu']}; model {args.model.name} ({w}x{h}), precision {results['precision']}; "
          f"server --threads {args.threads} --allocator {args.allocator}; layout {args.size}x{args.size}")
    print("| case | p50 | p90 | p99 | images/s |")
    print("|---|---|---|---|---|")
    print(f"| sequential, {s['requests']} requests | {s['p50_ms']:.1f} ms | {s['p90_ms']:.1f} ms | "
          f"{s['p99_ms']:.1f} ms | {s['images_per_s']:.1f} |")
    print(f"| {ld['clients']} clients x {ld['per_client']} | {ld['p50_ms']:.1f} ms | | {ld['p99_ms']:.1f} ms | "
          f"{ld['images_per_s']:.1f} |")
    print(f"server side (sequential, median): generator {s['generator_p50_ms']:.1f} ms, decode + generate + PNG "
          f"{s['server_p50_ms']:.1f} ms; load: {ld['retried_503']} retried 503s, {ld['errors']} errors, "
          f"{ld['wall_s']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
