"""RNN / LSTM / GRU export: ONNX's fused RNN ops, packed sequences and LSTM ``proj_size``.

* A padded batch runs through ONNX ``RNN`` / ``LSTM`` / ``GRU``, one node per layer.
* ``pack_padded_sequence(x, lengths)`` becomes a :class:`Packed` value (the padded data and
  the lengths); the recurrent layer gives the lengths to ONNX as ``sequence_lens`` (steps past
  a sequence's end are skipped and read as zeros, and ``h_n`` is each sequence's last state,
  as PyTorch's packed run) and ``pad_packed_sequence`` cuts the result to the longest length.
* ONNX's LSTM has no projection, so an LSTM with ``proj_size`` runs as a ``Scan`` over time
  whose body is the LSTM step followed by ``h = W_hr h`` (a 0/1 mask of the lengths freezes
  the state of finished sequences, which also makes the reverse direction start at each
  sequence's own last step).
"""

from __future__ import annotations

import numpy as np

from . import OnnxExporterError
from ._context import Sym, _np_of
from ._ops_basic import rank
from ._registry import fn

__all__ = ["Packed", "rnn_module"]

_GATE_ORDER = {"LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2]}  # torch (ifgo / rzn) -> ONNX (iofc / zrh)


class Packed(Sym):
    """A PackedSequence while lowering: the ONNX name of its ``data`` padded (batch-first or
    time-major, as ``batch_first`` says; of ``rank`` and ``dtype``) and of the int64
    ``lengths`` of the batch in the caller's order. A Sym, so the nodes reading it are
    lowered rather than folded to their example values."""

    __slots__ = ("data", "lengths", "batch_first", "rank", "dtype")

    def __init__(
        self, data: str, lengths: str, batch_first: bool, rank: int, dtype: np.dtype
    ) -> None:
        super().__init__(data, None, frozenset())
        self.data, self.lengths, self.batch_first = data, lengths, batch_first
        self.rank, self.dtype = rank, np.dtype(dtype)


@fn("pack_padded_sequence")
def _pack(ctx, input, lengths, batch_first: bool = False, enforce_sorted: bool = True):
    if not isinstance(input, Sym):
        raise OnnxExporterError("pack_padded_sequence: the padded input must be a run-time value")
    if isinstance(lengths, (list, tuple)):
        lengths = np.asarray(lengths, dtype=np.int64)
    lens = lengths.name if isinstance(lengths, Sym) else ctx.name_of(lengths, np.int64)
    if isinstance(lengths, Sym) and lengths.np_dtype != np.int64:
        lens = ctx.cast(lens, np.int64)
    # sorting is not needed: ONNX's recurrent ops take the batch in any order
    return Packed(input.name, lens, bool(batch_first), rank(input), input.np_dtype)


@fn("pad_packed_sequence")
def _pad(
    ctx,
    sequence,
    batch_first: bool = False,
    padding_value: float = 0.0,
    total_length: int | None = None,
):
    if not isinstance(sequence, Packed):
        raise OnnxExporterError(
            "pad_packed_sequence: expected the PackedSequence of "
            "pack_padded_sequence or of a recurrent layer"
        )
    data, r = sequence.data, sequence.rank
    if sequence.batch_first:
        data = ctx.op("Transpose", [data], perm=[1, 0] + list(range(2, r)))
    # time-major from here; the output is as long as the longest sequence (or total_length)
    steps = (
        ctx.reduce("ReduceMax", sequence.lengths, [0], True)
        if total_length is None
        else ctx.ints([int(total_length)])
    )
    data = ctx.op("Slice", [data, ctx.ints([0]), steps, ctx.ints([0])])
    if total_length is not None:  # pad up to total_length
        missing = ctx.op("Sub", [steps, ctx.dim(data, 0)])
        pads = ctx.op("Concat", [ctx.ints([0] * r), missing, ctx.ints([0] * (r - 1))], axis=0)
        data = ctx.op("Pad", [data, pads])
    # positions past each sequence's end read padding_value
    t = ctx.op(
        "Range",
        [
            ctx.const(np.asarray(0, np.int64)),
            ctx.squeeze(ctx.dim(data, 0), [0]),
            ctx.const(np.asarray(1, np.int64)),
        ],
    )
    past = ctx.op(
        "GreaterOrEqual", [ctx.unsqueeze(t, [1]), ctx.unsqueeze(sequence.lengths, [0])]
    )  # (T, B)
    past = ctx.unsqueeze(past, list(range(2, r)))
    fill = ctx.const(np.asarray(padding_value, dtype=sequence.dtype))
    data = ctx.op("Where", [past, fill, data])
    if batch_first:
        data = ctx.op("Transpose", [data], perm=[1, 0] + list(range(2, r)))
    # the time axis follows the lengths' values, not an input's size: mark it varying
    ex = ctx.ex if isinstance(ctx.ex, (tuple, list)) else (None, None)
    return Sym(data, ex[0], frozenset({0, 1})), Sym(sequence.lengths, ex[1], frozenset({0}))


def _reorder(w: np.ndarray, mode: str, h: int) -> np.ndarray:
    order = _GATE_ORDER.get(mode)
    if order is None:
        return w
    return np.concatenate([w[i * h : (i + 1) * h] for i in order], axis=0)


def rnn_module(ctx, m, x, hx=None):
    mode = m.mode if m.mode in ("LSTM", "GRU") else "RNN"
    packed = isinstance(x, Packed)
    if not packed and not isinstance(x, Sym):
        raise OnnxExporterError(
            "the input of a recurrent layer must be a run-time tensor or "
            "the PackedSequence of pack_padded_sequence"
        )
    H, L, P = m.hidden_size, m.num_layers, getattr(m, "proj_size", 0)
    D = 2 if m.bidirectional else 1
    data = x.data if packed else x.name
    unb = not packed and rank(x) == 2
    h0 = c0 = None
    if hx is not None:
        h0, c0 = (hx[0], hx[1]) if mode == "LSTM" else (hx, None)
    h0 = ctx.name_of(h0) if h0 is not None else None
    c0 = ctx.name_of(c0) if c0 is not None else None
    if unb:
        cur = ctx.unsqueeze(data, [1])
        h0 = ctx.unsqueeze(h0, [1]) if h0 is not None else None
        c0 = ctx.unsqueeze(c0, [1]) if c0 is not None else None
    elif x.batch_first if packed else m.batch_first:
        cur = ctx.op("Transpose", [data], perm=[1, 0, 2])
    else:
        cur = data
    lens = ctx.cast(x.lengths, np.int32) if packed else ""
    dt = x.dtype if packed else x.np_dtype
    hs, cs = [], []
    for layer in range(L):

        def sl(t, lo=layer * D):  # this layer's slice of the stacked initial states
            if L == 1:
                return t
            return ctx.op("Slice", [t, ctx.ints([lo]), ctx.ints([lo + D]), ctx.ints([0])])

        h_l = sl(h0) if h0 is not None else None
        c_l = sl(c0) if c0 is not None else None
        if P:
            cur, yh, yc = _lstm_proj_layer(
                ctx, m, layer, cur, h_l, c_l, x.lengths if packed else None, dt
            )
            hs.append(yh)
            cs.append(yc)
            continue
        ws, rs, bs = [], [], []
        for d in range(D):
            w_ih, w_hh, b_ih, b_hh, _ = m._layer_weights(layer, d)
            g = _np_of(w_ih).shape[0]
            ws.append(_reorder(_np_of(w_ih), mode, H))
            rs.append(_reorder(_np_of(w_hh), mode, H))
            bi = _reorder(_np_of(b_ih), mode, H) if b_ih is not None else np.zeros(g, dt)
            bh = _reorder(_np_of(b_hh), mode, H) if b_hh is not None else np.zeros(g, dt)
            bs.append(np.concatenate([bi, bh]))
        inputs = [
            cur,
            ctx.const(np.stack(ws)),
            ctx.const(np.stack(rs)),
            ctx.const(np.stack(bs)),
            lens,
            h_l if h_l is not None else "",
        ]
        attrs = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
        if mode == "LSTM":
            inputs.append(c_l if c_l is not None else "")
            y, yh, yc = ctx.op("LSTM", inputs, n_out=3, **attrs)
            cs.append(yc)
        elif mode == "GRU":
            y, yh = ctx.op("GRU", inputs, n_out=2, linear_before_reset=1, **attrs)
        else:
            act = "Relu" if m.mode == "RNN_RELU" else "Tanh"
            y, yh = ctx.op("RNN", inputs, n_out=2, activations=[act] * D, **attrs)
        hs.append(yh)
        # Y: (T, D, B, H) -> (T, B, D*H)
        cur = ctx.op("Reshape", [ctx.op("Transpose", [y], perm=[0, 2, 1, 3]), ctx.ints([0, 0, -1])])
    h_n = ctx.op("Concat", hs, axis=0) if L > 1 else hs[0]
    c_n = (ctx.op("Concat", cs, axis=0) if L > 1 else cs[0]) if mode == "LSTM" else None
    if packed:
        out = Packed(cur, x.lengths, False, 3, dt)
    elif unb:
        cur, h_n = ctx.squeeze(cur, [1]), ctx.squeeze(h_n, [1])
        c_n = ctx.squeeze(c_n, [1]) if c_n is not None else None
        out = cur
    else:
        out = ctx.op("Transpose", [cur], perm=[1, 0, 2]) if m.batch_first else cur
    return (out, (h_n, c_n)) if mode == "LSTM" else (out, h_n)


def _lstm_proj_layer(ctx, m, layer: int, cur: str, h0, c0, lengths, dt):
    """One LSTM layer with ``proj_size``: a Scan per direction; returns (Y, h_n, c_n) with
    Y time-major (T, B, D*P) and the states stacked over directions."""
    H, P = m.hidden_size, m.proj_size
    D = 2 if m.bidirectional else 1
    batch = ctx.dim(cur, 1)
    mask = None
    if lengths is not None:  # (T, B, 1): 1 while the sequence runs
        t = ctx.op(
            "Range",
            [
                ctx.const(np.asarray(0, np.int64)),
                ctx.squeeze(ctx.dim(cur, 0), [0]),
                ctx.const(np.asarray(1, np.int64)),
            ],
        )
        mask = ctx.cast(ctx.op("Less", [ctx.unsqueeze(t, [1]), ctx.unsqueeze(lengths, [0])]), dt)
        mask = ctx.unsqueeze(mask, [2])
    ys, hs, cs = [], [], []
    for d in range(D):

        def init(state, size, d=d):
            if state is None:
                return ctx.op(
                    "Expand",
                    [
                        ctx.const(np.zeros((1, size), dt)),
                        ctx.op("Concat", [batch, ctx.ints([size])], axis=0),
                    ],
                )
            return ctx.op("Gather", [state, ctx.const(np.asarray(d, np.int64))], axis=0)

        w_ih, w_hh, b_ih, b_hh, w_hr = m._layer_weights(layer, d)
        body = _lstm_proj_step(ctx, w_ih, w_hh, b_ih, b_hh, w_hr, H, P, mask is not None, dt)
        scan_in = [cur] + ([mask] if mask is not None else [])
        rev = [d] * len(scan_in)
        h_t, c_t, y = ctx.op(
            "Scan",
            [init(h0, P), init(c0, H)] + scan_in,
            n_out=3,
            body=body,
            num_scan_inputs=len(scan_in),
            scan_input_directions=rev,
            scan_output_directions=[d],
        )
        ys.append(y)
        hs.append(ctx.unsqueeze(h_t, [0]))
        cs.append(ctx.unsqueeze(c_t, [0]))

    def cat(vs, ax):
        return ctx.op("Concat", vs, axis=ax) if len(vs) > 1 else vs[0]

    return cat(ys, 2), cat(hs, 0), cat(cs, 0)


def _lstm_proj_step(ctx, w_ih, w_hh, b_ih, b_hh, w_hr, H: int, P: int, masked: bool, dt):
    """The Scan body: (h, c, x_t[, m_t]) -> (h', c', y_t) in PyTorch's gate order."""
    import onnx

    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dt))
    names = [ctx.fresh(n) for n in ("h_prev", "c_prev", "x_t", "m_t")]
    vi = [onnx.helper.make_tensor_value_info(n, elem, [None, None]) for n in names]
    saved, ctx.nodes = ctx.nodes, []
    try:
        h, c, x_t, m_t = names

        def lin(inp, w, b):
            out = ctx.op("MatMul", [inp, ctx.const(_np_of(w).T)])
            return ctx.op("Add", [out, ctx.const(_np_of(b))]) if b is not None else out

        gates = ctx.op("Add", [lin(x_t, w_ih, b_ih), lin(h, w_hh, b_hh)])
        i, f, g, o = ctx.op("Split", [gates, ctx.ints([H] * 4)], n_out=4, axis=1)
        c2 = ctx.op(
            "Add",
            [
                ctx.op("Mul", [ctx.op("Sigmoid", [f]), c]),
                ctx.op("Mul", [ctx.op("Sigmoid", [i]), ctx.op("Tanh", [g])]),
            ],
        )
        h_full = ctx.op("Mul", [ctx.op("Sigmoid", [o]), ctx.op("Tanh", [c2])])
        h2 = ctx.op("MatMul", [h_full, ctx.const(_np_of(w_hr).T)])
        y = h2
        if masked:  # finished sequences keep their state and emit zeros
            keep = ctx.op("Sub", [ctx.const(np.asarray(1, dt)), m_t])
            h2 = ctx.op("Add", [ctx.op("Mul", [m_t, h2]), ctx.op("Mul", [keep, h])])
            c2 = ctx.op("Add", [ctx.op("Mul", [m_t, c2]), ctx.op("Mul", [keep, c])])
            y = ctx.op("Mul", [m_t, y])
        outs = []
        for v, base in ((h2, "h_next"), (c2, "c_next"), (y, "y_t")):
            nm = ctx.fresh(base)
            ctx.nodes.append(
                onnx.helper.make_node("Identity", [v], [nm], name=ctx.fresh("n_scan_out"))
            )
            outs.append(onnx.helper.make_tensor_value_info(nm, elem, [None, None]))
        return onnx.helper.make_graph(
            ctx.nodes, ctx.fresh("lstm_proj_step"), vi if masked else vi[:3], outs
        )
    finally:
        ctx.nodes = saved
