"""``load``: fill a state dict in place from a distributed checkpoint saved on any number of
ranks with any sharding.

Each tensor leaf asks for a region of its global tensor (the whole tensor, an FSDP flat
piece, or a DTensor's box); only the stored chunks that overlap it are read, and of those only
the overlapping part where the layout allows a slice. Every key and global shape is checked
before anything is read, and everything is read before anything is written, so a failed load
leaves the state dict as it was. Loading needs no collectives.
"""

from __future__ import annotations

import math
import os

import numpy as np

import ember
from ember._interop import array_of, bump_version
from ember.backend import get_array_module

from ._items import destination, flatten, is_tensor_leaf, np_dtype
from .filesystem import FileSystemReader
from .metadata import BytesStorageMetadata, ChunkStorageMetadata, TensorStorageMetadata

__all__ = ["load"]


def load(
    state_dict: dict,
    *,
    checkpoint_id: str | os.PathLike | None = None,
    storage_reader: FileSystemReader | None = None,
    planner=None,
    process_group=None,
    no_dist: bool = False,
) -> None:
    """Load a distributed checkpoint into ``state_dict`` in place.

    Tensors (whole, FSDP sharded pieces, DTensors) receive their region of the saved global
    tensor, cast to their own dtype; non-tensor values are replaced in their container. Every
    key of ``state_dict`` must be in the checkpoint with the same global shape (keys only in
    the checkpoint are ignored).

    Raises:
        RuntimeError: naming every missing key and every tensor whose global shape differs
            (both shapes); nothing is loaded then.
    """
    from .default_planner import DefaultLoadPlanner, check_planner
    from .stateful import Stateful, to_state_dict

    check_planner(planner, DefaultLoadPlanner, "load")
    # a Stateful value is loaded into its state_dict(), which is then handed back to it
    stateful = {k: v for k, v in state_dict.items() if isinstance(v, Stateful)}
    if not stateful:
        _load(state_dict, checkpoint_id, storage_reader)
        return
    loaded = to_state_dict(state_dict)
    _load(loaded, checkpoint_id, storage_reader)
    for k, v in loaded.items():
        if k in stateful:
            stateful[k].load_state_dict(v)
        else:
            state_dict[k] = v  # (a replaced non-tensor value lands in the caller's dict)


def _load(state_dict: dict, checkpoint_id, storage_reader) -> None:
    if storage_reader is None:
        if checkpoint_id is None:
            raise ValueError("load: give checkpoint_id (a directory) or storage_reader")
        reader = FileSystemReader(checkpoint_id)
    else:
        reader = storage_reader
        if checkpoint_id is not None:
            reader.reset(checkpoint_id)
    md = reader.read_metadata().state_dict_metadata
    leaves = flatten(state_dict)
    errors, plan = [], []
    for leaf in leaves:
        saved = md.get(leaf.fqn)
        if saved is None:
            errors.append(f"Missing key in checkpoint state_dict: {leaf.fqn}.")
            continue
        if not is_tensor_leaf(leaf.value):
            if not isinstance(saved, BytesStorageMetadata):
                errors.append(f"'{leaf.fqn}' is a tensor in the checkpoint but not in state_dict")
            plan.append((leaf, None, None))
            continue
        if not isinstance(saved, TensorStorageMetadata):
            errors.append(f"'{leaf.fqn}' is a tensor in state_dict but not in the checkpoint")
            continue
        dest, shape, request = destination(leaf.value)
        if list(saved.size) != list(shape):
            errors.append(
                f"size mismatch for {leaf.fqn}: the checkpoint holds a tensor of global shape "
                f"{tuple(saved.size)}, the state_dict expects {tuple(shape)}"
            )
            continue
        plan.append((leaf, dest, request))
    if errors:
        raise RuntimeError(
            f"Error(s) in loading distributed checkpoint {reader.path} (nothing was loaded):\n\t"
            + "\n\t".join(errors)
        )
    try:
        values = []
        for leaf, dest, request in plan:
            saved = md[leaf.fqn]
            if dest is None:
                values.append(saved.value)
            else:
                values.append(_read_region(reader, leaf.fqn, saved, request))
    finally:
        reader.close()
    for (leaf, dest, _), value in zip(plan, values):
        if dest is None:
            leaf.container[leaf.key] = value
        else:
            _commit(dest, value)


def _commit(dest, arr: np.ndarray) -> None:
    tensor = isinstance(dest, ember.Tensor)
    data = array_of(dest) if tensor else dest
    xp = get_array_module(data)
    data[...] = xp.asarray(arr.reshape(data.shape)).astype(data.dtype, copy=False)
    if tensor:
        bump_version(dest)  # an in-place write, as copy_ would record


