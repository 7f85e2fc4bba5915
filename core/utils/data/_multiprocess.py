"""The DataLoader's worker processes: a pool of workers and the iterator that drives it.

Every worker has its own task pipe (main -> worker: which batch to load) and result pipe
(worker -> main). Batch ``i`` of an epoch goes to the workers round-robin; results may arrive
out of order and are held until their turn, so batches come out in sampler order (with
``in_order=False`` each is served as it arrives, and a worker already holding its share of the
prefetch is passed over). The main process waits on the result pipes and on the workers'
process sentinels together, so a worker that dies is noticed at once instead of hanging the
loop.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import secrets
import signal
import time
import weakref
from collections import deque
from multiprocessing.connection import wait

from . import _transport, _worker
from .dataloader import DataLoader, _BaseDataLoaderIter, _EpochPlan, _foreign_plan, _is_iterable

_SHUTDOWN_GRACE_S = 2.0  # how long exiting workers get before they are terminated


def _get_context(ctx):
    if ctx is None:
        return multiprocessing.get_context()
    if isinstance(ctx, str):
        methods = multiprocessing.get_all_start_methods()
        if ctx not in methods:
            raise ValueError(
                "multiprocessing_context option should specify a valid start method "
                f"in {methods!r}, but got multiprocessing_context={ctx!r}"
            )
        return multiprocessing.get_context(ctx)
    if not hasattr(ctx, "Process"):
        raise TypeError(
            "multiprocessing_context option should be a valid context object or a "
            f"string specifying the start method, but got {ctx!r}"
        )
    return ctx


class _WorkerPool:
    """``num_workers`` started worker processes and their pipes; shut down when collected."""

    def __init__(self, loader: DataLoader, base_seed: int) -> None:
        ctx = _get_context(loader.multiprocessing_context)
        n = loader.num_workers
        self.prefix = f"ember-dl-{os.getpid()}-{secrets.token_hex(4)}"
        self.procs: list = []
        self.task_conns: list = []
        self.result_conns: list = []
        self._finalizer = weakref.finalize(
            self, _shutdown, self.procs, self.task_conns, self.result_conns, self.prefix
        )
        try:
            for wid in range(n):
                task_r, task_w = ctx.Pipe(duplex=False)
                result_r, result_w = ctx.Pipe(duplex=False)
                proc = ctx.Process(
                    target=_worker.worker_loop,
                    args=(
                        _is_iterable(loader),
                        loader.dataset,
                        task_r,
                        result_w,
                        loader._auto_collation,
                        loader.collate_fn,
                        loader.drop_last,
                        base_seed,
                        loader.worker_init_fn,
                        wid,
                        n,
                        f"{self.prefix}-w{wid}",
                        os.getpid(),
                    ),
                    daemon=True,
                )
                proc.start()
                task_r.close()  # the worker's ends: closing ours lets EOF reach the other side
                result_w.close()
                self.procs.append(proc)
                self.task_conns.append(task_w)
                self.result_conns.append(result_r)
        except BaseException:
            self.shutdown()
            raise

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def shutdown(self) -> None:
        self._finalizer()

    def dead_workers_error(self) -> RuntimeError:
        parts, pids = [], []
        for wid, p in enumerate(self.procs):
            code = p.exitcode
            if code is None:
                continue
            pids.append(str(p.pid))
            if code < 0:
                try:
                    how = f"was killed by signal: {signal.Signals(-code).name}"
                except ValueError:
                    how = f"was killed by signal {-code}"
            else:
                how = f"exited with code {code}"
            parts.append(f"worker {wid} (pid {p.pid}) {how}")
        return RuntimeError(
            f"DataLoader worker (pid(s) {', '.join(pids)}) exited unexpectedly: " + "; ".join(parts)
        )


def _shutdown(procs, task_conns, result_conns, prefix) -> None:
    """Ask every worker to exit, drain what they still send, terminate the stragglers."""
    for conn in task_conns:
        try:
            conn.send(None)
        except OSError:
            pass
    pending = {p.sentinel: p for p in procs if p.exitcode is None}
    conns = [c for c in result_conns if not c.closed]
    deadline = time.monotonic() + _SHUTDOWN_GRACE_S
    while pending and time.monotonic() < deadline:
        # A worker blocked writing a result into a full pipe cannot exit: keep reading.
        for r in wait(list(pending) + conns, timeout=max(0.0, deadline - time.monotonic())):
            if r in pending:
                pending.pop(r).join()
            else:
                try:
                    r.recv_bytes()
                except (EOFError, OSError):
                    conns.remove(r)
    for p in pending.values():
        p.terminate()
    for p in procs:
        p.join(timeout=1.0)
    for conn in task_conns + result_conns:
        conn.close()
    _transport.remove_leftovers(prefix)


class MultiProcessingDataLoaderIter(_BaseDataLoaderIter):
    def __init__(self, loader: DataLoader, plan: _EpochPlan | None = None) -> None:
        if plan is None:  # torch's one-argument form (see dataloader._foreign_plan)
            plan = _foreign_plan(loader)
        super().__init__(loader, plan)
        self._loader_ref = weakref.ref(loader)
        self._num_workers = loader.num_workers
        self._prefetch = max(1, loader.prefetch_factor) * loader.num_workers
        self._persistent = loader.persistent_workers
        self._in_order = loader.in_order
        self._gen = 0  # epoch tag of tasks: results of an abandoned epoch are dropped
        self._pool = _WorkerPool(loader, plan.base_seed)
        self._begin(plan)

    def _reset(self, plan: _EpochPlan) -> None:
        """Next epoch on the same (persistent) workers."""
        self._start(plan)
        self._gen += 1
        if self._pool.closed:  # an earlier epoch failed and shut the pool down
            self._pool = _WorkerPool(self._loader_ref(), plan.base_seed)
        else:
            for conn in self._pool.task_conns:
                self._send(conn, _worker.ResumeIteration(plan.base_seed))
        self._begin(plan)

    def _begin(self, plan: _EpochPlan) -> None:
        self._task_info: dict[int, tuple] = {}
        self._inbox: deque = deque()
        self._active = [True] * self._num_workers
        self._cycle = itertools.cycle(range(self._num_workers))
        self._outstanding = [0] * self._num_workers  # tasks sent to each worker, not yet back
        self._send_idx = self._rcvd_idx = 0 if self._iterable else self._skip_indices(plan.skip)
        for _ in range(self._prefetch):
            self._try_put_index()
        if self._iterable:
            for _ in range(plan.skip):  # no indices to skip: replay and discard
                try:
                    self._next_data()
                except StopIteration:
                    self._finished = True
                    break
                self._served += 1

    def _send(self, conn, msg) -> None:
        try:
            conn.send(msg)
        except OSError:
            self._fail(self._pool.dead_workers_error())

    def _pick_worker(self) -> int | None:
        """The next live worker round-robin; out of order, one holding its share of the
        prefetch is passed over, so a slow worker is not handed more work than it can do."""
        live = sum(self._active)
        cap = max(1, self._prefetch // live) if live and not self._in_order else None
        for _ in range(self._num_workers):
            wid = next(self._cycle)
            if self._active[wid] and (cap is None or self._outstanding[wid] < cap):
                return wid
        return None  # every worker's IterableDataset copy is exhausted (or all are busy)

    def _try_put_index(self) -> None:
        wid = self._pick_worker()
        if wid is None:
            return
        try:
            index = self._next_index()
        except StopIteration:
            return
        self._send(self._pool.task_conns[wid], (self._gen, self._send_idx, index))
        self._task_info[self._send_idx] = (wid,)
        self._outstanding[wid] += 1
        self._send_idx += 1

    def _next_data(self):
        while True:
            # Skip tasks of workers whose IterableDataset ended: they will never have data.
            # (With in_order=False a task served early has no entry left.)
            while self._rcvd_idx < self._send_idx:
                info = self._task_info.get(self._rcvd_idx)
                if info is not None and (len(info) == 2 or self._active[info[0]]):
                    break
                self._task_info.pop(self._rcvd_idx, None)
                self._rcvd_idx += 1
            else:
                self._end_epoch()
                raise StopIteration
            info = self._task_info[self._rcvd_idx]
            if len(info) == 2:
                del self._task_info[self._rcvd_idx]
                return self._process(info[1])
            idx, data = self._get_data()
            self._outstanding[self._task_info[idx][0]] -= 1
            if isinstance(data, _worker.IterableDatasetStopIteration):
                self._active[data.worker_id] = False
                self._try_put_index()
                continue
            if idx != self._rcvd_idx and self._in_order:
                self._task_info[idx] += (data,)  # early: hold it until its turn
            else:
                del self._task_info[idx]
                return self._process(data, in_turn=idx == self._rcvd_idx)

    def _process(self, data, in_turn: bool = True):
        if in_turn:
            self._rcvd_idx += 1
        self._try_put_index()
        if isinstance(data, _worker.ExceptionWrapper):
            data.reraise()
        return data

    def _get_data(self):
        while True:
            if not self._inbox:
                self._fill_inbox()
            gen, idx, data = self._inbox.popleft()
            if gen == self._gen:
                return idx, data

    def _fill_inbox(self) -> None:
        pool = self._pool
        sentinels = {p.sentinel for p in pool.procs}
        while not self._inbox:
            ready = wait(pool.result_conns + list(sentinels), timeout=self._timeout or None)
            if not ready:
                self._fail(RuntimeError(f"DataLoader timed out after {self._timeout} seconds"))
            for r in ready:
                if r in sentinels:
                    continue
                try:
                    self._inbox.append(_transport.recv(r))
                except EOFError:
                    pass  # its worker is gone; the sentinel says so below
            if not self._inbox and any(p.exitcode is not None for p in pool.procs):
                self._fail(pool.dead_workers_error())

    def _fail(self, error: Exception):
        self._finished = True
        self._pool.shutdown()
        raise error

    def _end_epoch(self) -> None:
        self._finished = True
        if not self._persistent:
            self._pool.shutdown()

    def _shutdown_workers(self) -> None:
        self._pool.shutdown()
