"""The meta device: arrays that carry a shape and a dtype but no data.

A :class:`MetaArray` is a NumPy ``ndarray`` subclass whose every stride is 0 over one element
(``np.broadcast_to(np.zeros((), dtype), shape)``): a 10-billion-element meta array holds one
element of memory, views (``reshape``, ``transpose``, slicing) stay zero-stride for free, and
``.shape``/``.dtype``/``.ndim``/``.size`` answer as usual. Every NumPy entry point an op can take
(ufuncs, array functions, the ndarray methods that allocate) is intercepted here and answers
with a new meta array of the result's shape and dtype, so ember's ops run unchanged on meta
tensors: their forward code *is* the shape inference. Elementwise ufuncs, reductions and
``matmul`` compute the result's shape without touching full-size data; other functions run
once on the zero-stride stand-ins and only the result's shape and dtype are kept.

``get_array_module("meta")`` gives :data:`xp`, a namespace whose factories (``empty``,
``zeros``, ``arange``, ...) make meta arrays and whose random generator draws nothing; it lives
in ``_meta_namespace.py`` and is re-exported here.
"""

from __future__ import annotations

import numpy as np

_NO_DATA = "Cannot copy out of meta tensor; no data!"
_ITEM = "Tensor.item() cannot be called on meta tensors"
_VOID = np.empty((), np.dtype([]))  # a zero-byte element: indexing shapes at no cost


class _NeedsValues(RuntimeError):
    """Raised when code reads a meta array's values (``item``, ``bool``, ``int``, ...)."""


class _NoData(NotImplementedError):
    """Raised when code copies a meta array's data out (``get``, ``tobytes``)."""


def _data_dependent(what: str) -> NotImplementedError:
    # torch raises NotImplementedError for these on meta (no meta kernel for masked_select,
    # unique, bincount; nonzero's meta registration refuses)
    return NotImplementedError(
        f"{what} on meta tensors: the output's shape depends on the tensor's values, which "
        "meta tensors do not have (a data-dependent output shape)"
    )


def check_data_independent(what: str, *arrays, mask=None) -> None:
    """Raise torch's kind of error (NotImplementedError) when an op whose output shape
    depends on values (``nonzero``, ``masked_select``, ``unique``, boolean-mask indexing) gets
    a meta array, or, with ``mask`` (an index), when that index holds a boolean array."""
    if any(type(a) is MetaArray for a in arrays) and (mask is None or _has_mask(mask)):
        raise _data_dependent(what)


def run(fn, ctx, arrays, kwargs):
    """Run an op's ``forward``/``backward`` for meta arrays; the results become meta arrays.

    First with ``ctx.xp`` the meta namespace: NumPy-only fast paths (compiled kernels that
    fill ``np.empty`` buffers, cache blocking) step aside for the array-module code, where
    every call answers with shapes at no cost. Should that code path fail (some lead to CUDA
    kernels), the op runs again with NumPy on the meta arrays; and when the code reads values
    (a bounds check, a data-dependent branch), once more on zero-stride stand-ins full of
    zeros. ``ctx.xp`` is NumPy again afterwards (the engine reads it).
    """
    # (arrays an op allocates itself hold garbage here: no floating-point warnings from them)
    with np.errstate(all="ignore"):
        ctx.xp = xp
        try:
            out = fn(ctx, *arrays, **kwargs)
            if not _arrays_only(out):  # e.g. a path that computed with ember tensors instead
                out = None
        except Exception:
            out = None
        finally:
            ctx.xp = np
        if out is None:
            try:
                out = fn(ctx, *arrays, **kwargs)
            except (_NeedsValues, _NoData):
                out = _on_stand_ins(fn, ctx, arrays, kwargs)
            except Exception as e:
                if not _is_linalg_error(e):
                    raise
                out = fn(ctx, *_identities(tuple(arrays)), **_identities(kwargs))
    return to_meta(out)


def _on_stand_ins(fn, ctx, arrays, kwargs):
    try:
        return fn(ctx, *_plain(tuple(arrays)), **_plain_dict(kwargs))
    except Exception as e:
        if not _is_linalg_error(e):
            raise
        return fn(ctx, *_identities(tuple(arrays)), **_identities(kwargs))


def _is_linalg_error(e: Exception) -> bool:
    # NumPy's, SciPy's and ember's (a RuntimeError, as torch's): stand-ins full of zeros are
    # singular, identities are not
    return type(e).__name__ == "LinAlgError"


