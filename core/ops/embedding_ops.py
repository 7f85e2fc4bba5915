"""Embedding lookups with analytic gradients: ``embedding`` and ``embedding_bag``.

The weight gradient is a scatter-add of output gradients into the looked-up rows. On NumPy,
float32 / float64, it is a compiled loop (``_numba_embed_ce.scatter_rows``) writing straight
into the zeroed gradient, split over threads by vocabulary range; without numba, a sparse
one-hot matrix times the gradient rows (scipy's CSR GEMM); float16 sorts the indices and uses
``np.add.reduceat``; on CuPy it is ``cupy.add.at``.
"""

from __future__ import annotations

import os

import numpy as np

from ..autograd.function import Function
from ._kernel_split import split_call

_SPARSE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_kern = None  # the ``_numba_embed_ce`` module once loaded; False without numba


def compiled():
    """The compiled kernels module (``_numba_embed_ce``), or None without numba or with
    ``EMBER_NUMBA=0``."""
    global _kern
    if _kern is None:
        _kern = False
        if os.environ.get("EMBER_NUMBA", "1") != "0":
            from . import _numba_embed_ce

            if _numba_embed_ce.AVAILABLE:
                _kern = _numba_embed_ce
    return _kern or None


def _scatter_compiled(kern, out, idx, rows, skip: int) -> None:
    """``out[idx[i]] += rows[i]`` (rows ``skip`` left alone), the vocabulary split over the
    threads: the work that scales is mapping and zeroing ``out``'s pages, so the split is
    sized by ``out``'s elements."""
    idx = idx.astype(np.int64, copy=False)
    split_call(
        kern.scatter_rows,
        out.shape[0],
        out.shape[1],
        lambda lo, hi: (out, idx, rows, lo, hi, skip),
    )


def index_add_rows(xp, out, idx, rows) -> None:
    """``out[idx[i]] += rows[i]`` for 1-D ``idx`` with repeats; ``out`` is 2-D."""
    if idx.size == 0:
        return
    if xp is not np:  # pragma: no cover - GPU
        xp.add.at(out, idx, rows)
        return
    kern = compiled() if rows.dtype in _SPARSE_DTYPES and rows.dtype == out.dtype else None
    if kern is not None:
        _scatter_compiled(kern, out, idx, rows, -1)
        return
    if rows.dtype in _SPARSE_DTYPES:
        # A one-hot (V x N) CSR matrix times the rows: scipy's sparse GEMM sums each id's rows
        # in one pass. Measured 1 thread: 5-20x faster than sorting + ``np.add.reduceat(axis=0)``
        # (which walks wide rows slowly) for vocabularies of 10-1000, 1.2x at 50k x 256.
        from scipy import sparse

        n = idx.size
        onehot = sparse.csr_matrix(
            (np.ones(n, rows.dtype), (idx, np.arange(n))), shape=(out.shape[0], n)
        )
        out += onehot @ rows
        return
    order = np.argsort(idx, kind="stable")
    sorted_idx = idx[order]
    starts = np.flatnonzero(np.r_[True, sorted_idx[1:] != sorted_idx[:-1]])
    out[sorted_idx[starts]] += np.add.reduceat(rows[order], starts, axis=0)


def _segment_reduce(xp, op: str, values, starts, rank, count: int):
    """Reduce (``sum``/``max``/``min``) runs of rows: run ``j`` starts at ``starts[j]``;
    ``rank[i]`` is the run of row ``i`` (used on CuPy, which has no ``reduceat``)."""
    if xp is np:
        ufunc = {"sum": np.add, "max": np.maximum, "min": np.minimum}[op]
        return ufunc.reduceat(values, starts, axis=0)
    fill = {"sum": 0, "max": -xp.inf, "min": values.shape[0]}[op]  # pragma: no cover - GPU
    out = xp.full((count,) + values.shape[1:], fill, dtype=values.dtype)
    {"sum": xp.add, "max": xp.maximum, "min": xp.minimum}[op].at(out, rank, values)
    return out


