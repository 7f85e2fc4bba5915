"""The machinery behind the op table (tests/op_table.py): sample specs, the record type,
NumPy references shared by several records, and the helpers the drivers use to build inputs.

A sample's positional arguments are ``Arg`` specs (tensors drawn by ``make_array``), NumPy
arrays (constant tensors) or plain Python values (scalars, passed through unchanged). Its
keyword arguments go to both ``call`` and ``ref``. Every float tensor argument is
differentiable when the op has a gradient.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# ---- samples ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arg:
    """A tensor argument: its shape, how its values are drawn, and its dtype."""

    shape: tuple
    kind: str = "float"
    dtype: str = "float32"
    high: int = 0  # index kinds: values in [0, high)
    dim: int = 0  # "unique_index": indices are distinct along this dim


def T(*shape, kind: str = "float", dtype: str | None = None) -> Arg:
    """A float (or ``dtype``) tensor of ``shape`` drawn by ``kind``."""
    if dtype is None:
        dtype = {"int": "int64", "posint": "int64", "bool": "bool"}.get(kind, "float32")
    return Arg(tuple(shape), kind, dtype)


def Idx(*shape, high: int, unique_dim: int | None = None) -> Arg:
    """An int64 index tensor with values in [0, high) (distinct along ``unique_dim``)."""
    if unique_dim is None:
        return Arg(tuple(shape), "index", "int64", high)
    return Arg(tuple(shape), "unique_index", "int64", high, unique_dim)


def Mask(*shape) -> Arg:
    """A random bool tensor."""
    return Arg(tuple(shape), "bool", "bool")


@dataclass
class Sample:
    """One call of an op: positional ``args`` (see the module docstring) and ``kwargs``."""

    args: tuple
    kwargs: dict = field(default_factory=dict)
    # False where central differences are meaningless (ties of amax/amin, whose gradient
    # PyTorch splits evenly): the gradient is still compared with torch's
    fd: bool = True
    # False where double backward is not supported at this point (noted in the record)
    gg: bool = True


def S(*args, fd: bool = True, gg: bool = True, **kwargs) -> Sample:
    return Sample(args, kwargs, fd, gg)


def make_array(arg: Arg, rng: np.random.Generator) -> np.ndarray:
    """Draw the values of one tensor argument (float64 for float kinds, cast later)."""
    shape, kind = arg.shape, arg.kind
    n = int(np.prod(shape, dtype=np.int64))
    if kind == "float":
        a = rng.standard_normal(shape)
    elif kind == "pos":  # domain of log, sqrt, rsqrt, a ** b
        a = rng.uniform(0.5, 2.0, shape)
    elif kind == "unit":
        a = rng.uniform(-0.9, 0.9, shape)
    elif kind == "away":  # |x| >= 0.5: away from the kinks of relu/abs and zero divisors
        a = rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    elif kind == "frac":  # away from integers and halves: floor, ceil, round, //, %
        a = rng.integers(-4, 4, shape) + rng.choice([0.2, 0.3, 0.7, 0.8], shape)
    elif kind == "distinct":  # no ties, gaps far above gradcheck's eps: max, min, argmax
        a = (rng.permutation(n) - n / 2).reshape(shape) * 0.3 + rng.uniform(-0.05, 0.05, shape)
    elif kind == "int":
        a = rng.integers(-5, 6, shape)
    elif kind == "posint":
        a = rng.integers(1, 6, shape)
    elif kind == "bool":
        a = rng.random(shape) < 0.5
    elif kind == "index":
        a = rng.integers(0, arg.high, shape)
    elif kind == "unique_index":  # distinct along ``dim``: scatter is deterministic then
        full = list(shape)
        full[arg.dim] = arg.high
        a = np.argsort(rng.random(full), axis=arg.dim)
        a = np.take(a, np.arange(shape[arg.dim]), axis=arg.dim)
    else:
        raise ValueError(f"unknown sample kind {kind!r}")
    return np.asarray(a).astype(arg.dtype)


def sample_arrays(spec: OpSpec, i: int) -> list:
    """The sample's positional arguments with every ``Arg`` drawn (deterministic per op)."""
    rng = np.random.default_rng(zlib.crc32(f"{spec.name}/{i}".encode()))
    return [make_array(a, rng) if isinstance(a, Arg) else a for a in spec.samples[i].args]


