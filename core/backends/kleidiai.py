"""``ember.backends.kleidiai``: Arm KleidiAI micro-kernels, not part of ember."""

from __future__ import annotations

__all__ = ["is_available"]


def is_available() -> bool:
    return False
