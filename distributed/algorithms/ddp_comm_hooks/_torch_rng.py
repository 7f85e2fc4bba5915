"""PyTorch's CPU normal sampling, reproduced on NumPy's MT19937.

PowerSGD initialises its low-rank ``Q`` matrices with ``torch.manual_seed(s)`` followed by
``torch.randn``: every replica draws the same values from the same seed, and a run that
mixes ember and torch ranks, or compares the two, needs the very same values. PyTorch's CPU
generator is a 32-bit Mersenne Twister seeded with the standard ``init_genrand`` (which is
also NumPy's legacy seeding), and ``randn`` turns its words into normals in one of two ways,
measured against torch 2.13:

* 16 or more contiguous values: first every value is a uniform in [0, 1) (24 bits of one word
  for float32, 53 bits of two words for float64), then each run of 16 becomes 16 normals by
  Box-Muller on the pairs ``(j, j + 8)``; a tail shorter than 16 redraws 16 fresh uniforms and
  overwrites the last 16 values with them.
* fewer than 16: one normal at a time from two 53-bit uniforms (Box-Muller), the second
  normal of each pair cached in the generator for the next draw.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["TorchCPUGenerator"]

_MASK24 = (1 << 24) - 1
_MASK53 = (1 << 53) - 1


class TorchCPUGenerator:
    """``torch.Generator()`` (CPU) after ``manual_seed(seed)``, for ``randn``."""

    def __init__(self, seed: int) -> None:
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"TorchCPUGenerator: seed must be a non-negative int, got {seed!r}")
        self._bits = np.random.MT19937(0)
        self._bits._legacy_seeding(int(seed) & 0xFFFFFFFF)
        self._cached_normal: float | None = None

    def _words(self, n: int) -> np.ndarray:
        return self._bits.random_raw(n).astype(np.uint64)

    def _uniform53(self, n: int) -> np.ndarray:
        w = self._words(2 * n)
        return ((w[0::2] << np.uint64(32)) | w[1::2]) & np.uint64(_MASK53)

    def _uniforms(self, n: int, dtype) -> np.ndarray:
        if dtype == np.float64:
            return self._uniform53(n).astype(np.float64) * 2.0**-53
        return (self._words(n) & np.uint64(_MASK24)).astype(np.float32) * np.float32(2.0**-24)

    @staticmethod
    def _box_muller16(u: np.ndarray) -> np.ndarray:
        one, two = u.dtype.type(1), u.dtype.type(-2)
        radius = np.sqrt(two * np.log(one - u[:8]))
        theta = u.dtype.type(2.0 * math.pi) * u[8:]
        return np.concatenate([radius * np.cos(theta), radius * np.sin(theta)])

    def _scalar_normal(self) -> float:
        if self._cached_normal is not None:
            out, self._cached_normal = self._cached_normal, None
            return out
        u1, u2 = self._uniform53(2).astype(np.float64) * 2.0**-53
        radius = math.sqrt(-2.0 * math.log1p(-float(u2)))
        theta = 2.0 * math.pi * float(u1)
        self._cached_normal = radius * math.sin(theta)
        return radius * math.cos(theta)

    def randn(self, shape: tuple, dtype=np.float32) -> np.ndarray:
        """Standard normals of ``shape`` in ``dtype``, as ``torch.randn`` draws them."""
        dtype = np.dtype(dtype)
        n = math.prod(shape)
        # other dtypes (float16/bfloat16 buckets) are drawn in float32 and rounded: close to,
        # but not bitwise, torch's half-precision randn
        work = np.float64 if dtype == np.float64 else np.float32
        if n < 16:
            out = np.array([self._scalar_normal() for _ in range(n)], dtype=np.float64)
            return out.astype(dtype).reshape(shape)
        out = self._uniforms(n, work)
        for i in range(0, n - 15, 16):
            out[i : i + 16] = self._box_muller16(out[i : i + 16])
        if n % 16:
            out[n - 16 :] = self._box_muller16(self._uniforms(16, work))
        return out.astype(dtype, copy=False).reshape(shape)
