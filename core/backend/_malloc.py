"""Keep freed memory for reuse instead of handing it back to the OS after every step (glibc).

A training step allocates and frees the same large temporaries every time (activations,
gradients, optimizer scratch). glibc serves arrays above a dynamic threshold with fresh ``mmap``
pages and trims freed heap memory back to the OS, so every step pays page faults on memory it
used a moment ago: ~750 minor faults per mlp step (DESIGN.md §7). They cost 0.1 ms a step alone
and ~0.7 ms a step with two ranks on two cores (6.3 -> 5.6 ms under DDP: zeroing fresh pages
competes for the memory bus the other rank uses). Fixing the thresholds keeps up to
``MMAP_THRESHOLD`` per array on the heap and up to ``TRIM_THRESHOLD`` of free heap for reuse:
the process holds on to its high-water mark, as GPU caching allocators do.

glibc caps ``MMAP_THRESHOLD`` at 32 MiB, so arrays above it still came from fresh ``mmap``
pages each step (64x8x128x128 float32 softmax, 32 MiB and a half an array: ~1,000 to 8,000
faults a step, forward + backward 8.2 -> 11.6-15 ms at 1 thread, 5.6 -> 8.4 at 2; session 24,
docs/kernels.md). ``M_MMAP_MAX = 0`` serves those from the heap too; glibc still maps memory
where the heap cannot grow (another thread's arena, a failed ``brk``).

Applied once at ``import ember`` on Linux with glibc; ``EMBER_MALLOC_TUNING=0`` leaves malloc
alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 256 << 20
MMAP_MAX = 0  # mmap'd chunks at a time: none (above)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4  # mallopt parameters (malloc.h)

applied = False


def tune() -> bool:
    """Set glibc's mmap and trim thresholds (see the module docstring); True if applied."""
    global applied
    if applied or os.environ.get("EMBER_MALLOC_TUNING", "1") == "0":
        return applied
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):
            return False  # not glibc: musl and others have no such thresholds
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        and mallopt(_M_MMAP_MAX, MMAP_MAX)
    )
    return applied
