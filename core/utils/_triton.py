"""``ember.utils._triton`` (torch.utils._triton): whether Triton kernels can run.

ember runs on NumPy/CuPy and ships no Triton kernels, so both answers are ``False``;
libraries such as torchao import ``has_triton`` at module level to pick their fallbacks.
"""

from __future__ import annotations

__all__ = ["has_triton", "has_triton_package"]


def has_triton_package() -> bool:
    """Whether the ``triton`` package backs ember's kernels (never)."""
    return False


def has_triton() -> bool:
    """Whether Triton kernels can run on this process's devices (never, in ember)."""
    return False
