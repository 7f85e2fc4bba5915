"""Timing instruments for the experiment workers: a span recorder that DDP's optional hook feeds,
a counter of the bytes this rank puts on the wire, and the Chrome-trace writer.

A timeline holds one process per rank and two lanes per process: ``main`` (data, forward,
backward, the wait for outstanding buckets, optimizer step) and ``comm`` (each bucket's
allreduce, from its launch in a gradient hook to its completion on the comm thread), so the
overlap of communication with backward is visible in chrome://tracing or Perfetto.
"""

from __future__ import annotations

import contextlib
import threading
import time


class Tracer:
    """Records ``(name, start, end, lane, nbytes)`` spans with ``time.perf_counter`` stamps.

    Called from the training thread and from the comm thread (bucket completions); appending to
    a list is atomic under the GIL, and the lock only guards the copy taken by ``events``.
    """

    def __init__(self) -> None:
        self._spans: list[tuple] = []
        self._lock = threading.Lock()

    def __call__(
        self, name: str, start: float, end: float, lane: str = "main", nbytes: int = 0
    ) -> None:
        self._spans.append((name, start, end, lane, int(nbytes)))

    @contextlib.contextmanager
    def span(self, name: str, lane: str = "main"):
        start = time.perf_counter()
        try:
            yield
        finally:
            self(name, start, time.perf_counter(), lane)

    def spans(self) -> list[tuple]:
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()


@contextlib.contextmanager
def ddp_tracing(tracer: Tracer):
    """Point DDP's optional module-level hook at ``tracer`` for the block."""
    from ..parallel import ddp

    prev = ddp._tracer
    ddp._tracer = tracer
    try:
        yield tracer
    finally:
        ddp._tracer = prev


class SendCounter:
    """Bytes this process hands to the collective transports (shared memory, sockets, gRPC),
    counted where every algorithm sends: ``Comm.send``. NCCL traffic does not pass there, so
    under NCCL ``available`` stays False and the count is not reported."""

    def __init__(self) -> None:
        self.bytes = 0
        self.available = False
        self._orig = None

    def __enter__(self) -> SendCounter:
        try:
            from .._runtime._comm import Comm
        except ImportError:
            return self
        orig = Comm.send
        counter = self

        def send(comm, i, ctx, arr, tag=0):
            counter.bytes += arr.nbytes
            return orig(comm, i, ctx, arr, tag)

        self._orig, Comm.send, self.available = orig, send, True
        return self

    def __exit__(self, *exc) -> None:
        if self._orig is not None:
            from .._runtime._comm import Comm

            Comm.send = self._orig
            self._orig = None


def chrome_trace(per_rank: list[dict], title: str = "") -> dict:
    """A Chrome-trace (Trace Event Format) document from each rank's recorded spans.

    ``per_rank[i]`` is ``{"rank": r, "host": h, "spans": [(name, start_s, end_s, lane,
    nbytes), ...]}`` with times already relative to a common origin (seconds).
    """
    events = []
    lanes = {"main": 0, "comm": 1}
    for entry in per_rank:
        pid = entry["rank"]
        events.append(
            {
                "name": "process_name",
                "ph": "M",
                "pid": pid,
                "tid": 0,
                "args": {"name": f"rank {pid} ({entry.get('host', '?')})"},
            }
        )
        events.append(
            {
                "name": "process_sort_index",
                "ph": "M",
                "pid": pid,
                "tid": 0,
                "args": {"sort_index": pid},
            }
        )
        for lane, tid in lanes.items():
            events.append(
                {"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": lane}}
            )
        for name, start, end, lane, nbytes in entry["spans"]:
            ev = {
                "name": name,
                "cat": lane,
                "ph": "X",
                "pid": pid,
                "tid": lanes.get(lane, 0),
                "ts": round(start * 1e6, 3),
                "dur": round(max(end - start, 0.0) * 1e6, 3),
            }
            if nbytes:
                ev["args"] = {"bytes": nbytes}
            events.append(ev)
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"title": title, "clock": "per-rank perf_counter aligned at a barrier"},
    }
