"""``ember.masked.MaskedTensor``: a tensor whose elements are each specified (mask ``True``) or
not, as PyTorch's prototype ``torch.masked`` (the MaskedTensor tutorials).

The instance *is* its data tensor (a :class:`~ember.Tensor` subclass aliasing it, in the
autograd graph) with the boolean mask beside it. ``__torch_function__`` runs each op on the
plain data and gives the result a mask: elementwise ops keep their inputs' mask (binary ops
demand equal masks, as PyTorch), reductions skip unspecified elements and are specified where
any input was, ``softmax`` gives unspecified elements no weight, ``where`` takes each side's
mask. Gradients reach the data through ordinary autograd; a MaskedTensor leaf's ``.grad`` is a
MaskedTensor with the leaf's mask. Unlike PyTorch, gradients flowing into *plain* tensors are
plain (ember's engine carries arrays, not masks), so ``x / 0`` under a mask still gives ``nan``
there. Sparse COO data and masks are accepted and kept dense (printing is the same).
"""

from __future__ import annotations

import warnings

from ..overrides import DisableTorchFunctionSubclass
from ..tensor import Tensor

__all__ = ["MaskedTensor", "is_masked_tensor", "masked_tensor", "as_masked_tensor"]

_PROTOTYPE = (
    "The PyTorch API of MaskedTensors is in prototype stage and will change in the near "
    "future. Please open a Github issue for features requests and see our documentation on "
    "the torch.masked module for further information about the project."
)
_DTYPES = ("float16", "float32", "float64", "bool", "int8", "int16", "int32", "int64")

# elementwise ops: the result keeps the (common) mask of its MaskedTensor inputs
_ELEMENTWISE = set(
    """abs neg negative exp exp2 expm1 log log2 log10 log1p sqrt rsqrt sin cos tan asin acos
    atan sinh cosh tanh asinh acosh atanh sigmoid relu gelu silu elu leaky_relu softplus sign
    sgn floor ceil round trunc frac square reciprocal erf erfc clamp clip clamp_min clamp_max
    nan_to_num isnan isinf isfinite logical_not invert bitwise_not positive
    add sub subtract mul multiply div divide true_divide floor_divide remainder fmod pow
    float_power atan2 maximum minimum fmax fmin hypot logaddexp eq ne lt le gt ge less
    less_equal greater greater_equal equal_elementwise bitwise_and bitwise_or bitwise_xor
    logical_and logical_or logical_xor rsub
    float double half bfloat16 int long short bool to type type_as cpu cuda detach clone
    contiguous""".split()
)
# shape ops: applied alike to the data and the mask
_SHAPE = set(
    """getitem reshape view view_as reshape_as transpose permute t unsqueeze squeeze flatten
    unflatten expand expand_as narrow select movedim swapaxes swapdims flip roll""".split()
)
_REDUCTIONS = {"sum", "mean", "prod", "amin", "amax", "argmin", "argmax", "max", "min"}
# run on the instance itself (it is a real tensor in the graph); results are not masked
_OWN = set(
    """backward register_hook requires_grad_ retain_grad size dim numel item is_floating_point
    is_complex is_contiguous element_size nelement data_ptr stride storage_offset tolist __len__
    __format__ __bool__ __hash__ __deepcopy__ __reduce_ex__ get_device""".split()
)


def is_masked_tensor(obj, /) -> bool:
    """Whether ``obj`` is a :class:`MaskedTensor`."""
    return isinstance(obj, MaskedTensor)


def _plain(t):
    """A MaskedTensor's data as a plain tensor (an alias that stays in the graph)."""
    from .._tensor_subclass import _alias

    if not isinstance(t, MaskedTensor):
        return t
    with DisableTorchFunctionSubclass():
        return _alias(t, Tensor)


def _wrap(data: Tensor, mask: Tensor, pattern: Tensor | None = None) -> MaskedTensor:
    """``data`` as a MaskedTensor with ``mask``; ``pattern``: the (ndim, nse) indices of a
    sparse COO MaskedTensor's specified entries (``None``: strided)."""
    from .._tensor_subclass import _alias

    with DisableTorchFunctionSubclass():
        if isinstance(data, MaskedTensor):
            data = _alias(data, Tensor)
        out = _alias(data, MaskedTensor)
    out._masked_mask = mask
    out._masked_pattern = pattern
    return out


def _check(data, mask) -> tuple[Tensor, Tensor]:
    if is_masked_tensor(data) or not isinstance(data, Tensor):
        raise TypeError("data must be a Tensor")
    if is_masked_tensor(mask) or not isinstance(mask, Tensor):
        raise TypeError("mask must be a Tensor")
    if data.layout != mask.layout:
        raise TypeError("data and mask must have the same layout.")
    pattern = None
    if data.is_sparse:  # stored dense; the COO pattern (mask's indices) is kept for get_data
        data, mask = data.coalesce(), mask.coalesce()
        pattern = mask.indices()
        data, mask = data.to_dense(), mask.to_dense()
    if mask.dtype != _dtype("bool"):
        raise TypeError("mask must have dtype bool.")
    if not any(data.dtype == _dtype(n) for n in _DTYPES):
        raise TypeError(f"{data.dtype} is not supported in MaskedTensor.")
    if data.dim() != mask.dim():
        raise ValueError("data.dim() must equal mask.dim()")
    if data.size() != mask.size():
        raise ValueError("data.size() must equal mask.size()")
    return data, mask, pattern


