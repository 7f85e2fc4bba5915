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


#: Whether ``einsum`` should plan its contraction order with opt_einsum; ``True`` by default
#: when the package is installed. Recorded only: ember's ``einsum`` lets NumPy choose the order.
enabled = is_available()
#: The opt_einsum planning strategy: ``"auto"``, ``"greedy"`` or ``"optimal"`` (``"auto"`` by
#: default), or ``None`` when opt_einsum is not installed. Recorded only.
strategy = "auto" if enabled else None


def set_flags(_enabled=None, _strategy=None):
    """Set ``enabled`` and ``strategy`` and return their previous values.

    An argument left as ``None`` keeps its flag unchanged.

    Args:
        _enabled: new value of ``enabled``.
        _strategy: new value of ``strategy``: ``"auto"``, ``"greedy"`` or ``"optimal"``.

    Returns:
        tuple: the previous ``(enabled, strategy)``.

    Raises:
        ValueError: if ``_enabled`` is true but opt_einsum is not installed, or ``_strategy``
            is not one of the three names.
    """
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
    """Context manager: set ``enabled`` and ``strategy`` inside a ``with`` block, restoring
    both after. An argument left as ``None`` keeps its flag unchanged.

    Args:
        enabled: value of ``enabled`` inside the block.
        strategy: value of ``strategy`` inside the block (``"auto"``, ``"greedy"`` or
            ``"optimal"``).

    Raises:
        ValueError: as :func:`ember.backends.opt_einsum.set_flags`.
    """
    old = set_flags(enabled, strategy)
    try:
        yield
    finally:
        mod = sys.modules[__name__]
        mod.enabled, mod.strategy = old
