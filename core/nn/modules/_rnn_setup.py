"""Helpers of ``rnn.py``: argument checks, parameter creation, reprs, the cells' input checks.

``forward`` and the per-layer loop stay in ``rnn.py`` because ``ember.jit.script`` patches that
module's globals (``_layer``, ``LSTMLayer``, ...) to record fused layers as single nodes; the
module classes stay there too, so pickles keep their path.
"""

from __future__ import annotations

import numbers
import warnings

from ... import ops
from ...creation import empty
from ...tensor import Tensor
from ..module import Module
from ..parameter import Parameter

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _check_rnn_args(
    mode: str,
    input_size,
    hidden_size,
    num_layers: int,
    dropout,
    proj_size: int,
    bias=True,
    batch_first=False,
) -> None:
    """``RNNBase.__init__``'s checks, with PyTorch's messages (sizes must be Python ints, as
    in torch: ``nn.LSTM(np.int64(8), 16)`` raises there too)."""
    if mode not in _GATES:
        raise ValueError(f"Unrecognized RNN mode: {mode}")
    if (
        not isinstance(dropout, numbers.Number)
        or isinstance(dropout, bool)
        or not 0 <= dropout <= 1
    ):
        raise ValueError(
            "dropout should be a number in range [0, 1] representing the "
            "probability of an element being zeroed"
        )
    if dropout > 0 and num_layers == 1:
        warnings.warn(
            "dropout option adds dropout after all but last recurrent layer, so "
            "non-zero dropout expects num_layers greater than 1, but got "
            f"dropout={dropout} and num_layers={num_layers}",
            stacklevel=3,  # as if from RNNBase.__init__ (stacklevel=2 there)
        )
    if not isinstance(bias, bool):
        raise TypeError(f"bias should be of type bool, got: {type(bias).__name__}")
    if not isinstance(batch_first, bool):
        raise TypeError(f"batch_first should be of type bool, got: {type(batch_first).__name__}")
    if not isinstance(input_size, int) or isinstance(input_size, bool):
        raise TypeError(f"input_size should be of type int, got: {type(input_size).__name__}")
    if input_size <= 0:
        raise ValueError("input_size must be greater than zero")
    if not isinstance(hidden_size, int) or isinstance(hidden_size, bool):
        raise TypeError(f"hidden_size should be of type int, got: {type(hidden_size).__name__}")
    if hidden_size <= 0:
        raise ValueError("hidden_size must be greater than zero")
    if num_layers <= 0:
        raise ValueError("num_layers must be greater than zero")
    if proj_size < 0:
        raise ValueError("proj_size should be a positive integer or zero to disable projections")
    if proj_size >= hidden_size:
        raise ValueError("proj_size has to be smaller than hidden_size")
    if proj_size and mode != "LSTM":
        raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")


def _make_rnn_params(
    m: Module,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    bias: bool,
    proj_size: int,
    kw: dict,
) -> None:
    """Register PyTorch's ``weight_ih_l{k}[_reverse]``... parameters on ``m`` (uninitialized)
    and its ``_flat_weights_names`` / ``_all_weights`` lists; ``m.mode`` and
    ``m.bidirectional`` are already set."""
    num_directions = 2 if m.bidirectional else 1
    gate_size = _GATES[m.mode] * hidden_size
    real_hidden = proj_size if proj_size > 0 else hidden_size
    m._flat_weights_names = []
    m._all_weights = []
    for layer in range(num_layers):
        layer_input = input_size if layer == 0 else real_hidden * num_directions
        for direction in range(num_directions):
            suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
            shapes = [
                ("weight_ih", (gate_size, layer_input)),
                ("weight_hh", (gate_size, real_hidden)),
            ]
            if bias:
                shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
            if proj_size > 0:
                shapes.append(("weight_hr", (proj_size, hidden_size)))
            names = []
            for base, shape in shapes:
                name = base + suffix
                setattr(m, name, Parameter(empty(shape, **kw)))
                names.append(name)
            m._flat_weights_names.extend(names)
            m._all_weights.append(names)


