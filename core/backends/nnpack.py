"""``ember.backends.nnpack``: NNPACK is not part of ember."""

from __future__ import annotations

import contextlib

__all__ = ["is_available", "flags", "set_flags"]

_enabled = False


def is_available() -> bool:
    return False


def set_flags(_enabled_value):
    global _enabled
    old = (_enabled,)
    _enabled = bool(_enabled_value)
    return old


@contextlib.contextmanager
def flags(enabled=False):
    old = set_flags(enabled)
    try:
        yield
    finally:
        set_flags(*old)
