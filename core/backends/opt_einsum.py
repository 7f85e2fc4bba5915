"""``ember.backends.opt_einsum``: contraction-order optimisation for ``einsum``.

``enabled`` and ``strategy`` ("auto", "greedy", "optimal") are recorded; NumPy's einsum plans
its own contraction order (``optimize=``), so no extra package is needed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys

__all__ = ["is_available", "get_opt_einsum", "flags", "set_flags", "enabled", "strategy"]


def is_available() -> bool:
    """True when the ``opt_einsum`` package is installed."""
    return importlib.util.find_spec("opt_einsum") is not None


def get_opt_einsum():
    """The ``opt_einsum`` module, or None."""
    if not is_available():
        return None
    import opt_einsum

    return opt_einsum


enabled = is_available()
strategy = "auto" if enabled else None


def set_flags(_enabled=None, _strategy=None):
    mod = sys.modules[__name__]
    old = (mod.enabled, mod.strategy)
    if _enabled is not None:
        if _enabled and not is_available():
            raise ValueError("opt_einsum is not available, so setting `enabled` will not work.")
        mod.enabled = _enabled
    if _strategy is not None:
        if _strategy not in ("auto", "greedy", "optimal"):
            raise ValueError(f"`strategy` must be one of auto, greedy, optimal, got {_strategy}")
        mod.strategy = _strategy
    return old


@contextlib.contextmanager
def flags(enabled=None, strategy=None):
    old = set_flags(enabled, strategy)
    try:
        yield
    finally:
        mod = sys.modules[__name__]
        mod.enabled, mod.strategy = old
