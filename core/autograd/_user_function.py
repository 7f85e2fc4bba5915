"""Custom ``autograd.Function`` subclasses written for PyTorch: tensors in, tensors out.

ember's own ops take raw arrays in ``forward``/``backward`` (the op contract in
docs/architecture.md). A PyTorch script's custom Function calls tensor methods there instead
(``input.clamp(min=0)``, ``grad_output.clone()``, ``torch.exp(x)``), so a ``Function`` subclass
defined outside ember's own package gets its ``forward`` and ``backward`` wrapped once, at class
creation: they see tensors (``forward`` under ``no_grad``, as in PyTorch), ``ctx.saved_tensors``
gives tensors, and what they return is handed back to the engine as arrays. PyTorch 2's split
form (``forward(*args)`` without ``ctx`` plus ``setup_context(ctx, inputs, output)``) is
supported too. Under ``create_graph=True`` the engine already runs backward on tensors and the
wrapper passes through.
"""

from __future__ import annotations

import functools

import numpy as np

from ..backend import _cupy
from . import grad_mode

__all__ = ["adapt_user_function", "is_user_function"]


def is_user_function(cls: type) -> bool:
    """A Function subclass defined outside ember's own modules."""
    return (getattr(cls, "__module__", None) or "").partition(".")[0] != "ember"


def _is_array(a) -> bool:
    return isinstance(a, np.ndarray) or (
        _cupy.cupy is not None and isinstance(a, _cupy.cupy.ndarray)
    )


def _as_tensors(values):
    from ..tensor import Tensor

    return tuple(Tensor._wrap(v) if _is_array(v) else v for v in values)


def _as_arrays(out):
    from ..tensor import Tensor

    if isinstance(out, Tensor):
        return out._data
    if type(out) is tuple:
        return tuple(o._data if isinstance(o, Tensor) else o for o in out)
    return out


def _own(cls, name: str):
    """``cls``'s own (not inherited) plain function for the staticmethod ``name``."""
    attr = cls.__dict__.get(name)
    if isinstance(attr, staticmethod):
        return attr.__func__
    return attr if callable(attr) else None


def adapt_user_function(cls: type) -> None:
    """Wrap ``cls``'s own ``forward``/``backward`` to take and return tensors."""
    from .function import Function

    fwd = _own(cls, "forward")
    if fwd is not None and not getattr(fwd, "_ember_tensor_io", False):
        setup = getattr(cls, "setup_context", None)
        split = setup is not None and setup is not Function.__dict__.get("setup_context")

        @functools.wraps(fwd)
        def forward(ctx, *args, **kwargs):
            targs = _as_tensors(args)
            with grad_mode.no_grad():
                if split:
                    out = fwd(*targs, **kwargs)
                    type(ctx).setup_context(ctx, targs, out)
                else:
                    out = fwd(ctx, *targs, **kwargs)
            if ctx._saved:  # the engine tracks saved arrays (versions, double backward)
                ctx._saved = tuple(_as_arrays(s) for s in ctx._saved)
            return _as_arrays(out)

        forward._ember_tensor_io = True
        cls.forward = staticmethod(forward)

    bwd = _own(cls, "backward")
    if bwd is not None and not getattr(bwd, "_ember_tensor_io", False):

        @functools.wraps(bwd)
        def backward(ctx, *grads):
            if ctx._tensor_mode:  # create_graph: grads and saved values are tensors already
                return bwd(ctx, *grads)
            ctx._tensor_mode = True
            try:
                with grad_mode.no_grad():
                    res = bwd(ctx, *_as_tensors(grads))
            finally:
                ctx._tensor_mode = False
            return _as_arrays(res)

        backward._ember_tensor_io = True
        cls.backward = staticmethod(backward)
