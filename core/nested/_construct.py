"""Building nested tensors and turning them back into dense ones (``torch.nested``'s
factories, ``to_padded_tensor``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import creation
from .._torch_misc import jagged, strided
from ..tensor import Tensor
from ._tensor import NestedTensor

__all__ = [
    "as_nested_tensor",
    "nested_tensor",
    "nested_tensor_from_jagged",
    "narrow",
    "to_padded_tensor",
]


def _check_layout(layout):
    if layout is None:
        return strided
    if layout is not strided and layout is not jagged:
        raise RuntimeError(
            f"Specified layout is unsupported for nested tensors: {layout} (use ember.strided "
            "or ember.jagged)"
        )
    return layout


def _as_components(tensor_list, dtype, device) -> list[Tensor]:
    if isinstance(tensor_list, NestedTensor):
        tensor_list = tensor_list.unbind()
    elif isinstance(tensor_list, Tensor):
        tensor_list = tensor_list.unbind(0)
    if not isinstance(tensor_list, (list, tuple)):
        raise TypeError(
            "nested_tensor(): expected a list of tensors (or of nested Python lists), got "
            f"{type(tensor_list).__name__}"
        )
    out = []
    for t in tensor_list:
        if not isinstance(t, Tensor):
            t = creation.tensor(t)
        if dtype is not None or device is not None:
            t = t.to(device=device, dtype=dtype)
        out.append(t)
    return out


def _jagged_from(comps: list[Tensor]) -> NestedTensor:
    """Pack components into one jagged tensor (ragged dimension = each component's dim 0);
    differentiable through ``cat``."""
    from ..ops.shape_joins import cat

    if not comps:
        raise RuntimeError("nested_tensor(): cannot build a jagged nested tensor of no tensors")
    nd = comps[0].dim()
    if nd == 0:
        raise RuntimeError(
            "nested_tensor(): components of a jagged nested tensor need at least one dimension"
        )
    for c in comps:
        if c.dim() != nd:
            raise RuntimeError(
                "When constructing a nested tensor, all tensors in list must have the same dim"
            )
        if tuple(c.shape[1:]) != tuple(comps[0].shape[1:]):
            raise RuntimeError(
                "Cannot represent given tensor list as a nested tensor with the jagged layout: "
                "all components must match in every dimension but the first (found "
                f"{list(comps[0].shape)} and {list(c.shape)})"
            )
    dtypes = {c.dtype for c in comps}
    if len(dtypes) > 1:
        raise RuntimeError(
            "When constructing a nested tensor, all tensors in list must have the same dtype"
        )
    values = cat(list(comps), 0) if len(comps) > 1 else comps[0]
    lens = np.array([0] + [int(c.shape[0]) for c in comps], dtype=np.int64)
    offsets = creation.tensor(np.cumsum(lens)).to(values.device)
    return NestedTensor._jagged(values, offsets)


def nested_tensor(
    tensor_list,
    *,
    dtype=None,
    layout=None,
    device=None,
    requires_grad: bool = False,
    pin_memory: bool = False,
) -> NestedTensor:
    """A nested tensor of copies of ``tensor_list``'s tensors (a new leaf, no graph to them).

    Args:
        tensor_list: tensors (or nested Python lists) with the same number of dimensions.
        dtype, device: of the result (default: the components').
        layout: ``ember.strided`` (default: components may differ in any dimension) or
            ``ember.jagged`` (one ragged dimension: components differ only in their first).
        requires_grad: make the result a leaf that records operations.
    """
    layout = _check_layout(layout)
    comps = [c.detach() for c in _as_components(tensor_list, dtype, device)]
    if layout is jagged:
        nt = _jagged_from(comps)
        if nt._values is comps[0] or nt._values._base is not None:
            nt = nt._like(nt._values.clone())
    else:
        nt = NestedTensor._strided([c.clone() for c in comps])
    if requires_grad:
        nt.requires_grad_()
    return nt


def as_nested_tensor(ts, dtype=None, device=None, layout=None) -> NestedTensor:
    """A nested tensor of ``ts`` that keeps the autograd history: gradients flow back to
    ``ts`` (:func:`nested_tensor` copies into a new leaf instead).

    Args:
        ts: a list of tensors of the same number of dimensions, or a tensor split along dim 0.
        dtype: the dtype of the result (default: the components').
        device: the device of the result (default: the components').
        layout: ``ember.strided`` (the default) or ``ember.jagged``.

    Example::

        >>> a = ember.ones(2, 4, requires_grad=True)
        >>> nt = ember.nested.as_nested_tensor([a, ember.ones(3, 4)], layout=ember.jagged)
        >>> nt.is_nested
        True
    """
    layout = _check_layout(layout)
    if isinstance(ts, NestedTensor) and ts.layout is layout and dtype is None and device is None:
        return ts
    comps = _as_components(ts, dtype, device)
    if layout is jagged:
        return _jagged_from(comps)
    return NestedTensor._strided(comps)


def nested_tensor_from_jagged(
    values: Tensor,
    offsets: Tensor | None = None,
    lengths: Tensor | None = None,
    jagged_dim: int | None = None,
    min_seqlen: int | None = None,
    max_seqlen: int | None = None,
) -> NestedTensor:
    """A jagged nested tensor viewing ``values`` (no copy; gradients flow to ``values``).

    Args:
        values: the packed components, the ragged dimension at ``jagged_dim - 1``.
        offsets: ``B + 1`` boundaries into ``values``; with ``lengths`` as well, component
            ``i`` is ``values[offsets[i] : offsets[i] + lengths[i]]`` (a non-contiguous view).
        lengths: per-component lengths (offsets are their cumulative sum when not given).
        jagged_dim: the ragged dimension of the result (default 1).
    """
    from ..backend.dtype import int32, int64

    if not isinstance(values, Tensor) or isinstance(values, NestedTensor):
        raise TypeError("nested_tensor_from_jagged(): values must be a dense tensor")
    if offsets is None:
        if lengths is None:
            raise RuntimeError(
                "nested_tensor_from_jagged(): At least one of offsets or lengths is required."
            )
        lens = np.concatenate([[0], np.asarray(lengths.cpu()._data, dtype=np.int64)])
        offsets, lengths = creation.tensor(np.cumsum(lens)).to(values.device), None
    jagged_dim = 1 if jagged_dim is None else int(jagged_dim)
    if not 1 <= jagged_dim <= values.dim():
        raise RuntimeError(
            f"nested_tensor_from_jagged(): jagged_dim={jagged_dim} is out of range for values "
            f"with {values.dim()} dimensions (expected 1 to {values.dim()})"
        )
    if offsets.dim() != 1 or offsets.dtype not in (int64, int32):
        raise RuntimeError("nested_tensor_from_jagged(): offsets must be a 1-D integer tensor")
    offsets = offsets.to(int64)
    if lengths is not None:
        lengths = lengths.to(int64)
    return NestedTensor._jagged(values, offsets, lengths, jagged_dim)


def narrow(tensor: Tensor, dim: int, start, length, layout=strided) -> NestedTensor:
    """The nested tensor of ``tensor[b].narrow(dim - 1, start[b], length[b])`` for each ``b``:
    with ``layout=ember.jagged``, a non-contiguous view of ``tensor`` (no copy)."""
    layout = _check_layout(layout)
    if isinstance(tensor, NestedTensor):
        raise RuntimeError("narrow(): expected a dense tensor as input")
    if dim != 1:
        raise RuntimeError("narrow(): only dim=1 is supported for nested tensors")
    b, seq = int(tensor.shape[0]), int(tensor.shape[1])
    st = np.broadcast_to(np.asarray(_host(start), dtype=np.int64), (b,))
    ln = np.broadcast_to(np.asarray(_host(length), dtype=np.int64), (b,))
    if np.any(st < 0) or np.any(st + ln > seq):
        raise RuntimeError(f"narrow(): start + length exceeds the dimension size {seq}")
    if layout is strided:
        return NestedTensor._strided(
            [tensor[i].narrow(0, int(st[i]), int(ln[i])) for i in range(b)]
        )
    values = tensor.flatten(0, 1)
    starts = st + np.arange(b, dtype=np.int64) * seq
    off = np.concatenate([starts, [starts[-1] + ln[-1]]]) if b else np.zeros(1, np.int64)
    dev = tensor.device
    return NestedTensor._jagged(
        values, creation.tensor(off).to(dev), creation.tensor(np.array(ln)).to(dev), 1
    )


def _host(x):
    if isinstance(x, Tensor):
        return x.cpu()._data
    return x


def _pad_to(t: Tensor, shape: Sequence[int], value: float) -> Tensor:
    from ..nn.functional import pad

    amounts: list[int] = []
    for have, want in zip(reversed(tuple(t.shape)), reversed(tuple(shape))):
        amounts += [0, int(want) - int(have)]
    if not any(amounts):
        return t
    return pad(t, amounts, value=value)


def to_padded_tensor(input: NestedTensor, padding: float, output_size=None) -> Tensor:
    """A dense tensor of ``input``'s components padded to the largest size in each
    dimension; differentiable.

    Args:
        input: a nested tensor.
        padding: the value of the padding elements.
        output_size: the size of the result, at least the largest components' (default: just
            that).

    Example::

        >>> nt = ember.nested.nested_tensor([ember.ones(2), ember.ones(3)], layout=ember.jagged)
        >>> ember.nested.to_padded_tensor(nt, 0.0)
        tensor([[1., 1., 0.],
                [1., 1., 1.]])
    """
    from ..ops.shape_joins import stack

    if not isinstance(input, NestedTensor):
        raise RuntimeError("to_padded_tensor(): expected a nested tensor as input")
    comps = input.unbind()
    if input.layout is strided:
        if not comps:
            return creation.zeros(0)
        nd = comps[0].dim()
        big = [max(int(c.shape[d]) for c in comps) for d in range(nd)]
        out = stack([_pad_to(c, big, padding) for c in comps], 0)
    else:
        out = _jagged_padded(input, padding)
    if output_size is not None:
        want = tuple(int(s) for s in output_size)
        if len(want) != out.dim() or any(w < h for w, h in zip(want, out.shape)):
            raise RuntimeError(
                f"to_padded_tensor(): output_size {list(want)} must have {out.dim()} entries, "
                f"each at least the padded size {list(out.shape)}"
            )
        out = _pad_to(out, want, padding)
    return out


def _jagged_padded(nt: NestedTensor, padding: float) -> Tensor:
    """One gather from ``values`` plus a padding row: (B, max_len, ...) with the ragged
    dimension moved back to ``_ragged_idx``."""
    from ..ops.shape_joins import cat

    r = nt._ragged_idx - 1
    lens = nt._lengths_list()
    starts = nt._starts_list()
    b, top = len(lens), max(lens, default=0)
    v = nt._values.movedim(r, 0) if r else nt._values
    total = int(v.shape[0])
    idx = np.full((b, top), total, dtype=np.int64)
    for i, (s, n) in enumerate(zip(starts, lens)):
        idx[i, :n] = np.arange(s, s + n)
    pad_row = v.new_full((1, *v.shape[1:]), padding)
    ext = cat([v, pad_row], 0)
    out = ext[creation.tensor(idx.reshape(-1)).to(v.device)].reshape(b, top, *v.shape[1:])
    return out.movedim(1, r + 1) if r else out
