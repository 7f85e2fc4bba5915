"""``ember.backends.mha``: the fused fast path of ``nn.MultiheadAttention`` inference."""

from __future__ import annotations

__all__ = ["get_fastpath_enabled", "set_fastpath_enabled"]

_fastpath = True


def get_fastpath_enabled() -> bool:
    """Whether the fast path may be used (recorded; ember runs one attention path)."""
    return _fastpath


def set_fastpath_enabled(value: bool) -> None:
    global _fastpath
    _fastpath = bool(value)
