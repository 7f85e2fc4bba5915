"""``ember.quasirandom``: the Sobol low-discrepancy sequence (torch.quasirandom.SobolEngine).

The unscrambled sequence equals torch's point for point (both use Joe and Kuo's direction
numbers for up to 21201 dimensions, in Gray-code order); SciPy's ``qmc.Sobol`` generates it.
Scrambled sequences (linear matrix scrambling plus a digital shift) have the same properties as
torch's but are drawn from a different random stream, so their points differ from torch's.
"""

from __future__ import annotations

import warnings

import numpy as np

from .backend.dtype import get_default_dtype, to_dtype
from .tensor import Tensor


class SobolEngine:
    """Draws points of a (scrambled) Sobol sequence in ``[0, 1)^dimension``."""

    MAXBIT = 30
    MAXDIM = 21201

    def __init__(self, dimension: int, scramble: bool = False, seed: int | None = None):
        if dimension > self.MAXDIM or dimension < 1:
            raise ValueError(
                f"Supported range of dimensionality for SobolEngine is [1, {self.MAXDIM}]"
            )
        from scipy.stats import qmc

        self.dimension, self.scramble, self.seed = dimension, scramble, seed
        if scramble and seed is None:
            from .random import default_generator

            seed = int(default_generator.numpy().integers(0, 2**63 - 1))
        self._engine = qmc.Sobol(
            dimension, scramble=scramble, rng=np.random.default_rng(seed) if scramble else None
        )
        self.num_generated = 0

    def _wrap(self, points, out, dtype) -> Tensor:
        d = to_dtype(dtype) if dtype is not None else get_default_dtype()
        result = Tensor._wrap(np.ascontiguousarray(points, dtype=d.np))
        if out is not None:
            out.resize_(*result.shape).copy_(result)
            return out
        return result

    def draw(self, n: int = 1, out: Tensor | None = None, dtype=None) -> Tensor:
        """The next ``n`` points, shape ``(n, dimension)``."""
        with warnings.catch_warnings():  # SciPy warns off powers of two; torch does not
            warnings.simplefilter("ignore", UserWarning)
            points = self._engine.random(n)
        self.num_generated += n
        return self._wrap(points, out, dtype)

    def draw_base2(self, m: int, out: Tensor | None = None, dtype=None) -> Tensor:
        """The next ``2**m`` points; keeps the sequence's balance (total a power of two)."""
        n = 2**m
        total = self.num_generated + n
        if total & (total - 1):
            raise ValueError(
                "The balance properties of Sobol' points require n to be a power "
                f"of 2. {self.num_generated} points have been previously "
                f"generated, then: {self.num_generated}+2**{m}={total}. If you "
                "still want to do this, please use 'SobolEngine.draw()' instead."
            )
        return self.draw(n, out, dtype)

    def reset(self) -> SobolEngine:
        """Back to the first point (the same scrambling)."""
        self._engine.reset()
        self.num_generated = 0
        return self

    def fast_forward(self, n: int) -> SobolEngine:
        """Skip the next ``n`` points."""
        self._engine.fast_forward(n)
        self.num_generated += n
        return self

    def __repr__(self) -> str:
        fields = [f"dimension={self.dimension}"]
        if self.scramble:
            fields.append("scramble=True")
        if self.seed is not None:
            fields.append(f"seed={self.seed}")
        return f"{type(self).__name__}({', '.join(fields)})"
