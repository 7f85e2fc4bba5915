"""``Work`` handles for ``async_op=True``, their futures, and the per-process op executor."""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future as _CFuture
from concurrent.futures import TimeoutError as _CFTimeout

from ember.futures import Future  # noqa: F401 - the one Future class (core owns it)

from ._runtime import _progress
from .errors import DistributedError


class Work:
    """Handle of an asynchronous collective (PyTorch's ``Work``)."""

    def __init__(self, future: _CFuture, outputs: list) -> None:
        self._f = future
        self._outputs = outputs

    def wait(self, timeout=None) -> bool:
        """Block until the operation finished; re-raise its error if it failed."""
        secs = timeout.total_seconds() if hasattr(timeout, "total_seconds") else timeout
        try:
            self._f.result(secs)
        except _CFTimeout:
            raise DistributedError(f"Work.wait timed out after {secs} s") from None
        return True

    synchronize = wait

    def is_completed(self) -> bool:
        return self._f.done()

    def is_success(self) -> bool:
        return self._f.done() and self._f.exception() is None

    def exception(self):
        return self._f.exception() if self._f.done() else None

    def result(self) -> list:
        self.wait()
        return self._outputs

    def source_rank(self) -> int:
        """For ``irecv`` from any source: the rank the message came from."""
        return self._f.result()

    def get_future(self) -> Future:
        """A future completing with this work's output tensors."""
        out = Future()

        def done(f):
            if f.exception() is not None:
                out.set_exception(f.exception())
            else:
                out.set_result(self._outputs)

        self._f.add_done_callback(done)
        return out


class Executor:
    """Runs a process's collectives one at a time, in the order they were issued.

    Asynchronous operations run on one background thread; a synchronous call runs in the
    caller's thread (no hand-off latency) once everything issued before it has finished.
    """

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._queue: deque = deque()
        self._running = False  # an op is executing (on either thread)
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, fn) -> _CFuture:
        fut: _CFuture = _CFuture()
        with self._cv:
            if self._closed:
                raise DistributedError("the process group was destroyed")
            self._queue.append((fn, fut))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="ember-comm", daemon=True)
                self._thread.start()
            self._cv.notify_all()
        return fut

    def run(self, fn):
        if threading.current_thread() is self._thread:  # e.g. from a Future callback
            return fn()
        with self._cv:
            while self._queue or self._running:
                self._cv.wait()
            self._set_running(True)
        try:
            return fn()
        finally:
            with self._cv:
                self._set_running(False)
                self._cv.notify_all()

    def _set_running(self, on: bool) -> None:
        # under self._cv; the hang watch tells a rank waiting in a collective from a stuck one
        self._running = on
        _progress.running += 1 if on else -1

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue or self._running:
                    if self._closed and not self._queue:
                        return
                    self._cv.wait()
                fn, fut = self._queue.popleft()
                self._set_running(True)
            try:
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn())
                    except BaseException as e:
                        fut.set_exception(e)
            finally:
                # drop the finished op before waiting for the next: its closure holds the
                # op's buffers (DDP reuses a gradient bucket's block once nothing does)
                fn = fut = None
                with self._cv:
                    self._set_running(False)
                    self._cv.notify_all()

    def drain(self, timeout: float | None = None) -> None:
        """Wait until every submitted op has finished."""
        with self._cv:
            self._cv.wait_for(lambda: not self._queue and not self._running, timeout)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
