"""The machinery every DTensor operator shares: placement bookkeeping, redistribution of the
operands to the layout an operator needs, and the gradient rule for replicated operands.

The gradient invariant (what makes local autograd give global gradients): the gradient held
by a rank's local piece is

* ``Shard(d)``: this rank's slice of the global gradient;
* ``Replicate()``: the whole global gradient, equal on every rank;
* ``Partial()``: the whole global gradient of the sum (each partial counts once).

An operator keeps it when a ``Replicate`` operand feeds an output that is not ``Replicate`` on
the same mesh dimension (a sharded or partial result): each rank then only sees its share of
that operand's gradient, so ``_grad_sum_over`` sums it over the mesh dimension's group in
backward (Megatron's "f" operator). PyTorch defers that sum by giving such gradients
``Partial`` placements; the values are the same, the sum just happens earlier here.
"""

from __future__ import annotations

from ember._interop import array_of

from ...autograd import Function
from . import _funcol
from ._api import DTensor, _chunk_bounds
from .placement_types import Replicate

__all__: list[str] = []

# set by experimental.implicit_replication(): plain tensors mixed with DTensors count as Replicate
_IMPLICIT_REPLICATION = [False]


class _GradSum(Function):
    """Identity forward; backward all-reduces the gradient over one process group."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return x.view()

    @staticmethod
    def backward(ctx, grad):
        import ember

        t = ember.as_tensor(grad).contiguous().clone()
        _funcol.all_reduce(t, group=ctx.group)
        return array_of(t), None


def _grad_sum_over(dt: DTensor, out_placements) -> object:
    """``dt``'s local tensor, its gradient summed over every mesh dimension where ``dt`` is
    ``Replicate`` and the output is not (see the module docstring)."""
    t = dt._local_tensor
    if not t.requires_grad:
        return t
    dims = tuple(
        i
        for i, (p, q) in enumerate(zip(dt.placements, out_placements))
        if isinstance(p, Replicate) and not isinstance(q, Replicate)
    )
    if not dims:
        return t
    if t.grad_fn is None:  # a leaf may serve several graphs: no shared node
        for i in dims:
            t = _GradSum.apply(t, dt.device_mesh.get_group(i))
        return t
    # one node per (activation) DTensor and mesh dims: q, k and v reading the same input
    # accumulate their gradients into it and all-reduce once
    cache = dt.__dict__.setdefault("_grad_sum_cache", {})
    if dims not in cache:
        for i in dims:
            t = _GradSum.apply(t, dt.device_mesh.get_group(i))
        cache[dims] = t
    return cache[dims]


def _slice_to(t, mesh, coord_dim: int, tensor_dim: int, length: int):
    """This rank's ``torch.chunk`` piece of ``t`` along ``tensor_dim`` for mesh dim
    ``coord_dim`` (a differentiable narrow)."""
    lo, hi = _chunk_bounds(length, mesh.size(coord_dim))[mesh.get_coordinate()[coord_dim]]
    return t.narrow(tensor_dim, lo, hi - lo)


def _zero_unless_first(t, mesh, mesh_dims):
    """``Replicate`` -> ``Partial('sum')`` locally: keep ``t`` on the first rank of each of
    ``mesh_dims`` and zeros elsewhere (differentiably, so the gradient reaches ``t``)."""
    coord = mesh.get_coordinate()
    if any(coord[i] != 0 for i in mesh_dims):
        return t * 0.0
    return t


def _check_same_mesh(args, what: str):
    meshes = [a.device_mesh for a in args if isinstance(a, DTensor)]
    for m in meshes[1:]:
        if m is not meshes[0] and m != meshes[0]:
            raise RuntimeError(f"{what}: DTensor operands live on different meshes {meshes}")
    return meshes[0]


def _as_dtensor(x, mesh, what: str):
    """DTensor operands pass; a plain tensor is an error (PyTorch's rule), except a 0-d one,
    which is taken as replicated."""
    if isinstance(x, DTensor):
        return x
    import ember

    if isinstance(x, ember.Tensor):
        if x.dim() == 0 or _IMPLICIT_REPLICATION[0]:
            # the whole tensor on every rank (experimental.implicit_replication lifts the rule)
            return DTensor(x, mesh, (Replicate(),) * mesh.ndim, tuple(x.shape))
        raise RuntimeError(
            f"{what}: got mixed ember.Tensor and DTensor operands; convert the tensor with "
            "DTensor.from_local or distribute_tensor first (or run under "
            "ember.distributed.tensor.experimental.implicit_replication())"
        )
    return x


def _moved(dt: DTensor, placements) -> DTensor:
    """``dt`` redistributed to ``placements`` (differentiably), or ``dt`` itself."""
    placements = tuple(placements)
    return dt if placements == dt.placements else dt.redistribute(dt.device_mesh, placements)


def _no_partial(dt: DTensor) -> DTensor:
    """``dt`` with every ``Partial`` placement reduced to ``Replicate`` (for non-linear ops)."""
    return _moved(dt, [Replicate() if p.is_partial() else p for p in dt.placements])


def _wrap(local, mesh, placements, shape) -> DTensor:
    return DTensor(local, mesh, tuple(placements), tuple(int(s) for s in shape))


def _norm_dim(dim: int, ndim: int, what: str) -> int:
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(
            f"{what}: dimension {dim} is out of range for a {ndim}-d DTensor "
            f"(expected to be in range of [{-ndim}, {ndim - 1}])"
        )
    return dim % max(ndim, 1)
