"""SIGTERM stops an ``ember launch`` job like Ctrl-C: every worker stopped, the Ray started for
the job shut down, exit code 143 (128 + 15) and no traceback or crash dump."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading


class _Terminated(BaseException):
    """SIGTERM arrived: the job is stopped like on Ctrl-C and exits with 143 (128 + 15)."""


# "ready": Ray is up, so a SIGTERM may interrupt at once; before that it is only noted, so
# that a half-started Ray is not left behind. "pending": one arrived.
_TERM = {"ready": False, "pending": False, "seen": False}


def _on_sigterm(signum, frame) -> None:
    if _TERM["seen"]:
        return  # the first one is already stopping the job: let the clean-up finish
    _TERM["pending"] = True
    if _TERM["ready"]:
        _TERM["seen"] = True
        raise _Terminated


@contextlib.contextmanager
def _sigterm_stops_job():
    """SIGTERM (from an orchestrator, ``kill``, a job scheduler) stops every worker and shuts
    down the Ray started for the job, then exits with 143 and no traceback or crash dump."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    _TERM.update(ready=False, pending=False, seen=False)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    except BaseException:
        # Raised inside a Ray call, _Terminated reaches here wrapped (a SystemError from
        # Ray's signal check): once SIGTERM arrived, whatever ends the job is its doing.
        if not _TERM["pending"]:
            raise
        print(
            "(ember launch) terminated by SIGTERM: all workers stopped", file=sys.stderr, flush=True
        )
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
