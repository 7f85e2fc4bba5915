"""The ``*_copy`` functions: out-of-place twins of the view ops (``torch.view_copy``, ...).

PyTorch exports them for functionalization passes; each returns what the view op returns, but
in fresh memory that never aliases the input (gradients flow exactly as through the view).
"""

from __future__ import annotations

from ..tensor import Tensor
from . import convert


def _copying(view_fn, name: str):
    def fn(input: Tensor, *args, **kwargs):
        out = view_fn(input, *args, **kwargs)
        if isinstance(out, (tuple, list)):
            return type(out)(convert.clone(o) for o in out)
        return convert.clone(out)

    fn.__name__ = name
    fn.__doc__ = f"Like ``{view_fn.__name__}``, but the result is a copy, never a view."
    return fn


def _alias(input: Tensor) -> Tensor:
    return input.view(input.shape)


def _slice(input: Tensor, dim: int = 0, start=None, end=None, step: int = 1) -> Tensor:
    index = [slice(None)] * input.dim()
    index[dim] = slice(start, end, step)
    return input[tuple(index)]


def _unfold(input: Tensor, dimension: int, size: int, step: int) -> Tensor:
    return input.unfold(dimension, size, step)


def _view(input: Tensor, *shape_or_dtype) -> Tensor:
    return input.view(*shape_or_dtype)


def _bind():
    import ember

    from .._numpy_names import with_numpy_names

    sources = {
        "alias_copy": _alias,
        "as_strided_copy": ember.as_strided,
        "detach_copy": ember.detach,
        "diagonal_copy": ember.diagonal,
        "expand_copy": Tensor.expand,
        "permute_copy": ember.permute,
        "select_copy": ember.select,
        "slice_copy": with_numpy_names(_slice, "slice_copy"),
        "split_copy": ember.split,
        "split_with_sizes_copy": ember.split_with_sizes,
        "squeeze_copy": ember.squeeze,
        "t_copy": ember.t,
        "transpose_copy": ember.transpose,
        "unbind_copy": ember.unbind,
        "unfold_copy": _unfold,
        "unsqueeze_copy": ember.unsqueeze,
        "view_as_complex_copy": ember.view_as_complex,
        "view_as_real_copy": ember.view_as_real,
        "view_copy": _view,
    }
    return {name: _copying(fn, name) for name, fn in sources.items()}


#: name -> function; ``ember.<name>`` resolves here lazily (core/__init__.py's __getattr__)
COPIES: dict = {}


def get(name: str):
    if not COPIES:
        COPIES.update(_bind())
    return COPIES.get(name)
