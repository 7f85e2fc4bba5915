"""``ember.cuda.amp``: the deprecated CUDA spellings of ``ember.amp`` (see core/amp/legacy.py)."""

from __future__ import annotations

from ..amp.legacy import CudaAutocast as autocast
from ..amp.legacy import CudaGradScaler as GradScaler
from ..amp.legacy import cuda_custom_bwd as custom_bwd
from ..amp.legacy import cuda_custom_fwd as custom_fwd

__all__ = ["autocast", "GradScaler", "custom_fwd", "custom_bwd"]
