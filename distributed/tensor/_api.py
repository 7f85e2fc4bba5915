"""``DTensor``: a global tensor laid over a ``DeviceMesh`` by one placement per mesh dimension.

Each rank holds its local piece (``to_local()``). ``Shard(d)`` along mesh dimension ``i`` splits
tensor dimension ``d`` into ``torch.chunk``'s pieces across that dimension's group; several
``Shard`` placements nest in mesh-dimension order, as in PyTorch.

Redistribution gathers (``Shard`` -> ``Replicate``: all-gather over the mesh dimension's group,
innermost mesh dimension first), reduces (``Partial`` -> ``Replicate``: all-reduce) and then
slices locally (``Replicate`` -> ``Shard``: no communication). Redistribution is differentiable:
the gradient is redistributed back (``to_local``/``from_local`` pass it through unchanged).
"""

from __future__ import annotations

from collections.abc import Sequence

from ember._interop import array_of

from ...autograd import Function
from .. import collectives as _c
from ..device_mesh import DeviceMesh
from ..distributed_c10d import get_process_group_ranks
from ..reduce_op import ReduceOp
from . import _funcol
from .placement_types import Partial, Placement, Replicate, Shard, _StridedShard

__all__ = ["DTensor", "distribute_tensor"]

_REDUCE = {
    "sum": ReduceOp.SUM,
    "avg": ReduceOp.AVG,
    "max": ReduceOp.MAX,
    "min": ReduceOp.MIN,
    "product": ReduceOp.PRODUCT,
}


