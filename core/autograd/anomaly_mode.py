"""Anomaly detection for autograd: ``detect_anomaly`` / ``set_detect_anomaly``.

While enabled, every graph node records the stack of the forward call that made it, and the
engine checks each backward's results: a NaN raises ``RuntimeError("Function
'DivBackward0' returned nan values in its 0th output.")`` after a warning that shows that
forward traceback, as PyTorch does.
"""

from __future__ import annotations

import traceback
import warnings

__all__ = ["detect_anomaly", "set_detect_anomaly"]

# [enabled, check_nan]; read by Function.apply (to record forward stacks) and by the engine
_state = [False, True]
_on_change = None  # set by autograd.graph: recomputes Function.apply's one "extras" flag


def is_anomaly_enabled() -> bool:
    """Whether anomaly detection is on (PyTorch's ``torch.is_anomaly_enabled``)."""
    return _state[0]


def is_anomaly_check_nan_enabled() -> bool:
    """Whether anomaly detection checks backward results for NaN."""
    return _state[1]


def set_anomaly_enabled(enabled: bool, check_nan: bool = True) -> None:
    """Turn anomaly detection on or off (PyTorch's ``torch.set_anomaly_enabled``)."""
    _state[0], _state[1] = bool(enabled), bool(check_nan)
    if _on_change is not None:
        _on_change()


def record_forward_stack(node) -> None:
    """Called by ``Function.apply`` for each new graph node while detection is on."""
    node._anomaly_stack = traceback.format_stack()[:-2]  # without apply and this call


def check_backward(node, results) -> None:
    """Called by the engine after ``node``'s backward while detection is on."""
    if not _state[1]:
        return
    for i, g in enumerate(results):
        if g is None:
            continue
        data = getattr(g, "_data", g)
        if data.dtype.kind not in "fc":
            continue
        xp = node.xp if not hasattr(g, "_data") else None
        if xp is None:
            from ..backend.device import get_array_module

            xp = get_array_module(data)
        if bool(xp.isnan(data).any()):
            stack = getattr(node, "_anomaly_stack", None)
            if stack:
                warnings.warn(
                    f"Error detected in {node.name()}. Traceback of forward call that "
                    "caused the error:\n" + "".join(stack),
                    UserWarning,
                    stacklevel=2,
                )
            raise RuntimeError(f"Function '{node.name()}' returned nan values in its {i}th output.")


class detect_anomaly:
    r"""Context manager (or decorator) that enables anomaly detection for the autograd engine.

    Any backward computation that generates NaN raises an error naming the op, after a
    warning showing the traceback of the forward operation that created it.

    .. warning:: For debugging only: it slows every op that records a graph.

    Args:
        check_nan (bool): raise if backward generates NaN (default: ``True``).
    """

    def __init__(self, check_nan: bool = True) -> None:
        self.prev = _state[0]
        self.check_nan = check_nan
        self.prev_check_nan = _state[1]
        warnings.warn(
            "Anomaly Detection has been enabled. This mode will increase the runtime "
            "and should only be enabled for debugging.",
            stacklevel=2,
        )

    def __enter__(self) -> None:
        set_anomaly_enabled(True, self.check_nan)

    def __exit__(self, *args) -> bool:
        set_anomaly_enabled(self.prev, self.prev_check_nan)
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__(self.check_nan):
                return fn(*args, **kwargs)

        return wrapper


class set_detect_anomaly:
    r"""Context manager (or plain call) that sets anomaly detection on or off.

    Args:
        mode (bool): enable (``True``) or disable (``False``) detection.
        check_nan (bool): raise if backward generates NaN (default: ``True``).
    """

    def __init__(self, mode: bool, check_nan: bool = True) -> None:
        self.prev = _state[0]
        self.prev_check_nan = _state[1]
        set_anomaly_enabled(mode, check_nan)

    def __enter__(self) -> None:
        pass

    def __exit__(self, *args) -> bool:
        set_anomaly_enabled(self.prev, self.prev_check_nan)
        return False
