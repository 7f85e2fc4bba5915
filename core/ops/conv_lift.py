"""1-D convolutions run as 2-D ones over a height of 1, where the 2-D paths are faster.

The compiled direct kernels (``conv_direct``, ``conv_direct_cl``) and the depthwise kernels
(``conv_depthwise``) take 2-D and 3-D convolutions only; a 1-D convolution kept im2col +
GEMM (or, depthwise, NumPy's per-tap frame). As a 2-D convolution of (N, C, 1, L) with a
(O, C, 1, k) weight it takes them: 1 thread, process time, forward + backward, ms, 1-D ->
lifted: 64->64 on 8 x 128 k3 1.61 -> 1.11, 128->128 on 8 x 64 k5 3.42 -> 2.68; 2 threads
1.09 -> 0.98, 2.76 -> 2.63. ``Conv`` (``conv_functions``) lifts its arrays in the forward and
the array-mode backward (views, no copies) and keeps its 1-D geometry, so double backward and
the transposed convolution are unchanged. ``ENABLED = False``: the 1-D paths (A/B).
"""

from __future__ import annotations

import numpy as np

ENABLED = True


def liftable(xp, x, w_shape, geom) -> bool:
    """Whether ``Conv`` runs this 1-D convolution as a 2-D one: NumPy float32/float64, where
    the 2-D geometry takes a compiled kernel (direct, channels-last direct, depthwise); the
    2-D GEMM paths are no faster than the 1-D ones (32->48 on 8 x 100 k3, 1 thread: 0.63 ->
    0.69 ms lifted onto im2col)."""
    if not ENABLED or len(geom.kernel) != 1 or xp is not np or x.dtype.char not in "fd":
        return False
    from ..backend.threads import as_one_thread
    from . import conv_depthwise, conv_direct, conv_direct_cl

    g2, w2 = lift(geom), (w_shape[0], w_shape[1], 1, w_shape[2])
    x2 = (x.shape[0], x.shape[1], 1, x.shape[2])
    if conv_depthwise.is_depthwise(w2, g2):
        return conv_depthwise._compiled(xp, g2, x) is not None
    # the choice at one thread (at two, ``conv_split`` keeps a direct convolution whole)
    return as_one_thread(conv_direct_cl.use_direct_cl, xp, x, w2, g2, x2) or as_one_thread(
        conv_direct.use_direct, xp, x, w2, g2, x2
    )


def lift(geom):
    """The 2-D geometry (height 1, kernel height 1) of a 1-D one."""
    return type(geom)(
        (1,) + geom.stride,
        ((0, 0),) + geom.pad,
        (1,) + geom.dilation,
        geom.groups,
        (1,) + geom.kernel,
        (1,) + geom.in_size,
        (1,) + geom.out_size,
    )


def up(a):
    """(N, C, L) -> (N, C, 1, L), a view (None stays None)."""
    return None if a is None else a[:, :, None]


def down(a):
    """(N, C, 1, L) -> (N, C, L), a view (None stays None)."""
    return None if a is None else a[:, :, 0]