class Embedding(Function):
    """``weight[indices]``; the weight gradient skips ``padding_idx`` and may be scaled by the
    inverse frequency of each index in the batch."""

    @staticmethod
    def forward(ctx, weight, indices, padding_idx, scale_grad_by_freq):
        ctx.args = (indices, weight.shape, padding_idx, scale_grad_by_freq)
        return weight[indices]

    @staticmethod
    def backward(ctx, grad):
        if ctx._tensor_mode:  # double backward: the scatter-add as an op of grad
            return EmbeddingBackward.apply(grad, *ctx.args), None, None, None
        return _embedding_weight_grad(ctx.xp, grad, *ctx.args), None, None, None


def _embedding_weight_grad(xp, grad, indices, shape, padding_idx, scale_grad_by_freq):
    flat = indices.reshape(-1)
    rows = grad.reshape(flat.shape[0], -1)
    if scale_grad_by_freq:
        counts = xp.bincount(flat, minlength=shape[0])
        rows = rows / counts[flat][:, None].astype(rows.dtype)
    gw = xp.zeros((shape[0], rows.shape[1]), dtype=grad.dtype)
    kern = compiled() if xp is np and rows.dtype in _SPARSE_DTYPES and flat.size else None
    if kern is not None:
        # the padding row is skipped rather than zeroed after: a write there would map its page
        pad = -1 if padding_idx is None else padding_idx % shape[0]
        _scatter_compiled(kern, gw, flat, rows, pad)
    else:
        index_add_rows(xp, gw, flat, rows)
        if padding_idx is not None:
            gw[padding_idx] = 0
    # the (V, d) array itself, not a view of it, when the weight is 2-D: the engine adopts it
    # as the leaf's .grad without a copy
    return gw if gw.shape == tuple(shape) else gw.reshape(shape)


class EmbeddingBackward(Function):
    """Embedding's weight gradient as an op of the output gradient (linear in it), so that it
    can be differentiated again: its own gradient gathers the looked-up rows back (divided by
    the frequencies too with ``scale_grad_by_freq``, which PyTorch's leaves out)."""

    supports_double_backward = False

    @staticmethod
    def forward(ctx, grad, indices, shape, padding_idx, scale_grad_by_freq):
        ctx.args = (indices, grad.shape, shape, padding_idx, scale_grad_by_freq)
        return _embedding_weight_grad(ctx.xp, grad, indices, shape, padding_idx, scale_grad_by_freq)

    @staticmethod
    def backward(ctx, ggw):
        indices, grad_shape, shape, padding_idx, scale_grad_by_freq = ctx.args
        xp = ctx.xp
        flat = indices.reshape(-1)
        rows = ggw.reshape(shape[0], -1)
        if padding_idx is not None:
            rows = rows.copy()
            rows[padding_idx] = 0
        out = rows[flat]
        if scale_grad_by_freq:
            counts = xp.bincount(flat, minlength=shape[0])
            out = out / counts[flat][:, None].astype(out.dtype)
        return out.reshape(grad_shape), None, None, None, None


