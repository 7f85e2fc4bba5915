"""LSTM step products that stream a large recurrent weight (issue 23, session 26).

A step of an LSTM with a large hidden size and few rows (H1024, 8 rows: a 16 MiB weight
against 32 KiB of states) is bound by reading the weight. OpenBLAS's ``sgemm`` packs both
operands on every call, so each step read the weight, wrote its packed copy and read that again
(1 thread, ms a step: ``w @ h.T`` 1.55, ``dg @ w`` 2.50). Here the weight is laid out once per
layer call in the blocks of the channels-last convolution kernel (``_numba_conv_cl``: a
convolution with one tap is this product: V = 64 float32 outputs side by side for each input,
``weight_layout``) and every step runs that kernel over the batch rows, which reads the
weight once, where it lies: 0.88 and 0.88 ms; at two threads its parallel variant gives each
thread half of the output vectors, so half the weight (0.46 / 0.46 ms against OpenBLAS's
threads' 0.78 / 1.34). Each output is summed over the inputs in order within its lane:
the same bits at one and two threads.

- ``stream_plan(xp, dtype, B, w_hh)``: whether a layer takes this path (``STREAM``;
  more than ``MIN_WEIGHT`` bytes of recurrent weight at one thread and at several, at most
  ``MAX_ROWS`` rows, gates and hidden size in whole vectors, numba's kernels loaded);
- ``StreamProduct(w, flip)``: the step product with a weight ``w`` (4H, H): ``a @ w.T``
  (forward, ``flip=False``) or ``a @ w`` (backward, ``flip=True``), called on a step's rows.
"""

from __future__ import annotations

import numpy as np

from ..backend.threads import num_threads
from . import conv_direct_cl
from .gemm_cl import ClProduct

STREAM = True  # False: the products as before (sgemm, OpenBLAS's threads; A/B)
# recurrent weights of more than this many bytes stream (at one thread, at two or more): to
# there, at one thread, the small-matrix kernels (``rnn_support.SMALL_WEIGHT``, to 8 MiB) do
# not repack the weight either, and at two threads the rows split between the threads
# (``rnn_support.ROWS_SPLIT_WEIGHT``); past it they ran on OpenBLAS's threads (H512, 32 rows:
# ms a step 0.38 -> 0.34 forward, 0.42 -> 0.34 backward)
MIN_WEIGHT = (1 << 23, 1 << 20)
MAX_ROWS = 64  # more rows: each pass over the weight serves enough of them for sgemm's packing


def stream_plan(xp, dtype, B: int, w_hh) -> bool:
    """Whether an LSTM layer's step products stream its weight (module docstring)."""
    if not STREAM or xp is not np or np.dtype(dtype).char not in "fd" or B > MAX_ROWS:
        return False
    v = conv_direct_cl._vec_lanes(np.dtype(dtype).itemsize)
    g, p = w_hh.shape
    if g % v or p % v or w_hh.dtype != dtype:
        return False
    floor = MIN_WEIGHT[0] if num_threads() < 2 else MIN_WEIGHT[1]
    return w_hh.size * w_hh.itemsize > floor and conv_direct_cl.available()


class StreamProduct(ClProduct):
    """``a @ w.T`` (``flip=False``) or ``a @ w`` (``flip=True``) for the rows ``a`` of a step,
    ``w`` (4H, H) laid out once (``gemm_cl.ClProduct``)."""

    def __init__(self, w, flip: bool):
        super().__init__(w, not flip, MAX_ROWS)
