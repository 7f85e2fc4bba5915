"""Grad-mode switches: no_grad, enable_grad, set_grad_enabled, inference_mode (thread-local)."""

from __future__ import annotations

import functools
import inspect
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


def _decorate(make_ctx, fn):
    """``fn`` run inside a fresh ``make_ctx()``. A generator function gets the mode around each
    resumption, not just around the call that creates it, as PyTorch's decorators do
    (ultralytics' predictor is a generator under ``@torch.inference_mode()``)."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator_wrapper(*args, **kwargs):
            gen = fn(*args, **kwargs)
            try:
                with make_ctx():
                    response = gen.send(None)
                while True:
                    try:
                        request = yield response
                    except GeneratorExit:
                        with make_ctx():
                            gen.close()
                        raise
                    except BaseException as exc:
                        with make_ctx():
                            response = gen.throw(exc)
                    else:
                        with make_ctx():
                            response = gen.send(request)
            except StopIteration as stop:
                return stop.value

        return generator_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with make_ctx():
            return fn(*args, **kwargs)

    return wrapper


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
        return _decorate(self.__class__, fn)


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
        return _decorate(lambda: inference_mode(mode), fn)


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
        return _decorate(lambda: set_grad_enabled(mode), fn)
