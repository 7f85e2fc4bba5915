"""What a dispatch mode sees of ``linear`` and ``matmul``: ATen's decomposition
(docs/torch_dispatch.md).

ember runs ``F.linear`` as one fused ``Linear`` op and ``matmul`` of stacks as one ``Matmul``;
torch's dispatcher decomposes them before a ``TorchDispatchMode`` sees them, and flop
counters (ptflops' ``backend="aten"``, hand-written counters keyed on ``aten.mm`` /
``aten.addmm`` / ``aten.bmm``) count only those names. While a mode is entered, these ops run
as torch's decomposition, op by op through ember's own ops, so the mode sees the same names,
arguments and shapes:

* ``linear(x, w, b)`` of a matrix: ``t(w)``, ``addmm(b, x, w.t())`` (``mm`` without a bias);
  of any other rank: ``view`` to a matrix, ``t``, ``addmm`` / ``mm``, ``view`` back (torch's
  last view without a bias is ``_unsafe_view``, which ember has no name for);
* ``matmul`` of a stack and a matrix: ``view``, ``mm``, ``view``; of two stacks with the same
  batch dims: ``view`` to 3-D, ``bmm``, ``view``.

The ops reported in ATen's spelling without a decomposition live here too (``_dispatch_ops``
holds the rest): indexing as ``select`` / ``slice`` / ``index``, ``cat(tensors, dim)``, and
convolutions: ember's ``Conv`` / ``ConvTranspose``
ops are reported as ``aten.convolution.default(input, weight, bias, stride, padding, dilation,
transposed, output_padding, groups)`` (their backward as ``aten.convolution_backward``).

Outside a mode nothing here runs (``Function.apply`` is only swapped while one is entered), so
the fused kernels keep their speed. Autograd records each op of the decomposition, so the
backward reaches the mode as ``addmm_backward``, ``t_backward``, ... (torch shows the finer ops
of its formulas: ``mm``, ``t``, ``sum``).
"""

from __future__ import annotations

import math

from .autograd.function import Function
from .ops._lowp import float32_compute

__all__ = ["Addmm", "as_one_op", "decomposition_for", "mode_hook", "register_spellings"]


@float32_compute
class Addmm(Function):
    """``bias + mat1 @ mat2`` of two matrices, ``bias`` broadcast (``aten.addmm``)."""

    @staticmethod
    def forward(ctx, bias, mat1, mat2):
        n1, n2 = ctx.needs_input_grad[1:]
        ctx.save_for_backward(mat1 if n2 else None, mat2 if n1 else None)
        out = mat1 @ mat2
        return out + bias  # a new array: ``bias`` may broadcast or promote

    @staticmethod
    def backward(ctx, grad):
        mat1, mat2 = ctx.saved_tensors
        nb, n1, n2 = ctx.needs_input_grad
        # the engine sums a broadcast gradient back to ``bias``'s shape
        return (
            grad if nb else None,
            grad @ mat2.conj().T if n1 else None,
            mat1.conj().T @ grad if n2 else None,
        )


def _linear(x, w, b=None):
    from .ops.linalg import mm

    if x.ndim == 2:
        wt = w.t()
        return mm(x, wt) if b is None else Addmm.apply(b, x, wt)
    lead, k = tuple(x.shape[:-1]), x.shape[-1]
    rows = math.prod(lead)
    if b is None:  # torch: t, view, mm, _unsafe_view
        wt = w.t()
        out = mm(_view(x, rows, k), wt)
    else:  # torch: view, t, addmm, view
        x2 = _view(x, rows, k)
        out = Addmm.apply(b, x2, w.t())
    return out.view(*lead, w.shape[0])


def _view(x, *shape):
    """``aten.view`` where a view can be had, else ``aten.reshape`` (a copy), as torch."""
    return x.view(*shape) if x.is_contiguous() else x.reshape(*shape)


def _matmul(a, b):
    from .ops.linalg import bmm, mm

    if b.ndim == 2:  # a stack times a matrix: one mm over the stacked rows
        lead = tuple(a.shape[:-1])
        out = mm(_view(a, math.prod(lead), a.shape[-1]), b)
        return out.view(*lead, b.shape[-1])
    batch = tuple(a.shape[:-2])  # two stacks of the same batch dims: one bmm
    n = math.prod(batch)
    out = bmm(_view(a, n, *a.shape[-2:]), _view(b, n, *b.shape[-2:]))
    return out.view(*batch, *out.shape[-2:])


def decomposition_for(cls, args: tuple):
    """The decomposition to run for ``cls.apply(*args)`` under a mode, or None."""
    name = cls.__name__
    if name == "Linear" and cls.__module__ == "ember.ops.nn_ops":
        return _linear
    if name == "Matmul" and cls.__module__ == "ember.ops.linalg":
        a, b = args
        na, nb = getattr(a, "ndim", 0), getattr(b, "ndim", 0)
        if na >= 3 and (nb == 2 or (nb == na and na > 3 and a.shape[:-2] == b.shape[:-2])):
            return _matmul
    return None


