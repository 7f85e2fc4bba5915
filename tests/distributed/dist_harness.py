"""Real multi-process harness for the distributed tests (no mocks).

``Pool(world_size, backend)`` starts ``world_size`` spawned processes that each join one
process group and then run whatever function the test sends them (``pool.run(fn, *args)``),
so one pool serves many tests. ``run_ranks(fn, world_size)`` starts fresh processes for a
single scenario (failures, rendezvous errors) and collects each rank's result or error.

Functions sent to workers must be module-level (picklable by reference). This module has a
unique name because spawned children import it by name (``conftest`` is ambiguous).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import socket
import time
import traceback

_CTX = mp.get_context("spawn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(rank: int, world_size: int, port: int, extra: dict | None) -> dict:
    env = {
        "RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_RANK": str(rank),
        "LOCAL_WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "EMBER_TOKEN": "test-token",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


class RankError(AssertionError):
    """A rank raised; carries every failing rank's traceback."""


# ---- persistent pools ---------------------------------------------------------------------------
def _pool_main(rank, env, backend, timeout, inq, outq):
    os.environ.update(env)
    try:
        import ember.distributed as dist

        dist.init_process_group(backend, timeout=timeout)
        outq.put((rank, "ready", None))
    except BaseException:
        outq.put((rank, "err", traceback.format_exc()))
        return
    while True:
        item = inq.get()
        if item is None:
            break
        fn, args = item
        try:
            outq.put((rank, "ok", fn(*args)))
        except BaseException:
            outq.put((rank, "err", traceback.format_exc()))
    try:
        dist.destroy_process_group()
    except BaseException:
        pass


class Pool:
    """``world_size`` ranks with an initialised default group (see the module docstring)."""

    def __init__(
        self, world_size: int, backend: str, env: dict | None = None, timeout: float = 60.0
    ) -> None:
        self.world_size, self.backend = world_size, backend
        self.broken = False
        port = free_port()
        self._in = [_CTX.Queue() for _ in range(world_size)]
        self._out = _CTX.Queue()
        self._procs = []
        for r in range(world_size):
            extra = env(r) if callable(env) else env
            p = _CTX.Process(
                target=_pool_main,
                daemon=True,
                args=(
                    r,
                    _env(r, world_size, port, extra),
                    backend,
                    timeout,
                    self._in[r],
                    self._out,
                ),
            )
            p.start()
            self._procs.append(p)
        self._collect("ready", 60.0)

    def _collect(self, what: str, timeout: float) -> list:
        results, errors = [None] * self.world_size, {}
        deadline = time.monotonic() + timeout
        pending = set(range(self.world_size))
        while pending:
            try:
                rank, status, value = self._out.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.broken = True
                dead = {r: p.exitcode for r, p in enumerate(self._procs) if not p.is_alive()}
                raise RankError(
                    f"ranks {sorted(pending)} gave no answer ({what}) within "
                    f"{timeout:g} s; exited: {dead}; errors: {errors}"
                ) from None
            pending.discard(rank)
            if status == "err":
                errors[rank] = value
            else:
                results[rank] = value
        if errors:
            self.broken = True
            raise RankError(
                "\n".join(f"--- rank {r} ---\n{tb}" for r, tb in sorted(errors.items()))
            )
        return results

    def run(self, fn, *args, timeout: float = 60.0) -> list:
        """Run ``fn(*args)`` on every rank; return the per-rank results."""
        for q in self._in:
            q.put((fn, args))
        return self._collect(getattr(fn, "__name__", "fn"), timeout)

    def close(self) -> None:
        for q in self._in:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        for p in self._procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)


# ---- one-shot scenarios -------------------------------------------------------------------------
def _oneshot_main(rank, env, fn, args, outq):
    os.environ.update(env)
    t0 = time.monotonic()
    try:
        value = fn(rank, *args)
        outq.put((rank, "ok", value, time.monotonic() - t0))
    except BaseException as e:
        outq.put(
            (rank, "err", (type(e).__name__, str(e), traceback.format_exc()), time.monotonic() - t0)
        )


class Outcome:
    """What one rank of ``run_ranks`` did: ``ok``/``value`` or ``error`` (type name, message),
    and how long it took."""

    def __init__(self, status, value, seconds) -> None:
        self.ok = status == "ok"
        self.value = value if self.ok else None
        self.error = None if self.ok else value[:2]
        self.traceback = None if self.ok else value[2]
        self.seconds = seconds

    def __repr__(self) -> str:
        what = f"value={self.value!r}" if self.ok else f"error={self.error!r}"
        return f"Outcome({what}, {self.seconds:.2f}s)"


def run_ranks(fn, world_size: int, *args, env=None, timeout: float = 60.0, ranks=None) -> dict:
    """Run ``fn(rank, *args)`` in fresh processes (the function does its own
    ``init_process_group``); returns {rank: Outcome} (``None`` for a rank that never
    answered, e.g. one that exited on purpose)."""
    port = free_port()
    outq = _CTX.Queue()
    procs = {}
    for r in range(world_size) if ranks is None else ranks:
        extra = env(r) if callable(env) else env
        p = _CTX.Process(
            target=_oneshot_main,
            daemon=True,
            args=(r, _env(r, world_size, port, extra), fn, args, outq),
        )
        p.start()
        procs[r] = p
    results = dict.fromkeys(procs)
    deadline = time.monotonic() + timeout
    while any(v is None for v in results.values()):
        alive = [r for r, p in procs.items() if p.is_alive() and results[r] is None]
        try:
            rank, status, value, secs = outq.get(timeout=0.2)
            results[rank] = Outcome(status, value, secs)
            continue
        except queue.Empty:
            pass
        if not alive and outq.empty():
            break
        if time.monotonic() > deadline:
            break
    for p in procs.values():
        p.join(2)
        if p.is_alive():
            p.kill()
            p.join(2)
    return results