def _chunk_bounds(n: int, k: int) -> list[tuple[int, int]]:
    """``torch.chunk(x, k)``'s pieces of a length-``n`` dimension, padded to ``k`` entries
    (``torch.chunk`` may return fewer; DTensor gives those ranks empty shards)."""
    size = -(-n // k) if n else 0
    return [(min(i * size, n), min((i + 1) * size, n)) for i in range(k)]


def _normalize(mesh: DeviceMesh, placements, ndim: int, what: str) -> tuple[Placement, ...]:
    placements = (
        tuple(Replicate() for _ in range(mesh.ndim)) if placements is None else tuple(placements)
    )
    if len(placements) != mesh.ndim:
        raise ValueError(
            f"{what}: {len(placements)} placements {list(placements)} for a "
            f"{mesh.ndim}-d mesh of shape {mesh.shape}; give one per mesh dimension"
        )
    out = []
    for p in placements:
        if not isinstance(p, Placement):
            raise TypeError(f"{what}: placements must be Shard/Replicate/Partial, got {p!r}")
        if isinstance(p, Shard):
            if not -ndim <= p.dim < ndim:
                raise IndexError(
                    f"{what}: Shard(dim={p.dim}) is out of range for a {ndim}-d tensor"
                )
            if isinstance(p, _StridedShard):
                p = _StridedShard(p.dim % ndim, p.split_factor)
            else:
                p = Shard(p.dim % ndim)
        out.append(p)
    for i, p in enumerate(out):
        if isinstance(p, _StridedShard):
            later = 1
            for j in range(i + 1, len(out)):
                if out[j].is_shard(p.dim) and not isinstance(out[j], _StridedShard):
                    later *= mesh.size(j)
            if later != p.split_factor:
                raise NotImplementedError(
                    f"{what}: {p!r} on mesh dimension {i} needs later mesh dimensions "
                    f"sharding dim {p.dim} of total size {p.split_factor} (placements "
                    f"{list(out)}, mesh shape {mesh.shape}); only FSDP2's layout over tensor "
                    "parallelism is supported"
                )
    return tuple(out)


def _shard_order(placements) -> list[int]:
    """The mesh dimensions in the order their splits apply: the mesh's order, except that a
    ``_StridedShard`` splits after the later dimensions (FSDP2 shards the tensor-parallel
    piece)."""
    strided = [i for i, p in enumerate(placements) if isinstance(p, _StridedShard)]
    return [i for i in range(len(placements)) if i not in strided] + strided[::-1]


def _local_pieces(shape: Sequence[int], mesh: DeviceMesh, placements, coord):
    """For each mesh dim: (tensor dim, its length before this mesh dim's split, bounds) for a
    Shard placement, else None; and the local shape."""
    shape = list(shape)
    steps = [None] * len(placements)  # indexed by mesh dimension, filled in split order
    for i in _shard_order(placements):
        p = placements[i]
        if isinstance(p, Shard):
            bounds = _chunk_bounds(shape[p.dim], mesh.size(i))
            steps[i] = (p.dim, shape[p.dim], bounds)
            lo, hi = bounds[coord[i]]
            shape[p.dim] = hi - lo
    return steps, tuple(shape)


def _narrow(t, dim: int, lo: int, hi: int):
    return t.narrow(dim, lo, hi - lo).contiguous()


class DTensor:
    """A distributed tensor: ``device_mesh``, ``placements`` and this rank's ``to_local()``.

    Build one with ``distribute_tensor`` (from a full tensor) or ``DTensor.from_local`` (from
    each rank's piece).
    """

    def __init__(
        self,
        local_tensor,
        device_mesh: DeviceMesh | None = None,
        placements: tuple[Placement, ...] | None = None,
        shape: tuple[int, ...] | None = None,
        *,
        spec=None,
        requires_grad: bool = False,
    ) -> None:
        if spec is not None:  # torch's DTensor(local_tensor, spec, requires_grad=...)
            device_mesh, placements, shape = spec.mesh, spec.placements, spec.shape
        if device_mesh is None or placements is None or shape is None:
            raise TypeError("DTensor: give device_mesh, placements and shape, or spec=")
        if requires_grad and not local_tensor.requires_grad:
            local_tensor = local_tensor.detach().requires_grad_(True)
        self._local_tensor = local_tensor
        self.device_mesh = device_mesh
        self.placements = tuple(placements)
        self._shape = tuple(int(s) for s in shape)

    # ---- metadata ----------------------------------------------------------------------------
    @property
    def shape(self):
        import ember

        return ember.Size(self._shape)

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self._shape[dim]

    @property
    def ndim(self) -> int:
        return len(self._shape)

    def dim(self) -> int:
        return len(self._shape)

    @property
    def dtype(self):
        return self._local_tensor.dtype

    @property
    def device(self):
        return self._local_tensor.device

    def __repr__(self) -> str:
        return (
            f"DTensor(local_tensor={self._local_tensor!r}, device_mesh={self.device_mesh!r}, "
            f"placements={self.placements})"
        )

    # ---- construction ------------------------------------------------------------------------
    @staticmethod
    def from_local(
        local_tensor,
        device_mesh: DeviceMesh | None = None,
        placements: Sequence[Placement] | None = None,
        *,
        run_check: bool = False,
        shape: Sequence[int] | None = None,
        stride: tuple[int, ...] | None = None,
    ) -> DTensor:
        """Wrap each rank's ``local_tensor`` as its piece of a global tensor. Without
        ``shape``, ``Shard`` pieces are assumed even (global = local x mesh size); with
        ``run_check=True`` replicated pieces are made equal by a broadcast from the first rank
        of each ``Replicate`` mesh dimension, as in PyTorch."""
        mesh = _require_mesh(device_mesh, "DTensor.from_local", local_tensor)
        places = _normalize(mesh, placements, local_tensor.dim(), "DTensor.from_local")
        if shape is None:
            shape = list(local_tensor.shape)
            for i, p in enumerate(places):
                if isinstance(p, Shard):
                    shape[p.dim] *= mesh.size(i)
        else:
            shape = tuple(int(s) for s in shape)
            _, expect = _local_pieces(shape, mesh, places, mesh.get_coordinate())
            if tuple(local_tensor.shape) != expect:
                raise ValueError(
                    f"DTensor.from_local: local tensor of shape "
                    f"{tuple(local_tensor.shape)} is not this rank's piece of a "
                    f"global {tuple(shape)} tensor with placements {places} "
                    f"(expected {expect})"
                )
        if run_check:
            local_tensor = local_tensor.contiguous().clone()
            for i, p in enumerate(places):
                if isinstance(p, Replicate):
                    pg = mesh.get_group(i)
                    _c.broadcast(local_tensor, src=get_process_group_ranks(pg)[0], group=pg)
        return DTensor(local_tensor, mesh, places, tuple(shape))

    # ---- views of the data -------------------------------------------------------------------
    def to_local(self, *, grad_placements: Sequence[Placement] | None = None):
        """This rank's piece (no communication).

        ``grad_placements``: how the gradient that reaches the returned tensor is laid out, when
        the code using it makes it so (e.g. ``[Partial()]`` when each rank's use of a
        replicated piece sees only part of the batch or sequence); backward then redistributes
        it to this DTensor's placements (summing the partial gradients over the mesh), as in
        PyTorch. Default: the same placements as this DTensor (the gradient passes through)."""
        if grad_placements is None:
            return self._local_tensor
        given = _normalize(self.device_mesh, grad_placements, self.ndim, "DTensor.to_local")
        if given == self.placements:
            return self._local_tensor
        return _LocalWithGradLayout.apply(
            self._local_tensor, self.device_mesh, given, self.placements, self._shape
        )

    def full_tensor(self):
        """The whole global tensor on every rank (gathers / reduces as needed)."""
        return self.redistribute(self.device_mesh, [Replicate()] * self.device_mesh.ndim).to_local()

    def redistribute(
        self,
        device_mesh: DeviceMesh | None = None,
        placements: Sequence[Placement] | None = None,
        *,
        async_op: bool = False,
    ) -> DTensor:
        """The same global tensor with new ``placements`` on the same mesh."""
        mesh = device_mesh or self.device_mesh
        if mesh is not self.device_mesh and mesh != self.device_mesh:
            raise NotImplementedError(
                "redistribute: moving a DTensor to a different "
                f"DeviceMesh ({mesh!r}) is not supported"
            )
        if placements is None:
            raise RuntimeError("redistribute: placements must be given")
        target = _normalize(mesh, placements, self.ndim, "DTensor.redistribute")
        if target == self.placements:
            return self
        local = _Redistribute.apply(self._local_tensor, mesh, self.placements, target, self._shape)
        return DTensor(local, mesh, target, self._shape)


def _move(local, mesh: DeviceMesh, src, dst, shape):
    """This rank's piece under ``dst`` from its piece under ``src`` (no autograd)."""
    fast = _reduce_scatter(local, mesh, src, dst)
    if fast is not None:
        return fast
    full = _to_replicate(DTensor(local, mesh, src, shape))
    return _from_replicate(full, mesh, dst, shape)._local_tensor


def _reduce_scatter(local, mesh: DeviceMesh, src, dst):
    """``Partial('sum')`` -> ``Shard(d)`` on one mesh dimension, the rest unchanged, with
    even pieces: one reduce-scatter (the sequence-parallel exit of a rowwise linear) instead
    of an all-reduce and a slice. ``None`` when it does not apply."""
    diff = [i for i, (a, b) in enumerate(zip(src, dst)) if a != b]
    if len(diff) != 1:
        return None
    i = diff[0]
    if not (src[i] == Partial("sum") and type(dst[i]) is Shard):
        return None
    d, k = dst[i].dim, mesh.size(i)
    if local.shape[d] % k or any(p.is_shard(d) for p in src):
        return None
    import ember

    rows = local.movedim(d, 0).contiguous()
    out = ember.empty((rows.shape[0] // k, *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
    _funcol.reduce_scatter_tensor(out, rows, group=mesh.get_group(i))
    return out.movedim(0, d).contiguous()


class _Redistribute(Function):
    """``redistribute`` on the local pieces; backward moves the gradient back the other way.

    The gradient of a ``Partial`` input is the replicated gradient of the whole (each partial
    counts once in the sum), as in PyTorch; backward into a ``Partial`` output is not
    supported yet."""

    # ember's Function hands forward/backward raw arrays (NumPy or CuPy) and wants arrays back
    @staticmethod
    def forward(ctx, local, mesh, src, dst, shape):
        import ember

        ctx.mesh, ctx.src, ctx.dst, ctx.shape = mesh, src, dst, shape
        return array_of(_move(ember.as_tensor(local), mesh, src, dst, shape))

    @staticmethod
    def backward(ctx, grad):
        if any(isinstance(p, Partial) for p in ctx.dst):
            raise NotImplementedError(
                "backward through a redistribution to Partial is not "
                f"supported yet ({ctx.src} -> {ctx.dst})"
            )
        src = tuple(Replicate() if isinstance(p, Partial) else p for p in ctx.src)
        import ember

        moved = _move(ember.as_tensor(grad).contiguous(), ctx.mesh, ctx.dst, src, ctx.shape)
        return array_of(moved), None, None, None, None


class _LocalWithGradLayout(Function):
    """``to_local(grad_placements=...)``: the local piece unchanged; backward takes the
    incoming gradient as laid out by ``grad_placements`` and moves it to the DTensor's own
    placements (``Partial`` -> ``Replicate``: an all-reduce over the mesh dimension)."""

    @staticmethod
    def forward(ctx, local, mesh, grad_placements, placements, shape):
        ctx.move = (mesh, grad_placements, placements, shape)
        return local.view()

    @staticmethod
    def backward(ctx, grad):
        import ember

        mesh, src, dst, shape = ctx.move
        moved = _move(ember.as_tensor(grad).contiguous(), mesh, src, dst, shape)
        return array_of(moved), None, None, None, None


def _require_mesh(mesh, what: str, like=None) -> DeviceMesh:
    if mesh is None:
        # PyTorch's default: a 1-d mesh over the whole world (its group is the default group,
        # so no rank creates a new one here)
        from ..distributed_c10d import get_world_size

        kind = getattr(getattr(like, "device", None), "type", "cpu")
        return DeviceMesh(kind, list(range(get_world_size())))
    if not isinstance(mesh, DeviceMesh):
        raise TypeError(f"{what}: device_mesh must be a DeviceMesh, got {type(mesh).__name__}")
    return mesh


def _to_replicate(dt: DTensor):
    """The full tensor on every rank: all-gather the shards, innermost mesh dimension first
    (nested shards unnest in reverse), then all-reduce the partials."""
    import ember

    mesh, coord = dt.device_mesh, dt.device_mesh.get_coordinate()
    steps, _ = _local_pieces(dt._shape, mesh, dt.placements, coord)
    t = dt._local_tensor
    for i in reversed(_shard_order(dt.placements)):
        if steps[i] is None:
            continue
        dim, _, bounds = steps[i]
        width = max(hi - lo for lo, hi in bounds)
        # all_gather needs equal shapes: pad the short pieces to the widest, trim after
        pad_shape = list(t.shape)
        pad_shape[dim] = width - t.shape[dim]
        padded = ember.cat([t, t.new_zeros(tuple(pad_shape))], dim) if pad_shape[dim] else t
        padded = padded.contiguous()
        parts = [ember.empty_like(padded) for _ in bounds]
        _funcol.all_gather(parts, padded, group=mesh.get_group(i))
        t = ember.cat([_narrow(p, dim, 0, hi - lo) for p, (lo, hi) in zip(parts, bounds)], dim)
    for i, p in enumerate(dt.placements):
        if isinstance(p, Partial):
            t = t.contiguous().clone()
            _funcol.all_reduce(t, op=_REDUCE[p.reduce_op], group=mesh.get_group(i))
    return t


def _from_replicate(full, mesh: DeviceMesh, placements, shape) -> DTensor:
    """Slice this rank's piece out of the full tensor (no communication). ``Partial("sum")``
    keeps the value on the first rank of that mesh dimension and zeros elsewhere;
    ``avg``/``max``/``min`` keep it everywhere, as PyTorch does."""
    coord = mesh.get_coordinate()
    steps, _ = _local_pieces(shape, mesh, placements, coord)
    t = full
    for i in _shard_order(placements):
        step = steps[i]
        if step is not None:
            dim, _, bounds = step
            lo, hi = bounds[coord[i]]
            t = _narrow(t, dim, lo, hi)
    for i, p in enumerate(placements):
        if isinstance(p, Partial) and p.reduce_op == "sum" and coord[i] != 0:
            t = t.new_zeros(tuple(t.shape))
        elif isinstance(p, Partial) and p.reduce_op == "product":
            raise NotImplementedError("redistribute to Partial('product') is not supported")
    if t is full:
        t = full.clone()
    return DTensor(t, mesh, placements, shape)


def distribute_tensor(
    tensor,
    device_mesh: DeviceMesh | None = None,
    placements: Sequence[Placement] | None = None,
    *,
    src_data_rank: int | None = 0,
) -> DTensor:
    """Split ``tensor`` over ``device_mesh`` by ``placements`` (all ``Replicate()`` by
    default). Every rank passes a tensor of the global shape; with ``src_data_rank=0`` (the
    default) the data of each mesh dimension's first rank is used, as in PyTorch; with
    ``None`` each rank's own data is."""
    mesh = _require_mesh(device_mesh, "distribute_tensor", tensor)
    places = _normalize(mesh, placements, tensor.dim(), "distribute_tensor")
    if any(isinstance(p, Partial) for p in places):
        raise ValueError(
            "distribute_tensor: Partial placements are not supported; use DTensor.from_local"
        )
    full = tensor.detach().contiguous().clone()
    if src_data_rank is not None and src_data_rank != 0:
        raise NotImplementedError("distribute_tensor: src_data_rank must be 0 or None")
    # a meta tensor has no data to send: its pieces are meta too (a model built under
    # ember.device("meta") is parallelized before to_empty, as in PyTorch)
    if src_data_rank is not None and not getattr(tensor, "is_meta", False):
        for i in range(mesh.ndim):
            pg = mesh.get_group(i)
            _c.broadcast(full, src=get_process_group_ranks(pg)[0], group=pg)
    out = _from_replicate(full, mesh, places, tuple(tensor.shape))
    if tensor.requires_grad:
        # a leaf, as in PyTorch: gradients land on the DTensor's local piece
        out._local_tensor.requires_grad_(True)
    return out
