"""THE op table: one record per op, driving the forward, gradcheck and torch-parity tests.

A record (``OpSpec``) names the op, says how to call it, gives its NumPy reference and its
samples. ``call(m, *args, **kwargs)`` is written once for both frameworks: ``m`` is the
``ember`` module or the ``torch`` module (operators and methods read the same in both);
``torch_call`` overrides it where torch spells the op differently. ``ref(*arrays, **kwargs)``
is the NumPy reference, evaluated on float64 copies of the inputs. Samples and the record type
are described in tests/op_support.py.

Adding an op: one record here (DESIGN.md §3). Keep samples small: gradcheck perturbs every
element, and gradgradcheck does so through the double-backward graph.
"""

from __future__ import annotations

import numpy as np
import op_table_linalg_ext as _table_linalg_ext  # noqa: E402
import op_table_math as _table_math  # noqa: E402
import op_table_misc as _table_misc  # noqa: E402
import op_table_shape_ext as _table_shape_ext  # noqa: E402
import op_table_sorting as _table_sorting  # noqa: E402
from op_support import (
    Idx,
    Mask,
    OpSpec,
    S,
    Sample,
    T,
    dim0,
    np_chunk,
    np_full_index,
    np_index_add,
    np_lerp,
    np_logsumexp,
    np_masked_select,
    np_max,
    np_min,
    np_norm,
    np_pad,
    np_scatter,
    np_setitem,
    np_sigmoid,
    np_split,
    np_squeeze,
    np_take_along_dim,
    setitem_clone,
)


def nn_pad(m):
    return m.nn.functional.pad if m.__name__ == "torch" else m.pad


def unary_samples(kind: str = "float") -> list[Sample]:
    """Matrix, 0-d, empty and 3-d inputs."""
    return [S(T(3, 4, kind=kind)), S(T(kind=kind)), S(T(0, 3, kind=kind)), S(T(2, 1, 3, kind=kind))]


def binary_samples(ka: str = "float", kb: str = "float", scalar: float = 1.5) -> list[Sample]:
    """Same shape, broadcast both ways, 0-d with n-d, empty, and Python scalars on each side."""
    return [
        S(T(3, 4, kind=ka), T(3, 4, kind=kb)),
        S(T(2, 3, 1, kind=ka), T(4, kind=kb)),
        S(T(1, 4, kind=ka), T(3, 1, kind=kb)),
        S(T(kind=ka), T(3, kind=kb)),
        S(T(3, kind=ka), T(kind=kb)),
        S(T(kind=ka), T(kind=kb)),
        S(T(0, 3, kind=ka), T(1, 3, kind=kb)),
        S(T(2, 3, kind=ka), scalar),
        S(scalar, T(2, 3, kind=kb)),
    ]


def int_binary_samples(kb: str = "int") -> list[Sample]:
    return [
        S(T(3, 4, kind="int"), T(3, 4, kind=kb)),
        S(T(2, 3, kind="int"), T(3, kind=kb)),
        S(T(2, 3, kind="int"), 3),
    ]


def _unary(name, fn, ref, kind="float", **kw) -> OpSpec:
    """``ember.name(x)`` / ``torch.name(x)`` with its NumPy ufunc."""
    return OpSpec(
        name,
        fn if fn is not None else (lambda m, x: getattr(m, name)(x)),
        ref,
        unary_samples(kind),
        **kw,
    )


_IDX_ROWS = np.array([2, 0, 2])  # a constant index with a repeat (gradients accumulate)


# ---- the table ----------------------------------------------------------------------------

