"""A bounded pool of inference threads with a bounded queue and a per-request timeout.

At most ``workers`` requests are computed at once and at most ``queue`` more wait; a request beyond that is refused
at once (:class:`Busy`: HTTP 503 with ``Retry-After``), so a burst never piles up unbounded work. A request that is
not answered within ``timeout`` seconds (waiting included) gets :class:`Timeout` (HTTP 504); if it had not started
it is dropped from the queue. A request whose client went away (the painter aborts the requests a newer stroke has
made stale) is dropped from the queue as well. A computation that has started runs to its end (a thread cannot be
interrupted); its slot stays taken until then, so the bound holds.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

POLL_S = 0.05  # how often a waiting request checks whether its client is still there


class Busy(Exception):
    def __init__(self, retry_after: int, pending: int, capacity: int) -> None:
        super().__init__(f"{pending} requests are being computed or waiting, the most this server takes "
                         f"({capacity}); retry in {retry_after} s")
        self.retry_after = retry_after


class Timeout(Exception):
    pass


class Disconnected(Exception):
    pass


def _init_thread(threads: int | None) -> None:
    # torch's intra-op thread count is per calling thread for threads torch did not create
    if threads is not None:
        torch.set_num_threads(threads)


class WorkerPool:
    def __init__(self, workers: int = 1, queue: int = 8, timeout: float = 30.0, threads: int | None = None) -> None:
        self.workers, self.queue, self.timeout = int(workers), int(queue), float(timeout)
        self.capacity = self.workers + self.queue
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="semsynth-serve",
                                            initializer=_init_thread, initargs=(threads,))
        self._lock = threading.Lock()
        self._pending = 0
        self._durations: deque[float] = deque(maxlen=32)
        self.completed = self.refused = self.timed_out = self.dropped = 0

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the mean recent computation time times the requests ahead per
        worker (at least 1)."""
        with self._lock:
            mean = sum(self._durations) / len(self._durations) if self._durations else 1.0
            ahead = self._pending
        return max(1, math.ceil(mean * ahead / self.workers))

    def _release(self, _fut: Future) -> None:
        with self._lock:
            self._pending -= 1

    def _timed(self, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        try:
            return fn()
        finally:
            with self._lock:
                self._durations.append(time.perf_counter() - t)

    async def run(self, fn: Callable[[], Any],
                  is_disconnected: Callable[[], Awaitable[bool]] | None = None) -> tuple[Any, float]:
        """Run ``fn`` in a worker thread: ``(its result, seconds it waited in the queue)``. Raises :class:`Busy`,
        :class:`Timeout`, :class:`Disconnected`, or what ``fn`` raised."""
        with self._lock:
            if self._pending >= self.capacity:
                self.refused += 1
                full = True
            else:
                self._pending += 1
                full = False
        if full:
            raise Busy(self.retry_after(), self.capacity, self.capacity)
        submitted = time.perf_counter()
        started: list[float] = []

        def job():
            started.append(time.perf_counter())
            return self._timed(fn)

        try:
            cfut = self._executor.submit(job)
        except BaseException:
            with self._lock:
                self._pending -= 1
            raise
        cfut.add_done_callback(self._release)
        afut = asyncio.wrap_future(cfut)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                if cfut.cancel():
                    self.dropped += 1
                self.timed_out += 1
                afut.cancel()
                raise Timeout()
            done, _ = await asyncio.wait({afut}, timeout=min(POLL_S, remaining))
            if done:
                result = afut.result()
                self.completed += 1
                return result, (started[0] - submitted) if started else 0.0
            # the client went away while the request waited: drop it (cancel() fails once it has started)
            if is_disconnected is not None and not started and await is_disconnected() and cfut.cancel():
                self.dropped += 1
                afut.cancel()
                raise Disconnected()

    def stats(self) -> dict:
        with self._lock:
            pending = self._pending
        return {"workers": self.workers, "queue": self.queue, "capacity": self.capacity, "pending": pending,
                "completed": self.completed, "refused": self.refused, "timed_out": self.timed_out,
                "dropped": self.dropped, "timeout_s": self.timeout}

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
