"""Recurrent layers: RNN, LSTM, GRU and their cells (PyTorch's names, shapes and parameters).

Each layer and direction runs as one fused Function over the whole sequence (core/ops/rnn.py).
Parameters are named like PyTorch's (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...) so state
dicts load across frameworks.
"""

from __future__ import annotations

import math

import numpy as np

from ... import ops
from ...ops.rnn import GRULayer, LSTMLayer, PackedToPadded, PaddedToPacked, RNNLayer
from ...ops.rnn_bidir import BiLSTMLayer
from ...ops.rnn_bidir import applies as bidir_applies
from ...tensor import Tensor
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter
from ..utils.rnn import PackedSequence
from ._rnn_setup import (  # noqa: F401  (_GATES re-exported)
    _GATES,
    _cell_extra_repr,
    _cell_prepare,
    _check_rnn_args,
    _make_cell_params,
    _make_rnn_params,
    _rnn_extra_repr,
    _rnn_mode,
)

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]


def _layer(mode, x, h0, c0, w, batch_sizes, reverse):
    """Run one fused layer; returns (out, h_n, c_n or None)."""
    w_ih, w_hh, b_ih, b_hh, w_hr = w
    if mode == "LSTM":
        return LSTMLayer.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse)
    if mode == "GRU":
        out, h = GRULayer.apply(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse)
    else:
        out, h = RNNLayer.apply(
            x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, mode == "RNN_RELU"
        )
    return out, h, None


