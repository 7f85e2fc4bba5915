"""Run-time helpers that scripted graphs call (resolvable by name from a saved graph)."""

from __future__ import annotations

from typing import Any

__all__ = [
    "script_assert",
    "raise_exception",
    "unused_called",
    "length",
    "to_int",
    "to_float",
    "to_bool",
    "to_tuple",
    "to_list",
    "rnn_layer",
    "lstm_layer",
    "gru_layer",
    "elman_layer",
    "SCRIPT_LEAVES",
]

_KINDS = {
    "ValueError": ValueError,
    "TypeError": TypeError,
    "IndexError": IndexError,
    "KeyError": KeyError,
    "AssertionError": AssertionError,
    "NotImplementedError": NotImplementedError,
}


def script_assert(condition: Any, message: str = "") -> None:
    """``assert condition, message`` inside a scripted function."""
    if not bool(condition):
        raise AssertionError(message)


def raise_exception(kind: str, message: str = "") -> None:
    """``raise Kind(message)`` inside a scripted function (other kinds raise RuntimeError)."""
    raise _KINDS.get(kind, RuntimeError)(message or kind)


def unused_called(name: str) -> None:
    """The body of a function marked ``@ember.jit.unused``: reaching it is an error."""
    raise RuntimeError(
        f"{name} was marked @ember.jit.unused and was not compiled; a scripted model cannot run it"
    )


def length(x: Any) -> int:
    """``len(x)`` of a run-time value (a tensor's first dimension, a shape's length)."""
    return len(x)


def to_int(x: Any) -> int:
    """``int(x)`` of a run-time value."""
    return int(x)


def to_float(x: Any) -> float:
    """``float(x)`` of a run-time value."""
    return float(x)


def to_bool(x: Any) -> bool:
    """``bool(x)`` of a run-time value."""
    return bool(x)


def to_tuple(x: Any) -> tuple:
    """``tuple(x)`` of a run-time value (a shape: TorchScript's ``List[int]``)."""
    return tuple(x)


def to_list(x: Any) -> list:
    """``list(x)`` of a run-time value."""
    return list(x)


def rnn_layer(
    mode: str, x: Any, h0: Any, c0: Any, weights: tuple, batch_sizes: Any, reverse: bool
) -> tuple:
    """One fused RNN / LSTM / GRU layer over time-major ``x``: ``(out, h_n, c_n or None)``.

    The script compiler records this as one graph node (as TorchScript calls its fused
    ``aten::lstm``) instead of compiling the layer's Function."""
    from ember.nn.modules.rnn import _layer

    return _layer(mode, x, h0, c0, tuple(weights), batch_sizes, reverse)


def lstm_layer(*args: Any) -> Any:
    """``LSTMLayer.apply`` (an LSTMCell's step) as one graph node."""
    from ember.ops.rnn import LSTMLayer

    return LSTMLayer.apply(*args)


def gru_layer(*args: Any) -> Any:
    """``GRULayer.apply`` (a GRUCell's step) as one graph node."""
    from ember.ops.rnn import GRULayer

    return GRULayer.apply(*args)


def elman_layer(*args: Any) -> Any:
    """``RNNLayer.apply`` (an RNNCell's step) as one graph node."""
    from ember.ops.rnn import RNNLayer

    return RNNLayer.apply(*args)


class _Apply:
    """A Function class's stand-in while compiling: ``.apply`` records a node."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn


# (module name, global name) -> the recorded stand-in, patched while a script compiles
SCRIPT_LEAVES = {
    ("ember.nn.modules.rnn", "_layer"): rnn_layer,
    ("ember.nn.modules.rnn", "LSTMLayer"): _Apply(lstm_layer),
    ("ember.nn.modules.rnn", "GRULayer"): _Apply(gru_layer),
    ("ember.nn.modules.rnn", "RNNLayer"): _Apply(elman_layer),
}

SAFE = (
    rnn_layer,
    lstm_layer,
    gru_layer,
    elman_layer,
    script_assert,
    raise_exception,
    unused_called,
    length,
    to_int,
    to_float,
    to_bool,
    to_tuple,
    to_list,
)
