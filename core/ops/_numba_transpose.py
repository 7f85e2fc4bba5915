"""A 16 x 16 transposing copy in vector registers, for the compiled layout copies (issue 23,
session 26).

The channels-last convolution's copies (``_numba_conv_layout``: x into the padded
channels-last layout, the outputs back to channels-first; ``_numba_conv_cl_nchw``;
``_numba_conv_cl.transpose2d``) moved a tile of 16 x 16 values as plain loops: LLVM vectorises
one side and reads or writes the other a value at a time (~1.7 ns a value for x of 8 x 32 x
32^2 into the padded layout, 0.45 ms). Here a tile is 16 vector loads of 16 values (one row
each), four rounds of two-input shuffles (the 2 x 2 block swap at 8, 4, 2 and 1 lanes:
``vpermt2ps``-class instructions) and 16 vector stores: 2x the tile loops' rate on hot data
(8 x 64 x 16^2 from channels-last to channels-first: 0.061 -> 0.030 ms).

- ``t16(src, soff, ss, dst, doff, ds)``: ``dst[doff + j * ds + i] = src[soff + i * ss + j]``
  for i, j in 0 .. 16, on flat (1-D) arrays of one dtype (float32, float64: a row of 16
  float64 is two zmm registers);
- ``t16_bias(src, soff, ss, dst, doff, ds, bias, boff)``: the same, plus ``bias[boff + j]``
  added to each value of output row j (the convolution's bias added as the outputs come back:
  the same one rounding as the scalar loops);
- ``t16_table(src, soff, ss, dst, doff, tab, toff)``: output row j at ``dst[doff + tab[toff +
  j]]`` (int64 ``tab``): rows whose places are not evenly spaced (the weight's re-layout).

Values are moved (and the bias added) exactly: results are bitwise those of the scalar loops.
numba's on-disk cache keys on the calling kernel's file, and these intrinsics are compiled into
their callers: after changing this file, touch ``_numba_conv_layout.py``, ``_numba_conv_cl.py``
and ``_numba_conv_cl_nchw.py``.
"""

from __future__ import annotations

import functools

try:
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic
except ImportError:  # numba is optional
    intrinsic = None

AVAILABLE = intrinsic is not None
N = 16  # the tile's rows and columns

if AVAILABLE:
    from ._numba_conv_direct import _broadcast, _ptr

    def _masks(h: int) -> tuple[list[int], list[int]]:
        """The shuffle masks that swap the off-diagonal h x h blocks of each 2h x 2h block
        between rows a and a + h: row a keeps its first h of every 2h lanes and takes b's
        first h for its second; row b the reverse."""
        lo = [c if c % (2 * h) < h else N + c - h for c in range(N)]
        hi = [c + h if c % (2 * h) < h else N + c for c in range(N)]
        return lo, hi

    def _codegen(kind, context, builder, signature, args):
        sa, soff, ss, da, doff, ds = args[:6]
        st_, dt_ = signature.args[0], signature.args[3]
        with_bias = kind == "bias"
        vty = ir.VectorType(context.get_data_type(st_.dtype), N)
        i64, i32 = ir.IntType(64), ir.IntType(32)
        sp = builder.gep(_ptr(context, builder, st_, sa), [soff])
        dp = builder.gep(_ptr(context, builder, dt_, da), [doff])
        rows = []
        for r in range(N):
            p = builder.gep(sp, [builder.mul(ir.Constant(i64, r), ss)])
            ld = builder.load(builder.bitcast(p, vty.as_pointer()))
            ld.align = st_.dtype.bitwidth // 8
            rows.append(ld)
        h = N // 2
        while h:  # after the rounds at 8, 4, 2, 1 lanes, row j holds column j
            lo, hi = (ir.Constant(ir.VectorType(i32, N), m) for m in _masks(h))
            new = list(rows)
            for a in range(N):
                if a % (2 * h) < h:
                    new[a] = builder.shuffle_vector(rows[a], rows[a + h], lo)
                    new[a + h] = builder.shuffle_vector(rows[a], rows[a + h], hi)
            rows, h = new, h // 2
        if with_bias:
            ba, boff = args[6], args[7]
            bp = builder.gep(_ptr(context, builder, signature.args[6], ba), [boff])
            for j in range(N):
                bv = builder.load(builder.gep(bp, [ir.Constant(i64, j)]))
                rows[j] = builder.fadd(rows[j], _broadcast(builder, vty, bv))
        if kind == "table":  # row j at dp + tab[toff + j] (doff is the table's offset)
            tt, ta = signature.args[5], args[5]
            tp = builder.gep(_ptr(context, builder, tt, ta), [args[6]])
            dp = _ptr(context, builder, dt_, da)
        for j in range(N):
            if kind == "table":
                p = builder.gep(
                    dp, [builder.add(doff, builder.load(builder.gep(tp, [ir.Constant(i64, j)])))]
                )
            else:
                p = builder.gep(dp, [builder.mul(ir.Constant(i64, j), ds)])
            st = builder.store(rows[j], builder.bitcast(p, vty.as_pointer()))
            st.align = dt_.dtype.bitwidth // 8
        return context.get_dummy_value()

    @intrinsic
    def t16(typingctx, src, soff, ss, dst, doff, ds):
        sig = types.void(src, soff, ss, dst, doff, ds)
        return sig, functools.partial(_codegen, "plain")

    @intrinsic
    def t16_bias(typingctx, src, soff, ss, dst, doff, ds, bias, boff):
        sig = types.void(src, soff, ss, dst, doff, ds, bias, boff)
        return sig, functools.partial(_codegen, "bias")

    @intrinsic
    def t16_table(typingctx, src, soff, ss, dst, doff, tab, toff):
        sig = types.void(src, soff, ss, dst, doff, tab, toff)
        return sig, functools.partial(_codegen, "table")
