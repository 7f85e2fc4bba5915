"""The ops of :class:`~ember.masked.MaskedTensor` (its ``__torch_function__``) and the masked
reductions and normalizations of ``ember.masked`` on plain tensors with a ``mask=``."""

from __future__ import annotations

import math

from ..overrides import DisableTorchFunctionSubclass
from ..tensor import Tensor
from ._core import _ELEMENTWISE, _OWN, _REDUCTIONS, _SHAPE, MaskedTensor, _plain, _wrap

__all__ = [
    "sum",
    "mean",
    "prod",
    "amin",
    "amax",
    "argmin",
    "argmax",
    "softmax",
    "log_softmax",
]

_builtin_sum = sum


def _fill_value(op: str, dtype) -> float:
    """The identity ``op`` reduces unspecified elements to."""
    import ember

    if op in ("sum", "mean"):
        return 0
    if op == "prod":
        return 1
    big = math.inf if dtype.is_floating_point else ember.iinfo(dtype).max
    return big if op in ("amin", "argmin", "min") else -big


def _input_mask(input: Tensor, mask) -> Tensor:
    import ember

    if mask is None:
        return ember.ones_like(input, dtype=ember.bool)
    return mask.expand_as(input) if tuple(mask.shape) != tuple(input.shape) else mask


def _reduce(op: str, input: Tensor, dim=None, keepdim=False, dtype=None, mask=None) -> Tensor:
    """``op`` over the elements of ``input`` where ``mask`` is True (a plain tensor)."""
    m = _input_mask(input, mask)
    x = input.masked_fill(~m, _fill_value(op, input.dtype))
    if dtype is not None:
        x = x.to(dtype)
    dims = () if dim is None else ((dim,) if isinstance(dim, int) else tuple(dim))
    if op == "mean":
        count = m.sum(dims, keepdim=keepdim) if dims else m.sum()
        total = x.sum(dims, keepdim=keepdim) if dims else x.sum()
        # a fully unspecified slice divides by 1 (its result is unspecified anyway; no 0/0)
        return total / count.clamp(min=1).to(total.dtype if total.is_floating_point() else None)
    if op in ("argmin", "argmax"):
        return getattr(x, op)() if dim is None else getattr(x, op)(dim, keepdim=keepdim)
    fn = {"min": "amin", "max": "amax"}.get(op, op)
    if not dims:
        return getattr(x, fn)()
    if fn == "prod":
        for d in sorted((d % x.dim() for d in dims), reverse=True):
            x = x.prod(d, keepdim=keepdim)
        return x
    return getattr(x, fn)(dims, keepdim=keepdim)


def _make_reduction(op: str):
    def reduction(input: Tensor, dim=None, *, keepdim: bool = False, dtype=None, mask=None):
        return _reduce(op, input, dim, keepdim, dtype, mask)

    reduction.__name__ = op
    reduction.__doc__ = (
        f"``{op}`` of ``input`` over ``dim`` (all dims if ``None``) counting only the elements "
        "where ``mask`` is True (``torch.masked``'s masked reductions)."
    )
    return reduction


sum = _make_reduction("sum")
mean = _make_reduction("mean")
prod = _make_reduction("prod")
amin = _make_reduction("amin")
amax = _make_reduction("amax")
argmin = _make_reduction("argmin")
argmax = _make_reduction("argmax")


def softmax(input: Tensor, dim: int, *, dtype=None, mask=None) -> Tensor:
    """Softmax over ``dim`` of the elements where ``mask`` is True; the others get 0 (a row
    with none specified is all 0, not ``nan``)."""
    import ember

    m = _input_mask(input, mask)
    x = input if dtype is None else input.to(dtype)
    # the lowest finite value, not -inf: a fully unspecified row then gives no 0/0 (nan)
    out = x.masked_fill(~m, ember.finfo(x.dtype).min).softmax(dim)
    return out.masked_fill(~m, 0.0)


def log_softmax(input: Tensor, dim: int, *, dtype=None, mask=None) -> Tensor:
    """Log-softmax over ``dim`` of the elements where ``mask`` is True (others ``-inf``)."""
    m = _input_mask(input, mask)
    x = input if dtype is None else input.to(dtype)
    return x.masked_fill(~m, -math.inf).log_softmax(dim)


# ---- MaskedTensor's __torch_function__ ---------------------------------------------------


def _masks(args) -> list[Tensor]:
    return [a._masked_mask for a in args if isinstance(a, MaskedTensor)]