# ---- records ------------------------------------------------------------------------------


@dataclass
class OpSpec:
    """One op of the table: how to call it in ember and torch, its NumPy reference, samples."""

    name: str
    call: Callable[..., Any]
    ref: Callable[..., Any] | None
    samples: list[Sample]
    grad: bool = True  # differentiable (gradcheck and gradient parity)
    gradgrad: bool = True  # double backward supported (gradgradcheck)
    torch_call: Callable[..., Any] | None = None
    torch_grad: bool = True  # False: torch has no derivative there (gradients not compared)
    binary: bool = False  # elementwise binary: hypothesis broadcasting test
    rtol: float = 1.3e-6  # float32 tolerances (forward vs NumPy and parity vs torch)
    atol: float = 1e-5
    grad_rtol: float = 1e-5
    grad_atol: float = 1e-5

    def __repr__(self) -> str:
        return f"OpSpec({self.name!r})"

    def call_torch(self, torch, *args, **kwargs):
        fn = self.torch_call or self.call
        return fn(torch, *args, **kwargs)


# ---- NumPy references -------------------------------------------------------------------


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def dim0(ref):
    """Torch reduces a 0-d tensor over dim 0 (or -1) to itself; NumPy has no axis there, so
    the reference reduces the 1-element array and returns 0-d results."""

    def wrapped(x, *args, **kw):
        if np.ndim(x) or not (args or kw.get("dim") is not None):
            return ref(x, *args, **kw)
        if args:
            args = (0,) + args[1:]
        else:
            kw = {**kw, "dim": 0}
        out = ref(x.reshape(1), *args, **kw)
        if isinstance(out, tuple):
            return tuple(np.reshape(o, ()) for o in out)
        return np.reshape(out, ())

    return wrapped


def np_logsumexp(x, dim, keepdim=False):
    m = np.max(x, axis=dim, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=dim, keepdims=True)) + m
    return out if keepdim else np.squeeze(out, axis=dim)


def np_max(x, dim, keepdim=False):
    if x.ndim == 0:  # torch reduces a 0-d tensor over dim 0 or -1 to itself
        return x, np.array(0)
    return (np.max(x, axis=dim, keepdims=keepdim), np.argmax(x, axis=dim, keepdims=keepdim))


def np_min(x, dim, keepdim=False):
    return (np.min(x, axis=dim, keepdims=keepdim), np.argmin(x, axis=dim, keepdims=keepdim))


def np_squeeze(x, dim=None):
    if dim is None:
        return np.squeeze(x)
    dim = dim % max(x.ndim, 1)
    return np.squeeze(x, dim) if x.ndim and x.shape[dim] == 1 else x


def np_norm(x, p=2, dim=None, keepdim=False):
    a = np.abs(x)
    if p == float("inf"):
        return np.max(a, axis=dim, keepdims=keepdim)
    return np.sum(a**p, axis=dim, keepdims=keepdim) ** (1 / p)