def as_one_op(kind: str, inputs: list, run):
    """``run()``, reported as the one op ``kind`` of ``inputs`` to a recorder that asks for it.

    Some functions torch runs as one ATen op are compositions in ember (``interpolate`` is a
    ``Resample`` of per-axis maps, ``instance_norm`` a layer norm of a reshape and an affine
    ``mul`` / ``add``). ``jit._get_trace_graph``'s recorder (core/jit/_trace_record.py) sets
    ``_ember_one_op`` and records one node in torch's spelling (``aten::upsample_bilinear2d``,
    ``aten::instance_norm``): fvcore keys its counts on those. Any other mode, and no mode,
    sees the ops ``run`` executes.
    """
    hook = mode_hook("_ember_one_op")
    return run() if hook is None else hook(kind, inputs, run)


def mode_hook(name: str):
    """The innermost dispatch mode's attribute ``name`` (a recorder's hook), or None when no
    mode is on or it has none."""
    from ._dispatch import _TLS

    stack = getattr(_TLS, "stack", None)
    return getattr(stack[-1], name, None) if stack else None


# ---- convolutions: torch's name and arguments ------------------------------------------------
_CONV_PARAMS = [
    "input",
    "weight",
    "bias",
    "stride",
    "padding",
    "dilation",
    "transposed",
    "output_padding",
    "groups",
]


def _convolution(cls, args, kwargs):
    x, w, b, geom = args
    transposed = cls.__name__ == "ConvTranspose"
    # an asymmetric padding (``padding="same"`` with an even kernel) stays a (low, high) pair
    pad = [lo if lo == hi else (lo, hi) for lo, hi in geom.pad]
    if transposed:  # ``geom`` is the convolution's: its input size is our output size
        out_pad = [
            o - ((n - 1) * s - 2 * lo + d * (k - 1) + 1)
            for o, n, s, (lo, _), d, k in zip(
                geom.in_size, geom.out_size, geom.stride, geom.pad, geom.dilation, geom.kernel
            )
        ]
    else:
        out_pad = [0] * len(geom.kernel)
    ov = _cached(cls, "convolution", "default", _convolution_back)
    stride, dilation = list(geom.stride), list(geom.dilation)
    return ov, (x, w, b, stride, pad, dilation, transposed, out_pad, geom.groups), {}


def _convolution_back(
    input, weight, bias, stride, padding, dilation, transposed, output_padding, groups
):
    from .ops.conv import ConvGeom

    pad = tuple(p if isinstance(p, (tuple, list)) else (p, p) for p in padding)
    kernel, size = tuple(weight.shape[2:]), tuple(input.shape[2:])
    if not transposed:
        return (input, weight, bias, ConvGeom(stride, pad, dilation, groups, kernel, size))
    out = tuple(
        (n - 1) * s - 2 * lo + d * (k - 1) + op + 1
        for n, s, (lo, _), d, k, op in zip(size, stride, pad, dilation, kernel, output_padding)
    )
    return (input, weight, bias, ConvGeom(stride, pad, dilation, groups, kernel, out, size))


# ---- indexing and cat: select / slice / index, cat(tensors, dim) -------------------------
def _cached(cls, name: str, overload: str, to_apply):
    from ._dispatch_ops import _cached as cached

    return cached(cls, name, overload, to_apply)


def _is_raw(a) -> bool:
    from ._dispatch_ops import _is_raw as is_raw

    return is_raw(a)


def _full(k) -> bool:
    return type(k) is slice and k == slice(None)


def _getitem(cls, args, kwargs):
    from .tensor import Tensor

    x, idx = args
    key = idx if type(idx) is tuple else (idx,)
    plain = [k for k in key if not _full(k)]
    if len(plain) == 1 and all(type(k) in (int, slice) for k in key):
        d = next(i for i, k in enumerate(key) if not _full(k))
        k = plain[0]
        if type(k) is int:
            return _cached(cls, "select", "int", _select_back), (x, d, k), {}
        ov = _cached(cls, "slice", "Tensor", _slice_back)
        return ov, (x, d, k.start, k.stop, 1 if k.step is None else k.step), {}
    if plain and all(_full(k) or _is_raw(k) for k in key):
        while _full(key[-1]):
            key = key[:-1]
        idx_list = [None if _full(k) else Tensor._wrap(k) for k in key]
        return _cached(cls, "index", "Tensor", _index_back), (x, idx_list), {}
    return _cached(cls, "get_item", "default", None), args, kwargs


def _select_back(x, dim, index):
    return (x, (slice(None),) * dim + (index,))


def _slice_back(x, dim=0, start=None, end=None, step=1):
    return (x, (slice(None),) * dim + (slice(start, end, step),))


def _index_back(x, indices):
    return (x, tuple(slice(None) if i is None else getattr(i, "_data", i) for i in indices))


def _cat(cls, args, kwargs):
    axis, *tensors = args
    return _cached(cls, "cat", "default", _cat_back), (list(tensors), axis), {}


def _cat_back(tensors, dim=0):
    return (dim, *tensors)


def register_spellings(spellings: dict, params: dict, names: dict) -> None:
    """Add these ops to ``_dispatch_ops``' tables of ops reported in ATen's spelling."""
    spellings["GetItem"], spellings["Cat"] = _getitem, _cat
    spellings["Conv"] = spellings["ConvTranspose"] = _convolution
    params["convolution"] = _CONV_PARAMS
    params["addmm"] = ["self", "mat1", "mat2"]
    names["Conv"] = names["ConvTranspose"] = "convolution"  # convolution_backward
