"""``torch._guards``: the compiler's tracing context, as far as libraries query it.

ember traces with real arrays and has no fake-tensor mode (``core/_subclasses``), so there is
never an active fake mode: libraries (tensordict's ``load_memmap``) ask before choosing between
real and fake storage.
"""

from __future__ import annotations

from typing import Any

__all__ = ["active_fake_mode", "detect_fake_mode"]


def active_fake_mode() -> None:
    r"""The fake-tensor mode in force, or ``None`` (always ``None`` in ember)."""
    return None


def detect_fake_mode(inputs: Any = None) -> None:
    r"""The fake mode of ``inputs`` or of the tracing context, or ``None`` (always, in
    ember: no input is a fake tensor)."""
    return None
