"""``HistogramObserver``: a running histogram, then torch's L2 search for the clipping range.

The algorithm is torch's (from caffe2's norm minimization): keep a 2048-bin histogram of all
values seen (re-binning the old histogram by 16x upsampling when the range grows), then
shrink [min, max] from whichever side holds less mass, in steps of 1e-5 of the total, while
the modelled L2 quantization error keeps falling. The search here finds each step's bins with
a binary search over the cumulative sum instead of a linear walk; the steps are the same.
"""

from __future__ import annotations

import warnings
from bisect import bisect_left, bisect_right

import numpy as np

from ... import quantized as _q
from ...tensor import Tensor
from .observer import _EPS, UniformQuantizationObserverBase, _f32, _np

__all__ = ["HistogramObserver"]


def _histc(x: np.ndarray, bins: int, lo: float, hi: float) -> np.ndarray:
    """torch.histc in float32: values equal to ``hi`` land in the last bin."""
    if hi == lo:
        lo, hi = lo - 1.0, hi + 1.0  # torch widens a degenerate range by 1 each side
    x = x[(x >= lo) & (x <= hi)]
    pos = ((x - _f32(lo)) * _f32(bins) / (_f32(hi) - _f32(lo))).astype(np.int64)
    np.clip(pos, 0, bins - 1, out=pos)
    return np.bincount(pos, minlength=bins).astype(_f32)


