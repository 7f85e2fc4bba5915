"""``DeviceMesh`` and ``init_device_mesh``: ranks laid out as an n-d array, one process group per
mesh dimension (PyTorch's ``torch.distributed.device_mesh``).

A 2-d mesh ``(dp=2, tp=2)`` over 4 ranks is ``[[0, 1], [2, 3]]``: the ``tp`` groups are the rows
(``[0, 1]``, ``[2, 3]``), the ``dp`` groups the columns (``[0, 2]``, ``[1, 3]``). Every rank of the
job creates every group of every dimension, in the same order (``new_group``'s contract), and
keeps the one it belongs to. Slicing (``mesh["tp"]``) reuses those groups; it creates none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ._runtime import _state
from .distributed_c10d import get_rank, get_world_size, init_process_group, is_initialized
from .distributed_c10d import new_group as _new_group
from .process_group import ProcessGroup

__all__ = ["DeviceMesh", "init_device_mesh"]


def _as_rank_array(mesh) -> np.ndarray:
    """The rank layout as an int64 NumPy array, from a list, an array or an ember tensor."""
    if hasattr(mesh, "numpy") and not isinstance(mesh, np.ndarray):
        mesh = mesh.detach().cpu().numpy() if hasattr(mesh, "detach") else mesh.numpy()
    arr = np.asarray(mesh)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"DeviceMesh: mesh must hold integer ranks, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _check_names(names, ndim: int) -> tuple[str, ...] | None:
    if names is None:
        return None
    names = tuple(names)
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise RuntimeError(
            "Each mesh_dim_name must be unique. Found repeated mesh_dim_name "
            f"{dup} in mesh_dim_names {names}"
        )
    if len(names) != ndim:
        raise RuntimeError(
            "mesh_shape and mesh_dim_names should have same length! Found "
            f"len(mesh_dim_names): {len(names)} and mesh ndim: {ndim}."
        )
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise TypeError(f"mesh_dim_names must be strings, got {bad}")
    return names


class DeviceMesh:
    """An n-d array of global ranks with one process group per dimension.

    Args:
        device_type (str): ``"cpu"`` or ``"cuda"`` (no device index).
        mesh (array-like): the global ranks, e.g. ``[[0, 1], [2, 3]]``; each at most once.
        mesh_dim_names (tuple[str, ...], optional): a unique name per dimension.

    Like PyTorch, every rank of the job constructs the mesh (SPMD), members or not; a rank
    outside the mesh gets ``get_coordinate() is None`` and no groups.
    """

    def __init__(
        self,
        device_type: str,
        mesh,
        *,
        mesh_dim_names: tuple[str, ...] | None = None,
        _init_backend: bool = True,
    ) -> None:
        if not isinstance(device_type, str) or not device_type.isalpha():
            raise RuntimeError(
                f"Device type with index is not supported but got {device_type!r}."
                " Pass the device's type, e.g. 'cuda', not 'cuda:0'."
            )
        arr = _as_rank_array(mesh)
        if arr.ndim == 0 or arr.size == 0:
            raise ValueError(
                f"DeviceMesh: mesh must be a non-empty array of ranks, got shape {tuple(arr.shape)}"
            )
        flat = arr.reshape(-1).tolist()
        if len(set(flat)) != len(flat):
            dup = sorted({r for r in flat if flat.count(r) > 1})
            raise ValueError(f"DeviceMesh: ranks {dup} appear more than once in the mesh {flat}")
        self.device_type = device_type
        self._mesh = arr
        self._mesh_dim_names = _check_names(mesh_dim_names, arr.ndim)
        self._groups: list[ProcessGroup | None] = []
        self._root: DeviceMesh = self
        if _init_backend:
            self._setup_world()
            self._init_process_groups()
        self._coordinate = self._compute_coordinate()

    # ---- construction ------------------------------------------------------------------------
    def _setup_world(self) -> None:
        if not is_initialized():
            init_process_group()
        world = get_world_size()
        if self._mesh.size > world:
            raise RuntimeError(
                f"Mesh should not be bigger than default world size {world}, but "
                f"found {self._mesh.size} ranks (mesh shape "
                f"{tuple(self._mesh.shape)})!"
            )
        bad = [r for r in self._mesh.reshape(-1).tolist() if not 0 <= r < world]
        if bad:
            raise ValueError(
                f"DeviceMesh: ranks {bad} are outside the world (ranks 0..{world - 1})"
            )

    def _init_process_groups(self) -> None:
        world = get_world_size()
        me = get_rank()
        for dim in range(self._mesh.ndim):
            if self._mesh.ndim == 1 and self._mesh.tolist() == list(range(world)):
                # the whole world in order: the default group already is this dimension's group
                self._groups.append(_state.group.WORLD)
                continue
            # each row of this view is one group along `dim`; every rank creates all of them,
            # in the same order, and keeps its own
            rows = np.moveaxis(self._mesh, dim, -1).reshape(-1, self._mesh.shape[dim])
            mine = None
            for row in rows.tolist():
                pg = _new_group(row)
                if me in row:
                    mine = pg
            self._groups.append(mine)

    def _compute_coordinate(self) -> tuple[int, ...] | None:
        if not is_initialized():
            return None
        hit = np.argwhere(self._mesh == get_rank())
        return tuple(int(i) for i in hit[0]) if len(hit) else None

    # ---- layout ------------------------------------------------------------------------------
    @property
    def mesh(self):
        """The rank layout as an ember tensor (int32, like ``init_device_mesh``'s in PyTorch)."""
        import ember

        return ember.tensor(self._mesh.astype(np.int32))

    @property
    def mesh_dim_names(self) -> tuple[str, ...] | None:
        return self._mesh_dim_names

    @property
    def ndim(self) -> int:
        return self._mesh.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self._mesh.shape)

    def size(self, mesh_dim: int | None = None) -> int:
        """The number of ranks in the mesh, or along ``mesh_dim``."""
        if mesh_dim is None:
            return int(self._mesh.size)
        return self.shape[self._dim_index(mesh_dim)]

    def get_rank(self) -> int:
        """This process's global rank."""
        return get_rank()

    def get_coordinate(self) -> tuple[int, ...] | None:
        """This rank's index along every mesh dimension; ``None`` if it is not in the mesh."""
        return self._coordinate

    def get_local_rank(self, mesh_dim: int | str | None = None) -> int:
        """This rank's index along ``mesh_dim`` (its rank in that dimension's group)."""
        dim = self._dim_or_only(mesh_dim, "get_local_rank")
        if self._coordinate is None:
            raise RuntimeError(
                f"get_local_rank: rank {get_rank()} is not part of the mesh {self._mesh.tolist()}"
            )
        return self._coordinate[dim]

    # ---- groups ------------------------------------------------------------------------------
    def get_group(self, mesh_dim: int | str | None = None) -> ProcessGroup:
        """The process group of ``mesh_dim`` (by index or name) that contains this rank."""
        dim = self._dim_or_only(mesh_dim, "get_group")
        if not self._groups:
            raise RuntimeError("DeviceMesh process groups not initialized!")
        pg = self._groups[dim]
        if pg is None:
            raise RuntimeError(
                f"get_group: rank {get_rank()} is not part of the mesh "
                f"{self._mesh.tolist()}, so it has no group along dim {dim}"
            )
        return pg

    def get_all_groups(self) -> list[ProcessGroup]:
        """One process group per mesh dimension, in dimension order."""
        return [self.get_group(i) for i in range(self.ndim)]

    # ---- slicing -----------------------------------------------------------------------------
    def __getitem__(self, mesh_dim_names: str | tuple[str, ...]) -> DeviceMesh:
        """The sub-mesh over the named dimensions that contains this rank (``mesh["tp"]``,
        ``mesh["dp", "tp"]``); names must be in the mesh's order, as PyTorch requires."""
        if not self._mesh_dim_names:
            raise RuntimeError("Cannot slice a DeviceMesh without mesh_dim_names!")
        names = (mesh_dim_names,) if isinstance(mesh_dim_names, str) else mesh_dim_names
        if not isinstance(names, tuple) or not all(isinstance(n, str) for n in names):
            raise TypeError(
                "DeviceMesh indices must be a mesh dimension name or a tuple of "
                f"names, got {mesh_dim_names!r}"
            )
        unknown = [n for n in names if n not in self._mesh_dim_names]
        if unknown:
            raise KeyError(
                f"Invalid mesh_dim_names {names} specified: {unknown} not found. "
                f"Valid mesh_dim_names are {list(self._mesh_dim_names)}."
            )
        if len(set(names)) != len(names):
            raise RuntimeError(f"Slicing overlapping dim_names {names} is not allowed.")
        dims = [self._mesh_dim_names.index(n) for n in names]
        if dims != sorted(dims):
            raise KeyError(
                f"Invalid mesh_dim_names {names} specified. Mesh dim indices should "
                f"be in ascending order (the mesh's are {self._mesh_dim_names})."
            )
        if names == self._mesh_dim_names:
            return self
        # fix the dropped dimensions at this rank's coordinate (the first slice for a rank
        # outside the mesh, which then has no groups in it)
        coord = self._coordinate or (0,) * self.ndim
        index = tuple(slice(None) if d in dims else coord[d] for d in range(self.ndim))
        sub = DeviceMesh(
            self.device_type, self._mesh[index], mesh_dim_names=names, _init_backend=False
        )
        sub._groups = [self._groups[d] for d in dims] if self._groups else []
        sub._root = self._root
        return sub

    # ---- helpers -----------------------------------------------------------------------------
    def _dim_index(self, mesh_dim: int | str) -> int:
        if isinstance(mesh_dim, str):
            if not self._mesh_dim_names:
                raise KeyError(
                    f"Mesh dimension {mesh_dim!r} given by name, but the mesh has no "
                    "mesh_dim_names."
                )
            if mesh_dim not in self._mesh_dim_names:
                raise KeyError(
                    f"Mesh dimension '{mesh_dim}' does not exist. Available mesh "
                    f"dimensions are: mesh_dim_names={self._mesh_dim_names}"
                )
            return self._mesh_dim_names.index(mesh_dim)
        if isinstance(mesh_dim, bool) or not isinstance(mesh_dim, int):
            raise TypeError(f"mesh_dim must be an int or a name, got {type(mesh_dim).__name__}")
        if not -self.ndim <= mesh_dim < self.ndim:
            raise IndexError(
                f"mesh_dim {mesh_dim} is out of range for a {self.ndim}-d mesh "
                f"of shape {self.shape}"
            )
        return mesh_dim % self.ndim

    def _dim_or_only(self, mesh_dim, what: str) -> int:
        if mesh_dim is None:
            if self.ndim > 1:
                raise RuntimeError(
                    f"{what}: found the DeviceMesh has {self.ndim} dimensions; "
                    "`mesh_dim` needs to be specified when device_mesh.ndim > 1."
                )
            return 0
        return self._dim_index(mesh_dim)

    def __repr__(self) -> str:
        if self._mesh_dim_names:
            dims = ", ".join(f"{n}={s}" for n, s in zip(self._mesh_dim_names, self.shape))
            dims = f"({dims})"
        else:
            dims = str(self.shape)
        return f"DeviceMesh({dims}, '{self.device_type}', mesh={self._mesh.tolist()})"

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, DeviceMesh):
            return False
        return (
            self.device_type == other.device_type
            and self._mesh_dim_names == other._mesh_dim_names
            and self._mesh.shape == other._mesh.shape
            and bool((self._mesh == other._mesh).all())
        )

    def __hash__(self) -> int:
        return hash(
            (
                self.device_type,
                self._mesh_dim_names,
                self._mesh.shape,
                tuple(self._mesh.reshape(-1).tolist()),
            )
        )