class EmbeddingBag(Function):
    """Sum, mean or max of the embeddings in each bag; bags are contiguous runs of ``idx``.
    Double backward: sum and mean (not max)."""

    @staticmethod
    def forward(ctx, weight, psw, idx, starts, num_bags, mode, padding_idx):
        xp = ctx.xp
        n, d = idx.shape[0], weight.shape[1]
        ends = xp.concatenate([starts[1:], xp.asarray([n], dtype=starts.dtype)])
        lengths = ends - starts
        bag_of = xp.repeat(xp.arange(num_bags), lengths)
        keep = None if padding_idx is None else idx != padding_idx
        emb = weight[idx]
        if psw is not None:
            emb *= psw[:, None].astype(emb.dtype, copy=False)
        out = xp.zeros((num_bags, d), dtype=weight.dtype)
        nonempty = lengths > 0
        bag_starts = starts[nonempty]
        counts = None
        arg = None
        rank = _bag_rank(xp, bag_of, nonempty)
        k = int(bag_starts.shape[0])
        if mode == "max":
            if keep is not None:
                emb[~keep] = -xp.inf
            if n:
                best = _segment_reduce(xp, "max", emb, bag_starts, rank, k)
                # the first row reaching the max in each (bag, column), for the gradient
                pos = xp.where(emb == best[rank], xp.arange(n)[:, None], n)
                arg = _segment_reduce(xp, "min", pos, bag_starts, rank, k)
                best[~xp.isfinite(best)] = 0  # bags holding only padding give zeros
                out[nonempty] = best
        else:
            if keep is not None:
                emb[~keep] = 0
            if n:
                out[nonempty] = _segment_reduce(xp, "sum", emb, bag_starts, rank, k)
            if mode == "mean":
                real = bag_of if keep is None else bag_of[keep]
                counts = xp.bincount(real, minlength=num_bags).astype(out.dtype)
                out /= xp.maximum(counts, 1)[:, None]
        ctx.args = (weight.shape, idx, bag_of, keep, counts, arg, nonempty, mode)
        ctx.save_for_backward(weight if psw is not None else None, psw)
        return out

    @staticmethod
    def backward(ctx, grad):
        shape, idx, bag_of, keep, counts, arg, nonempty, mode = ctx.args
        weight, psw = ctx.saved_tensors
        if ctx._tensor_mode:
            return _embedding_bag_backward_graph(ctx, grad, weight, psw)
        xp = ctx.xp
        gw = xp.zeros(shape, dtype=grad.dtype)
        gpsw = None
        if mode == "max":
            if arg is not None:
                g = grad[nonempty]
                cols = xp.broadcast_to(xp.arange(shape[1]), arg.shape)
                ok = arg < idx.shape[0]
                rows = idx[xp.where(ok, arg, 0)]
                flat = (rows * shape[1] + cols)[ok]
                gflat = gw.reshape(-1)
                xp.add.at(gflat, flat, g[ok])
            return gw, None, None, None, None, None, None
        g_elem = grad[bag_of]
        if counts is not None:
            g_elem = g_elem / xp.maximum(counts, 1)[bag_of][:, None]
        if ctx.needs_input_grad[1]:
            gpsw = (g_elem * weight[idx]).sum(1)
            if keep is not None:
                gpsw = gpsw * keep
        if psw is not None:
            g_elem = g_elem * psw[:, None]
        if keep is not None:
            g_elem = g_elem * keep[:, None]
        index_add_rows(xp, gw, idx, g_elem)
        return gw, gpsw, None, None, None, None, None


def _embedding_bag_backward_graph(ctx, grad, weight, psw):
    """EmbeddingBag's backward (sum and mean) as ops of ``grad``, ``weight`` and the
    per-sample weights, for double backward."""
    shape, idx, bag_of, keep, counts, _, _, mode = ctx.args
    if mode == "max":
        raise RuntimeError(
            "embedding_bag(mode='max') does not support higher-order gradients "
            "(create_graph=True); use mode='sum' or 'mean'"
        )
    scale = 1 if counts is None else 1 / np.maximum(counts, 1)[bag_of][:, None]
    if keep is not None:
        scale = scale * keep[:, None]
    g_elem = grad[bag_of] * scale
    gpsw = None
    if ctx.needs_input_grad[1]:
        gpsw = (g_elem * Embedding.apply(weight, idx, None, False)).sum(1)
    if psw is not None:
        g_elem = g_elem * psw.reshape(-1, 1)
    gw = EmbeddingBackward.apply(g_elem, idx, shape, None, False)
    return gw, gpsw, None, None, None, None, None


def _bag_rank(xp, bag_of, nonempty):
    """For each element, the row of its bag among the non-empty bags."""
    rank = xp.cumsum(nonempty) - 1
    return rank[bag_of]
