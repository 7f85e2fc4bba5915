"""``torch.lstm`` / ``gru`` / ``rnn_tanh`` / ``rnn_relu`` and their ``*_cell`` forms (ATen's).

Part of the top-level signatures table (``_toplevel.TORCH_SIGNATURES``): the recurrent layers
over ATen's flat parameter list (padded and packed overloads), run by ``nn.modules.rnn``'s
``_layer`` one layer and direction at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ... import ops
from ...tensor import Tensor
from . import _linear


# ---- recurrent layers over flat parameter lists --------------------------------------------
def _layer_params(params, has_biases: bool, num_layers: int, dirs: int, proj: bool):
    """Split ATen's flat list into (w_ih, w_hh, b_ih, b_hh, w_hr) per layer and direction."""
    per = 2 + 2 * has_biases + proj
    if len(params) != per * num_layers * dirs:
        raise RuntimeError(f"expected {per * num_layers * dirs} parameters, got {len(params)}")
    out = []
    for k in range(num_layers * dirs):
        w = list(params[k * per : (k + 1) * per])
        w_ih, w_hh = w[0], w[1]
        b_ih, b_hh = (w[2], w[3]) if has_biases else (None, None)
        out.append((w_ih, w_hh, b_ih, b_hh, w[-1] if proj else None))
    return out


def _run_rnn(
    mode, x, h0, c0, params, has_biases, num_layers, dropout, train, bidirectional, batch_sizes
):
    from ..modules.rnn import _layer

    dirs = 2 if bidirectional else 1
    proj = mode == "LSTM" and h0 is not None and c0 is not None and h0.shape[-1] != c0.shape[-1]
    weights = _layer_params(params, has_biases, num_layers, dirs, proj)
    h_n, c_n = [], []
    for layer in range(num_layers):
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            out, h, c = _layer(
                mode, x, h0[k], None if c0 is None else c0[k], weights[k], batch_sizes, d == 1
            )
            outs.append(out)
            h_n.append(h)
            c_n.append(c)
        x = outs[0] if dirs == 1 else ops.cat(outs, -1)
        if dropout > 0 and train and layer < num_layers - 1:
            x = _linear.dropout(x, dropout, True)
    return x, ops.stack(h_n, 0), (ops.stack(c_n, 0) if c0 is not None else None)


def _recurrent(mode, args):
    """Both ATen overloads: (input, hx, params, has_biases, num_layers, dropout, train,
    bidirectional, batch_first) and the packed (data, batch_sizes, hx, params, ...)."""
    from ...ops.rnn import PackedToPadded, PaddedToPacked

    packed = not isinstance(args[2], (list, tuple)) or (
        mode == "LSTM" and isinstance(args[1], Tensor)
    )
    if packed:
        data, batch_sizes, hx, params, has_biases, num_layers, dropout, train, bidir = args
        bs = batch_sizes._data
        bs = np.asarray(bs.get() if hasattr(bs, "get") else bs, dtype=np.int64)
        x, batch_first = PackedToPadded.apply(data, bs, 0.0), False
    else:
        (x, hx, params, has_biases, num_layers, dropout, train, bidir, batch_first) = args
        bs = None
        if batch_first:
            x = ops.transpose(x, 0, 1)
    h0, c0 = (hx[0], hx[1]) if mode == "LSTM" else (hx, None)
    out, h_n, c_n = _run_rnn(
        mode, x, h0, c0, params, has_biases, num_layers, dropout, train, bidir, bs
    )
    if packed:
        out = PaddedToPacked.apply(out, bs)
    elif batch_first:
        out = ops.transpose(out, 0, 1)
    return (out, h_n, c_n) if mode == "LSTM" else (out, h_n)


def lstm(*args) -> tuple[Tensor, Tensor, Tensor]:
    return _recurrent("LSTM", args)


def gru(*args) -> tuple[Tensor, Tensor]:
    return _recurrent("GRU", args)


def rnn_tanh(*args) -> tuple[Tensor, Tensor]:
    return _recurrent("RNN_TANH", args)


def rnn_relu(*args) -> tuple[Tensor, Tensor]:
    return _recurrent("RNN_RELU", args)


def _cell(mode, input, hx, w_ih, w_hh, b_ih, b_hh):
    from ..modules.rnn import _layer

    x = ops.unsqueeze(input, 0)
    h0, c0 = (hx[0], hx[1]) if mode == "LSTM" else (hx, None)
    _, h, c = _layer(mode, x, h0, c0, (w_ih, w_hh, b_ih, b_hh, None), None, False)
    return (h, c) if mode == "LSTM" else h


def lstm_cell(
    input: Tensor,
    hx: Sequence[Tensor],
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    return _cell("LSTM", input, hx, w_ih, w_hh, b_ih, b_hh)


def gru_cell(
    input: Tensor,
    hx: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
) -> Tensor:
    return _cell("GRU", input, hx, w_ih, w_hh, b_ih, b_hh)


def rnn_tanh_cell(
    input: Tensor,
    hx: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
) -> Tensor:
    return _cell("RNN_TANH", input, hx, w_ih, w_hh, b_ih, b_hh)


def rnn_relu_cell(
    input: Tensor,
    hx: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
) -> Tensor:
    return _cell("RNN_RELU", input, hx, w_ih, w_hh, b_ih, b_hh)