def _identities(a):
    """Stand-ins no factorization rejects: identity matrices for floating meta arrays of 2 or
    more dimensions (zero-stride over the batch), the zero stand-ins for the rest."""
    if type(a) is MetaArray:
        if a.ndim >= 2 and a.dtype.kind in "fc":
            return np.broadcast_to(np.eye(*a.shape[-2:], dtype=a.dtype), a.shape)
        return a.view(np.ndarray)
    if type(a) is tuple or type(a) is list:
        return type(a)(_identities(x) for x in a)
    if type(a) is dict:
        return {k: _identities(v) for k, v in a.items()}
    return a


def _arrays_only(out) -> bool:
    if type(out) is tuple or type(out) is list:
        return all(_arrays_only(o) for o in out)
    return out is None or isinstance(out, (np.ndarray, np.generic, int, float, complex, bool))


def _plain_dict(kwargs):
    return {k: _plain(v) for k, v in kwargs.items()}


def empty(shape, dtype=np.float32) -> MetaArray:
    """A meta array of ``shape`` and ``dtype`` (one element of memory, whatever the shape)."""
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    return np.broadcast_to(np.zeros((), dtype), shape).view(MetaArray)


def is_meta(a) -> bool:
    return type(a) is MetaArray


def to_meta(r):
    """``r`` (an op's result on stand-ins) as meta: arrays become meta arrays, tuples and
    lists are mapped, anything else (Python numbers, shapes) is returned as is."""
    if type(r) is MetaArray:
        return r
    if isinstance(r, np.ndarray):
        if not any(r.strides):  # already zero-stride (a view of a stand-in): no copy
            return r.view(MetaArray)
        return empty(r.shape, r.dtype)
    if isinstance(r, np.generic):
        return empty((), r.dtype)
    if type(r) is tuple or type(r) is list:
        return type(r)(to_meta(x) for x in r)
    return r


def _plain(a):
    """The zero-stride NumPy view behind meta arrays (recursively in tuples and lists)."""
    if type(a) is MetaArray:
        return a.view(np.ndarray)
    if type(a) is tuple or type(a) is list:
        return type(a)(_plain(x) for x in a)
    return a


def _small(a):
    """A stand-in with the dtype (and number of dimensions) of ``a`` and at most one element."""
    if isinstance(a, np.ndarray):
        return np.zeros(tuple(min(s, 1) for s in a.shape), a.dtype)
    return a


def _matmul_shape(a, b) -> tuple:
    sa, sb = a.shape, b.shape
    if not sa or not sb:
        raise ValueError("matmul: Input operand does not have enough dimensions")
    A = (1,) + sa if len(sa) == 1 else sa
    B = sb + (1,) if len(sb) == 1 else sb
    if A[-1] != B[-2]:
        raise ValueError(
            "matmul: Input operand 1 has a mismatch in its core dimension 0, with gufunc "
            f"signature (n?,k),(k,m?)->(n?,m?) (size {B[-2]} is different from {A[-1]})"
        )
    out = np.broadcast_shapes(A[:-2], B[:-2]) + (A[-2], B[-1])
    if len(sb) == 1:
        out = out[:-1]
    if len(sa) == 1:
        out = out[:-2] + out[-1:] if len(sb) > 1 else out[:-1]
    return out


def _out_or(kwargs, result):
    out = kwargs.get("out")
    if out is None:
        return result
    return out[0] if type(out) is tuple and len(out) == 1 else out


def _has_mask(key) -> bool:
    """Whether an index holds a meta boolean array (a CPU mask has values: its count is known,
    as torch, which turns it into indices first)."""
    keys = key if type(key) is tuple else (key,)
    return any(type(k) is MetaArray and k.dtype == np.bool_ for k in keys)


def _ufunc(ufunc, method, inputs, kwargs):
    # (tensors of two devices never meet here: Function.apply rejects them first; plain
    # arrays an op makes itself, a dropout mask say, just take the meta shape)
    kw = {k: v for k, v in kwargs.items() if k not in ("out", "where")}
    with np.errstate(all="ignore"):
        if method == "__call__" and ufunc.signature is None:
            shape = np.broadcast_shapes(*(np.shape(x) for x in inputs))
            r = ufunc(*(_small(x) for x in inputs), **kw)  # the result dtype(s)
            res = (
                tuple(empty(shape, o.dtype) for o in r)
                if ufunc.nout > 1
                else empty(shape, np.asarray(r).dtype)
            )
            return _out_or(kwargs, res)
        if method == "__call__" and ufunc is np.matmul:
            a, b = inputs
            shape = _matmul_shape(np.asarray(a), np.asarray(b))
            dt = np.matmul(
                np.zeros((1, 1), np.asarray(a).dtype), np.zeros((1, 1), np.asarray(b).dtype)
            )
            return _out_or(kwargs, empty(shape, dt.dtype))
        if method in ("reduce", "accumulate") and isinstance(inputs[0], np.ndarray):
            x = inputs[0]
            axis = kw.get("axis", 0)
            r = getattr(ufunc, method)(_small(x), **kw)
            if method == "accumulate":
                return _out_or(kwargs, empty(x.shape, r.dtype))
            axes = range(x.ndim) if axis is None else np.atleast_1d(axis)
            axes = {int(a) % max(x.ndim, 1) for a in axes}
            if kw.get("keepdims", False):
                shape = tuple(1 if i in axes else s for i, s in enumerate(x.shape))
            else:
                shape = tuple(s for i, s in enumerate(x.shape) if i not in axes)
            return _out_or(kwargs, empty(shape, np.asarray(r).dtype))
        # other gufuncs, outer, reduceat, at: run once on the zero-stride stand-ins
        if method == "at":
            return None
        plain = dict(kw)
        return _out_or(kwargs, to_meta(getattr(ufunc, method)(*_plain(inputs), **plain)))


