"""The collectives with PyTorch's signatures, on ember tensors.

Each function validates its arguments, takes a fingerprinted ``OpContext`` from the group (at
issue time, so an ``async_op=True`` call is numbered where it is written), and runs the
group's communicator (``_runtime/_communicator.py``) on the tensors' arrays. The communicator
picks the backend (NCCL for CuPy tensors when the group has it, else the collective algorithms on
flat host views, written back where a copy was needed); this module knows none of them.
"""

from __future__ import annotations

from ember import _interop
from ember.tensor import Tensor

from ._runtime._communicator import Call
from ._runtime._state import resolve_group
from ._tensor_args import _bump, _check, _check_list, _d, _root, _same_numel, _segments, _sh
from .reduce_op import ReduceOp, Reduction

# Callables ``fn(name)`` told of every collective this process issues (``CommDebugMode``);
# empty, the hot path pays one truth test.
_observers: list = []


def _call(name: str, desc: str, async_op: bool, outputs: list) -> Call:
    """The call as the communicator sees it; once this rank's ``outputs`` hold the results,
    their versions are bumped (autograd's check for in-place writes)."""
    if _observers:
        for fn in tuple(_observers):
            fn(name)
    return Call(name, desc, async_op, outputs, lambda: _bump(*outputs))


def _arr(t: Tensor):
    return _interop.array_of(t)


# ---- reductions ---------------------------------------------------------------------------------
def all_reduce(tensor: Tensor, op=ReduceOp.SUM, group=None, async_op: bool = False):
    """Reduce ``tensor`` across the group in place; every rank gets the result."""
    _check(tensor, "tensor")
    pg = resolve_group(group)
    if pg is None:
        return None
    red = Reduction(op, _arr(tensor).dtype)
    desc = _d(shape=_sh(tensor), dtype=tensor.dtype, op=red.op.name)
    return pg.communicator.all_reduce(
        _call("all_reduce", desc, async_op, [tensor]), _arr(tensor), red
    )


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
    red = Reduction(op, _arr(tensor).dtype)
    desc = _d(shape=_sh(tensor), dtype=tensor.dtype, op=red.op.name, dst=pg.ranks[root])
    return pg.communicator.reduce(
        _call("reduce", desc, async_op, [tensor]), _arr(tensor), red, root
    )


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
    red = Reduction(op, _arr(output).dtype)
    desc = _d(shapes=[_sh(t) for t in inputs], dtype=output.dtype, op=red.op.name)
    return pg.communicator.reduce_scatter(
        _call("reduce_scatter", desc, async_op, [output]),
        _arr(output),
        [_arr(t) for t in inputs],
        red,
    )


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
    red = Reduction(op, _arr(output).dtype)
    desc = _d(input=_sh(input), output=_sh(output), dtype=output.dtype, op=red.op.name)
    return pg.communicator.reduce_scatter_tensor(
        _call("reduce_scatter_tensor", desc, async_op, [output]), _arr(output), _arr(input), red
    )


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
    desc = _d(shape=_sh(tensor), dtype=tensor.dtype, src=pg.ranks[root])
    return pg.communicator.broadcast(
        _call("broadcast", desc, async_op, [tensor]), _arr(tensor), root
    )


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
    desc = _d(shapes=[_sh(t) for t in outs], dtype=tensor.dtype)
    return pg.communicator.all_gather(
        _call("all_gather", desc, async_op, outs), [_arr(t) for t in outs], _arr(tensor)
    )


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
    desc = _d(input=_sh(input_tensor), output=_sh(output_tensor), dtype=input_tensor.dtype)
    return pg.communicator.all_gather_into_tensor(
        _call("all_gather_into_tensor", desc, async_op, [output_tensor]),
        _arr(output_tensor),
        _arr(input_tensor),
    )


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
    outs: list = []  # what this rank receives into
    if mine:
        if not gather_list:
            raise ValueError("Argument ``gather_list`` must be specified on destination rank.")
        outs = _check_list(gather_list, "gather_list", pg.size(), tensor.dtype)
        _same_numel(outs, tensor, "gather_list")
    elif gather_list:
        raise ValueError("Argument ``gather_list`` must NOT be specified on non-destination ranks.")
    desc = _d(shape=_sh(tensor), dtype=tensor.dtype, dst=pg.ranks[root])
    return pg.communicator.gather(
        _call("gather", desc, async_op, outs),
        _arr(tensor),
        [_arr(t) for t in outs] if mine else None,
        root,
    )


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
    desc = _d(shape=_sh(tensor), dtype=tensor.dtype, src=pg.ranks[root])
    return pg.communicator.scatter(
        _call("scatter", desc, async_op, [tensor]),
        _arr(tensor),
        [_arr(t) for t in parts] if mine else None,
        root,
    )


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
    return pg.communicator.all_to_all(
        _call("all_to_all", _d(n=len(ins), dtype=dtype), async_op, outs),
        [_arr(t) for t in outs],
        [_arr(t) for t in ins],
    )


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
    return pg.communicator.all_to_all_single(
        _call("all_to_all_single", _d(dtype=input.dtype), async_op, [output]),
        _arr(output),
        _arr(input),
        osegs,
        isegs,
    )


def barrier(group=None, async_op: bool = False, device_ids=None):
    """Block until every rank of the group reaches the barrier."""
    pg = resolve_group(group)
    if pg is None:
        return None
    return pg.communicator.barrier(_call("barrier", "()", async_op, []))


def monitored_barrier(group=None, timeout=None, wait_all_ranks: bool = False):
    """A barrier with its own ``timeout``; on expiry it raises naming the missing ranks."""
    pg = resolve_group(group)
    if pg is None:
        return None
    if timeout is not None:
        timeout = timeout.total_seconds() if hasattr(timeout, "total_seconds") else timeout
    return pg.communicator.barrier(_call("monitored_barrier", "()", False, []), timeout)