def init_device_mesh(
    device_type: str, mesh_shape: Sequence[int], *, mesh_dim_names: tuple[str, ...] | None = None
) -> DeviceMesh:
    """A ``DeviceMesh`` of ``mesh_shape`` over ranks ``0 .. prod(mesh_shape) - 1`` (row-major),
    with one process group per dimension; initialises the default group if needed.

    Every rank must call it with the same arguments (SPMD), as in PyTorch.

    Example::

        >>> mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
        >>> tp_group = mesh.get_group("tp")   # rank 0: ranks [0, 1]; rank 2: ranks [2, 3]
    """
    try:
        shape = tuple(int(s) for s in mesh_shape)
    except TypeError:
        raise TypeError(
            f"init_device_mesh: mesh_shape must be a tuple of ints, got {mesh_shape!r}"
        ) from None
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(
            f"init_device_mesh: mesh_shape must be non-empty with positive sizes, got {shape}"
        )
    if mesh_dim_names is not None:
        _check_names(mesh_dim_names, len(shape))
    if not device_type or not str(device_type).isalpha():
        raise RuntimeError(
            f"Device type with index is not supported but got {device_type!r}. "
            "Pass the device's type, e.g. 'cuda', not 'cuda:0'."
        )
    ranks = np.arange(math.prod(shape), dtype=np.int64).reshape(shape)
    return DeviceMesh(device_type, ranks, mesh_dim_names=mesh_dim_names)