def _rnn_mode(args: tuple, kwargs: dict) -> tuple[str, str, tuple]:
    """``RNN``'s ``nonlinearity`` (4th positional or keyword, popped from ``kwargs``):
    returns (nonlinearity, mode, the remaining positional args)."""
    if len(args) > 3:
        nonlinearity = args[3]
        args = args[:3] + args[4:]
    else:
        nonlinearity = kwargs.pop("nonlinearity", "tanh")
    if nonlinearity == "tanh":
        return nonlinearity, "RNN_TANH", args
    if nonlinearity == "relu":
        return nonlinearity, "RNN_RELU", args
    raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")


def _make_cell_params(
    m: Module, input_size: int, hidden_size: int, bias: bool, num_chunks: int, kw: dict
) -> None:
    """Register a cell's ``weight_ih``, ``weight_hh`` and biases (or None) on ``m``."""
    m.weight_ih = Parameter(empty((num_chunks * hidden_size, input_size), **kw))
    m.weight_hh = Parameter(empty((num_chunks * hidden_size, hidden_size), **kw))
    if bias:
        m.bias_ih = Parameter(empty((num_chunks * hidden_size,), **kw))
        m.bias_hh = Parameter(empty((num_chunks * hidden_size,), **kw))
    else:
        m.register_parameter("bias_ih", None)
        m.register_parameter("bias_hh", None)


def _rnn_extra_repr(m: Module) -> str:
    s = f"{m.input_size}, {m.hidden_size}"
    if m.proj_size != 0:
        s += f", proj_size={m.proj_size}"
    if m.num_layers != 1:
        s += f", num_layers={m.num_layers}"
    if m.bias is not True:
        s += f", bias={m.bias}"
    if m.batch_first is not False:
        s += f", batch_first={m.batch_first}"
    if m.dropout != 0:
        s += f", dropout={m.dropout}"
    if m.bidirectional is not False:
        s += f", bidirectional={m.bidirectional}"
    return s


def _cell_extra_repr(m: Module) -> str:
    s = f"{m.input_size}, {m.hidden_size}"
    if m.bias is not True:
        s += f", bias={m.bias}"
    if getattr(m, "nonlinearity", "tanh") != "tanh":
        s += f", nonlinearity={m.nonlinearity}"
    return s


def _cell_prepare(m: Module, input: Tensor, hxs):
    """A cell's input and hidden-state checks; returns (x as (1, B, I), hidden states as
    (B, H) or None, unbatched)."""
    name = type(m).__name__
    if input.dim() not in (1, 2):
        raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
    if input.shape[-1] != m.input_size:
        raise RuntimeError(
            f"input has inconsistent input_size: got {input.shape[-1]} expected {m.input_size}"
        )
    if input.dtype != m.weight_ih.dtype:
        raise RuntimeError(
            f"expected input to have the type {m.weight_ih.dtype}, got {input.dtype}"
        )
    unbatched = input.dim() == 1
    x = ops.unsqueeze(input, 0) if unbatched else input
    out = []
    for i, h in enumerate(hxs):
        if h is None:
            out.append(None)
            continue
        if h.dim() != input.dim():
            raise ValueError(
                f"{name}: Expected hidden to be {input.dim()}D, got {h.dim()}D instead"
            )
        h = ops.unsqueeze(h, 0) if unbatched else h
        if h.shape[0] != x.shape[0]:
            raise RuntimeError(
                f"Input batch size {x.shape[0]} doesn't match hidden{i} batch size {h.shape[0]}"
            )
        if h.shape[1] != m.hidden_size:
            raise RuntimeError(
                f"hidden{i} has inconsistent hidden_size: got {h.shape[1]}, "
                f"expected {m.hidden_size}"
            )
        out.append(h)
    return ops.unsqueeze(x, 0), out, unbatched