def np_split(x, sizes, dim=0):
    if isinstance(sizes, int):
        sizes = [sizes] * -(-x.shape[dim] // sizes)
        sizes[-1] = x.shape[dim] - sum(sizes[:-1])
    return np.split(x, np.cumsum(sizes)[:-1], axis=dim)


def np_chunk(x, chunks, dim=0):
    return np_split(x, -(-x.shape[dim] // chunks), dim)


def np_pad(x, pad, value=0.0):
    width = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        width[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    # negative padding crops
    x = x[tuple(slice(max(-lo, 0), n - max(-hi, 0)) for (lo, hi), n in zip(width, x.shape))]
    width = [(max(lo, 0), max(hi, 0)) for lo, hi in width]
    return np.pad(x, width, constant_values=value)


def np_full_index(index, dim):
    full = list(np.indices(index.shape, sparse=True))
    full[dim] = index
    return tuple(full)


def np_scatter(x, dim, index, src=None, value=None, add=False):
    out = x.copy()
    full = np_full_index(index, dim)
    vals = value if src is None else src[tuple(slice(0, n) for n in index.shape)]
    if add:
        np.add.at(out, full, vals)
    else:
        out[full] = vals
    return out


def np_index_add(x, dim, index, src, alpha=1):
    out = x.copy()
    np.add.at(out, (slice(None),) * dim + (index,), src * alpha)
    return out


def np_setitem(x, v, idx):
    out = x.copy()
    out[idx] = v
    return out


def setitem_clone(x, v, idx):
    """``x[idx] = v`` on a clone (ember or torch): setitem as an out-of-place, testable op."""
    y = x.clone()
    y[idx] = v
    return y


def np_masked_select(x, mask):
    shape = np.broadcast_shapes(x.shape, mask.shape)
    return np.broadcast_to(x, shape)[np.broadcast_to(mask, shape)]


def np_take_along_dim(x, idx, dim):
    shape = list(
        np.broadcast_shapes(
            x.shape[:dim] + (1,) + x.shape[dim + 1 :], idx.shape[:dim] + (1,) + idx.shape[dim + 1 :]
        )
    )
    sx, si = list(shape), list(shape)
    sx[dim], si[dim] = x.shape[dim], idx.shape[dim]
    return np.take_along_axis(np.broadcast_to(x, sx), np.broadcast_to(idx, si), axis=dim)


def np_lerp(a, b, w):
    return a + w * (b - a)


# ---- driving the table -------------------------------------------------------------------


def _is_float_arg(a) -> bool:
    if isinstance(a, Arg):
        return a.dtype.startswith("float")
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"


def has_grad_input(spec: OpSpec, i: int) -> bool:
    """The sample has a non-empty float tensor argument to differentiate."""
    return any(
        _is_float_arg(a) and int(np.prod(np.shape(a) if isinstance(a, np.ndarray) else a.shape)) > 0
        for a in spec.samples[i].args
    )


def grad_samples(ops: list[OpSpec], attr: str = "grad") -> list[tuple[OpSpec, int]]:
    """(spec, i) for the samples gradcheck (``attr="grad"``) or gradgradcheck can run."""
    return [
        (spec, i)
        for spec in ops
        if spec.grad and getattr(spec, attr)
        for i, s in enumerate(spec.samples)
        if s.fd and (attr == "grad" or s.gg) and has_grad_input(spec, i)
    ]


def all_samples(ops: list[OpSpec]) -> list[tuple[OpSpec, int]]:
    return [(spec, i) for spec in ops for i in range(len(spec.samples))]


def sample_id(pair) -> str:
    spec, i = pair
    return f"{spec.name}-{i}"


def reference_inputs(arrays: list) -> list:
    """The NumPy reference sees float64 copies of float arrays (the exact values)."""
    return [
        a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
        for a in arrays
    ]


def framework_inputs(
    m, arrays: list, *, float_dtype=None, requires_grad: bool = False, device=None
) -> list:
    """Arrays as ``m`` tensors (``m`` is ember or torch); float ones optionally cast and
    marked ``requires_grad`` when non-empty."""
    out = []
    for a in arrays:
        if not isinstance(a, np.ndarray):
            out.append(a)
            continue
        is_float = a.dtype.kind == "f"
        if is_float and float_dtype is not None:
            a = a.astype(float_dtype)
        if m.__name__ == "torch":
            t = m.from_numpy(np.array(a, order="C"))  # a C-ordered copy (0-d stays 0-d)
        else:
            t = m.tensor(a, device=device)
        if requires_grad and is_float and a.size:
            t.requires_grad_(True)
        out.append(t)
    return out


def flat_outputs(out) -> list:
    """An op's outputs as a list (tuples, namedtuples and lists of tensors are flattened)."""
    if isinstance(out, (tuple, list)):
        return list(out)
    return [out]


def to_numpy(x) -> np.ndarray:
    """A tensor's values (ember or torch, CPU or GPU) or a reference result as an array."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
        if hasattr(x, "resolve_neg"):  # torch's lazy conjugate/negative views (complex grads)
            x = x.resolve_conj().resolve_neg()
        return np.asarray(x.numpy() if hasattr(x, "numpy") else x)
    return np.asarray(x)
