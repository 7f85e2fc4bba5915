"""``DTensorSpec`` and ``TensorMeta`` (torch.distributed.tensor._dtensor_spec): a DTensor's
mesh, placements and global shape, as code that builds ``DTensor(local, spec=...)`` passes
them (torchtune's FSDP state-dict loading)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["DTensorSpec", "TensorMeta"]


class TensorMeta(NamedTuple):
    """The global ``shape``, ``stride`` and ``dtype`` of a distributed tensor."""

    shape: Any
    stride: tuple[int, ...]
    dtype: Any


@dataclass
class DTensorSpec:
    """Where a DTensor lives: its ``mesh``, ``placements`` and (optionally) ``tensor_meta``."""

    mesh: Any
    placements: tuple[Any, ...]
    tensor_meta: TensorMeta | None = None

    def __post_init__(self) -> None:
        self.placements = tuple(self.placements)

    @property
    def shape(self) -> tuple[int, ...]:
        if self.tensor_meta is None:
            raise ValueError("DTensorSpec.shape: tensor_meta is not set")
        return tuple(int(s) for s in self.tensor_meta.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)
