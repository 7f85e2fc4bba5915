"""Packed sequences under ember's recording tracer (``jit.trace``, ``export``).

``pack_padded_sequence`` and ``pad_packed_sequence`` are recorded as one node each, and a
recurrent layer (``nn.RNN``/``LSTM``/``GRU``) called on a packed sequence as one
:func:`packed_rnn` node that takes the layer's settings and weights as arguments: the
``PackedSequence`` values flow between these nodes when the program runs, so the batch sizes
follow each call's ``lengths`` (the seq2seq and chatbot tutorials' encoders trace and save).
"""

from __future__ import annotations

from typing import Any

from ember.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ._archive import register_safe_target

__all__ = ["packed_rnn", "record_packed_rnn"]

_LAYERS: dict[tuple, Any] = {}  # one stand-in layer per configuration, its weights swapped in


def packed_rnn(
    input,
    hx,
    mode: str,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    bias: bool,
    dropout: float,
    training: bool,
    bidirectional: bool,
    proj_size: int,
    names: tuple,
    *weights,
):
    """``RNNBase.forward(input, hx)`` of a layer with these settings and weights (``names``
    are its parameter names, in the order of ``weights``)."""
    from ember.nn.modules.rnn import RNNBase

    key = (mode, input_size, hidden_size, num_layers, bias, bidirectional, proj_size)
    layer = _LAYERS.get(key)
    if layer is None:
        layer = RNNBase(
            mode,
            input_size,
            hidden_size,
            num_layers,
            bias=bias,
            bidirectional=bidirectional,
            proj_size=proj_size,
        )
        _LAYERS[key] = layer
    params = layer._parameters
    saved = dict(params)
    params.update(zip(names, weights))
    layer.dropout, layer.training = float(dropout), bool(training)
    try:
        return RNNBase.forward(layer, input, hx)
    finally:
        params.update(saved)


def record_packed_rnn(tracer, m, args: tuple, kwargs: dict):
    """The :func:`packed_rnn` node for ``m(*args, **kwargs)`` when its input is a recorded
    ``PackedSequence``; None otherwise (the layer is traced through as usual)."""
    from ember.fx.proxy import Proxy
    from ember.nn.modules.rnn import RNNBase
    from ember.nn.utils.rnn import PackedSequence

    first = args[0] if args else kwargs.get("input")
    if not (
        isinstance(m, RNNBase)
        and isinstance(first, Proxy)
        and isinstance(tracer.values.get(first.node), PackedSequence)
    ):
        return None
    hx = args[1] if len(args) > 1 else kwargs.get("hx")
    names = tuple(k for k, v in m._parameters.items() if v is not None)
    settings = (m.mode, m.input_size, m.hidden_size, m.num_layers, m.bias, m.dropout)
    settings += (m.training, m.bidirectional, m.proj_size, names)
    weights = tuple(m._parameters[k] for k in names)
    return tracer.create_proxy("call_function", packed_rnn, (first, hx, *settings, *weights), {})


for _fn in (packed_rnn, pack_padded_sequence, pad_packed_sequence):
    register_safe_target(f"{_fn.__module__}.{_fn.__qualname__}", _fn)
