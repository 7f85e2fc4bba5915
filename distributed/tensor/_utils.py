"""``ember.distributed.tensor._utils``: PyTorch's DTensor helper that libraries import
(transformers' sharded loading): a rank's local shard shape and its offset in the global
tensor."""

from __future__ import annotations

from collections.abc import Sequence

from ..device_mesh import DeviceMesh
from ._api import _chunk_bounds
from .placement_types import Shard, _StridedShard

__all__ = ["compute_local_shape_and_global_offset"]


def compute_local_shape_and_global_offset(
    global_shape: Sequence[int], mesh: DeviceMesh, placements: Sequence
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """This rank's shard shape and the global index of its first element, ``torch.chunk``
    style (ranks past the last piece get an empty shard). A rank outside ``mesh`` gets
    ``((0,), ())``, as in PyTorch."""
    coord = mesh.get_coordinate()
    if coord is None:
        return (0,), ()
    if len(placements) != mesh.ndim:
        raise ValueError(
            f"compute_local_shape_and_global_offset: {len(placements)} placements for a "
            f"{mesh.ndim}-d mesh; give one per mesh dimension"
        )
    shape = list(global_shape)
    offset = [0] * len(shape)
    for i, p in enumerate(placements):
        if isinstance(p, _StridedShard):
            raise NotImplementedError(
                f"compute_local_shape_and_global_offset: {p!r} is not supported; "
                "use DTensor.to_local() for strided (FSDP2 over TP) layouts"
            )
        if isinstance(p, Shard):
            d = p.dim % len(shape)
            lo, hi = _chunk_bounds(shape[d], mesh.size(i))[coord[i]]
            shape[d] = hi - lo
            offset[d] += lo
    return tuple(shape), tuple(offset)
