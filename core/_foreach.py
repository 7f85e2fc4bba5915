"""PyTorch's ``torch._foreach_*`` functions: one op applied across lists of tensors.

PyTorch fuses these into multi-tensor kernels; here each is a loop over ember's own ops, so
results, dtypes and autograd are exactly those of the per-tensor calls. Third-party optimizers
call them directly (nanochat's MuonAdamW: ``torch._foreach_copy_(params, updates)``; Lion and
timm's optimizers: ``_foreach_mul_``, ``_foreach_add_``, ``_foreach_lerp_`` ...).

The second operand may be a Python scalar, a list of scalars, a tensor or a list of tensors,
as in PyTorch. The in-place forms (trailing ``_``) return ``None``; the others a list.
"""

from __future__ import annotations

from collections.abc import Sequence

from .tensor import Tensor

__all__: list[str] = []


def _check_list(name: str, tensors) -> list:
    if isinstance(tensors, Tensor) or not isinstance(tensors, Sequence):
        raise TypeError(
            f"{name}(): argument 'self' must be a list or tuple of Tensors, "
            f"not {type(tensors).__name__}"
        )
    return list(tensors)


def _others(name: str, other, n: int) -> list:
    """Broadcast the second operand to one value per tensor (a scalar or one tensor repeats)."""
    if isinstance(other, Sequence) and not isinstance(other, (str, Tensor)):
        if len(other) != n:
            raise RuntimeError(
                f"{name}(): tensor lists must have the same number of tensors, got {n} and "
                f"{len(other)}"
            )
        return list(other)
    return [other] * n


def _unary(name: str, method: str):
    def fn(self):
        return [getattr(t, method)() for t in _check_list(name, self)]

    fn.__name__ = name
    fn.__doc__ = f"``[t.{method}() for t in self]`` (PyTorch's fused list op)."
    return fn


def _binary(name: str, method: str):
    def fn(self, other, **kwargs):
        ts = _check_list(name, self)
        others = _others(name, other, len(ts))
        if method in ("maximum", "minimum"):  # a scalar operand is a clamp (torch.maximum
            # itself takes only tensors)
            key = "min" if method == "maximum" else "max"
            return [
                getattr(t, method)(o) if isinstance(o, Tensor) else t.clamp(**{key: o})
                for t, o in zip(ts, others)
            ]
        return _done(method, [getattr(t, method)(o, **kwargs) for t, o in zip(ts, others)])

    fn.__name__ = name
    fn.__doc__ = f"``t.{method}(o)`` for each tensor ``t`` and operand ``o`` (one fused list op)."
    return fn


def _done(method: str, results: list):
    return None if method.endswith("_") else results


def _pointwise(name: str, method: str):
    """addcmul / addcdiv: ``self + value * t1 op t2``; ``scalars`` gives one value per tensor."""

    def fn(self, tensor1, tensor2, scalars=1, value=None):
        ts = _check_list(name, self)
        vals = _others(name, scalars if value is None else value, len(ts))
        vals = [v.item() if isinstance(v, Tensor) else v for v in vals]
        out = [getattr(t, method)(a, b, value=v) for t, a, b, v in zip(ts, tensor1, tensor2, vals)]
        return _done(method, out)

    fn.__name__ = name
    return fn


def _foreach_lerp(self, tensors1, weight):
    ts = _check_list("_foreach_lerp", self)
    return [
        t.lerp(e, w) for t, e, w in zip(ts, tensors1, _others("_foreach_lerp", weight, len(ts)))
    ]


def _foreach_lerp_(self, tensors1, weight) -> None:
    ts = _check_list("_foreach_lerp_", self)
    for t, e, w in zip(ts, tensors1, _others("_foreach_lerp_", weight, len(ts))):
        t.lerp_(e, w)


def _foreach_copy_(self, src, non_blocking: bool = False) -> None:
    """Copy each ``src[i]`` into ``self[i]`` (shapes broadcast, dtypes cast, as ``copy_``)."""
    ts = _check_list("_foreach_copy_", self)
    for t, s in zip(ts, _others("_foreach_copy_", src, len(ts)), strict=True):
        t.copy_(s)


def _foreach_zero_(self) -> None:
    for t in _check_list("_foreach_zero_", self):
        t.zero_()


def _foreach_norm(self, ord=2, dtype=None) -> list:
    """The vector norm of each tensor (a 0-d tensor per input)."""
    from . import linalg

    return [linalg.vector_norm(t, ord, dtype=dtype) for t in _check_list("_foreach_norm", self)]


_UNARY = (
    "abs", "acos", "asin", "atan", "ceil", "cos", "cosh", "erf", "erfc", "exp", "expm1",
    "floor", "frac", "lgamma", "log", "log10", "log1p", "log2", "neg", "reciprocal", "round",
    "rsqrt", "sigmoid", "sign", "sin", "sinh", "sqrt", "tan", "tanh", "trunc",
)  # fmt: skip
_BINARY = ("add", "sub", "mul", "div", "pow", "maximum", "minimum", "clamp_min", "clamp_max")

for _m in _UNARY:
    globals()[f"_foreach_{_m}"] = _unary(f"_foreach_{_m}", _m)
    globals()[f"_foreach_{_m}_"] = _unary(f"_foreach_{_m}_", f"{_m}_")
for _m in _BINARY:
    globals()[f"_foreach_{_m}"] = _binary(f"_foreach_{_m}", _m)
    if _m not in ("maximum", "minimum"):  # no Tensor.maximum_: defined below
        globals()[f"_foreach_{_m}_"] = _binary(f"_foreach_{_m}_", f"{_m}_")
for _m in ("addcmul", "addcdiv"):
    globals()[f"_foreach_{_m}"] = _pointwise(f"_foreach_{_m}", _m)
    globals()[f"_foreach_{_m}_"] = _pointwise(f"_foreach_{_m}_", f"{_m}_")


def _foreach_maximum_(self, other) -> None:
    ts = _check_list("_foreach_maximum_", self)
    for t, o in zip(ts, _others("_foreach_maximum_", other, len(ts))):
        t.copy_(t.maximum(o) if isinstance(o, Tensor) else t.clamp(min=o))


def _foreach_minimum_(self, other) -> None:
    ts = _check_list("_foreach_minimum_", self)
    for t, o in zip(ts, _others("_foreach_minimum_", other, len(ts))):
        t.copy_(t.minimum(o) if isinstance(o, Tensor) else t.clamp(max=o))


def _foreach_max(self) -> tuple:
    """The largest element of each tensor (a 0-d tensor per input)."""
    return tuple(t.max() for t in _check_list("_foreach_max", self))


def _foreach_clone(self, *, memory_format=None) -> list:
    """A copy of each tensor."""
    return [t.clone() for t in _check_list("_foreach_clone", self)]


__all__ = sorted(n for n in globals() if n.startswith("_foreach_"))
