"""The collectives with PyTorch's signatures, on ember tensors.

Each function validates its arguments, takes a fingerprinted ``OpContext`` from the group (at
issue time, so an ``async_op=True`` call is numbered where it is written), and runs the
algorithm on flat NumPy views of the tensors: in place where the tensor is contiguous, through a
contiguous copy written back otherwise. CuPy tensors go to NCCL when the backend has it, or are
staged through host memory.
"""

from __future__ import annotations

import numpy as np

from ember import _interop
from ember.tensor import Tensor

from ._runtime import _algorithms as alg
from ._runtime._state import execute, resolve_group
from ._tensor_args import (
    _bump,
    _check,
    _check_list,
    _cont,
    _copy_flat,
    _d,
    _nccl_comm,
    _nccl_inplace,
    _nccl_run,
    _root,
    _same_numel,
    _segments,
    _sh,
    _staged,
    _write,
)
from .reduce_op import ReduceOp, Reduction


# ---- reductions ---------------------------------------------------------------------------------
def all_reduce(tensor: Tensor, op=ReduceOp.SUM, group=None, async_op: bool = False):
    """Reduce ``tensor`` across the group in place; every rank gets the result."""
    _check(tensor, "tensor")
    pg = resolve_group(group)
    if pg is None:
        return None
    red = Reduction(op, _interop.array_of(tensor).dtype)
    nc = _nccl_comm(pg, tensor)
    if nc is not None:
        return _nccl_run(
            lambda: _nccl_inplace(tensor, lambda a: nc.all_reduce(a, op)), async_op, [tensor]
        )
    ctx = pg.next_op("all_reduce", _d(shape=_sh(tensor), dtype=tensor.dtype, op=red.op.name))

    def run():
        flat, back = _staged(_interop.array_of(tensor))
        ctx.start()
        if pg.hierarchical:
            alg.hierarchical_all_reduce(
                pg.comm, ctx, flat, red, pg.hosts, pg.scratch("reduce", tensor)
            )
        else:
            alg.all_reduce(pg.comm, ctx, flat, red)
        if back is not None:
            back()
        _bump(tensor)

    return execute(pg, run, async_op, [tensor])


def reduce(
    tensor: Tensor,
    dst: int = 0,
    op=ReduceOp.SUM,
    group=None,
    async_op: bool = False,
    group_dst: int | None = None,
):
    """Reduce ``tensor`` across the group into rank ``dst``'s ``tensor``."""
    _check(tensor, "tensor")
    pg = resolve_group(group)
    if pg is None:
        return None
    root = _root(pg, dst, group_dst, "dst")
    red = Reduction(op, _interop.array_of(tensor).dtype)
    nc = _nccl_comm(pg, tensor)
    if nc is not None:
        return _nccl_run(
            lambda: _nccl_inplace(tensor, lambda a: nc.reduce(a, op, root)), async_op, [tensor]
        )
    ctx = pg.next_op(
        "reduce", _d(shape=_sh(tensor), dtype=tensor.dtype, op=red.op.name, dst=pg.ranks[root])
    )

    def run():
        mine = pg.rank() == root
        flat, back = _staged(_interop.array_of(tensor))
        scratch = None if mine else pg.scratch("reduce", tensor)  # partial sums elsewhere
        ctx.start()
        alg.reduce(pg.comm, ctx, flat, red, root, scratch)
        if mine:
            if back is not None:
                back()
            _bump(tensor)

    return execute(pg, run, async_op, [tensor])


def reduce_scatter(
    output: Tensor, input_list: list, op=ReduceOp.SUM, group=None, async_op: bool = False
):
    """Rank ``i``'s ``output`` gets the reduction of every rank's ``input_list[i]``."""
    _check(output, "output")
    pg = resolve_group(group)
    if pg is None:
        return None
    inputs = _check_list(input_list, "input_list", pg.size(), output.dtype)
    if inputs[pg.rank()].numel() != output.numel():
        raise ValueError(
            f"reduce_scatter: output has {output.numel()} elements but "
            f"input_list[{pg.rank()}] has {inputs[pg.rank()].numel()}"
        )
    red = Reduction(op, _interop.array_of(output).dtype)
    ctx = pg.next_op(
        "reduce_scatter", _d(shapes=[_sh(t) for t in inputs], dtype=output.dtype, op=red.op.name)
    )

    def run():
        src = [_staged(_interop.array_of(t))[0] for t in inputs]  # read only: views will do
        out, back = _staged(_interop.array_of(output))
        ctx.start()
        alg.reduce_scatter(
            pg.comm, ctx, src, red, out, pg.scratch("rs", output, sum(t.numel() for t in inputs))
        )
        if back is not None:
            back()
        _bump(output)

    return execute(pg, run, async_op, [output])


