"""This process's progress: when a collective last started or the Trainer's ``report()`` last
ran, and whether a collective is running now. The Trainer's hang watch
(``train/_internal/hang_watch.py``) reads it; a rank without progress for
``FailureConfig.worker_hang_timeout_s`` is hung, and of several still ranks the one outside any
collective is the cause (the others wait for it). One clock read and a few stores under the
GIL: nothing measurable on the collectives' path."""

from __future__ import annotations

import time

count = 0
last = time.monotonic()  # this process's clock
running = 0  # collectives running now (a process runs its host collectives one at a time)


def stamp() -> None:
    global count, last
    count += 1
    last = time.monotonic()


def idle() -> float:
    """Seconds since the last progress."""
    return time.monotonic() - last
