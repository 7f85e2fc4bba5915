"""``ember.testing``: ``assert_close`` (PyTorch's default tolerances and messages), the
deprecated ``assert_allclose``, and ``make_tensor`` for test inputs."""

from __future__ import annotations

import collections.abc
import math
import numbers
import warnings

import numpy as np

from .backend.dtype import get_default_dtype, to_dtype
from .tensor import Tensor

__all__ = ["assert_close", "assert_allclose", "make_tensor"]

# PyTorch's default (rtol, atol) per dtype; every other dtype compares exactly.
_TOLERANCES = {
    "float16": (1e-3, 1e-5),
    "bfloat16": (1.6e-2, 1e-5),
    "float32": (1.3e-6, 1e-5),
    "float64": (1e-7, 1e-7),
    "complex64": (1.3e-6, 1e-5),
    "complex128": (1e-7, 1e-7),
}


class _Mismatch(AssertionError):
    """A failed comparison; ``path`` names the item in nested inputs."""


def _tolerances(*dtype_names: str, rtol=None, atol=None) -> tuple[float, float]:
    if (rtol is None) ^ (atol is None):
        raise ValueError(
            "Both 'rtol' and 'atol' must be either specified or omitted, but got "
            f"no {'rtol' if rtol is None else 'atol'}."
        )
    if rtol is not None:
        return float(rtol), float(atol)
    pairs = [_TOLERANCES.get(n, (0.0, 0.0)) for n in dtype_names]
    return max(p[0] for p in pairs), max(p[1] for p in pairs)


def _host(t: Tensor) -> np.ndarray:
    d = t._data
    return d if type(d) is np.ndarray else d.get()


def _attr_mismatch(name: str, a, b):
    raise _Mismatch(f"The values for attribute '{name}' do not match: {a} != {b}.")


def _compare_arrays(
    actual: np.ndarray,
    expected: np.ndarray,
    rtol: float,
    atol: float,
    equal_nan: bool,
    scalar: bool,
) -> str | None:
    """None when close, else PyTorch's message."""
    if actual.dtype.kind == "b":
        actual, expected = actual.astype(np.int64), expected.astype(np.int64)
    if actual.dtype.kind == "V":  # bfloat16: compare in float32
        actual, expected = actual.astype(np.float32), expected.astype(np.float32)
    with np.errstate(all="ignore"):
        close = np.isclose(actual, expected, rtol=rtol, atol=atol, equal_nan=equal_nan)
        if actual.dtype.kind in "fc":  # infinities of the same sign are equal
            close |= actual == expected
    if close.all():
        return None
    exact = rtol == 0 and atol == 0
    kind = "equal" if exact else "close"
    with np.errstate(all="ignore"):
        if actual.dtype.kind in "iu":
            abs_diff = np.abs(actual.astype(np.int64) - expected.astype(np.int64))
        else:
            abs_diff = np.abs(actual - expected)
        # the relative difference in the operands' float dtype (the default one for integers),
        # as PyTorch computes it
        rel_dtype = actual.dtype if actual.dtype.kind in "fc" else get_default_dtype().np
        rel_diff = abs_diff.astype(rel_dtype) / np.abs(expected).astype(rel_dtype)

    def up_to(tol):
        return "" if exact else f" (up to {tol} allowed)"

    if scalar:  # compared as Python numbers, as PyTorch does
        a, e = actual.item(), expected.item()
        diff = abs(a - e)
        rel = diff / abs(e) if e != 0 else (math.nan if diff != diff else math.inf)
        return (
            f"Scalars are not {kind}!\n\nExpected {e} but got {a}.\n"
            f"Absolute difference: {diff}{up_to(atol)}\n"
            f"Relative difference: {rel}{up_to(rtol)}"
        )
    n_bad, total = int((~close).sum()), close.size

    def greatest(diff):
        flat = diff.reshape(-1)
        nans = np.isnan(flat) if flat.dtype.kind in "fc" else np.zeros(flat.shape, bool)
        i = int(np.argmax(nans)) if nans.any() else int(np.argmax(flat))
        return flat[i].item(), tuple(int(x) for x in np.unravel_index(i, diff.shape))

    a_val, a_idx = greatest(abs_diff)
    r_val, r_idx = greatest(rel_diff)
    return (
        f"Tensor-likes are not {kind}!\n\nMismatched elements: {n_bad} / {total} "
        f"({100 * n_bad / total:.1f}%)\n"
        f"Greatest absolute difference: {a_val} at index {a_idx}{up_to(atol)}\n"
        f"Greatest relative difference: {r_val} at index {r_idx}{up_to(rtol)}"
    )


