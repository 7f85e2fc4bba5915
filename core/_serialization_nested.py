"""Loading nested tensors (``ember.nested``) from the structure ``ember.save`` writes, checked
the way ``weights_only=True`` loading needs: only dense tensors, and offsets / lengths that
stay inside the values (a malformed node is a FormatError, never an out-of-bounds view).

A jagged nested tensor is saved as ``{"$": "nested_jagged", "v": values, "o": offsets,
"r": ragged_idx[, "l": lengths]}``, a strided one as ``{"$": "nested_strided", "v": [...]}``
(see ``Encoder._nested`` in ``_serialization_codec``).
"""

from __future__ import annotations

import numpy as np

from ._serialization_codec import FormatError, _field, decode
from .tensor import Tensor


def _dense(x, what: str) -> Tensor:
    if not isinstance(x, Tensor) or x.is_nested or x.is_sparse:
        raise FormatError(f"nested tensor node: {what} is not a dense tensor")
    return x


def _check_jagged(values: Tensor, offsets: Tensor, lengths, ragged_idx: int) -> None:
    if not 1 <= ragged_idx <= values.dim():
        raise FormatError(f"nested_jagged node: ragged dim {ragged_idx} out of range")
    if offsets.dim() != 1 or offsets.shape[0] < 1 or offsets._data.dtype.kind not in "iu":
        raise FormatError("nested_jagged node: offsets must be a non-empty 1-D integer tensor")
    total = values.shape[ragged_idx - 1]
    off = np.asarray(offsets.detach().cpu()._data, dtype=np.int64)
    if off[0] < 0 or np.any(np.diff(off) < 0) or off[-1] > total:
        raise FormatError("nested_jagged node: offsets must rise from 0 within the values")
    if lengths is not None:
        if lengths.dim() != 1 or lengths._data.dtype.kind not in "iu":
            raise FormatError("nested_jagged node: lengths must be a 1-D integer tensor")
        lens = np.asarray(lengths.detach().cpu()._data, dtype=np.int64)
        if lens.shape[0] != off.shape[0] - 1 or np.any(lens < 0):
            raise FormatError("nested_jagged node: one non-negative length per component")
        if np.any(off[:-1] + lens > total):
            raise FormatError("nested_jagged node: a component runs past the values")


def decode_nested(node: dict, tensor_at, entry_at):
    """The nested tensor of a ``nested_jagged`` / ``nested_strided`` node."""
    from .nested._tensor import NestedTensor

    if node.get("$") == "nested_strided":
        comps = [
            _dense(decode(c, tensor_at, entry_at), "a component") for c in _field(node, "v", list)
        ]
        try:
            return NestedTensor._strided(comps)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise FormatError(f"bad nested_strided node ({exc})") from None
    values = _dense(decode(_field(node, "v", dict), tensor_at, entry_at), "values")
    offsets = _dense(decode(_field(node, "o", dict), tensor_at, entry_at), "offsets")
    lengths = None
    if "l" in node:
        lengths = _dense(decode(_field(node, "l", dict), tensor_at, entry_at), "lengths")
    ragged_idx = _field(node, "r", int)
    _check_jagged(values, offsets, lengths, ragged_idx)
    from .backend.dtype import int64

    lengths = None if lengths is None else lengths.to(int64)
    return NestedTensor._jagged(values, offsets.to(int64), lengths, ragged_idx)
