"""``ember.backends.miopen``: AMD's MIOpen (ROCm); ember runs on CUDA only."""

from __future__ import annotations

__all__ = ["immediate", "is_available"]

immediate = False


def is_available() -> bool:
    return False
