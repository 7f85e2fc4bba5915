"""``@record`` for a script's entry point, as ``torch.distributed.elastic.multiprocessing.errors``.

A worker that dies of an exception should leave its traceback where the launcher can find it:
``@record`` writes the exception to the file named by ``TORCHELASTIC_ERROR_FILE`` (set by
torchrun, which then names that rank's error as the root cause) in PyTorch's JSON layout, then
re-raises it. Without that variable it only re-raises. ``SystemExit(0)`` is a clean exit.
"""

from __future__ import annotations

import faulthandler
import functools
import json
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["ChildFailedError", "ErrorHandler", "ProcessFailure", "get_error_handler", "record"]

_R = TypeVar("_R")


class ErrorHandler:
    """Writes a worker's exception to ``TORCHELASTIC_ERROR_FILE``."""

    def _get_error_file_path(self) -> str | None:
        return os.environ.get("TORCHELASTIC_ERROR_FILE")

    def initialize(self) -> None:
        """Dump every thread's Python stack on a fatal signal (SIGSEGV, SIGABRT, ...)."""
        try:
            faulthandler.enable(all_threads=True)
        except Exception:  # noqa: BLE001 - no usable stderr (a detached process): nothing to do
            pass

    def record_exception(self, e: BaseException) -> None:
        """Write ``e`` (type, message, traceback, time) to the error file, if one is named.

        The write is atomic (a temp file renamed into place): a launcher reading the file never
        sees half of it."""
        path = self._get_error_file_path()
        if not path:
            return
        data = {
            "message": {
                "message": f"{type(e).__name__}: {e}",
                "extraInfo": {
                    "py_callstack": "".join(traceback.format_exception(e)),
                    "timestamp": str(int(time.time())),
                },
            }
        }
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".error.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise


def get_error_handler() -> ErrorHandler:
    """The default :class:`ErrorHandler`."""
    return ErrorHandler()


@dataclass
class ProcessFailure:
    """One failed worker: its local rank, pid, exit code and error file (if it wrote one)."""

    local_rank: int
    pid: int
    exitcode: int
    error_file: str = "<N/A>"


class ChildFailedError(Exception):
    """Workers of ``name`` failed; ``failures`` maps each global rank to its
    :class:`ProcessFailure`."""

    def __init__(self, name: str, failures: dict[int, ProcessFailure]):
        self.name, self.failures = name, failures
        ranks = ", ".join(str(r) for r in sorted(failures))
        super().__init__(f"{name} failed on rank(s) {ranks}")

    def get_first_failure(self) -> tuple[int, ProcessFailure]:
        """The lowest failed rank and its failure."""
        rank = min(self.failures)
        return rank, self.failures[rank]


def record(
    fn: Callable[..., _R], error_handler: ErrorHandler | None = None
) -> Callable[..., _R | None]:
    """Decorate a script's ``main`` so that an exception escaping it is written to the error
    file before it propagates (see the module docstring).

    Args:
        fn: the entry point.
        error_handler (ErrorHandler, optional): Default: :func:`get_error_handler`'s.

    Example::

        from ember.distributed.elastic.multiprocessing.errors import record

        @record
        def main():
            ...

        if __name__ == "__main__":
            main()
    """
    handler = error_handler or get_error_handler()

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        handler.initialize()
        try:
            return fn(*args, **kwargs)
        except SystemExit as exit_:
            if exit_.code in (0, None):
                return None
            raise
        except Exception as e:
            handler.record_exception(e)
            raise

    return wrapper