def _unwrap(x):
    if isinstance(x, MaskedTensor):
        return _plain(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(e) for e in x)
    return x


def _run(func, args, kwargs):
    with DisableTorchFunctionSubclass():
        return func(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})


def _name(func) -> str:
    name = getattr(func, "__name__", "")
    return {"less": "lt", "greater": "gt", "negative": "neg"}.get(name, name)


def _reduction(name: str, args, kwargs):
    self, rest = args[0], args[1:]
    if not isinstance(self, MaskedTensor):
        raise TypeError("Input to reduce_dim must be a MaskedTensor")
    mask = self._masked_mask
    dim = kwargs.pop("dim", rest[0] if rest else None)
    keepdim = kwargs.pop("keepdim", rest[1] if len(rest) > 1 else False)
    dtype = kwargs.pop("dtype", None)
    if name in ("max", "min") and dim is not None:
        raise TypeError(f"{name}(dim) is not implemented for MaskedTensor; use a{name}")
    data = _reduce(name, _plain(self), dim, keepdim, dtype, mask)
    if dim is None:
        if name in ("argmin", "argmax"):  # PyTorch's all-reduce returns them in data's dtype
            data = data.to(self.dtype)
        return _wrap(data, mask.any())
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    m = mask
    for d in sorted((d % mask.dim() for d in dims), reverse=True):
        m = m.any(d, keepdim=keepdim)
    return _wrap(data, m)


def _where(args, kwargs):
    import ember

    cond, a, b = (list(args) + [kwargs.get("input"), kwargs.get("other")])[:3]

    def mask_of(x):
        if isinstance(x, MaskedTensor):
            return x._masked_mask
        return ember.ones(tuple(x.shape) if isinstance(x, Tensor) else (), dtype=ember.bool)

    cond = _plain(cond)
    with DisableTorchFunctionSubclass():
        data = ember.where(cond, _plain(a), _plain(b))
        mask = ember.where(cond, mask_of(a), mask_of(b))
    return _wrap(data, mask.expand_as(data) if mask.shape != data.shape else mask)


def _safe(x):
    if not isinstance(x, MaskedTensor) or not x.is_floating_point():
        return x
    with DisableTorchFunctionSubclass():
        p = _plain(x)
        bad = ~(x._masked_mask | p.isfinite())
        return p.masked_fill(bad, 1.0) if bool(bad.any()) else p


def dispatch(func, args, kwargs):
    """``MaskedTensor.__torch_function__``: ``func`` on the data, the result given its mask."""
    name = _name(func)
    if name in _OWN or name.startswith("__") and name not in ("__getitem__",):
        if name in ("__repr__", "__str__"):
            return MaskedTensor.__repr__(args[0])
        with DisableTorchFunctionSubclass():
            return func(*args, **kwargs)
    if name == "where":
        return _where(args, kwargs)
    if name in _REDUCTIONS:
        return _reduction(name, args, dict(kwargs))
    if name in ("softmax", "log_softmax"):
        self = args[0]
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        fn = softmax if name == "softmax" else log_softmax
        return _wrap(fn(_plain(self), dim, mask=self._masked_mask), self._masked_mask)
    masks = _masks(args) + _masks(kwargs.values())
    if name in _SHAPE:
        data = _run(func, args, kwargs)
        mask_args = [a._masked_mask if isinstance(a, MaskedTensor) else _unwrap(a) for a in args]
        with DisableTorchFunctionSubclass():
            mask = func(*mask_args, **{k: _unwrap(v) for k, v in kwargs.items()})
        return _wrap(data, mask)
    if name in _ELEMENTWISE:
        for m in masks[1:]:
            if m.shape != masks[0].shape or not bool((m == masks[0]).all()):
                raise ValueError(
                    "Input masks must match. If you need support for this, please open an "
                    "issue on Github."
                )
        # unspecified nan/inf inputs read as 1 so they cannot reach a gradient through the
        # op's backward (0 * nan): PyTorch masks its gradients instead
        pattern = next((a._masked_pattern for a in args if isinstance(a, MaskedTensor)), None)
        args = tuple(_safe(a) for a in args)
        data = _run(func, args, kwargs)
        if not isinstance(data, Tensor):
            return data
        mask = masks[0]
        return _wrap(data, mask.expand_as(data) if mask.shape != data.shape else mask, pattern)
    raise TypeError(
        f"{name} is not implemented for MaskedTensor: use get_data() / get_mask() / "
        "to_tensor(value) to compute it on plain tensors"
    )