def _compare_tensors(
    actual, expected, rtol, atol, equal_nan, check_device, check_dtype, check_stride
):
    is_np = isinstance(actual, np.ndarray)
    a = actual if is_np else _host(actual)
    e = expected if is_np else _host(expected)
    if a.shape != e.shape:
        shape_cls = tuple if is_np else type(actual.shape)
        _attr_mismatch("shape", shape_cls(a.shape), shape_cls(e.shape))
    if not is_np and check_device and actual.device != expected.device:
        _attr_mismatch("device", actual.device, expected.device)
    a_dt = a.dtype if is_np else actual.dtype
    e_dt = e.dtype if is_np else expected.dtype
    if check_dtype and a_dt != e_dt:
        _attr_mismatch("dtype", a_dt, e_dt)
    if check_stride and not is_np and actual.stride() != expected.stride():
        _attr_mismatch("stride()", actual.stride(), expected.stride())
    names = [str(a.dtype), str(e.dtype)] if is_np else [a_dt.name, e_dt.name]
    rtol, atol = _tolerances(*names, rtol=rtol, atol=atol)
    if a.dtype != e.dtype:  # check_dtype=False: compare in the promoted dtype
        from .backend.dtype import from_numpy_dtype, promote_types

        common = promote_types(from_numpy_dtype(a.dtype), from_numpy_dtype(e.dtype)).np
        a, e = a.astype(common), e.astype(common)
    return _compare_arrays(a, e, rtol, atol, equal_nan, scalar=a.ndim == 0)


def _compare(actual, expected, path: str, **opts):
    if (
        isinstance(actual, Tensor)
        and isinstance(expected, Tensor)
        or (isinstance(actual, np.ndarray) and isinstance(expected, np.ndarray))
    ):
        opts = {k: v for k, v in opts.items() if k != "allow_subclasses"}
        return _compare_tensors(actual, expected, **opts)
    if (
        isinstance(actual, numbers.Number)
        and isinstance(expected, numbers.Number)
        and not (isinstance(actual, (Tensor, np.ndarray)))
    ):
        if (
            opts["check_dtype"]
            and type(actual) is not type(expected)
            and not (isinstance(actual, int) and isinstance(expected, int))
        ):
            _attr_mismatch("type", type(actual), type(expected))
        kind = (
            "float64"
            if any(isinstance(x, (float, complex)) for x in (actual, expected))
            else "int64"
        )
        rtol, atol = _tolerances(kind, rtol=opts["rtol"], atol=opts["atol"])
        return _compare_arrays(
            np.asarray(actual), np.asarray(expected), rtol, atol, opts["equal_nan"], scalar=True
        )
    if isinstance(actual, collections.abc.Mapping) and isinstance(
        expected, collections.abc.Mapping
    ):
        # keys(), as torch: iterating a mapping-like container may not give its keys (a
        # TensorDict iterates over its first batch dim)
        akeys, ekeys = set(actual.keys()), set(expected.keys())
        if akeys != ekeys:
            raise _Mismatch(
                f"The keys of the mappings do not match:\nMissing keys in the "
                f"actual mapping: {sorted(map(str, ekeys - akeys))}\n"
                "Additional keys in the actual mapping: "
                f"{sorted(map(str, akeys - ekeys))}"
            )
        for k in expected.keys():
            msg = _compare(actual[k], expected[k], f"{path}[{k!r}]", **opts)
            if msg is not None:
                return msg + f"\n\nThe failure occurred for item {path}[{k!r}]"
        return None
    if (
        isinstance(actual, collections.abc.Sequence)
        and not isinstance(actual, str)
        and isinstance(expected, collections.abc.Sequence)
        and not isinstance(expected, str)
    ):
        if len(actual) != len(expected):
            raise _Mismatch(
                f"The length of the sequences mismatch: {len(actual)} != {len(expected)}"
            )
        for i, (x, y) in enumerate(zip(actual, expected)):
            msg = _compare(x, y, f"{path}[{i}]", **opts)
            if msg is not None:
                return msg + f"\n\nThe failure occurred for item {path}[{i}]"
        return None
    raise TypeError(
        f"No comparison pair was able to handle inputs of type {type(actual)} and {type(expected)}."
    )


def assert_close(
    actual,
    expected,
    *,
    allow_subclasses: bool = True,
    rtol: float | None = None,
    atol: float | None = None,
    equal_nan: bool = False,
    check_device: bool = True,
    check_dtype: bool = True,
    check_layout: bool = True,
    check_stride: bool = False,
    msg=None,
) -> None:
    """Assert ``actual`` and ``expected`` are close: ``|actual - expected| <= atol + rtol *
    |expected|`` elementwise, after checking shape, device and dtype.

    Tensors, NumPy arrays, Python numbers, and sequences/mappings of them (compared item by
    item) are accepted. Without ``rtol``/``atol`` the tolerances are PyTorch's per dtype
    (float32: 1.3e-6/1e-5, float64: 1e-7/1e-7, float16: 1e-3/1e-5, bfloat16: 1.6e-2/1e-5,
    exact otherwise). ``msg`` replaces the message, or (a callable) rewrites it.

    Raises:
        AssertionError: listing the mismatched elements and the greatest differences.
    """
    try:
        message = _compare(
            actual,
            expected,
            "",
            rtol=rtol,
            atol=atol,
            equal_nan=equal_nan,
            check_device=check_device,
            check_dtype=check_dtype,
            check_stride=check_stride,
            allow_subclasses=allow_subclasses,
        )
    except _Mismatch as exc:
        message = str(exc)
    if message is None:
        return
    if callable(msg):
        message = msg(message)
    elif msg is not None:
        message = msg
    raise AssertionError(message)


