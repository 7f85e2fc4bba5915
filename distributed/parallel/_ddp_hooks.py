"""DDP's communication hooks: checking a registered hook, and a bucket it communicates
(PyTorch's ``register_comm_hook``; the built-in hooks live in ``algorithms.ddp_comm_hooks``)."""

from __future__ import annotations

import inspect

import ember
from ember import _interop

__all__ = ["checked_comm_hook", "HookWork"]


def checked_comm_hook(current, state: object, hook) -> tuple:
    """``(state, hook)`` once it is known to be callable as ``hook(state, bucket)``; torch's
    errors for a second registration or a hook of the wrong shape."""
    if current is not None:
        raise RuntimeError(
            "register_comm_hook or register_builtin_comm_hook can only be called once."
        )
    if not callable(hook):
        raise TypeError("Communication hook must be callable.")
    try:
        inspect.signature(hook).bind(state, None)
    except TypeError:
        raise TypeError(
            "Communication hook must take two arguments (state, bucket), got "
            f"{getattr(hook, '__qualname__', hook)!r}"
        ) from None
    except ValueError:  # no signature to inspect (a builtin): called as it is
        pass
    return state, hook


class HookWork:
    """A bucket communicated by the registered comm hook: waiting gets the hook's result and
    writes it into the bucket (unless the hook wrote it there itself)."""

    __slots__ = ("_future", "_flat", "_hook")

    def __init__(self, comm_hook: tuple, buckets: list, b) -> None:
        from ..algorithms.grad_bucket import GradBucket

        state, hook = comm_hook
        index = buckets.index(b)
        bucket = GradBucket(index, index == len(buckets) - 1, b.flat, b.views, b.params)
        self._future = hook(state, bucket)
        self._flat, self._hook = b.flat, getattr(hook, "__qualname__", repr(hook))
        if not hasattr(self._future, "wait"):
            raise TypeError(
                f"the communication hook {self._hook} must return a Future, got "
                f"{type(self._future).__name__}"
            )

    def wait(self) -> None:
        out = self._future.wait()
        out = out[0] if isinstance(out, (list, tuple)) and len(out) == 1 else out
        if not isinstance(out, ember.Tensor) or out.numel() != self._flat.size:
            raise RuntimeError(
                f"the communication hook {self._hook} must return a Future of a tensor with "
                f"the bucket's {self._flat.size} elements, got "
                f"{type(out).__name__}{tuple(out.shape) if hasattr(out, 'shape') else ''}"
            )
        got = _interop.array_of(out)
        if got is not self._flat:
            xp = ember.backend.get_array_module(self._flat)
            xp.copyto(self._flat, got.reshape(-1).astype(self._flat.dtype, copy=False))
