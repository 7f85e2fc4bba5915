"""``ember.backends.mkldnn``: oneDNN switches; ember has no oneDNN kernels (recorded only)."""

from __future__ import annotations

import contextlib
import sys

__all__ = [
    "is_available",
    "flags",
    "set_flags",
    "enabled",
    "deterministic",
    "allow_tf32",
    "fp32_precision",
    "verbose",
    "VERBOSE_OFF",
    "VERBOSE_ON",
    "VERBOSE_ON_CREATION",
]

enabled = True
deterministic = False
allow_tf32 = True
fp32_precision = "none"
VERBOSE_OFF, VERBOSE_ON, VERBOSE_ON_CREATION = 0, 1, 2


def is_available() -> bool:
    return False


def set_flags(_enabled=None, _deterministic=None, _allow_tf32=None, _fp32_precision="none"):
    mod = sys.modules[__name__]
    old = (mod.enabled, mod.deterministic, mod.allow_tf32, mod.fp32_precision)
    for name, value in (
        ("enabled", _enabled),
        ("deterministic", _deterministic),
        ("allow_tf32", _allow_tf32),
        ("fp32_precision", _fp32_precision),
    ):
        if value is not None:
            setattr(mod, name, value)
    return old


@contextlib.contextmanager
def flags(enabled=False, deterministic=False, allow_tf32=True, fp32_precision="none"):
    old = set_flags(enabled, deterministic, allow_tf32, fp32_precision)
    try:
        yield
    finally:
        set_flags(*old)


class verbose:
    """``with ember.backends.mkldnn.verbose(level):`` - a no-op in ember."""

    def __init__(self, level: int):
        self.level = level

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
