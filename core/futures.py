"""``ember.futures``: PyTorch's ``torch.futures`` (``Future``, ``collect_all``, ``wait_all``).

One ``Future`` class serves the whole project: ``Work.get_future()`` and the DDP communication
hooks (``ember.distributed``) and ``rpc_async`` (``ember.distributed.rpc``) all hand these out.
It is a thin layer over ``concurrent.futures.Future`` with torch's semantics:

* ``wait()`` and ``value()`` return the result or raise the stored exception;
* callbacks (``then``, ``add_done_callback``) receive the future itself and run in the thread
  that completes it, or at once when it is already complete;
* ``then(cb)`` returns a new future holding ``cb(self)``'s result, or a ``RuntimeError``
  naming the error ``cb`` raised.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future as _CFuture
from concurrent.futures import TimeoutError as _CFTimeout
from typing import Any, Generic, TypeVar

T = TypeVar("T")
S = TypeVar("S")

__all__ = ["Future", "collect_all", "wait_all"]


class Future(Generic[T]):
    """The result of an asynchronous computation (``torch.futures.Future``).

    Args:
        devices: accepted for PyTorch compatibility (CUDA stream bookkeeping); ignored.

    Example::

        >>> fut = ember.futures.Future()
        >>> chained = fut.then(lambda f: f.value() + 1)
        >>> fut.set_result(1)
        >>> chained.wait()
        2
    """

    def __init__(self, inner: _CFuture | None = None, *, devices=None) -> None:
        self._f = inner if inner is not None else _CFuture()

    def done(self) -> bool:
        """Whether a result or an exception has been set."""
        return self._f.done()

    def wait(self, timeout: float | None = None) -> T:
        """Block until complete; return the result or raise the stored exception.

        ``timeout`` (seconds, ember's addition) raises ``TimeoutError`` when it passes first.
        """
        try:
            return self._f.result(timeout)
        except _CFTimeout:
            raise TimeoutError(f"Future.wait timed out after {timeout} s") from None

    def value(self) -> T:
        """The result (blocks until complete, as ``wait``); raises the stored exception."""
        return self._f.result()

    def exception(self) -> BaseException | None:
        """The stored exception of a completed future, else ``None`` (does not block)."""
        return self._f.exception() if self._f.done() else None

    def set_result(self, result: T) -> None:
        """Complete the future with ``result``; a future completes once only."""
        try:
            self._f.set_result(result)
        except Exception as e:  # InvalidStateError
            raise RuntimeError(f"Future can only be marked completed once: {e}") from None

    def set_exception(self, result: BaseException) -> None:
        """Complete the future with an error that ``wait()``/``value()`` raise."""
        if not isinstance(result, BaseException):
            raise TypeError(
                f"Future.set_exception expects an exception, got {type(result).__name__}"
            )
        try:
            self._f.set_exception(result)
        except Exception as e:
            raise RuntimeError(f"Future can only be marked completed once: {e}") from None

    def add_done_callback(self, callback: Callable[[Future[T]], None]) -> None:
        """Run ``callback(self)`` once complete (at once if already complete)."""
        self._f.add_done_callback(lambda _f: callback(self))

    def then(self, callback: Callable[[Future[T]], S]) -> Future[S]:
        """A future for ``callback(self)``, run once this one completes.

        An error raised by ``callback`` completes the returned future with a ``RuntimeError``
        naming it (PyTorch's wording; the original is its ``__cause__``).
        """
        out: Future[S] = Future()

        def chain(_):
            try:
                out.set_result(callback(self))
            except BaseException as e:
                err = RuntimeError(
                    f"Got the following error when running the callback: {type(e).__name__}: {e}"
                )
                err.__cause__ = e
                out.set_exception(err)

        self._f.add_done_callback(chain)
        return out

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"<ember.futures.Future {state}>"


def collect_all(futures: list[Future]) -> Future[list[Future]]:
    """A future that completes, with the list of ``futures`` itself, once all of them have
    (failed ones included: inspect each with ``wait()``)."""
    futures = list(futures)
    for f in futures:
        if not isinstance(f, Future):
            raise TypeError(f"collect_all expects ember.futures.Future, got {type(f).__name__}")
    out: Future[list[Future]] = Future()
    if not futures:
        out.set_result([])
        return out
    import threading

    lock = threading.Lock()
    left = [len(futures)]

    def one_done(_):
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            out.set_result(futures)

    for f in futures:
        f.add_done_callback(one_done)
    return out


def wait_all(futures: list[Future]) -> list[Any]:
    """Wait for every future and return their results in order; raises the first error met."""
    return [f.wait() for f in collect_all(futures).wait()]
