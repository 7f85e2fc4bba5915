"""Collation: turning a list of samples into a batch (``default_collate``, ``default_convert``).

The rules follow ``torch.utils.data.default_collate``: tensors are stacked along a new first
dimension, NumPy arrays become stacked tensors, Python floats become a float64 tensor and ints an
int64 tensor, strings stay a list, and mappings, namedtuples and sequences are collated field by
field (a batch of tuples gives a list, as in PyTorch).
"""

from __future__ import annotations

import collections.abc
import copy
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from ...backend.device import get_array_module
from ...backend.dtype import from_numpy_dtype
from ...tensor import Tensor

__all__ = [
    "collate",
    "default_collate",
    "default_convert",
    "default_collate_fn_map",
    "collate_tensor_fn",
]

_np_str_obj_array_pattern = re.compile(r"[SaUO]")
# torch's public name for the same pattern (MONAI's image readers import it)
np_str_obj_array_pattern = _np_str_obj_array_pattern

default_collate_err_msg_format = (
    "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"
)


def _as_tensor(value) -> Tensor:
    """A tensor over ``value`` (an ndarray or NumPy scalar) keeping its dtype, no copy."""
    from ...creation import as_tensor

    # np.asarray first: a NumPy scalar then keeps its dtype (int32 stays int32, as in torch).
    return as_tensor(np.asarray(value))


def default_convert(data: Any) -> Any:
    """Convert NumPy arrays (and arrays inside containers) to tensors, leaving the rest as is.

    The collate function used when automatic batching is off (``batch_size=None``).
    """
    elem_type = type(data)
    if isinstance(data, Tensor):
        return data
    if elem_type.__module__ == "numpy" and elem_type.__name__ not in ("str_", "bytes_"):
        if isinstance(data, np.ndarray) and _np_str_obj_array_pattern.search(data.dtype.str):
            return data  # arrays of strings or objects stay as they are
        return _as_tensor(data)
    if isinstance(data, collections.abc.Mapping):
        try:
            if isinstance(data, collections.abc.MutableMapping):
                clone = copy.copy(data)
                clone.update({key: default_convert(data[key]) for key in data})
                return clone
            return elem_type({key: default_convert(data[key]) for key in data})
        except TypeError:
            return {key: default_convert(data[key]) for key in data}
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # namedtuple
        return elem_type(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]  # backwards compatibility, as PyTorch
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        try:
            if isinstance(data, collections.abc.MutableSequence):
                clone = copy.copy(data)
                for i, d in enumerate(data):
                    clone[i] = default_convert(d)
                return clone
            return elem_type([default_convert(d) for d in data])
        except TypeError:
            return [default_convert(d) for d in data]
    return data


def _stack(arrays) -> Tensor:
    s0 = arrays[0].shape
    for i, a in enumerate(arrays[1:], 1):
        if a.shape != s0:
            raise RuntimeError(
                f"stack expects each tensor to be equal size, but got {list(s0)} at entry 0 and "
                f"{list(a.shape)} at entry {i}"
            )
    # Stacking the raw arrays skips autograd bookkeeping; data tensors never need a graph.
    return Tensor._wrap(get_array_module(arrays[0]).stack(arrays))


def collate_tensor_fn(batch, *, collate_fn_map=None) -> Tensor:
    """Stack equally-shaped tensors along a new first dimension."""
    if any(type(t) is not Tensor for t in batch):
        # A Tensor subclass (MONAI's MetaTensor) collates through ``stack`` as torch's does, so
        # its ``__torch_function__`` sees the call and the batch keeps the subclass and metadata.
        from ... import stack  # the public one, which dispatches __torch_function__

        return stack(list(batch), 0)
    return _stack([t._data for t in batch])


def _collate_numpy_array_fn(batch, *, collate_fn_map=None):
    elem = batch[0]
    if _np_str_obj_array_pattern.search(elem.dtype.str) is not None:
        raise TypeError(default_collate_err_msg_format.format(elem.dtype))
    out = _stack([np.asarray(b) for b in batch])
    from_numpy_dtype(out._data.dtype)  # unsupported dtypes (uint32, ...) fail here, clearly
    return out


def _collate_numpy_scalar_fn(batch, *, collate_fn_map=None):
    return _as_tensor(np.asarray(batch))


def _collate_float_fn(batch, *, collate_fn_map=None):
    return Tensor._wrap(np.asarray(batch, dtype=np.float64))