OPS: list[OpSpec] = [
    # -- binary arithmetic (operators) --
    OpSpec(
        "add", lambda m, a, b: a + b, np.add, binary_samples() + int_binary_samples(), binary=True
    ),
    OpSpec(
        "add_alpha",
        lambda m, a, b: m.add(a, b, alpha=2),
        lambda a, b: a + 2 * b,
        binary_samples()[:7],
    ),
    OpSpec(
        "sub",
        lambda m, a, b: a - b,
        np.subtract,
        binary_samples() + int_binary_samples(),
        binary=True,
    ),
    OpSpec(
        "sub_alpha",
        lambda m, a, b: m.sub(a, b, alpha=0.5),
        lambda a, b: a - 0.5 * b,
        binary_samples()[:7],
    ),
    OpSpec(
        "mul",
        lambda m, a, b: a * b,
        np.multiply,
        binary_samples() + int_binary_samples(),
        binary=True,
    ),
    OpSpec(
        "div",
        lambda m, a, b: a / b,
        np.true_divide,
        binary_samples("float", "away") + int_binary_samples("posint"),
        binary=True,
    ),
    OpSpec(
        "div_trunc",
        lambda m, a, b: m.div(a, b, rounding_mode="trunc"),
        lambda a, b: np.trunc(a / b),
        binary_samples("frac", "away")[:3],
        grad=False,
    ),
    OpSpec(
        "div_floor",
        lambda m, a, b: m.div(a, b, rounding_mode="floor"),
        lambda a, b: np.floor(a / b),
        binary_samples("frac", "away")[:3],
        grad=False,
    ),
    # torch defines no derivative for floor_divide: forward and values only
    OpSpec(
        "floor_divide",
        lambda m, a, b: a // b,
        np.floor_divide,
        binary_samples("frac", "away") + int_binary_samples("posint"),
        grad=False,
        binary=True,
    ),
    OpSpec(
        "remainder",
        lambda m, a, b: a % b,
        np.remainder,
        binary_samples("frac", "away")[:-1] + int_binary_samples("posint"),
        binary=True,
    ),
    # torch implements no derivative for remainder(Scalar, Tensor); ember's is -floor(s / x)
    OpSpec(
        "rremainder",
        lambda m, s, b: s % b,
        np.remainder,
        [S(1.5, T(2, 3, kind="away"))],
        torch_grad=False,
    ),
    OpSpec("pow", lambda m, a, b: a**b, np.power, binary_samples("pos", "float"), binary=True),
    OpSpec(
        "pow_scalar_exp",
        lambda m, a, e: m.pow(a, e),
        np.power,
        [
            S(T(3, 4), 2),
            S(T(3, 4, kind="pos"), 2.5),
            S(T(3, 4, kind="away"), -1),
            S(T(), 3),
            S(T(0, 2), 2),
            S(T(2, 3), 0),
            S(T(2, 3, kind="posint"), 2),
        ],
    ),
    OpSpec("rpow", lambda m, e, a: e**a, np.power, [S(2.0, T(3, 4)), S(0.5, T())]),
    OpSpec(
        "maximum",
        lambda m, a, b: m.maximum(a, b),
        np.maximum,
        binary_samples("distinct", "distinct")[:7]
        + [
            S(
                np.array([1.0, 2.0, 3.0], np.float32),
                np.array([1.0, 0.0, 3.0], np.float32),
                fd=False,
            ),
            S(T(3, 4, kind="int"), T(3, 4, kind="int")),
        ],
        binary=True,
    ),
    OpSpec(
        "minimum",
        lambda m, a, b: m.minimum(a, b),
        np.minimum,
        binary_samples("distinct", "distinct")[:7]
        + [
            S(
                np.array([1.0, 2.0, 3.0], np.float32),
                np.array([1.0, 0.0, 3.0], np.float32),
                fd=False,
            )
        ],
        binary=True,
    ),
    OpSpec(
        "where",
        lambda m, c, a, b: m.where(c, a, b),
        np.where,
        [
            S(Mask(3, 4), T(3, 4), T(3, 4)),
            S(Mask(3, 1), T(1, 4), T(4)),
            S(Mask(), T(2, 2), T()),
            S(Mask(0, 2), T(0, 2), T(2)),
            S(Mask(2, 3), T(2, 3), 0.0),
        ],
    ),
    OpSpec(
        "lerp",
        lambda m, a, b, w: m.lerp(a, b, w),
        np_lerp,
        [S(T(3, 4), T(3, 4), 0.3), S(T(3, 4), T(4), T(3, 1, kind="unit")), S(T(), T(), T())],
    ),
    # -- unary --
    OpSpec("neg", lambda m, x: -x, np.negative, unary_samples() + [S(T(2, 3, kind="int"))]),
    _unary("abs", None, np.abs, "away"),
    _unary("exp", None, np.exp),
    _unary("log", None, np.log, "pos"),
    _unary("log1p", None, np.log1p, "pos"),
    _unary("expm1", None, np.expm1),
    _unary("sqrt", None, np.sqrt, "pos"),
    _unary("rsqrt", None, lambda x: 1 / np.sqrt(x), "pos"),
    _unary("sin", None, np.sin),
    _unary("cos", None, np.cos),
    _unary("tanh", None, np.tanh),
    _unary("sigmoid", None, np_sigmoid),
    _unary("relu", None, lambda x: np.maximum(x, 0), "away"),
    _unary("sign", None, np.sign),
    _unary("floor", None, np.floor, "frac"),
    _unary("ceil", None, np.ceil, "frac"),
    _unary("round", None, np.round, "frac"),
    _unary("trunc", None, np.trunc, "frac"),
    _unary("frac", None, lambda x: x - np.trunc(x), "frac"),
    _unary("square", None, np.square),
    _unary("reciprocal", None, np.reciprocal, "away"),
    OpSpec(
        "round_decimals",
        lambda m, x: m.round(x, decimals=1),
        lambda x: np.round(x, 1),
        [S(np.array([[0.123, -1.26, 2.71], [3.14, -0.04, 0.5]], np.float32))],
    ),
    OpSpec("exp_int", lambda m, x: m.exp(x), np.exp, [S(T(2, 3, kind="int"))], grad=False),
    OpSpec(
        "clamp",
        lambda m, x, **kw: m.clamp(x, **kw),
        lambda x, min=None, max=None: np.clip(x, min, max),
        [
            S(T(3, 4), min=-0.5, max=0.5),
            S(T(3, 4), min=0.1),
            S(T(3, 4), max=-0.2),
            S(T(), min=0.0),
            S(T(0, 2), min=0.0, max=1.0),
            S(T(2, 3, kind="int"), min=-2, max=2),
        ],
    ),
    OpSpec(
        "clamp_tensor",
        lambda m, x, lo, hi: m.clamp(x, lo, hi),
        np.clip,
        [S(T(3, 4), T(4, kind="distinct"), T(3, 1, kind="pos"))],
    ),
    # -- comparisons and logic (no gradients) --
    *[
        OpSpec(
            op,
            fn,
            ref,
            binary_samples("int", "int") + [S(T(3, 4), T(3, 4)), S(T(2, 3), 0.0)],
            grad=False,
            binary=True,
        )
        for op, fn, ref in [
            ("eq", lambda m, a, b: a == b, np.equal),
            ("ne", lambda m, a, b: a != b, np.not_equal),
            ("lt", lambda m, a, b: a < b, np.less),
            ("le", lambda m, a, b: a <= b, np.less_equal),
            ("gt", lambda m, a, b: a > b, np.greater),
            ("ge", lambda m, a, b: a >= b, np.greater_equal),
        ]
    ],
    *[
        OpSpec(
            op,
            (lambda o: lambda m, a, b: getattr(m, o)(a, b))(op),
            ref,
            [
                S(Mask(3, 4), Mask(3, 4)),
                S(Mask(2, 1), Mask(3)),
                S(T(2, 3), T(2, 3, kind="int")),
                S(Mask(), Mask(0)),
            ],
            grad=False,
        )
        for op, ref in [
            ("logical_and", np.logical_and),
            ("logical_or", np.logical_or),
            ("logical_xor", np.logical_xor),
        ]
    ],
    OpSpec(
        "logical_not",
        lambda m, a: m.logical_not(a),
        np.logical_not,
        [S(Mask(3, 4)), S(T(2, 3)), S(Mask())],
        grad=False,
    ),
    *[
        OpSpec(
            op,
            fn,
            ref,
            [S(Mask(3, 4), Mask(3, 4)), S(T(3, 4, kind="int"), T(4, kind="int"))],
            grad=False,
        )
        for op, fn, ref in [
            ("bitwise_and", lambda m, a, b: a & b, np.bitwise_and),
            ("bitwise_or", lambda m, a, b: a | b, np.bitwise_or),
            ("bitwise_xor", lambda m, a, b: a ^ b, np.bitwise_xor),
        ]
    ],
    OpSpec(
        "bitwise_not",
        lambda m, a: ~a,
        np.invert,
        [S(Mask(3, 4)), S(T(3, 4, kind="int"))],
        grad=False,
    ),
    OpSpec(
        "isclose",
        lambda m, a, b: m.isclose(a, b, rtol=0.0, atol=0.5),
        lambda a, b: np.isclose(a, b, rtol=0.0, atol=0.5),
        [S(T(3, 4), T(3, 4))],
        grad=False,
    ),
    # -- reductions --
    OpSpec(
        "sum",
        lambda m, x, **kw: m.sum(x, **kw),
        dim0(lambda x, dim=None, keepdim=False: np.sum(x, axis=dim, keepdims=keepdim)),
        [
            S(T(3, 4)),
            S(T(3, 4), dim=1),
            S(T(2, 3, 4), dim=(0, 2)),
            S(T(2, 3, 4), dim=-1, keepdim=True),
            S(T()),
            S(T(0, 3)),
            S(T(0, 3), dim=1),
            S(T(2, 3, kind="int")),
            S(T(2, 3, kind="bool"), dim=0),
            S(T(), dim=0),
        ],
    ),
    OpSpec(
        "mean",
        lambda m, x, **kw: m.mean(x, **kw),
        dim0(lambda x, dim=None, keepdim=False: np.mean(x, axis=dim, keepdims=keepdim)),
        [
            S(T(3, 4)),
            S(T(3, 4), dim=0),
            S(T(2, 3, 4), dim=(1, 2), keepdim=True),
            S(T()),
            S(T(0, 3), dim=1),
            S(T(), dim=-1, keepdim=True),
        ],
    ),
    OpSpec(
        "prod",
        lambda m, x, **kw: m.prod(x, **kw),
        dim0(lambda x, dim=None, keepdim=False: np.prod(x, axis=dim, keepdims=keepdim)),
        [
            S(T(3, 4, kind="away")),
            S(T(3, 4, kind="away"), dim=1),
            S(T(2, 3, 4, kind="away"), dim=0, keepdim=True),
            S(T()),
            S(T(0, 3), dim=1),
            # zeros: exact first and second derivatives (products of the other factors)
            S(np.array([[1.5, 0.0, 2.0], [0.0, 0.0, 3.0]]), dim=1),
            S(np.array([1.5, 0.0, 2.0, -1.0])),
            S(T(2, 3, kind="int"), dim=1),
            S(T(), dim=0),
        ],
        rtol=1e-5,
    ),
    OpSpec(
        "max_all",
        lambda m, x: m.max(x),
        np.max,
        [
            S(T(3, 4, kind="distinct")),
            S(T()),
            S(np.array([1.0, 3.0, 3.0], np.float32), fd=False),
            S(T(2, 3, kind="int")),
        ],
    ),
    OpSpec(
        "min_all",
        lambda m, x: m.min(x),
        np.min,
        [S(T(3, 4, kind="distinct")), S(np.array([1.0, 1.0, 3.0], np.float32), fd=False)],
    ),
    OpSpec(
        "max_dim",
        lambda m, x, dim, keepdim=False: m.max(x, dim, keepdim),
        dim0(np_max),
        [
            S(T(3, 4, kind="distinct"), 1),
            S(T(2, 3, 4, kind="distinct"), 0, True),
            S(T(kind="distinct"), 0),
            S(T(3, 4, kind="distinct"), -2),
        ],
    ),
    OpSpec(
        "min_dim",
        lambda m, x, dim, keepdim=False: x.min(dim, keepdim),
        np_min,
        [S(T(3, 4, kind="distinct"), 1), S(T(2, 3, 4, kind="distinct"), 2, True)],
    ),
    OpSpec(
        "amax",
        lambda m, x, **kw: m.amax(x, **kw),
        dim0(lambda x, dim=None, keepdim=False: np.max(x, axis=dim, keepdims=keepdim)),
        [
            S(T(3, 4, kind="distinct"), dim=1),
            S(T(2, 3, 4, kind="distinct"), dim=(0, 2)),
            S(T(3, 4, kind="distinct"), dim=0, keepdim=True),
            S(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], np.float32), dim=1, fd=False),
            S(T(), dim=0),
        ],
    ),
    OpSpec(
        "amin",
        lambda m, x, **kw: m.amin(x, **kw),
        lambda x, dim=None, keepdim=False: np.min(x, axis=dim, keepdims=keepdim),
        [
            S(T(3, 4, kind="distinct"), dim=1),
            S(T(2, 3, 4, kind="distinct"), dim=(-1, 0)),
            S(np.array([[1.0, 1.0, 3.0]], np.float32), dim=1, fd=False),
        ],
    ),
    OpSpec(
        "argmax",
        lambda m, x, **kw: m.argmax(x, **kw),
        dim0(
            lambda x, dim=None, keepdim=False: (
                np.argmax(x, axis=dim, keepdims=keepdim) if dim is not None else np.argmax(x)
            )
        ),
        [
            S(T(3, 4, kind="distinct")),
            S(T(3, 4, kind="distinct"), dim=1),
            S(T(2, 3, 4, kind="distinct"), dim=0, keepdim=True),
            S(T(), dim=0),
        ],
        grad=False,
    ),
    OpSpec(
        "argmin",
        lambda m, x, **kw: m.argmin(x, **kw),
        lambda x, dim=None, keepdim=False: (
            np.argmin(x, axis=dim, keepdims=keepdim) if dim is not None else np.argmin(x)
        ),
        [S(T(3, 4, kind="distinct")), S(T(3, 4, kind="distinct"), dim=-1)],
        grad=False,
    ),
    OpSpec(
        "var",
        lambda m, x, **kw: m.var(x, **kw),
        dim0(
            lambda x, dim=None, keepdim=False, correction=1, unbiased=True: np.var(
                x, axis=dim, keepdims=keepdim, ddof=correction if unbiased else 0
            )
        ),
        [
            S(T(3, 4)),
            S(T(3, 4), dim=1),
            S(T(2, 3, 4), dim=(0, 2), keepdim=True),
            S(T(3, 4), dim=0, correction=0),
            S(T(3, 4), dim=1, unbiased=False),
            S(T(2, 5), dim=1, correction=2),
            S(T(), dim=0, correction=0),
        ],
        rtol=1e-5,
    ),
    OpSpec(
        "std",
        lambda m, x, **kw: m.std(x, **kw),
        lambda x, dim=None, keepdim=False, correction=1: np.std(
            x, axis=dim, keepdims=keepdim, ddof=correction
        ),
        [S(T(3, 4)), S(T(3, 4), dim=1, keepdim=True), S(T(3, 4), dim=0, correction=0)],
        rtol=1e-5,
    ),
    OpSpec(
        "norm",
        lambda m, x, **kw: m.norm(x, **kw),
        dim0(np_norm),
        [
            S(T(3, 4)),
            S(T(3, 4), dim=1),
            S(T(3, 4, kind="away"), p=1, dim=0),
            S(T(3, 4, kind="distinct"), p=float("inf"), dim=1, keepdim=True),
            S(T(3, 4, kind="away"), p=3, dim=1),
            S(T(kind="away"), dim=0),
        ],
        rtol=1e-5,
    ),
    OpSpec(
        "logsumexp",
        lambda m, x, dim, keepdim=False: m.logsumexp(x, dim, keepdim),
        dim0(np_logsumexp),
        [
            S(T(3, 4), 1),
            S(T(2, 3, 4), (0, 2), True),
            S(T(3, 4), -1),
            S(np.array([[0.0, 1000.0], [-1000.0, -999.0]], np.float32), 1),
            S(T(), 0),
        ],
        rtol=1e-5,
    ),
    OpSpec(
        "cumsum",
        lambda m, x, dim: m.cumsum(x, dim),
        dim0(lambda x, dim: np.cumsum(x, axis=dim)),
        [
            S(T(3, 4), 1),
            S(T(2, 3, 4), 0),
            S(T(3, 4), -1),
            S(T(0, 3), 1),
            S(T(), 0),
            S(T(2, 3, kind="int"), 1),
        ],
        rtol=1e-5,
    ),
    OpSpec(
        "cumprod",
        lambda m, x, dim: m.cumprod(x, dim),
        dim0(lambda x, dim: np.cumprod(x, axis=dim)),
        [
            S(T(3, 4, kind="away"), 1),
            S(T(2, 3, 4, kind="away"), 0),
            S(T(0, 3), 1),
            S(T(), -1),
            # zeros (first, repeated, last): the gradient is exact there, not out / x
            S(np.array([[2.0, 0.0, 3.0, 0.0, 5.0], [0.0, 1.5, -2.0, 1.0, 0.0]]), 1),
            S(np.array([[1.5, 2.0], [0.0, 3.0], [2.0, 0.0]]), 0),
        ],
        rtol=1e-5,
    ),
    OpSpec(
        "all",
        lambda m, x, **kw: m.all(x, **kw),
        dim0(lambda x, dim=None, keepdim=False: np.all(x, axis=dim, keepdims=keepdim)),
        [
            S(Mask(3, 4)),
            S(Mask(3, 4), dim=1),
            S(T(3, 4, kind="int"), dim=0, keepdim=True),
            S(Mask(0, 3)),
            S(Mask(), dim=0),
        ],
        grad=False,
    ),
    OpSpec(
        "any",
        lambda m, x, **kw: m.any(x, **kw),
        dim0(lambda x, dim=None, keepdim=False: np.any(x, axis=dim, keepdims=keepdim)),
        [S(Mask(3, 4)), S(Mask(3, 4), dim=1), S(T(3, 4), dim=-1), S(Mask(0, 3))],
        grad=False,
    ),
    # -- shape --
    OpSpec(
        "reshape",
        lambda m, x, shape: x.reshape(shape),
        np.reshape,
        [
            S(T(3, 4), (2, 6)),
            S(T(3, 4), (-1,)),
            S(T(2, 3, 4), (4, -1, 2)),
            S(T(), (1, 1)),
            S(T(0, 3), (3, 0)),
        ],
    ),
    OpSpec(
        "view",
        lambda m, x, shape: x.view(shape),
        np.reshape,
        [S(T(3, 4), (4, 3)), S(T(2, 3, 4), (6, -1)), S(T(6), (1, 6, 1))],
    ),
    # views of non-contiguous tensors wherever the strides allow one (PyTorch's rule)
    OpSpec(
        "view_strided",
        lambda m, x, shape: x.t().view(shape),
        lambda x, shape: np.reshape(x.T, shape),
        [S(T(3, 4), (2, 2, 3)), S(T(3, 4), (4, 1, 3)), S(T(3, 1), (3,))],
    ),
    OpSpec(
        "view_sliced",
        lambda m, x, shape: x[:, 1:3].view(shape),
        lambda x, shape: np.reshape(x[:, 1:3], shape),
        [S(T(3, 4), (3, 1, 2)), S(T(3, 4), (3, 2, 1))],
    ),
    OpSpec(
        "permute",
        lambda m, x, dims: x.permute(dims),
        np.transpose,
        [S(T(2, 3, 4), (2, 0, 1)), S(T(2, 3, 4), (-1, 1, 0)), S(T(), ())],
    ),
    OpSpec(
        "transpose",
        lambda m, x, a, b: m.transpose(x, a, b),
        lambda x, a, b: np.swapaxes(x, a, b),
        [S(T(2, 3, 4), 0, 2), S(T(3, 4), -1, -2), S(T(5), 0, 0)],
    ),
    OpSpec("t", lambda m, x: x.t(), np.transpose, [S(T(3, 4)), S(T(4))]),
    OpSpec("T", lambda m, x: x.mT, lambda x: np.swapaxes(x, -1, -2), [S(T(2, 3, 4))]),
    OpSpec(
        "squeeze",
        lambda m, x, *d: x.squeeze(*d),
        np_squeeze,
        [S(T(1, 3, 1, 4)), S(T(1, 3, 1, 4), 2), S(T(3, 4), 0), S(T(1, 1), -1), S(T())],
    ),
    OpSpec(
        "unsqueeze",
        lambda m, x, d: x.unsqueeze(d),
        np.expand_dims,
        [S(T(3, 4), 0), S(T(3, 4), -1), S(T(3, 4), 1), S(T(), 0)],
    ),
    OpSpec(
        "flatten",
        lambda m, x, *a: m.flatten(x, *a),
        lambda x, s=0, e=-1: (
            x.reshape(x.shape[:s] + (-1,) + x.shape[e % max(x.ndim, 1) + 1 :])
            if x.ndim
            else x.reshape(1)
        ),
        [S(T(2, 3, 4)), S(T(2, 3, 4), 1), S(T(2, 3, 4, 2), 1, 2), S(T())],
    ),
    OpSpec(
        "unflatten",
        lambda m, x, d, sizes: x.unflatten(d, sizes),
        lambda x, d, sizes: x.reshape(x.shape[:d] + tuple(sizes) + x.shape[d + 1 :]),
        [S(T(3, 6), 1, (2, 3)), S(T(4, 3), 0, (2, -1))],
    ),
    OpSpec(
        "expand",
        lambda m, x, *shape: x.expand(*shape),
        lambda x, *shape: np.broadcast_to(
            x,
            tuple(x.shape[i - len(shape) + x.ndim] if s == -1 else s for i, s in enumerate(shape)),
        ),
        [S(T(3, 1), 3, 4), S(T(4), 2, 3, 4), S(T(1, 4), -1, 4), S(T(), 2, 2), S(T(3, 1), 3, 0)],
    ),
    OpSpec(
        "expand_as",
        lambda m, x, y: x.expand_as(y),
        lambda x, y: np.broadcast_to(x, y.shape),
        [S(T(3, 1), np.zeros((2, 3, 4), np.float32))],
    ),
    OpSpec(
        "repeat",
        lambda m, x, *r: x.repeat(*r),
        lambda x, *r: np.tile(x, r),
        [S(T(2, 3), 2, 1), S(T(3), 2, 2), S(T(2, 3), 1, 2, 2), S(T(), 3)],
    ),
    OpSpec(
        "cat",
        lambda m, *xs, dim=0: m.cat(xs, dim=dim),
        lambda *xs, dim=0: np.concatenate(xs, axis=dim),
        [
            S(T(2, 3), T(1, 3)),
            S(T(2, 3), T(2, 1), T(2, 2), dim=1),
            S(T(2, 0), T(2, 3), dim=-1),
            S(T(2, 3), T(2, 3, kind="int"), dim=0),
        ],
    ),
    OpSpec("cat_legacy_empty", lambda m, a, b: m.cat([a, b]), lambda a, b: b, [S(T(0), T(2, 3))]),
    OpSpec(
        "stack",
        lambda m, *xs, dim=0: m.stack(xs, dim=dim),
        lambda *xs, dim=0: np.stack(xs, axis=dim),
        [S(T(2, 3), T(2, 3)), S(T(3), T(3), T(3), dim=1), S(T(2, 3), T(2, 3), dim=-1), S(T(), T())],
    ),
    OpSpec(
        "split",
        lambda m, x, s, dim=0: m.split(x, s, dim),
        np_split,
        [S(T(5, 2), 2), S(T(2, 6), [1, 2, 3], dim=1), S(T(4, 3), 4), S(T(3, 4), 3, dim=-1)],
    ),
    OpSpec(
        "chunk",
        lambda m, x, c, dim=0: x.chunk(c, dim),
        np_chunk,
        [S(T(5, 2), 3), S(T(2, 6), 4, dim=1), S(T(6), 2)],
    ),
    OpSpec(
        "flip",
        lambda m, x, dims: m.flip(x, dims),
        lambda x, dims: np.flip(x, dims),
        [S(T(3, 4), (0,)), S(T(2, 3, 4), (0, 2)), S(T(3, 4), (-1,))],
    ),
    OpSpec(
        "roll",
        lambda m, x, s, d=None: m.roll(x, s, d),
        lambda x, s, d=None: np.roll(x, s, d),
        [S(T(3, 4), 1, 0), S(T(3, 4), 2), S(T(3, 4), (1, -1), (0, 1)), S(T(2, 3), -4, 1)],
    ),
    OpSpec(
        "tril",
        lambda m, x, k=0: m.tril(x, k),
        np.tril,
        [S(T(3, 4)), S(T(4, 3), 1), S(T(2, 3, 3), -1)],
    ),
    OpSpec(
        "triu",
        lambda m, x, k=0: m.triu(x, k),
        np.triu,
        [S(T(3, 4)), S(T(4, 3), -1), S(T(2, 3, 3), 1)],
    ),
    OpSpec(
        "narrow",
        lambda m, x, d, s, n: x.narrow(d, s, n),
        lambda x, d, s, n: np.take(x, np.arange(s, s + n) % x.shape[d], axis=d),
        [S(T(4, 5), 1, 1, 3), S(T(4, 5), 0, -2, 2), S(T(4, 5), -1, 0, 0)],
    ),
    OpSpec(
        "pad",
        lambda m, x, p, value=0.0: nn_pad(m)(x, p, value=value),
        np_pad,
        [
            S(T(2, 3), (1, 2)),
            S(T(2, 3), (1, 0, 0, 2), value=1.5),
            S(T(2, 2, 3), (0, 1, 1, 1)),
            S(T(3, 4), (-1, 1)),
        ],
    ),
    OpSpec("contiguous", lambda m, x: x.t().contiguous(), np.transpose, [S(T(3, 4))]),
    # -- indexing --
    OpSpec(
        "getitem_basic",
        lambda m, x, idx: x[idx],
        lambda x, idx: x[idx],
        [
            S(T(4, 5), (1,)),
            S(T(4, 5), (slice(1, 3), slice(None, None, 2))),
            S(T(4, 5), (-1, slice(2, None))),
            S(T(2, 3, 4), (Ellipsis, 1)),
            S(T(2, 3, 4), (None, 0, Ellipsis, None)),
            S(T(3), (None,)),
            S(T(3, 4), (slice(5, 9),)),
        ],
    ),
    OpSpec(
        "getitem_int_tensor",
        lambda m, x, i: x[i],
        lambda x, i: x[i],
        [
            S(T(5, 3), Idx(4, high=5)),
            S(T(5, 3), Idx(2, 2, high=5)),
            S(T(5), Idx(high=5)),
            S(T(5, 3), _IDX_ROWS),
        ],
    ),
    OpSpec(
        "getitem_int_tensors_2",
        lambda m, x, i, j: x[i, :, j],
        lambda x, i, j: x[i, :, j],
        [
            S(T(4, 2, 3), Idx(5, high=4), Idx(5, high=3)),
            S(T(4, 2, 3), Idx(2, 1, high=4), Idx(3, high=3)),
        ],
    ),
    OpSpec(
        "getitem_mask",
        lambda m, x, mask: x[mask],
        lambda x, mask: x[mask],
        [
            S(T(3, 4), Mask(3, 4)),
            S(T(3, 4), Mask(3)),
            S(T(2, 3, 4), Mask(2, 3)),
            S(T(0, 4), Mask(0, 4)),
        ],
    ),
    OpSpec(
        "getitem_mixed",
        lambda m, x, i: x[..., i, None],
        lambda x, i: x[..., i, None],
        [S(T(2, 3, 4), Idx(3, high=4))],
    ),
    OpSpec(
        "setitem_basic",
        lambda m, x, v, idx: setitem_clone(x, v, idx),
        np_setitem,
        [
            S(T(4, 5), T(5), idx=(1,)),
            S(T(4, 5), T(2, 1), idx=(slice(1, 3), slice(0, 4, 2))),
            S(T(4, 5), 2.5, idx=(Ellipsis, 0)),
        ],
    ),
    OpSpec(
        "setitem_index",
        lambda m, x, v, i: setitem_clone(x, v, i),
        np_setitem,
        [S(T(5, 3), T(2, 3), np.array([4, 1])), S(T(5, 3), T(3), np.array([0, 2]))],
    ),
    OpSpec(
        "setitem_mask",
        lambda m, x, v, mask: setitem_clone(x, v, mask),
        np_setitem,
        [S(T(3, 4), 0.0, Mask(3, 4))],
    ),
    OpSpec(
        "gather",
        lambda m, x, dim, idx: m.gather(x, dim, idx),
        lambda x, dim, idx: x[np_full_index(idx, dim % x.ndim)],
        [
            S(T(3, 4), 1, Idx(3, 2, high=4)),
            S(T(3, 4), 0, Idx(5, 4, high=3)),
            S(T(2, 3, 4), -1, Idx(2, 3, 1, high=4)),
            S(T(3, 4), 1, Idx(2, 3, high=4)),
        ],
    ),
    OpSpec(
        "scatter",
        lambda m, x, dim, idx, src: m.scatter(x, dim, idx, src),
        lambda x, dim, idx, src: np_scatter(x, dim, idx, src),
        [
            S(T(3, 5), 1, Idx(3, 2, high=5, unique_dim=1), T(3, 2)),
            S(T(4, 3), 0, Idx(2, 3, high=4, unique_dim=0), T(2, 3)),
        ],
    ),
    # src larger than index: only its leading block is used; torch has no gradient for src then
    OpSpec(
        "scatter_src_larger",
        lambda m, x, dim, idx, src: m.scatter(x, dim, idx, src),
        lambda x, dim, idx, src: np_scatter(x, dim, idx, src),
        [S(T(4, 3), 0, Idx(2, 3, high=4, unique_dim=0), T(3, 3))],
        torch_grad=False,
    ),
    OpSpec(
        "scatter_value",
        lambda m, x, dim, idx: m.scatter(x, dim, idx, value=2.5),
        lambda x, dim, idx: np_scatter(x, dim, idx, value=2.5),
        [S(T(3, 5), 1, Idx(3, 2, high=5, unique_dim=1))],
    ),
    OpSpec(
        "scatter_add",
        lambda m, x, dim, idx, src: m.scatter_add(x, dim, idx, src),
        lambda x, dim, idx, src: np_scatter(x, dim, idx, src, add=True),
        [
            S(T(3, 5), 1, Idx(3, 4, high=5), T(3, 4)),
            S(T(4, 3), 0, Idx(2, 3, high=4), T(2, 3)),
            S(T(3, 5), 1, Idx(3, 2, high=5), T(3, 2)),
        ],
    ),
    OpSpec(
        "index_select",
        lambda m, x, dim, idx: m.index_select(x, dim, idx),
        lambda x, dim, idx: np.take(x, idx, axis=dim),
        [
            S(T(4, 3), 0, _IDX_ROWS),
            S(T(2, 5), 1, Idx(4, high=5)),
            S(T(2, 3, 4), -1, Idx(0, high=4)),
        ],
    ),
    OpSpec(
        "index_add",
        lambda m, x, dim, idx, src, alpha=1: m.index_add(x, dim, idx, src, alpha=alpha),
        np_index_add,
        [S(T(4, 3), 0, _IDX_ROWS, T(3, 3)), S(T(2, 5), 1, Idx(3, high=5), T(2, 3), alpha=2.0)],
    ),
    OpSpec(
        "masked_fill",
        lambda m, x, mask, v: x.masked_fill(mask, v),
        lambda x, mask, v: np.where(mask, v, x),
        [S(T(3, 4), Mask(3, 4), -1.5), S(T(3, 4), Mask(4), 0.0), S(T(3, 4), Mask(3, 1), T())],
    ),
    OpSpec(
        "masked_select",
        lambda m, x, mask: m.masked_select(x, mask),
        np_masked_select,
        [S(T(3, 4), Mask(3, 4)), S(T(3, 4), Mask(4)), S(T(4), Mask(3, 4))],
    ),
    OpSpec(
        "take_along_dim",
        lambda m, x, idx, dim=None: m.take_along_dim(x, idx, dim),
        lambda x, idx, dim=None: (
            np.take(x.reshape(-1), idx.reshape(-1))
            if dim is None
            else np_take_along_dim(x, idx, dim)
        ),
        [
            S(T(3, 4), Idx(3, 2, high=4), 1),
            S(T(3, 4), Idx(1, 4, high=3), 0),
            S(T(3, 4), Idx(5, high=12)),
        ],
    ),
    # -- linear algebra --
    OpSpec(
        "matmul",
        lambda m, a, b: a @ b,
        np.matmul,
        [
            S(T(2, 3), T(3, 4)),
            S(T(2, 2, 3), T(3, 4)),
            S(T(2, 1, 2, 3), T(3, 3, 2)),
            S(T(3), T(3, 2)),
            S(T(2, 3), T(3)),
            S(T(3), T(3)),
            S(T(0, 3), T(3, 2)),
            S(T(2, 3, kind="int"), T(3, 2, kind="int")),
        ],
    ),
    OpSpec("mm", lambda m, a, b: m.mm(a, b), np.matmul, [S(T(2, 3), T(3, 4))]),
    OpSpec("bmm", lambda m, a, b: m.bmm(a, b), np.matmul, [S(T(2, 2, 3), T(2, 3, 4))]),
    OpSpec("mv", lambda m, a, b: m.mv(a, b), np.matmul, [S(T(2, 3), T(3))]),
    OpSpec("dot", lambda m, a, b: m.dot(a, b), np.dot, [S(T(4), T(4))]),
    OpSpec("outer", lambda m, a, b: m.outer(a, b), np.outer, [S(T(3), T(4)), S(T(0), T(2))]),
    OpSpec(
        "einsum",
        lambda m, eq, *ops: m.einsum(eq, *ops),
        lambda eq, *ops: np.einsum(eq, *ops),
        [
            S("ij,jk->ik", T(2, 3), T(3, 4)),
            S("bij,bjk->bik", T(2, 2, 3), T(2, 3, 2)),
            S("ij->j", T(3, 4)),
            S("i,j->ij", T(3), T(2)),
            S("...ij,...jk", T(2, 2, 3), T(3, 2)),
            S("ij,ij->", T(2, 3), T(2, 3)),
            S("ij,jk,kl->il", T(2, 3), T(3, 2), T(2, 2)),
            S("ji", T(2, 3)),
        ],
    ),
    OpSpec(
        "linalg_norm",
        lambda m, x, **kw: m.linalg.norm(x, **kw),
        lambda x, ord=None, dim=None, keepdim=False: (
            np_norm(x, 2 if ord is None else ord, dim, keepdim)
            if dim is not None or x.ndim < 2
            else np.linalg.norm(x, ord, keepdims=keepdim)
        ),
        [
            S(T(3, 4)),
            S(T(4)),
            S(T(3, 4), dim=1),
            S(T(3, 4, kind="away"), ord=1, dim=1),
            S(T(3, 4), dim=(0, 1), keepdim=True),
        ],
        rtol=1e-5,
    ),
]

# The wave-2 families keep their records in files of their own (one table, several pages).
OPS += (
    _table_sorting.OPS
    + _table_math.OPS
    + _table_linalg_ext.OPS
    + _table_shape_ext.OPS
    + _table_misc.OPS
)

OPS_BY_NAME = {spec.name: spec for spec in OPS}
assert len(OPS_BY_NAME) == len(OPS), "op names in the table must be unique"
