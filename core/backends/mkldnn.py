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

#: Whether oneDNN may be used. Recorded only: ember has no oneDNN kernels.
enabled = True
#: Ask oneDNN for deterministic kernels. Recorded only (determinism in ember is set by
#: ``ember.use_deterministic_algorithms``).
deterministic = False
#: Whether oneDNN may compute float32 in TensorFloat-32. Recorded only.
allow_tf32 = True
#: The float32 precision oneDNN may use (PyTorch's values: ``"none"``, ``"ieee"``,
#: ``"bf16"``, ``"tf32"``). Recorded only; ember does not check the value.
fp32_precision = "none"
#: Verbosity levels for :class:`ember.backends.mkldnn.verbose`: ``VERBOSE_OFF`` (0) prints
#: nothing, ``VERBOSE_ON`` (1) logs each kernel run, ``VERBOSE_ON_CREATION`` (2) also logs
#: kernel creation. Accepted and ignored, as ember has no oneDNN kernels.
VERBOSE_OFF, VERBOSE_ON, VERBOSE_ON_CREATION = 0, 1, 2


def is_available() -> bool:
    """Whether oneDNN (MKL-DNN) can be used: always ``False``, ember has no oneDNN kernels."""
    return False


def set_flags(_enabled=None, _deterministic=None, _allow_tf32=None, _fp32_precision="none"):
    """Set the oneDNN flags and return their previous values.

    An argument left as ``None`` keeps its flag unchanged; ``_fp32_precision`` defaults to
    ``"none"`` rather than ``None``, so it is always set.

    Args:
        _enabled: new value of ``enabled``.
        _deterministic: new value of ``deterministic``.
        _allow_tf32: new value of ``allow_tf32``.
        _fp32_precision: new value of ``fp32_precision``.

    Returns:
        tuple: the previous ``(enabled, deterministic, allow_tf32, fp32_precision)``, in the
        order this function takes them, so that passing it back restores them.
    """
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
    """Context manager: set the oneDNN flags inside a ``with`` block, restoring them after.

    Every flag takes the value given here, defaults included (so ``enabled`` is ``False``
    inside a bare ``with flags():``).

    Args:
        enabled: value of ``enabled`` inside the block.
        deterministic: value of ``deterministic`` inside the block.
        allow_tf32: value of ``allow_tf32`` inside the block.
        fp32_precision: value of ``fp32_precision`` inside the block.
    """
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
