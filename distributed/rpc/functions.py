"""``ember.distributed.rpc.functions``: ``async_execution``."""

from __future__ import annotations

import functools

__all__ = ["async_execution"]


def async_execution(fn):
    """Mark ``fn`` as returning an ``ember.futures.Future``: the callee answers the call when
    that future completes, without holding an RPC thread meanwhile (PyTorch's decorator; with
    ``@staticmethod`` or ``@classmethod``, put it below them)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    wrapper._wrapped_async_rpc_function = fn
    return wrapper


def _is_async(fn) -> bool:
    return getattr(fn, "_wrapped_async_rpc_function", None) is not None
