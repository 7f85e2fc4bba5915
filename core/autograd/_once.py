"""``once_differentiable`` (torch.autograd.function.once_differentiable): a decorator for a
custom Function's ``backward`` that is not itself differentiable."""

from __future__ import annotations

import functools
from collections.abc import Callable

from . import grad_mode

__all__ = ["once_differentiable"]


def once_differentiable(fn: Callable) -> Callable:
    """Run the decorated ``backward`` with grad mode off: its results are plain tensors, so
    a double backward through it sees no dependence on the inputs (PyTorch raises there
    instead; ember gives no gradient through this node)."""

    @functools.wraps(fn)
    def wrapper(ctx, *args):
        with grad_mode.no_grad():
            return fn(ctx, *args)

    return wrapper
