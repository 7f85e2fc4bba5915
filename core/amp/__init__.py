"""``ember.amp``: automatic mixed precision — ``autocast`` regions and ``GradScaler``.

See docs/amp.md. The cast policy per op is in ``_policy.py``; the hook the listed ops carry is
``_state.autocast_op``.
"""

from __future__ import annotations

import sys

from . import cpu_amp
from .autocast_mode import autocast, custom_bwd, custom_fwd, is_autocast_available
from .grad_scaler import GradScaler

__all__ = ["autocast", "custom_bwd", "custom_fwd", "is_autocast_available", "GradScaler"]

# ember.cpu is a module, not a package: this makes ``from ember.cpu.amp import autocast`` work.
sys.modules.setdefault("ember.cpu.amp", cpu_amp)