def _collate_int_fn(batch, *, collate_fn_map=None):
    # bool is an int subclass: a batch of bools gives a bool tensor, as torch.tensor does.
    if all(type(b) is bool for b in batch):
        return Tensor._wrap(np.asarray(batch, dtype=np.bool_))
    return Tensor._wrap(np.asarray(batch, dtype=np.int64))


def _collate_str_fn(batch, *, collate_fn_map=None):
    return batch


default_collate_fn_map: dict[type | tuple[type, ...], Callable] = {
    Tensor: collate_tensor_fn,
    np.ndarray: _collate_numpy_array_fn,
    (np.bool_, np.number, np.object_): _collate_numpy_scalar_fn,
    float: _collate_float_fn,
    int: _collate_int_fn,
    str: _collate_str_fn,
    bytes: _collate_str_fn,
}


def collate(batch, *, collate_fn_map: dict | None = None):
    """Collate ``batch`` with per-type functions from ``collate_fn_map`` (PyTorch's ``collate``).

    Each key of ``collate_fn_map`` is a type (or tuple of types); the function registered for
    the first element's type (or a base class of it) collates the whole batch. Containers are
    walked recursively.
    """
    elem = batch[0]
    elem_type = type(elem)

    if collate_fn_map is not None:
        if elem_type in collate_fn_map:
            return collate_fn_map[elem_type](batch, collate_fn_map=collate_fn_map)
        for collate_type, fn in collate_fn_map.items():
            if isinstance(elem, collate_type):
                return fn(batch, collate_fn_map=collate_fn_map)

    if isinstance(elem, collections.abc.Mapping):
        try:
            if isinstance(elem, collections.abc.MutableMapping):
                # The mapping type may carry extra state: update a shallow copy of it.
                clone = copy.copy(elem)
                clone.update(
                    {
                        key: collate([d[key] for d in batch], collate_fn_map=collate_fn_map)
                        for key in elem
                    }
                )
                return clone
            return elem_type(
                {
                    key: collate([d[key] for d in batch], collate_fn_map=collate_fn_map)
                    for key in elem
                }
            )
        except TypeError:
            # The mapping type may not support ``copy()`` / ``update(mapping)``.
            return {
                key: collate([d[key] for d in batch], collate_fn_map=collate_fn_map) for key in elem
            }
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return elem_type(
            *(collate(samples, collate_fn_map=collate_fn_map) for samples in zip(*batch))
        )
    if isinstance(elem, collections.abc.Sequence):
        it = iter(batch)
        elem_size = len(next(it))
        if not all(len(e) == elem_size for e in it):
            raise RuntimeError("each element in list of batch should be of equal size")
        transposed = list(zip(*batch))  # read twice below, so a list
        if isinstance(elem, tuple):
            return [collate(samples, collate_fn_map=collate_fn_map) for samples in transposed]
        try:
            if isinstance(elem, collections.abc.MutableSequence):
                clone = copy.copy(elem)
                for i, samples in enumerate(transposed):
                    clone[i] = collate(samples, collate_fn_map=collate_fn_map)
                return clone
            return elem_type(
                [collate(samples, collate_fn_map=collate_fn_map) for samples in transposed]
            )
        except TypeError:
            # The sequence type may not support ``copy()`` / ``__setitem__`` / ``__init__(list)``.
            return [collate(samples, collate_fn_map=collate_fn_map) for samples in transposed]

    raise TypeError(default_collate_err_msg_format.format(elem_type))


def default_collate(batch):
    """Collate a list of samples into a batch, PyTorch's ``default_collate``.

    * tensors -> one tensor stacked along a new dimension 0
    * NumPy arrays -> a stacked tensor; NumPy scalars -> a 1-D tensor of their dtype
    * ``float`` -> float64 tensor, ``int`` -> int64 tensor, ``bool`` -> bool tensor
    * ``str`` / ``bytes`` -> the list unchanged
    * ``Mapping[K, V]`` -> ``Mapping[K, default_collate([V1, V2, ...])]``
    * ``NamedTuple[V1_i, V2_i, ...]`` -> ``NamedTuple[default_collate([V1_1, V1_2, ...]), ...]``
    * ``Sequence[V1_i, V2_i, ...]`` -> ``[default_collate([V1_1, V1_2, ...]), ...]``

    Example::

        >>> default_collate([(ember.tensor([1.0]), 0), (ember.tensor([2.0]), 1)])
        [tensor([[1.], [2.]]), tensor([0, 1])]
    """
    return collate(batch, collate_fn_map=default_collate_fn_map)