def reduce_scatter_tensor(
    output: Tensor, input: Tensor, op=ReduceOp.SUM, group=None, async_op: bool = False
):
    """``input`` is the concatenation of ``group size`` equal parts; rank ``i``'s ``output``
    gets the reduction of part ``i``."""
    _check(output, "output")
    _check(input, "input")
    pg = resolve_group(group)
    if pg is None:
        return None
    if input.dtype is not output.dtype:
        raise TypeError(
            "input tensor must be the same type as the output tensor "
            f"({input.dtype} vs {output.dtype})"
        )
    if input.numel() != output.numel() * pg.size():
        raise ValueError(
            "input tensor must be the same size as output size times world size "
            f"({input.numel()} vs {output.numel()} x {pg.size()})"
        )
    red = Reduction(op, _interop.array_of(output).dtype)
    nc = _nccl_comm(pg, output, input)
    if nc is not None:
        return _nccl_run(
            lambda: _nccl_inplace(
                output, lambda o: nc.reduce_scatter(_cont(_interop.array_of(input)), o, op)
            ),
            async_op,
            [output],
        )
    ctx = pg.next_op(
        "reduce_scatter_tensor",
        _d(input=_sh(input), output=_sh(output), dtype=output.dtype, op=red.op.name),
    )

    def run():
        src = alg.views(
            _staged(_interop.array_of(input))[0], _segments([output.numel()] * pg.size())
        )
        out, back = _staged(_interop.array_of(output))
        ctx.start()
        alg.reduce_scatter(pg.comm, ctx, src, red, out, pg.scratch("rs", input))
        if back is not None:
            back()
        _bump(output)

    return execute(pg, run, async_op, [output])


# ---- broadcast and gathers ----------------------------------------------------------------------
def broadcast(
    tensor: Tensor, src: int = 0, group=None, async_op: bool = False, group_src: int | None = None
):
    """Copy rank ``src``'s ``tensor`` into every rank's ``tensor``."""
    _check(tensor, "tensor")
    pg = resolve_group(group)
    if pg is None:
        return None
    root = _root(pg, src, group_src, "src")
    nc = _nccl_comm(pg, tensor)
    if nc is not None:
        return _nccl_run(
            lambda: _nccl_inplace(tensor, lambda a: nc.broadcast(a, root)), async_op, [tensor]
        )
    ctx = pg.next_op("broadcast", _d(shape=_sh(tensor), dtype=tensor.dtype, src=pg.ranks[root]))

    def run():
        flat, back = _staged(_interop.array_of(tensor))
        ctx.start()
        alg.broadcast(pg.comm, ctx, flat, root)
        if pg.rank() != root:
            if back is not None:
                back()
            _bump(tensor)

    return execute(pg, run, async_op, [tensor])


def all_gather(tensor_list: list, tensor: Tensor, group=None, async_op: bool = False):
    """``tensor_list[i]`` on every rank receives rank ``i``'s ``tensor``."""
    _check(tensor, "tensor")
    pg = resolve_group(group)
    if pg is None:
        return None
    outs = _check_list(tensor_list, "tensor_list", pg.size(), tensor.dtype)
    me = pg.rank()
    if outs[me].numel() != tensor.numel():
        raise ValueError(
            f"all_gather: tensor_list[{me}] has {outs[me].numel()} elements but "
            f"this rank's tensor has {tensor.numel()}"
        )
    ctx = pg.next_op("all_gather", _d(shapes=[_sh(t) for t in outs], dtype=tensor.dtype))

    def run():
        staged = [_staged(_interop.array_of(t)) for t in outs]  # receive straight into the outputs
        parts = [flat for flat, _ in staged]
        _copy_flat(_interop.array_of(tensor), parts[me])
        ctx.start()
        alg.all_gather(pg.comm, ctx, parts)
        for t, (_, back) in zip(outs, staged):
            if back is not None:
                back()
            _bump(t)

    return execute(pg, run, async_op, outs)


