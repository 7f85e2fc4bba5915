"""Placements: how a ``DTensor`` lies along one mesh dimension (PyTorch's names)."""

from __future__ import annotations

__all__ = ["Partial", "Placement", "Replicate", "Shard"]

# importable from here, as from torch.distributed._tensor.placement_types (torchtune)
from ._dtensor_spec import DTensorSpec, TensorMeta  # noqa: E402, F401


class Placement:
    """Base class of ``Shard``, ``Replicate`` and ``Partial``."""

    def is_shard(self, dim: int | None = None) -> bool:
        return isinstance(self, Shard) and (dim is None or self.dim == dim)

    def is_replicate(self) -> bool:
        return isinstance(self, Replicate)

    def is_partial(self, reduce_op: str | None = None) -> bool:
        return isinstance(self, Partial) and (reduce_op is None or self.reduce_op == reduce_op)


class Shard(Placement):
    """The tensor is split along tensor dimension ``dim`` across the mesh dimension, in
    ``torch.chunk``'s pieces (``ceil(n / k)`` each; the last ones may be smaller or empty)."""

    def __init__(self, dim: int) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"Shard(dim): dim must be an int, got {type(dim).__name__}")
        self.dim = dim

    def __eq__(self, other: object) -> bool:
        # exact type: a _StridedShard lays the pieces out differently
        return type(other) is type(self) and other.dim == self.dim

    def __hash__(self) -> int:
        return hash(("Shard", self.dim))

    def __repr__(self) -> str:
        return f"Shard(dim={self.dim})"

    def __str__(self) -> str:
        return f"S({self.dim})"


class _StridedShard(Shard):
    """``Shard(dim)`` whose split happens *after* the ``split_factor``-way split of the same
    dimension by a later mesh dimension (PyTorch's ``_StridedShard``): what ``fully_shard``
    gives a parameter that tensor parallelism already shards along dim 0 (FSDP2 cuts each
    tensor-parallel piece, so the data-parallel rows are strided through the global tensor).
    Only that layout (the later mesh dimensions' ``Shard(dim)`` of total size
    ``split_factor``) is supported."""

    def __init__(self, dim: int, split_factor: int) -> None:
        super().__init__(dim)
        if isinstance(split_factor, bool) or not isinstance(split_factor, int) or split_factor < 1:
            raise ValueError(
                f"_StridedShard: split_factor must be an int >= 1, got {split_factor!r}"
            )
        self.split_factor = split_factor

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is _StridedShard
            and other.dim == self.dim
            and other.split_factor == self.split_factor
        )

    def __hash__(self) -> int:
        return hash(("_StridedShard", self.dim, self.split_factor))

    def __repr__(self) -> str:
        return f"_StridedShard(dim={self.dim}, sf={self.split_factor})"

    def __str__(self) -> str:
        return f"_S({self.dim}, {self.split_factor})"


class Replicate(Placement):
    """Every rank along the mesh dimension holds the whole tensor."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Replicate)

    def __hash__(self) -> int:
        return hash("Replicate")

    def __repr__(self) -> str:
        return "Replicate()"

    def __str__(self) -> str:
        return "R"


class Partial(Placement):
    """Every rank holds a partial value; the tensor is their reduction (``"sum"`` by default,
    or ``"avg"``, ``"max"``, ``"min"``, ``"product"``)."""

    _OPS = ("sum", "avg", "max", "min", "product")

    def __init__(self, reduce_op: str = "sum") -> None:
        if reduce_op not in self._OPS:
            raise ValueError(f"Partial: reduce_op must be one of {self._OPS}, got {reduce_op!r}")
        self.reduce_op = reduce_op

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Partial) and other.reduce_op == self.reduce_op

    def __hash__(self) -> int:
        return hash(("Partial", self.reduce_op))

    def __repr__(self) -> str:
        return f"Partial({self.reduce_op})"

    def __str__(self) -> str:
        return f"P({self.reduce_op})"