def _like(proto, dtype=None, order="K", subok=True, shape=None, **_):
    shape = proto.shape if shape is None else shape
    return empty(shape, np.dtype(dtype) if dtype is not None else np.asarray(proto).dtype)


def _full_like(proto, fill_value, dtype=None, **kw):
    return _like(proto, dtype, **kw)


def _nothing(*args, **kwargs):
    return None  # writes into meta arrays have nowhere to go


# functions whose meta answer needs no run at all
_DIRECT = {
    np.empty_like: _like,
    np.zeros_like: _like,
    np.ones_like: _like,
    np.full_like: _full_like,
    np.copyto: _nothing,
    np.put: _nothing,
    np.place: _nothing,
    np.putmask: _nothing,
    np.fill_diagonal: _nothing,
    np.put_along_axis: _nothing,
}


class MetaArray(np.ndarray):
    """A shape and a dtype with no data (see the module docstring). Reading values raises
    PyTorch's errors; writing them does nothing, as on torch's meta device."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        direct = _DIRECT.get(func)
        if direct is not None:
            return direct(*args, **kwargs)
        if (
            func is np.dot
            and all(np.ndim(a) >= 1 for a in args[:2])
            and max(np.ndim(a) for a in args[:2]) <= 2
        ):
            return _ufunc(np.matmul, "__call__", args[:2], kwargs)
        out = kwargs.pop("out", None) if isinstance(kwargs.get("out"), MetaArray) else None
        with np.errstate(all="ignore"):
            try:
                r = func(*_plain(args), **_plain(kwargs))
            except np.linalg.LinAlgError:  # zeros are singular: identities are not
                r = func(*_identities(args), **_identities(kwargs))
            r = to_meta(r)
        return r if out is None else out

    # ---- values: none to read, nowhere to write -------------------------------------------
    def __getitem__(self, key):
        shape = np.shape(np.broadcast_to(_VOID, self.shape)[_plain(key)])
        return empty(shape, self.dtype)

    def __setitem__(self, key, value) -> None:
        pass

    def fill(self, value) -> None:
        pass

    def sort(self, *args, **kwargs) -> None:
        pass

    def copy(self, order="K") -> MetaArray:
        return empty(self.shape, self.dtype)

    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True) -> MetaArray:
        return empty(self.shape, dtype)

    def ravel(self, order="C") -> MetaArray:
        return empty((self.size,), self.dtype)

    def flatten(self, order="C") -> MetaArray:
        return empty((self.size,), self.dtype)

    def __copy__(self) -> MetaArray:
        return empty(self.shape, self.dtype)

    def __deepcopy__(self, memo) -> MetaArray:
        return empty(self.shape, self.dtype)

    def __reduce__(self):
        return (empty, (self.shape, self.dtype))

    def get(self, *args, **kwargs):
        """CuPy's device-to-host copy, which ember calls to leave a device: none from meta."""
        raise _NoData(_NO_DATA)

    def item(self, *args):
        raise _NeedsValues(_ITEM)

    def tolist(self):
        raise _NeedsValues(_ITEM)

    def tobytes(self, order="C"):
        raise _NoData(_NO_DATA)

    def __bool__(self) -> bool:
        if self.size != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        raise _NeedsValues(_ITEM)

    def _scalar(self, *args):
        raise _NeedsValues(_ITEM)

    __float__ = __int__ = __index__ = __complex__ = _scalar

    def __repr__(self) -> str:
        return f"MetaArray(shape={self.shape}, dtype={self.dtype})"

    __str__ = __repr__


# The array namespace of the meta device (_meta_namespace.py), imported last because it needs
# MetaArray and the helpers above; re-exported here by name (run() reads xp at call time).
from ._meta_namespace import _GENERATOR, _dt, _MetaGenerator, _MetaNamespace, xp  # noqa: E402,F401
