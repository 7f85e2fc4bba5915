"""Indexing ops, split by family (every name stays importable from here).

- ``indexing_getitem``: ``x[idx]`` and ``x[idx] = v`` (basic and advanced indices, torch's order),
  the index-put Functions their gradients use;
- ``indexing_dim``: indices along one dim: gather/take_along_dim, scatter/scatter_add,
  index_select, index_add;
- ``indexing_mask``: masked_fill, masked_select, nonzero/nonzero_static/argwhere.
"""

from __future__ import annotations

from .indexing_dim import (  # noqa: F401
    Gather,
    IndexAdd,
    IndexSelect,
    Scatter,
    _check_gather,
    _check_index_dtype,
    _full_index,
    _scatter,
    gather,
    index_add,
    index_select,
    scatter,
    scatter_add,
    take_along_dim,
)
from .indexing_getitem import (  # noqa: F401
    GetItem,
    IndexPut,
    IndexPutZeros,
    _at,
    _Chain,
    _convert_index,
    _convert_one,
    _get,
    _index_error,
    _index_put_zeros,
    _is_basic,
    _is_int,
    _setitem_error,
    _sum_to,
    _torch_order,
    _zero_at,
    getitem,
    scatter_add_,
    setitem,
)
from .indexing_mask import (  # noqa: F401
    MaskedFill,
    MaskedSelect,
    argwhere,
    masked_fill,
    masked_select,
    nonzero,
    nonzero_static,
)
