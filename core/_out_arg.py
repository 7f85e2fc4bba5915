"""PyTorch's ``out=`` keyword on the top-level functions (``torch.matmul(a, b, out=c)``).

The op functions return fresh tensors; ``with_out`` wraps one so that ``out=`` writes the
result into the given tensor (or tuple of tensors) and returns it, with PyTorch's rules:

* the result must be castable to ``out``'s dtype (``result type Float can't be cast to the
  desired output type Long``); a wider ``out`` dtype receives the converted values;
* an ``out`` of another shape is resized (with PyTorch's deprecation warning when it had
  elements);
* no autograd: an input or ``out`` that requires grad while grad mode is on is an error;
* factory functions (``arange``, ``zeros``, ``rand`` ...) take ``out``'s dtype and device
  when no ``dtype`` is given.

``install`` wraps the names of ``OUT_FUNCTIONS`` that lack an ``out`` parameter in a module
namespace (``ember``); functions that already take ``out`` are left alone.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable

from ._numpy_names import renamer
from .autograd import grad_mode
from .overrides import _PLAIN, _tensor_like, any_relevant, handle_torch_function
from .tensor import Tensor

# torch functions documented with ``*, out=None`` (torch 2.13), the ones ember defines
OUT_FUNCTIONS = (
    "abs acos acosh add addcdiv addcmul addmm all amax amin angle any arange asin asinh atan "
    "atan2 atanh baddbmm bernoulli bitwise_and bitwise_left_shift bitwise_not bitwise_or "
    "bitwise_right_shift bitwise_xor bmm bucketize cat ceil clamp clip column_stack complex "
    "concat conj_physical copysign cos cosh cummax cummin cumprod cumsum deg2rad diag diff "
    "digamma div dot dstack empty eq erf erfc erfinv exp exp2 expm1 eye fix float_power floor "
    "floor_divide fmax fmin fmod frac frexp full gather gcd ge ger greater greater_equal gt "
    "heaviside histc histogram hstack hypot i0 igamma igammac index_select isneginf isposinf "
    "kthvalue lcm ldexp le lerp less less_equal lgamma linspace log log10 log1p log2 logaddexp "
    "logaddexp2 logcumsumexp logical_and logical_not logical_or logical_xor logit logspace "
    "logsumexp lt masked_select matmul max maximum median min minimum mm mode msort mul "
    "multinomial multiply mv mvlgamma nan_to_num nanmean nanmedian nanquantile narrow_copy ne "
    "neg negative nextafter nonzero norm normal not_equal ones outer polar polygamma pow "
    "quantile rad2deg rand randint randn randperm range reciprocal remainder renorm round "
    "row_stack rsqrt searchsorted sgn sigmoid sign signbit sin sinc sinh sqrt square stack std "
    "std_mean sub take_along_dim tan tanh topk tril triu trunc var var_mean vstack where xlogy "
    "zeros sum mean prod sort argsort argmax argmin"
).split()

# functions that accept ``out`` for the signature only and return a new tensor
_IGNORED_OUT = {"zeros"}


def _check_grad(name: str, args, kwargs, outs) -> None:
    if not grad_mode.is_grad_enabled():
        return
    values = [*args, *kwargs.values(), *outs]
    for v in values:
        items = v if isinstance(v, (list, tuple)) else (v,)
        if any(isinstance(t, Tensor) and t.requires_grad for t in items):
            raise RuntimeError(
                f"{name}(): functions with out=... arguments don't support automatic "
                "differentiation, but one of the arguments requires grad."
            )


def _write(result: Tensor, out: Tensor) -> None:
    from ._torch_misc import can_cast
    from .ops._util import scalar_type_name

    if not can_cast(result.dtype, out.dtype):
        raise RuntimeError(
            f"result type {scalar_type_name(result)} can't be cast to the desired output type "
            f"{scalar_type_name(out)}"
        )
    if tuple(out.shape) != tuple(result.shape):
        if out.numel() != 0:
            warnings.warn(
                f"An output with one or more elements was resized since it had shape "
                f"{list(out.shape)}, which does not match the required output shape "
                f"{list(result.shape)}. This behavior is deprecated, and in a future PyTorch "
                "release outputs will not be resized unless they have zero elements. You can "
                "explicitly reuse an out tensor t by resizing it, inplace, to zero elements "
                "with t.resize_(0).",
                UserWarning,
                stacklevel=4,
            )
        out.resize_(*result.shape)
    out.copy_(result)


def with_out(fn: Callable, name: str | None = None) -> Callable:
    """``fn`` with PyTorch's ``out=`` keyword (see the module docstring)."""
    name = name or fn.__name__
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        params = {}
    factory = "dtype" in params and "device" in params
    check = not factory  # a factory's first argument is a size or a list
    # torch's argument parser takes NumPy's names for ``dim`` and ``keepdim`` (``torch.all(x,
    # axis=-1, keepdims=True)``, as transformers' beam search writes it)
    ren = renamer(fn, name)

    # no defaults in the wrapper's own code and no ``__wrapped__``: tools that read a function's
    # source for its defaults (Sphinx's autodoc_preserve_defaults) or test for ``__wrapped__``
    # (vmap's patch check) see a plain function with the signature set below
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        # a tensor-like argument, any of them as in torch (DTensor, `add(t, tensor_like)`,
        # `out=tensor_like`), goes to its __torch_function__: tested here so that these
        # functions pay no second wrapper (core/_torch_function.py); Tensors and Python
        # scalars leave at the first two tests
        if check:
            relevant = any_relevant(args, kwargs)
            for x in relevant:
                if type(x) is not Tensor and type(x) not in _PLAIN and _tensor_like(x):
                    return handle_torch_function(wrapper, relevant, *args, **kwargs)
        if ren is not None and kwargs:
            ren(kwargs)
        out = kwargs.pop("out", None)
        if out is None:
            return fn(*args, **kwargs)
        outs = out if isinstance(out, tuple) else (out,)
        for o in outs:
            if not isinstance(o, Tensor):
                raise TypeError(
                    f"{name}(): argument 'out' must be Tensor, not {type(out).__name__}"
                )
        _check_grad(name, args, kwargs, outs)
        if factory and isinstance(out, Tensor):
            kwargs.setdefault("dtype", out.dtype)
            kwargs.setdefault("device", out.device)
        result = fn(*args, **kwargs)
        results = tuple(result) if isinstance(result, (list, tuple)) else (result,)
        if isinstance(out, tuple) != isinstance(result, tuple) or len(results) != len(outs):
            want = "Tensor" if isinstance(result, Tensor) else f"tuple of {len(results)} Tensors"
            raise TypeError(f"{name}(): argument 'out' must be {want}, not {type(out).__name__}")
        with grad_mode.no_grad():
            for r, o in zip(results, outs):
                _write(r, o)
        if isinstance(result, tuple) and hasattr(result, "_fields"):  # max/sort/topk ...
            return type(result)(*outs)
        return out

    del wrapper.__wrapped__
    base = inspect.signature(fn) if params else None
    if base is not None:
        if "out" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
            wrapper.__signature__ = base
        else:
            extra = inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, default=None)
            wrapper.__signature__ = base.replace(parameters=[*params.values(), extra])
    wrapper._ember_out_wrapped = fn
    if getattr(fn, "_ember_public_api", None) is fn and fn.__name__ == name:
        fn._ember_public_api = wrapper  # fn dispatches: it hands __torch_function__ this face
    if ren is not None:
        wrapper._ember_numpy_names = fn
    wrapper.__ember_torch_function__ = check  # (factories are not dispatched, as in PyTorch)
    return wrapper


def install(namespace: dict) -> None:
    """Give each ``OUT_FUNCTIONS`` name in ``namespace`` an ``out=`` keyword where it has none."""
    for name in OUT_FUNCTIONS:
        fn = namespace.get(name)
        if fn is None or not callable(fn) or hasattr(fn, "_ember_out_wrapped"):
            continue
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):  # pragma: no cover
            continue
        if "out" in params and name not in _IGNORED_OUT:
            continue
        namespace[name] = with_out(fn, name)
