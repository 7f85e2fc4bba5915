"""``ember.distributed._functional_collectives``: PyTorch's functional collectives (``funcol``).

Each function returns a new tensor instead of writing into one, and takes ``group`` as a
process group, a 1-D :class:`DeviceMesh`, a ``(mesh, mesh_dim)`` pair or a list of ranks, as
PyTorch's do. ember runs them synchronously, so ``wait_tensor`` returns its argument and no
:class:`AsyncCollectiveTensor` is ever produced (the class exists for ``isinstance`` checks,
e.g. diffusers' context-parallel attention). Only ``all_to_all_single_autograd`` records
autograd history.
"""

from __future__ import annotations

from ember import Tensor, _interop
from ember import cat as _cat
from ember import empty as _empty
from ember.autograd import Function

from . import collectives as _c
from .device_mesh import DeviceMesh
from .reduce_op import ReduceOp

__all__ = [
    "AsyncCollectiveTensor",
    "all_gather_tensor",
    "all_reduce",
    "all_to_all_single",
    "all_to_all_single_autograd",
    "permute_tensor",
    "reduce_scatter_tensor",
    "wait_tensor",
]

_OPS = {
    "sum": ReduceOp.SUM,
    "avg": ReduceOp.AVG,
    "product": ReduceOp.PRODUCT,
    "min": ReduceOp.MIN,
    "max": ReduceOp.MAX,
    "band": ReduceOp.BAND,
    "bor": ReduceOp.BOR,
    "bxor": ReduceOp.BXOR,
}


class AsyncCollectiveTensor(Tensor):
    """PyTorch's handle for a collective still in flight; ember's collectives here complete
    before returning, so nothing is ever an instance of this class."""


def _group(group):
    if isinstance(group, DeviceMesh):
        if group.ndim != 1:
            raise ValueError(
                f"functional collectives take a 1-D DeviceMesh or (mesh, mesh_dim), "
                f"got a {group.ndim}-D mesh"
            )
        return group.get_group()
    if isinstance(group, tuple) and len(group) == 2 and isinstance(group[0], DeviceMesh):
        return group[0].get_group(group[1])
    if isinstance(group, list):
        from . import new_group

        return new_group(ranks=group)
    return group


def _op(reduceOp):
    if isinstance(reduceOp, str):
        try:
            return _OPS[reduceOp.lower()]
        except KeyError:
            raise ValueError(
                f"unknown reduceOp {reduceOp!r}; expected one of {sorted(_OPS)}"
            ) from None
    return reduceOp


def _size(pg) -> int:
    from . import get_world_size

    return get_world_size(pg)


def wait_tensor(tensor: Tensor) -> Tensor:
    """Wait for a functional collective's result (ember's are already complete)."""
    return tensor


def all_reduce(self: Tensor, reduceOp, group) -> Tensor:
    """A reduced copy of ``self`` over ``group``."""
    out = self.detach().clone()
    _c.all_reduce(out, op=_op(reduceOp), group=_group(group))
    return out


def all_gather_tensor(self: Tensor, gather_dim: int, group) -> Tensor:
    """The group's tensors concatenated along ``gather_dim`` (rank order)."""
    pg = _group(group)
    n = _size(pg)
    src = self.detach().contiguous()
    out = _empty((n * src.shape[0],) + tuple(src.shape[1:]), dtype=src.dtype, device=src.device)
    _c.all_gather_into_tensor(out, src, group=pg)
    if gather_dim % max(src.dim(), 1) != 0:
        out = _cat(out.chunk(n, dim=0), dim=gather_dim)
    return out


def reduce_scatter_tensor(self: Tensor, reduceOp, scatter_dim: int, group) -> Tensor:
    """This rank's part (along ``scatter_dim``) of the reduction of the group's tensors."""
    pg = _group(group)
    n = _size(pg)
    src = self.detach()
    if src.shape[scatter_dim] % n:
        raise ValueError(
            f"reduce_scatter_tensor: dim {scatter_dim} ({src.shape[scatter_dim]}) is not "
            f"divisible by the group size {n}"
        )
    if scatter_dim % max(src.dim(), 1) != 0:
        src = _cat(src.chunk(n, dim=scatter_dim), dim=0)
    src = src.contiguous()
    out = _empty((src.shape[0] // n,) + tuple(src.shape[1:]), dtype=src.dtype, device=src.device)
    _c.reduce_scatter_tensor(out, src, op=_op(reduceOp), group=pg)
    return out


def all_to_all_single(
    self: Tensor, output_split_sizes: list[int] | None, input_split_sizes: list[int] | None, group
) -> Tensor:
    """Slices of dim 0 exchanged between ranks (equal slices unless split sizes are given)."""
    pg = _group(group)
    src = self.detach().contiguous()
    rows = sum(output_split_sizes) if output_split_sizes is not None else src.shape[0]
    out = _empty((rows,) + tuple(src.shape[1:]), dtype=src.dtype, device=src.device)
    _c.all_to_all_single(out, src, output_split_sizes, input_split_sizes, group=pg)
    return out


class _AllToAllSingle(Function):
    # an ember op: raw arrays in and out (DESIGN.md section 3). The gradient of an all-to-all
    # is the all-to-all back, with the split sizes swapped.
    @staticmethod
    def forward(ctx, x, output_split_sizes, input_split_sizes, group):
        ctx.splits, ctx.group = (output_split_sizes, input_split_sizes), group
        out = all_to_all_single(_interop.wrap(x), output_split_sizes, input_split_sizes, group)
        return _interop.array_of(out)

    @staticmethod
    def backward(ctx, grad):
        out_sizes, in_sizes = ctx.splits
        back = all_to_all_single(_interop.wrap(grad), in_sizes, out_sizes, ctx.group)
        return _interop.array_of(back), None, None, None


def all_to_all_single_autograd(
    self: Tensor, output_split_sizes: list[int] | None, input_split_sizes: list[int] | None, group
) -> Tensor:
    """:func:`all_to_all_single` that records autograd history (expert parallelism)."""
    return _AllToAllSingle.apply(self, output_split_sizes, input_split_sizes, group)


def permute_tensor(self: Tensor, src_dst: list[int], group) -> Tensor:
    """Rank ``i`` sends ``self`` to rank ``src_dst[i]`` and returns what it received."""
    from . import get_group_rank, get_rank

    pg = _group(group)
    n = _size(pg)
    if sorted(src_dst) != list(range(n)):
        raise ValueError(f"permute_tensor: src_dst {src_dst} is not a permutation of range({n})")
    me = get_rank() if pg is None else get_group_rank(pg, get_rank())
    gathered = all_gather_tensor(self, 0, pg).chunk(n, dim=0)
    return gathered[src_dst.index(me)].clone()