def assert_allclose(
    actual,
    expected,
    rtol: float | None = None,
    atol: float | None = None,
    equal_nan: bool = True,
    msg: str = "",
) -> None:
    """Deprecated: use ``assert_close``. Converts inputs to tensors; dtypes may differ."""
    from .creation import as_tensor

    warnings.warn(
        "`torch.testing.assert_allclose()` is deprecated since 1.12 and will be "
        "removed in a future release. Please use `torch.testing.assert_close()` "
        "instead.",
        FutureWarning,
        stacklevel=2,
    )
    actual = actual if isinstance(actual, Tensor) else as_tensor(actual)
    expected = expected if isinstance(expected, Tensor) else as_tensor(expected, dtype=actual.dtype)
    if rtol is None and atol is None:
        rtol, atol = _tolerances(actual.dtype.name, expected.dtype.name)
    assert_close(
        actual,
        expected,
        rtol=rtol,
        atol=atol,
        equal_nan=equal_nan,
        check_device=True,
        check_dtype=False,
        check_stride=False,
        msg=msg or None,
    )


def make_tensor(
    *shape,
    dtype,
    device=None,
    low: float | None = None,
    high: float | None = None,
    requires_grad: bool = False,
    noncontiguous: bool = False,
    exclude_zero: bool = False,
    memory_format=None,
) -> Tensor:
    """A tensor of ``shape`` filled with random values in ``[low, high)``.

    Defaults: ``[-9, 9)`` for floating/complex (each part), ``[-9, 10)`` for signed and
    ``[0, 10)`` for unsigned integers (``high`` exclusive), random True/False for bool;
    ``low``/``high`` are clamped to the dtype's range. ``noncontiguous`` returns a strided
    view; ``exclude_zero`` replaces zeros by the dtype's smallest normal (floats) or 1.
    """
    from .backend.finfo import finfo, iinfo
    from .creation import randint, tensor
    from .random import default_generator

    if len(shape) == 1 and isinstance(shape[0], collections.abc.Sequence):
        shape = tuple(shape[0])
    shape = tuple(int(s) for s in shape)
    dt = to_dtype(dtype)
    if low is not None and high is not None and low > high:
        raise ValueError(f"`low` must be less than or equal to `high`, but got {low} > {high}")
    for name, v in (("low", low), ("high", high)):
        if v is not None and isinstance(v, float) and math.isnan(v):
            raise ValueError(f"`{name}` cannot be NaN, but got {name}={v}")
    gen = default_generator.numpy()
    if dt.name == "bool":
        arr = gen.integers(0, 2, size=shape).astype(np.bool_)
    elif dt.category == 1:  # integers: [low, high)
        info = iinfo(dt)
        lo = (
            max(info.min, math.ceil(-9 if low is None else low))
            if dt.is_signed
            else max(0, math.ceil(0 if low is None else low))
        )
        hi = min(info.max + 1, math.ceil(10 if high is None else high))
        if hi <= lo:
            hi = lo + 1
        arr = randint(lo, hi, shape, dtype=dt).numpy()
    else:
        info = finfo(dt)
        lo = max(-info.max, -9.0 if low is None else float(low))
        hi = min(info.max, 9.0 if high is None else float(high))

        def draw():
            return gen.uniform(lo, hi, size=shape) if lo < hi else np.full(shape, lo)

        arr = draw() + 1j * draw() if dt.is_complex else draw()
        arr = arr.astype(dt.np)
    if exclude_zero:
        arr = np.asarray(arr).copy()
        fill = 1 if dt.category in (0, 1) else finfo(dt).tiny
        arr[arr == 0] = fill
    arr = np.asarray(arr, dtype=dt.np)
    if noncontiguous and arr.size > 1:
        wide = np.empty(shape[:-1] + (shape[-1] * 2,) if shape else (2,), dtype=dt.np)
        wide[..., ::2] = arr
        arr = wide[..., ::2]
    if device is None or str(device).split(":")[0] == "cpu":
        t = Tensor._wrap(arr)  # keeps a noncontiguous view as it is
    else:
        t = tensor(arr, dtype=dt, device=device)
    if requires_grad:
        t.requires_grad_(True)
    return t
