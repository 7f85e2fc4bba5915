"""``ember._subclasses.fake_tensor`` (torch._subclasses.fake_tensor)."""

from __future__ import annotations

from typing import Any

__all__ = ["is_fake"]


def is_fake(x: Any) -> bool:
    """Return whether ``x`` is a fake tensor (never, in ember: it has no fake mode)."""
    return False