def _read_region(reader, fqn: str, meta: TensorStorageMetadata, request) -> np.ndarray:
    shape = list(meta.size)
    dtype = np_dtype(meta.dtype)
    if request[0] == "box":
        offsets, sizes = request[1], request[2]
        box = ChunkStorageMetadata(list(offsets), list(sizes))
        fr = box.flat_range(shape)
        if fr is None:
            out = np.empty(sizes, dtype=dtype)
            filled = _fill_box(reader, meta, offsets, sizes, out)
        else:
            out = np.empty(math.prod(sizes), dtype=dtype)
            filled = _fill_flat(reader, meta, fr[0], fr[1], out)
            out = out.reshape(sizes)
        need = math.prod(sizes)
    else:
        lo, hi = request[1], request[2]
        out = np.empty(hi - lo, dtype=dtype)
        filled = _fill_flat(reader, meta, lo, hi, out)
        need = hi - lo
    if filled != need:
        raise RuntimeError(
            f"distributed checkpoint {reader.path}: the chunks of '{fqn}' cover {filled} of "
            f"the {need} elements this rank needs (an incomplete checkpoint)"
        )
    return out


def _flat_index(shape, offsets, sizes) -> np.ndarray:
    """Row-major flat indices (in ``shape``) of the elements of a box, in box order."""
    grids = np.meshgrid(*[np.arange(o, o + s) for o, s in zip(offsets, sizes)], indexing="ij")
    return np.ravel_multi_index(grids, shape).reshape(-1) if shape else np.zeros(1, np.int64)


def _fill_flat(reader, meta, lo: int, hi: int, out: np.ndarray) -> int:
    """Fill ``out`` (1-D) with flattened elements ``[lo, hi)``; returns how many were found."""
    shape, filled = list(meta.size), 0
    for c in meta.chunks:
        fr = c.flat_range(shape)
        if fr is not None:
            a, b = max(lo, fr[0]), min(hi, fr[1])
            if b <= a:
                continue
            if c.is_flat:
                part = reader.read(c.file, c.key, meta.dtype, (slice(a - fr[0], b - fr[0]),))
            elif len(shape) > 1 and list(c.sizes[1:]) == shape[1:]:
                # whole rows: read only the rows that hold [a, b)
                row = math.prod(shape[1:]) or 1
                r0, r1 = (a - fr[0]) // row, -(-(b - fr[0]) // row)
                rows = reader.read(c.file, c.key, meta.dtype, (slice(r0, r1),))
                start = a - fr[0] - r0 * row
                part = rows.reshape(-1)[start : start + (b - a)]
            else:
                part = reader.read(c.file, c.key, meta.dtype).reshape(-1)[a - fr[0] : b - fr[0]]
            out[a - lo : b - lo] = part
            filled += b - a
        else:  # a box that is not contiguous in the flattened tensor
            idx = _flat_index(shape, c.offsets, c.sizes)
            mask = (idx >= lo) & (idx < hi)
            if mask.any():
                part = reader.read(c.file, c.key, meta.dtype).reshape(-1)
                out[idx[mask] - lo] = part[mask]
                filled += int(mask.sum())
    return filled


def _fill_box(reader, meta, offsets, sizes, out: np.ndarray) -> int:
    """Fill ``out`` (shape ``sizes``) with the box at ``offsets``; returns elements found."""
    shape, filled = list(meta.size), 0
    flat_idx = None
    for c in meta.chunks:
        if c.is_flat:
            if flat_idx is None:
                flat_idx = _flat_index(shape, offsets, sizes)
            a, b = c.flat_offset, c.flat_offset + c.numel
            mask = (flat_idx >= a) & (flat_idx < b)
            if mask.any():
                sel = flat_idx[mask]
                first, last = int(sel.min()), int(sel.max()) + 1
                part = reader.read(c.file, c.key, meta.dtype, (slice(first - a, last - a),))
                out.reshape(-1)[mask] = part[sel - first]
                filled += int(mask.sum())
            continue
        lo = [max(o, co) for o, co in zip(offsets, c.offsets)]
        hi = [min(o + s, co + cs) for o, s, co, cs in zip(offsets, sizes, c.offsets, c.sizes)]
        if any(h <= lo_ for lo_, h in zip(lo, hi)):
            continue
        src = tuple(slice(a - co, b - co) for a, b, co in zip(lo, hi, c.offsets))
        dst = tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, offsets))
        out[dst] = reader.read(c.file, c.key, meta.dtype, src)
        filled += math.prod(b - a for a, b in zip(lo, hi))
    return filled
