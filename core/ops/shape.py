"""Shape ops, split by family (every name stays importable from here).

- ``shape_views``: reshape/view/flatten/squeeze/unsqueeze, permute/transpose/movedim,
  expand/broadcast_to;
- ``shape_joins``: cat/stack and their variants, split/chunk/unbind/narrow, repeat/tile;
- ``shape_flip_pad``: flip/roll, tril/triu, constant padding.
"""

from __future__ import annotations

from .shape_flip_pad import (  # noqa: F401
    ConstantPad,
    Flip,
    Roll,
    Tri,
    flip,
    fliplr,
    flipud,
    pad,
    roll,
    tril,
    triu,
)
from .shape_joins import (  # noqa: F401
    Cat,
    Repeat,
    Split,
    Stack,
    _same_dtype,
    cat,
    chunk,
    concat,
    concatenate,
    hstack,
    narrow,
    repeat,
    split,
    stack,
    tensor_split,
    tile,
    unbind,
    vstack,
)
from .shape_views import (  # noqa: F401
    Expand,
    Permute,
    Reshape,
    _infer,
    _shape_arg,
    _view_dtype,
    broadcast_to,
    expand,
    expand_as,
    flatten,
    movedim,
    permute,
    reshape,
    reshape_as,
    squeeze,
    swapaxes,
    t,
    transpose,
    unflatten,
    unsqueeze,
    view,
    view_as,
)
