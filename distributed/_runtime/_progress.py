"""This process's progress: when a collective last started or the Trainer's ``report()`` last
ran. The Trainer's hang watch (``train/_internal/hang_watch.py``) reads it; a rank without
progress for ``FailureConfig.worker_hang_timeout_s`` is hung. One clock read and two stores
under the GIL: nothing measurable on the collectives' path."""

from __future__ import annotations

import time

count = 0
last = time.monotonic()  # this process's clock


def stamp() -> None:
    global count, last
    count += 1
    last = time.monotonic()


def idle() -> float:
    """Seconds since the last progress."""
    return time.monotonic() - last