def all_gather_into_tensor(
    output_tensor: Tensor, input_tensor: Tensor, group=None, async_op: bool = False
):
    """``output_tensor`` becomes the concatenation (in rank order) of every ``input_tensor``."""
    _check(output_tensor, "output_tensor")
    _check(input_tensor, "input_tensor")
    pg = resolve_group(group)
    if pg is None:
        return None
    if output_tensor.dtype is not input_tensor.dtype:
        raise TypeError(
            "output tensor must have the same type as input tensor "
            f"({output_tensor.dtype} vs {input_tensor.dtype})"
        )
    if output_tensor.numel() != input_tensor.numel() * pg.size():
        raise ValueError(
            "output tensor size must be equal to world_size times input tensor "
            f"size ({output_tensor.numel()} vs {input_tensor.numel()} x "
            f"{pg.size()})"
        )
    nc = _nccl_comm(pg, output_tensor, input_tensor)
    if nc is not None:
        return _nccl_run(
            lambda: _nccl_inplace(
                output_tensor, lambda o: nc.all_gather(_cont(_interop.array_of(input_tensor)), o)
            ),
            async_op,
            [output_tensor],
        )
    ctx = pg.next_op(
        "all_gather_into_tensor",
        _d(input=_sh(input_tensor), output=_sh(output_tensor), dtype=input_tensor.dtype),
    )

    def run():
        flat, back = _staged(_interop.array_of(output_tensor))
        parts = alg.views(flat, _segments([input_tensor.numel()] * pg.size()))
        _copy_flat(_interop.array_of(input_tensor), parts[pg.rank()])
        ctx.start()
        alg.all_gather(pg.comm, ctx, parts)
        if back is not None:
            back()
        _bump(output_tensor)

    return execute(pg, run, async_op, [output_tensor])


def gather(
    tensor: Tensor,
    gather_list: list | None = None,
    dst: int = 0,
    group=None,
    async_op: bool = False,
    group_dst: int | None = None,
):
    """Rank ``dst``'s ``gather_list[i]`` receives rank ``i``'s ``tensor``."""
    _check(tensor, "tensor")
    pg = resolve_group(group)
    if pg is None:
        return None
    root = _root(pg, dst, group_dst, "dst")
    mine = pg.rank() == root
    if mine:
        if not gather_list:
            raise ValueError("Argument ``gather_list`` must be specified on destination rank.")
        outs = _check_list(gather_list, "gather_list", pg.size(), tensor.dtype)
        _same_numel(outs, tensor, "gather_list")
    elif gather_list:
        raise ValueError("Argument ``gather_list`` must NOT be specified on non-destination ranks.")
    ctx = pg.next_op("gather", _d(shape=_sh(tensor), dtype=tensor.dtype, dst=pg.ranks[root]))

    def run():
        # sends copy out before returning: a view will do
        send = _staged(_interop.array_of(tensor))[0]
        bufs = [np.empty_like(send) for _ in range(pg.size())] if mine else None
        ctx.start()
        alg.gather(pg.comm, ctx, send, bufs, root)
        if mine:
            for t, b in zip(outs, bufs):
                _write(t, b)

    return execute(pg, run, async_op, list(gather_list or []))


def scatter(
    tensor: Tensor,
    scatter_list: list | None = None,
    src: int = 0,
    group=None,
    async_op: bool = False,
    group_src: int | None = None,
):
    """Rank ``i``'s ``tensor`` receives rank ``src``'s ``scatter_list[i]``."""
    _check(tensor, "tensor")
    pg = resolve_group(group)
    if pg is None:
        return None
    root = _root(pg, src, group_src, "src")
    mine = pg.rank() == root
    if mine:
        if not scatter_list:
            raise ValueError("Argument ``scatter_list`` must be specified on source rank.")
        parts = _check_list(scatter_list, "scatter_list", pg.size(), tensor.dtype)
        _same_numel(parts, tensor, "scatter_list")
    elif scatter_list:
        raise ValueError("Argument ``scatter_list`` must NOT be specified on non-source ranks.")
    ctx = pg.next_op("scatter", _d(shape=_sh(tensor), dtype=tensor.dtype, src=pg.ranks[root]))

    def run():
        flat, back = _staged(_interop.array_of(tensor))
        sends = [_staged(_interop.array_of(t))[0] for t in parts] if mine else None
        ctx.start()
        alg.scatter(pg.comm, ctx, sends, flat, root)
        if back is not None:
            back()
        _bump(tensor)

    return execute(pg, run, async_op, [tensor])