class RNNBase(Module):
    r"""Base class of RNN, LSTM and GRU: parameters, checks and the layer/direction loop."""

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        _check_rnn_args(
            mode, input_size, hidden_size, num_layers, dropout, proj_size, bias, batch_first
        )
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        _make_rnn_params(
            self,
            input_size,
            hidden_size,
            num_layers,
            bias,
            proj_size,
            {"device": device, "dtype": dtype},
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def flatten_parameters(self) -> None:
        """A no-op kept for PyTorch compatibility (there is no cuDNN weight buffer here)."""

    @property
    def _flat_weights(self) -> list[Tensor]:
        return [self._parameters.get(n) for n in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[Parameter]]:
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def _layer_weights(self, layer: int, direction: int):
        suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        p = self._parameters
        return (
            p["weight_ih" + suffix],
            p["weight_hh" + suffix],
            p.get("bias_ih" + suffix),
            p.get("bias_hh" + suffix),
            p.get("weight_hr" + suffix),
        )

    def extra_repr(self) -> str:
        return _rnn_extra_repr(self)

    # ---- checks ------------------------------------------------------------------------
    def _name(self) -> str:
        return {"LSTM": "LSTM", "GRU": "GRU"}.get(self.mode, "RNN")

    def check_input(self, input: Tensor, batch_sizes) -> None:
        w = self._parameters[self._flat_weights_names[0]]
        if input.dtype != w.dtype:
            raise ValueError(f"input must have the type {w.dtype}, got type {input.dtype}")
        expected_dim = 2 if batch_sizes is not None else 3
        if input.dim() != expected_dim:
            raise RuntimeError(f"input must have {expected_dim} dimensions, got {input.dim()}")
        if self.input_size != input.shape[-1]:
            raise RuntimeError(
                f"input.size(-1) must be equal to input_size. Expected "
                f"{self.input_size}, got {input.shape[-1]}"
            )

    def _expected_hidden(self, batch: int, cell: bool = False) -> tuple[int, int, int]:
        d = 2 if self.bidirectional else 1
        size = self.proj_size if self.proj_size > 0 and not cell else self.hidden_size
        return (self.num_layers * d, batch, size)

    @staticmethod
    def _check_hidden(hx: Tensor, expected, msg: str = "Expected hidden size {}, got {}") -> None:
        if tuple(hx.shape) != tuple(expected):
            raise RuntimeError(msg.format(tuple(expected), list(hx.shape)))

    # ---- forward -----------------------------------------------------------------------
    def forward(self, input, hx=None):
        is_lstm = self.mode == "LSTM"
        packed = isinstance(input, PackedSequence)
        unbatched = False
        if packed:
            data, bs_t, sorted_idx, unsorted_idx = input
            bs = bs_t._data
            bs = np.asarray(bs.get() if hasattr(bs, "get") else bs, dtype=np.int64)
            self.check_input(data, bs)
            batch = int(bs[0])
            x = PackedToPadded.apply(data, bs, 0.0)
        else:
            bs = sorted_idx = unsorted_idx = None
            if input.dim() not in (2, 3):
                raise ValueError(
                    f"{self._name()}: Expected input to be 2D or 3D, got "
                    f"{input.dim()}D tensor instead"
                )
            unbatched = input.dim() == 2
            x = ops.unsqueeze(input, 1) if unbatched else input
            if self.batch_first and not unbatched:
                x = ops.transpose(x, 0, 1)
            self.check_input(x, None)
            batch = x.shape[1]
        h0 = c0 = None
        if hx is not None:
            if is_lstm:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise RuntimeError("LSTM expects hx to be a tuple (h_0, c_0)")
                h0, c0 = hx
            else:
                h0 = hx
            hs = (h0, c0) if is_lstm else (h0,)
            want = 2 if unbatched else 3
            for h in hs:
                if h.dim() != want:
                    kind = "unbatched 2-D" if unbatched else "batched 3-D"
                    raise RuntimeError(
                        f"For {kind} input, hx{' and cx' if is_lstm else ''} "
                        f"should also be {want}-D but got {h.dim()}-D tensor"
                    )
            if unbatched:
                h0 = ops.unsqueeze(h0, 1)
                c0 = ops.unsqueeze(c0, 1) if c0 is not None else None
            if sorted_idx is not None:
                h0 = ops.index_select(h0, 1, sorted_idx)
                c0 = ops.index_select(c0, 1, sorted_idx) if c0 is not None else None
            if is_lstm:
                self._check_hidden(
                    h0, self._expected_hidden(batch), "Expected hidden[0] size {}, got {}"
                )
                self._check_hidden(
                    c0,
                    self._expected_hidden(batch, cell=True),
                    "Expected hidden[1] size {}, got {}",
                )
            else:
                self._check_hidden(h0, self._expected_hidden(batch))
        out, h_n, c_n = self._run(x, h0, c0, bs)
        h_n = ops.stack(h_n, 0)
        c_n = ops.stack(c_n, 0) if is_lstm else None
        if packed:
            out = PackedSequence(PaddedToPacked.apply(out, bs), bs_t, sorted_idx, unsorted_idx)
            if unsorted_idx is not None:
                h_n = ops.index_select(h_n, 1, unsorted_idx)
                c_n = ops.index_select(c_n, 1, unsorted_idx) if is_lstm else None
        elif unbatched:
            out = ops.squeeze(out, 1)
            h_n = ops.squeeze(h_n, 1)
            c_n = ops.squeeze(c_n, 1) if is_lstm else None
        elif self.batch_first:
            out = ops.transpose(out, 0, 1)
        return (out, (h_n, c_n)) if is_lstm else (out, h_n)

    def _run(self, x, h0, c0, batch_sizes):
        """All layers and directions over time-major ``x``: (out, [h_n...], [c_n...])."""
        dirs = 2 if self.bidirectional else 1
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            w_f = self._layer_weights(layer, 0)
            if dirs == 2 and self.mode == "LSTM" and bidir_applies(x, w_f[1]):  # a thread each
                k = 2 * layer
                h = (None, None) if h0 is None else (h0[k], h0[k + 1])
                c = (None, None) if c0 is None else (c0[k], c0[k + 1])
                x, h_f, c_f, h_b, c_b = BiLSTMLayer.apply(
                    x, h[0], c[0], h[1], c[1],
                    *w_f, *self._layer_weights(layer, 1), batch_sizes,
                )  # fmt: skip
                h_n += [h_f, h_b]
                c_n += [c_f, c_b]
                if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                    x = F.dropout(x, self.dropout, training=True)
                continue
            outs = []
            for d in range(dirs):
                k = layer * dirs + d
                out, h, c = _layer(
                    self.mode,
                    x,
                    None if h0 is None else h0[k],
                    None if c0 is None else c0[k],
                    self._layer_weights(layer, d),
                    batch_sizes,
                    d == 1,
                )
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
            x = outs[0] if dirs == 1 else ops.cat(outs, -1)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        return x, h_n, c_n


class RNN(RNNBase):
    r"""Elman RNN, :math:`h_t = \tanh(x_t W_{ih}^T + b_{ih} + h_{t-1} W_{hh}^T + b_{hh})`.

    ``RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False)``; ``nonlinearity`` may be 'relu'.
    """

    def __init__(self, *args, **kwargs) -> None:
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        self.nonlinearity, mode, args = _rnn_mode(args, kwargs)
        super().__init__(mode, *args, **kwargs)


class LSTM(RNNBase):
    r"""Long short-term memory; returns ``output, (h_n, c_n)``.

    ``LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, proj_size=0)``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__("LSTM", *args, **kwargs)

    def forward(self, input, hx: tuple[Tensor, Tensor] | None = None):
        # the annotation is TorchScript's type for ``hx``: ember.jit.script unpacks it as a pair
        return super().forward(input, hx)


class GRU(RNNBase):
    r"""Gated recurrent unit (PyTorch's formulation, ``b_hn`` inside the reset product).

    ``GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False)``.
    """

    def __init__(self, *args, **kwargs) -> None:
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("GRU", *args, **kwargs)


# ---- cells ---------------------------------------------------------------------------------
class RNNCellBase(Module):
    r"""Base of the cells: ``weight_ih`` (chunks*hidden, input), ``weight_hh``, biases."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool,
        num_chunks: int,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        _make_cell_params(
            self, input_size, hidden_size, bias, num_chunks, {"device": device, "dtype": dtype}
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def extra_repr(self) -> str:
        return _cell_extra_repr(self)

    def _prepare(self, input: Tensor, hxs):
        """Checks; returns (x as (1, B, I), hidden states as (B, H) or None, unbatched)."""
        return _cell_prepare(self, input, hxs)

    def _weights(self):
        return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh


class RNNCell(RNNCellBase):
    r"""One Elman RNN step: ``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (or relu)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=1, device=device, dtype=dtype)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity}")
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h0,), unbatched = self._prepare(input, (hx,))
        _, h = RNNLayer.apply(x, h0, *self._weights(), None, False, self.nonlinearity == "relu")
        return ops.squeeze(h, 0) if unbatched else h


class LSTMCell(RNNCellBase):
    r"""One LSTM step; ``forward(input, (h, c)) -> (h', c')``."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None
    ) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=4, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None):
        h0, c0 = (None, None) if hx is None else hx
        x, (h0, c0), unbatched = self._prepare(input, (h0, c0))
        _, h, c = LSTMLayer.apply(x, h0, c0, *self._weights(), None, None, False)
        if unbatched:
            return ops.squeeze(h, 0), ops.squeeze(c, 0)
        return h, c


class GRUCell(RNNCellBase):
    r"""One GRU step; ``forward(input, h) -> h'``."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None
    ) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=3, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h0,), unbatched = self._prepare(input, (hx,))
        _, h = GRULayer.apply(x, h0, *self._weights(), None, False)
        return ops.squeeze(h, 0) if unbatched else h
