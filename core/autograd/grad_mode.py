"""Grad-mode switches: no_grad, enable_grad, set_grad_enabled, inference_mode (thread-local)."""

from __future__ import annotations

import functools
import threading


class _State(threading.local):
    enabled = True


_state = _State()


def is_grad_enabled() -> bool:
    """Whether gradient recording is on in this thread: False inside :class:`~ember.no_grad`,
    ``inference_mode`` or ``set_grad_enabled(False)``.
    """
    return _state.enabled


def is_inference_mode_enabled() -> bool:
    """True inside an enabled ``inference_mode`` block (thread-local)."""
    return getattr(_state, "inference", False)


class _GradModeContext:
    """Base for the context managers; also usable as decorators, like PyTorch's."""

    _mode = True

    def __enter__(self):
        self._prev = _state.enabled
        _state.enabled = self._mode

    def __exit__(self, *exc):
        _state.enabled = self._prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return fn(*args, **kwargs)

        return wrapper


class _NoParamContext(_GradModeContext):
    # ``@ember.no_grad`` without parentheses decorates too (PyTorch >= 2.0; transformers'
    # weight converters use it): called with a function, the class returns the wrapper
    def __new__(cls, orig_func=None):
        if orig_func is None:
            return super().__new__(cls)
        if not callable(orig_func):
            raise TypeError(f"{cls.__name__}() takes no arguments, got {orig_func!r}")
        return cls()(orig_func)


class no_grad(_NoParamContext):
    """Disable gradient tracking inside the block: no graph is recorded."""

    _mode = False


class enable_grad(_NoParamContext):
    """Enable gradient tracking inside the block (e.g. within ``no_grad``)."""

    _mode = True


class inference_mode(_GradModeContext):
    """Like ``no_grad`` (ember has no separate inference tensors); ``mode=False`` is a no-op."""

    def __init__(self, mode: bool = True):
        self._mode = not mode

    def __enter__(self):
        super().__enter__()
        self._prev_inference = getattr(_state, "inference", False)
        _state.inference = not self._mode

    def __exit__(self, *exc):
        _state.inference = self._prev_inference
        return super().__exit__(*exc)

    def __call__(self, fn):
        mode = not self._mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with inference_mode(mode):
                return fn(*args, **kwargs)

        return wrapper


class set_grad_enabled(_GradModeContext):
    """Set grad mode on construction (as a function call) and restore it on exit of a block."""

    def __init__(self, mode: bool):
        self._prev = _state.enabled
        self._mode = bool(mode)
        _state.enabled = self._mode

    def __enter__(self):
        pass

    def __exit__(self, *exc):
        _state.enabled = self._prev
        return False

    def __call__(self, fn):
        _state.enabled = self._prev  # used as a decorator: the construction must not stick
        mode = self._mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)

        return wrapper
