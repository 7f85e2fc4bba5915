"""Which engine a draw of ``core/_mt_stream.py`` runs on: the compiled one (``_mt_kernels``,
loaded on the first large draw, since importing it imports numba) or NumPy's."""

from __future__ import annotations

import numpy as np

# From this many 32-bit outputs a draw runs the compiled engine (``_mt_kernels``): below it
# the state's round trip (~20 us) costs more than NumPy's engine loses (~2.6 ns an output
# against ~1.1 compiled, ~1 ns for a Bernoulli element with its pair of outputs).
COMPILED_MIN = 1 << 15
_engine = None  # the ``_mt_kernels`` module once loaded; False without numba


def _compiled_engine(n: int, least: int = 0):
    """``_mt_kernels`` for a draw of ``n`` outputs (from ``least``, ``COMPILED_MIN`` by
    default) where it applies, else None."""
    global _engine
    if n < (least or COMPILED_MIN) or _engine is False:
        return None
    if _engine is None:
        from . import _mt_kernels

        _engine = _mt_kernels if _mt_kernels.AVAILABLE else False
    return _engine or None


def _fisher_yates(perm: np.ndarray, z: np.ndarray) -> None:
    """Swap ``perm[i]`` with ``perm[i + z[i]]`` for each ``i`` in order (sequential: compiled
    for long permutations, ~30x quicker than the interpreter's loop at 60000 items)."""
    kernels = _compiled_engine(z.shape[0], 4096)
    if kernels is not None:
        kernels.fisher_yates(perm, z)
        return
    p = perm.tolist()
    for i, k in enumerate(z.tolist()):
        j = i + k
        p[i], p[j] = p[j], p[i]
    perm[:] = p