def _dtype(name: str):
    import ember

    return getattr(ember, name)


def masked_tensor(data: Tensor, mask: Tensor, requires_grad: bool = False) -> MaskedTensor:
    """A MaskedTensor of a copy of ``data`` (a new leaf, as ``ember.tensor``) where ``mask``
    (bool, same shape) marks the specified elements."""
    warnings.warn(_PROTOTYPE, UserWarning, stacklevel=2)
    if isinstance(data, Tensor) and data.requires_grad:
        warnings.warn(
            "It is not recommended to create a MaskedTensor with a tensor that requires_grad. "
            "To avoid this, you can use data.detach().clone()",
            UserWarning,
            stacklevel=2,
        )
    data, mask, pattern = _check(data, mask)
    out = _wrap(data.detach().clone(), mask.detach().clone(), pattern)
    if requires_grad:
        with DisableTorchFunctionSubclass():
            out.requires_grad_(True)
    return out


def as_masked_tensor(data: Tensor, mask: Tensor) -> MaskedTensor:
    """A MaskedTensor over ``data`` that stays in its autograd graph (as ``ember.as_tensor``)."""
    warnings.warn(_PROTOTYPE, UserWarning, stacklevel=2)
    data, mask, pattern = _check(data, mask)
    return _wrap(data, mask.detach(), pattern)


def _format_str(data, mask) -> str:
    if data.dim() == 1:
        items = [(v, m) for v, m in zip(data.tolist(), mask.tolist())]
        texts = [f"{v:8.4f}" if isinstance(v, float) else str(v) for v, _ in items]
        width = max([8 if not m else len(t) for t, (_, m) in zip(texts, items)] or [0])
        return (
            "[" + ", ".join(t if m else "--".rjust(width) for t, (_, m) in zip(texts, items)) + "]"
        )
    parts = [_format_str(d, m) for d, m in zip(data, mask)]
    parts = ["\n".join("  " + line for line in p.split("\n")) for p in parts]
    return "[\n" + ",\n".join(parts) + "\n]"


class MaskedTensor(Tensor):
    """A tensor with a boolean mask of its specified elements (``torch.masked.MaskedTensor``).
    Build one with :func:`masked_tensor` or :func:`as_masked_tensor`."""

    # methods and operators dispatch to __torch_function__ as a user's subclass's (overrides.py)
    _user_dispatch = True

    def __new__(cls, data: Tensor, mask: Tensor, requires_grad: bool = False):
        return masked_tensor(data, mask, requires_grad)

    def __init__(self, *args, **kwargs) -> None:
        pass

    def get_data(self) -> Tensor:
        """The data (a plain tensor, in the graph); unspecified elements hold any value. A
        sparse COO MaskedTensor's is a sparse COO tensor of its stored entries."""
        if self._masked_pattern is not None:
            import ember

            idx = self._masked_pattern
            vals = _plain(self).detach()[tuple(idx[i] for i in range(idx.shape[0]))]
            return ember.sparse_coo_tensor(idx, vals, tuple(self.shape)).coalesce()
        return _plain(self)

    def get_mask(self) -> Tensor:
        """The mask: ``True`` where an element is specified."""
        return self._masked_mask

    def to_tensor(self, value) -> Tensor:
        """A plain tensor with the unspecified elements set to ``value``."""
        return _plain(self).masked_fill(~self._masked_mask, value)

    def is_sparse_coo(self) -> bool:
        """Whether this MaskedTensor has the sparse COO layout."""
        return self._masked_pattern is not None

    def is_sparse_csr(self) -> bool:
        """Whether this MaskedTensor has the sparse CSR layout (never: ember has no CSR)."""
        return False

    @property
    def is_sparse(self) -> bool:
        return self._masked_pattern is not None

    def to_sparse_coo(self) -> MaskedTensor:
        """This MaskedTensor in the sparse COO layout: its specified entries are stored."""
        return _wrap(_plain(self), self._masked_mask, self._masked_mask.to_sparse().indices())

    to_sparse = to_sparse_coo

    def to_sparse_csr(self) -> MaskedTensor:
        raise NotImplementedError("MaskedTensor.to_sparse_csr: ember has no sparse CSR layout")

    def to_dense(self) -> MaskedTensor:
        """This MaskedTensor in the strided layout."""
        return _wrap(_plain(self), self._masked_mask)

    @property
    def grad(self):
        """The accumulated gradient, a MaskedTensor with this tensor's mask (``None`` before)."""
        g = Tensor.grad.fget(self)
        return None if g is None else _wrap(g, self._masked_mask)

    @grad.setter
    def grad(self, value) -> None:
        Tensor.grad.fset(self, _plain(value) if value is not None else None)

    def __repr__(self, *, tensor_contents=None) -> str:
        data, mask = _plain(self).detach(), self._masked_mask
        if data.dim() == 0:
            v = data.item()
            text = f"{v:8.4f}" if isinstance(v, float) else str(v)
            return f"MaskedTensor({text if mask.item() else '--'}, {bool(mask.item())})"
        s = "\n".join("  " + line for line in _format_str(data, mask).split("\n"))
        return "MaskedTensor(\n" + s + "\n)"

    __str__ = __repr__

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        from ._ops import dispatch

        return dispatch(func, args, kwargs or {})
