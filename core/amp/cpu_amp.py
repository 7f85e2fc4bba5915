"""``ember.cpu.amp``: the deprecated CPU spellings of ``ember.amp`` (see legacy.py)."""

from __future__ import annotations

from .legacy import CpuAutocast as autocast
from .legacy import CpuGradScaler as GradScaler

__all__ = ["autocast", "GradScaler"]