def all_to_all(
    output_tensor_list: list, input_tensor_list: list, group=None, async_op: bool = False
):
    """Rank ``j``'s ``output_tensor_list[i]`` receives rank ``i``'s ``input_tensor_list[j]``."""
    pg = resolve_group(group)
    if pg is None:
        return None
    ins = _check_list(input_tensor_list, "input_tensor_list", pg.size())
    dtype = ins[0].dtype if ins else None
    outs = _check_list(output_tensor_list, "output_tensor_list", pg.size(), dtype)
    _check_list(ins, "input_tensor_list", None, dtype)
    ctx = pg.next_op("all_to_all", _d(n=len(ins), dtype=dtype))

    def run():
        sends = [_staged(_interop.array_of(t))[0] for t in ins]
        recvs = [np.empty(t.numel(), dtype=np.dtype(dtype.np)) for t in outs]
        ctx.start()
        alg.all_to_all(pg.comm, ctx, sends, recvs)
        for t, r in zip(outs, recvs):
            _write(t, r)

    return execute(pg, run, async_op, outs)


def all_to_all_single(
    output: Tensor,
    input: Tensor,
    output_split_sizes=None,
    input_split_sizes=None,
    group=None,
    async_op: bool = False,
):
    """``all_to_all`` on slices of dim 0 (equal slices unless split sizes are given)."""
    _check(output, "output")
    _check(input, "input")
    pg = resolve_group(group)
    if pg is None:
        return None
    n = pg.size()

    def splits(t: Tensor, sizes, name: str) -> list:
        rows = t.shape[0] if t.dim() else 1
        if sizes is None:
            if rows % n:
                raise ValueError(f"{name} dim 0 ({rows}) is not divisible by the group size {n}")
            sizes = [rows // n] * n
        sizes = [int(s) for s in sizes]
        if len(sizes) != n or sum(sizes) != rows:
            raise ValueError(f"{name}_split_sizes {sizes} must have {n} entries summing to {rows}")
        per_row = t.numel() // rows if rows else 0
        return _segments([s * per_row for s in sizes])

    isegs = splits(input, input_split_sizes, "input")
    osegs = splits(output, output_split_sizes, "output")
    if input.dtype is not output.dtype:
        raise TypeError(f"all_to_all_single: input is {input.dtype} but output is {output.dtype}")
    ctx = pg.next_op("all_to_all_single", _d(dtype=input.dtype))

    def run():
        src = _staged(_interop.array_of(input))[0]
        dst = np.empty(output.numel(), dtype=src.dtype)
        ctx.start()
        alg.all_to_all(
            pg.comm, ctx, [src[slice(*s)] for s in isegs], [dst[slice(*s)] for s in osegs]
        )
        _write(output, dst)

    return execute(pg, run, async_op, [output])


def barrier(group=None, async_op: bool = False, device_ids=None):
    """Block until every rank of the group reaches the barrier."""
    pg = resolve_group(group)
    if pg is None:
        return None
    ctx = pg.next_op("barrier", "()")

    def run():
        ctx.start()
        alg.barrier(pg.comm, ctx)

    return execute(pg, run, async_op, [])


def monitored_barrier(group=None, timeout=None, wait_all_ranks: bool = False):
    """A barrier with its own ``timeout``; on expiry it raises naming the missing ranks."""
    pg = resolve_group(group)
    if pg is None:
        return None
    ctx = pg.next_op("monitored_barrier", "()")
    if timeout is not None:
        ctx.timeout = timeout.total_seconds() if hasattr(timeout, "total_seconds") else timeout

    def run():
        ctx.start()
        alg.barrier(pg.comm, ctx)

    return execute(pg, run, False, [])
