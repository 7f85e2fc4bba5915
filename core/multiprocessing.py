"""``ember.multiprocessing``: Python's multiprocessing with PyTorch's additions: ``spawn`` /
``start_processes`` (run ``fn(i, *args)`` in ``nprocs`` processes, re-raising a child's error
in the parent) and the sharing-strategy switches.

Tensors cross process boundaries by pickling (their data is copied); a tensor moved to shared
memory with ``share_memory_()`` before a fork is shared with the child.
"""

from __future__ import annotations

import multiprocessing as _mp
import multiprocessing.connection as _connection
import signal as _signal
import sys as _sys
import traceback as _traceback
from multiprocessing import *  # noqa: F403  (PyTorch re-exports all of multiprocessing)

__all__ = [
    "set_sharing_strategy",
    "get_sharing_strategy",
    "get_all_sharing_strategies",
    "spawn",
    "start_processes",
    "ProcessContext",
    "SpawnContext",
    "ProcessRaisedException",
    "ProcessExitedException",
] + list(_mp.__all__)

_strategies = {"file_descriptor", "file_system"} if _sys.platform != "darwin" else {"file_system"}
_strategy = "file_descriptor" if _sys.platform != "darwin" else "file_system"


def set_sharing_strategy(new_strategy: str) -> None:
    """Record how shared tensors cross processes (ember copies through pickles either way)."""
    global _strategy
    if new_strategy not in _strategies:
        raise AssertionError(f"invalid sharing strategy {new_strategy!r}")
    _strategy = new_strategy


def get_sharing_strategy() -> str:
    return _strategy


def get_all_sharing_strategies() -> set[str]:
    return set(_strategies)


class ProcessException(Exception):
    __slots__ = ["error_index", "error_pid"]

    def __init__(self, msg: str, error_index: int, pid: int):
        super().__init__(msg)
        self.msg = msg
        self.error_index = error_index
        self.pid = pid

    def __reduce__(self):
        return type(self), (self.msg, self.error_index, self.pid)


class ProcessRaisedException(ProcessException):
    """A spawned process raised: the message holds its traceback."""


class ProcessExitedException(ProcessException):
    """A spawned process exited with a non-zero code (or was killed by a signal)."""

    __slots__ = ["exit_code"]

    def __init__(
        self,
        msg: str,
        error_index: int,
        error_pid: int,
        exit_code: int,
        signal_name: str | None = None,
    ):
        super().__init__(msg, error_index, error_pid)
        self.exit_code = exit_code
        self.signal_name = signal_name

    def __reduce__(self):
        return type(self), (self.msg, self.error_index, self.pid, self.exit_code, self.signal_name)


def _wrap(fn, i, args, error_queue):
    try:
        fn(i, *args)
    except KeyboardInterrupt:
        pass
    except Exception:
        error_queue.put(_traceback.format_exc())
        _sys.exit(1)


class ProcessContext:
    """The processes of one ``start_processes`` call; ``join()`` waits and re-raises."""

    def __init__(self, processes, error_queues):
        self.processes = processes
        self.error_queues = error_queues
        self.sentinels = {p.sentinel: i for i, p in enumerate(processes)}

    def pids(self) -> list[int]:
        return [int(p.pid) for p in self.processes]

    def join(self, timeout: float | None = None, grace_period: float | None = None) -> bool:
        """Wait for the processes; True once all exited cleanly. On the first failure the
        others are terminated and the failure is raised in this process."""
        if not self.sentinels:
            return True
        ready = _connection.wait(self.sentinels.keys(), timeout=timeout)
        error_index = None
        for sentinel in ready:
            index = self.sentinels.pop(sentinel)
            p = self.processes[index]
            p.join()
            if p.exitcode != 0:
                error_index = index
                break
        if error_index is None:
            return len(self.sentinels) == 0
        for p in self.processes:
            if p.is_alive():
                p.terminate()
            p.join(grace_period)
        failed = self.processes[error_index]
        q = self.error_queues[error_index]
        if q.empty():
            code = failed.exitcode
            if code is not None and code < 0:
                name = _signal.Signals(-code).name
                raise ProcessExitedException(
                    f"process {error_index} terminated with signal {name}",
                    error_index,
                    failed.pid,
                    code,
                    name,
                )
            raise ProcessExitedException(
                f"process {error_index} terminated with exit code {code}",
                error_index,
                failed.pid,
                code,
            )
        tb = q.get()
        msg = f"\n\n-- Process {error_index} terminated with the following error:\n{tb}"
        raise ProcessRaisedException(msg, error_index, failed.pid)


SpawnContext = ProcessContext


def start_processes(
    fn,
    args=(),
    nprocs: int = 1,
    join: bool = True,
    daemon: bool = False,
    start_method: str = "spawn",
):
    """Run ``fn(i, *args)`` for ``i`` in ``range(nprocs)``, each in its own process."""
    ctx = _mp.get_context(start_method)
    error_queues, processes = [], []
    for i in range(nprocs):
        q = ctx.SimpleQueue()
        p = ctx.Process(target=_wrap, args=(fn, i, args, q), daemon=daemon)
        p.start()
        error_queues.append(q)
        processes.append(p)
    context = ProcessContext(processes, error_queues)
    if not join:
        return context
    while not context.join():
        pass
    return None


def spawn(
    fn,
    args=(),
    nprocs: int = 1,
    join: bool = True,
    daemon: bool = False,
    start_method: str = "spawn",
):
    """``start_processes`` with PyTorch's ``spawn`` contract: returns None when ``join`` is
    true (after every process exited cleanly), else the ``ProcessContext``."""
    return start_processes(fn, args, nprocs, join, daemon, start_method)