class HistogramObserver(UniformQuantizationObserverBase):
    """Records a histogram of the values seen; ``calculate_qparams`` searches it for the
    clipping range with the least L2 quantization error (per tensor only)."""

    def __init__(
        self,
        bins: int = 2048,
        dtype=_q.quint8,
        qscheme=_q.per_tensor_affine,
        reduce_range=False,
        quant_min=None,
        quant_max=None,
        factory_kwargs=None,
        eps=_EPS,
        is_dynamic=False,
        **kwargs,
    ):
        if qscheme not in (_q.per_tensor_affine, _q.per_tensor_symmetric):
            raise NotImplementedError(
                "HistogramObserver's qscheme only support "
                "torch.per_tensor_symmetric and torch.per_tensor_affine."
            )
        if is_dynamic:
            raise NotImplementedError("HistogramObserver doesn't support dynamic quantization")
        super().__init__(
            dtype=dtype,
            qscheme=qscheme,
            reduce_range=reduce_range,
            quant_min=quant_min,
            quant_max=quant_max,
            eps=eps,
            **kwargs,
        )
        self.bins = bins
        self.register_buffer("histogram", Tensor(np.zeros(bins, _f32)))
        self.register_buffer("min_val", Tensor(np.array(np.inf, _f32)))
        self.register_buffer("max_val", Tensor(np.array(-np.inf, _f32)))
        self.dst_nbins = 2 ** (8 if dtype in (_q.qint8, _q.quint8) else 32)
        self.upsample_rate = 16

    # ---- recording ---------------------------------------------------------------------
    def forward(self, x_orig: Tensor) -> Tensor:
        if x_orig.numel() == 0:
            return x_orig
        x = _np(x_orig).astype(_f32, copy=False).reshape(-1)
        if np.isinf(x).any():
            warnings.warn("torch.inf detected in input tensor, ignoring input", stacklevel=2)
            x = x[np.abs(x) != np.inf]
            if x.size == 0:
                return x_orig
        x_min, x_max = x.min(), x.max()
        cur_min, cur_max = _np(self.min_val), _np(self.max_val)
        if np.isinf(cur_min) or np.isinf(cur_max):
            self._set_buffer("min_val", x_min)
            self._set_buffer("max_val", x_max)
            self.histogram._data = _histc(x, self.bins, float(x_min), float(x_max))
            return x_orig
        new_min, new_max = min(cur_min, x_min), max(cur_max, x_max)
        update = _histc(x, self.bins, float(new_min), float(new_max))
        hist = _np(self.histogram)
        if new_min == cur_min and new_max == cur_max:
            self.histogram._data = hist + update
        else:
            self.histogram._data = (
                update + self._rebin(hist, cur_min, cur_max, new_min, new_max)
            ).astype(_f32)
            self._set_buffer("min_val", new_min)
            self._set_buffer("max_val", new_max)
        return x_orig

    def _rebin(self, hist, orig_min, orig_max, new_min, new_max) -> np.ndarray:
        """Move the old histogram onto the new range: split each bin into 16 equal parts and
        drop each part into the new bin holding its midpoint."""
        if orig_min == orig_max:
            return (
                _histc(np.array([orig_min], _f32), self.bins, float(new_min), float(new_max))
                * hist.sum()
            )
        up = self.upsample_rate
        fine = np.repeat(hist, up) / _f32(up)
        n = self.bins * up
        width = (_f32(orig_max) - _f32(orig_min)) / _f32(n)
        mids = np.linspace(orig_min, orig_max, n + 1, dtype=_f32)[:-1] + _f32(0.5) * width
        edges = np.linspace(new_min, new_max, self.bins + 1, dtype=_f32)
        idx = np.clip(np.searchsorted(edges, mids, side="right") - 1, 0, self.bins - 1)
        return np.bincount(idx, weights=fine, minlength=self.bins).astype(_f32)

    # ---- the search --------------------------------------------------------------------
    def _quantization_error(self, hist, start: int, end: int) -> float:
        """Modelled L2 error of quantizing with range = bins [start, end] (uniform density
        within each source bin)."""
        bin_width = (float(_np(self.max_val)) - float(_np(self.min_val))) / self.bins
        dst_w = bin_width * (end - start + 1) / self.dst_nbins
        if dst_w == 0.0:
            return 0.0
        src = np.arange(self.bins)
        begin = ((src - start) * bin_width).astype(_f32)
        end_ = begin + _f32(bin_width)
        dw = _f32(dst_w)
        nb = self.dst_nbins - 1
        dst_begin = np.clip(np.floor(begin / dw), 0, nb)
        dst_end = np.clip(np.floor(end_ / dw), 0, nb)
        density = hist / _f32(bin_width)

        def norm(a, b):
            return density * ((b * b * b - a * a * a) / _f32(3))

        half = dw / _f32(2)
        total = norm(begin - (dst_begin + _f32(0.5)) * dw, np.full(self.bins, half, _f32))
        total = total + (dst_end - dst_begin - 1) * norm(-half, half)
        total = total + norm(-half, end_ - (dst_end * dw + half))
        return float(total.astype(_f32).sum(dtype=_f32))

    def _non_linear_param_search(self):
        hist = _np(self.histogram).astype(_f32)
        lo, hi = _f32(_np(self.min_val)), _f32(_np(self.max_val))
        bin_width = (hi - lo) / _f32(self.bins)
        total = float(hist.sum())
        csum = np.cumsum(hist, dtype=_f32).tolist()
        alpha, beta, step = 0.0, 1.0, 1e-5
        start, end = 0, self.bins - 1
        norm_min = float("inf")
        while alpha < beta:
            next_alpha, next_beta = alpha + step, beta - step
            # first l in [start, end) with csum[l] >= next_alpha * total (else end)
            l = max(start, bisect_left(csum, float(_f32(next_alpha * total))))
            l = min(l, end)
            # last r in (start, end] with csum[r] <= next_beta * total (else start)
            r = bisect_right(csum, float(_f32(next_beta * total))) - 1
            r = max(min(r, end), start)
            nstart, nend = start, end
            if l - start > end - r:
                nstart, alpha = l, next_alpha
            else:
                nend, beta = r, next_beta
            if nstart == start and nend == end:
                continue
            err = self._quantization_error(hist, nstart, nend)
            if err > norm_min:
                break
            norm_min, start, end = err, nstart, nend
        return lo + bin_width * _f32(start), lo + bin_width * _f32(end + 1)

    def calculate_qparams(self):
        lo, hi = _np(self.min_val), _np(self.max_val)
        if np.isinf(lo) and np.isinf(hi):
            warnings.warn(
                "must run observer before calling calculate_qparams. Returning "
                "default scale and zero point ",
                stacklevel=2,
            )
            return Tensor(np.array([1.0], _f32)), Tensor._wrap(np.array([0], np.int64))
        new_min, new_max = self._non_linear_param_search()
        return self._calculate_qparams(new_min, new_max)

    def extra_repr(self) -> str:
        return f"min_val={_np(self.min_val)}, max_val={_np(self.max_val)}"
