"""Starting the server: check the options, bind the address, load the models, run uvicorn (``semsynth serve``)."""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
from collections.abc import Callable, Sequence

from ..errors import SemsynthError

LOOPBACK_NAMES = ("localhost", "ip6-localhost", "ip6-loopback")
MAX_WORKERS, MAX_QUEUE, MAX_TIMEOUT = 64, 10_000, 3600.0


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_options(port: int, workers: int, queue: int, timeout: float, threads: int | None) -> None:
    if not 0 <= port <= 65535:
        raise SemsynthError(f"--port {port}: ports go from 1 to 65535 (0: any free port, printed at start)")
    if not 1 <= workers <= MAX_WORKERS:
        raise SemsynthError(f"--workers {workers}: from 1 to {MAX_WORKERS} requests computed at once (default 1; "
                            f"on a CPU, --workers 1 with --threads = cores is usually fastest)")
    if not 0 <= queue <= MAX_QUEUE:
        raise SemsynthError(f"--queue {queue}: from 0 to {MAX_QUEUE:,} requests waiting for a worker (default 8)")
    if not (timeout > 0 and timeout <= MAX_TIMEOUT):  # also refuses NaN
        raise SemsynthError(f"--timeout {timeout:g}: seconds per request, more than 0 and at most {MAX_TIMEOUT:g} "
                            f"(default 30)")
    if threads is not None and threads < 1:
        raise SemsynthError(f"--threads {threads}: must be >= 1")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (before the models load, so that a taken port fails at once)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise SemsynthError(f"--host {host}: not an address of this machine ({e.strerror}); use 127.0.0.1 (this "
                            f"machine only, the default) or an address of one of its interfaces") from e
    family, kind, proto, _, address = infos[0]
    # the protocol number matters: asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP (with
    # proto 0 every keep-alive answer waited ~40 ms for a delayed ACK: Nagle's algorithm)
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise SemsynthError(f"--port {port}: {host}:{port} is already in use (another server?); choose another "
                                f"--port, or --port 0 for any free one") from e
        if e.errno == errno.EACCES:
            raise SemsynthError(f"--port {port}: no permission to listen on {host}:{port} (ports below 1024 need "
                                f"root); choose a port from 1024") from e
        if e.errno == errno.EADDRNOTAVAIL:
            raise SemsynthError(f"--host {host}: not an address of this machine; use 127.0.0.1 or an address of "
                                f"one of its interfaces") from e
        raise SemsynthError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e})") from e
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def run_server(models: Sequence[str] | None = None, host: str = "127.0.0.1", port: int = 8000,
               threads: int | None = None, workers: int = 1, queue: int = 8, timeout: float = 30.0,
               precision: str = "auto", access_log: bool = True,
               log: Callable[[str], None] | None = None) -> int:
    """``semsynth serve``: serve ``models`` (``DIR`` or ``NAME=DIR``; none: the bundled ones) until interrupted."""
    from .engine import PRECISIONS, load_models, model_specs

    def say(text: str) -> None:
        print(f"semsynth serve: {text}", file=sys.stderr, flush=True)

    log = log or say
    check_options(port, workers, queue, timeout, threads)
    if precision not in PRECISIONS:
        raise SemsynthError(f"--precision {precision}: choose one of {', '.join(PRECISIONS)}")
    model_specs(list(models) if models else None)  # a missing directory, two models of one name: before binding
    if not is_loopback(host):
        log(f"warning: --host {host} makes the server reachable from other machines; it has no authentication "
            f"and no TLS: put it behind a proxy that has, or keep the default 127.0.0.1")
    sock = bind(host, port)
    try:
        served = load_models(list(models) if models else None, precision, log)
        import torch
        import uvicorn

        from .app import create_app

        app = create_app(served, workers=workers, queue=queue, timeout=timeout,
                         threads=threads if threads is not None else torch.get_num_threads())
        url = url_of(sock)
        print(f"semsynth serve: the painter is at {url}/ and the API at {url}/docs "
              f"({len(served)} model(s): {', '.join(m.name for m in served)}; {workers} worker(s), queue {queue}, "
              f"timeout {timeout:g} s); Ctrl-C stops it", flush=True)
        config = uvicorn.Config(app, log_level="info", access_log=access_log, timeout_graceful_shutdown=5,
                                lifespan="on")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0
