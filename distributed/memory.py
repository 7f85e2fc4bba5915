"""Per-rank memory report: bytes held in parameters, gradients, optimizer state and
communication buffers, measured from the arrays that are alive.

The report walks modules (their parameters, gradients and buffers, and what sharding wrappers
hold: gathered parameter storage, unreduced gradients, DDP's bucket buffers) and optimizers
(their state, and the local optimizer inside a ``ZeroRedundancyOptimizer``). Every array is
traced to the allocation it lives in (NumPy: the root of its ``.base`` chain; CuPy: its memory
block) and each allocation is counted once, at its full size, under the first category that
reaches it (parameters, then gradients, optimizer state, communication buffers, buffers). A
view therefore never counts twice, and a flat buffer counts whole, padding included. Storage
that FSDP has handed back (after resharding) is not counted.
"""

from __future__ import annotations

import gc

import numpy as np

from ember import _interop

__all__ = ["memory_report", "memory_summary", "CATEGORIES"]

CATEGORIES = ("parameters", "gradients", "optimizer_state", "communication_buffers", "buffers")


def _allocation(arr):
    """(key identifying the allocation ``arr`` lives in, that allocation's size in bytes)."""
    if isinstance(arr, np.ndarray):
        root = arr
        while isinstance(root.base, np.ndarray):
            root = root.base
        return ("cpu", root.__array_interface__["data"][0]), root.nbytes
    mem = getattr(getattr(arr, "data", None), "mem", None)  # CuPy: the memory block
    if mem is not None:
        return ("cuda", getattr(arr, "device", None) and arr.device.id, mem.ptr), mem.size
    return ("other", id(arr)), getattr(arr, "nbytes", 0)


def _tensors(obj):
    from ember import Tensor

    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def _module_arrays(module, recurse: bool):
    mods = module.modules() if recurse else [module]
    for m in mods:
        for p in m._parameters.values():
            if p is not None:
                yield "parameters", _interop.array_of(p)
                if p.grad is not None:
                    yield "gradients", _interop.array_of(p.grad)
        for b in m._buffers.values():
            if b is not None:
                yield "buffers", _interop.array_of(b)
        own = getattr(type(m), "_ember_memory_arrays", None)
        if own is not None:
            yield from own(m)
        for bucket in m.__dict__.get("_buckets") or []:  # DistributedDataParallel
            flat = getattr(bucket, "flat", None)
            if flat is not None:
                yield "communication_buffers", flat


def _optimizer_arrays(opt):
    for g in opt.param_groups:
        for p in g["params"]:
            yield "parameters", _interop.array_of(p)
            if p.grad is not None:
                yield "gradients", _interop.array_of(p.grad)
    for t in _tensors(list(opt.state.values())):
        yield "optimizer_state", _interop.array_of(t)
    own = getattr(type(opt), "_ember_memory_arrays", None)
    if own is not None:
        yield from own(opt)
    inner = opt.__dict__.get("optim")  # ZeroRedundancyOptimizer's local optimizer
    if inner is not None and inner is not opt:
        yield from _optimizer_arrays(inner)


def memory_report(*objects) -> dict[str, int]:
    """Bytes this process holds per category, plus ``"total"``.

    Args:
        *objects: modules and optimizers to measure (wrappers included). With none, every
            ``nn.Module`` and ``optim.Optimizer`` alive in the process is measured.
    """
    from ember.nn import Module
    from ember.optim import Optimizer

    explicit = bool(objects)
    if not explicit:
        objects = tuple(o for o in gc.get_objects() if isinstance(o, (Module, Optimizer)))
    pairs = []
    for obj in objects:
        if isinstance(obj, Module):
            pairs.extend(_module_arrays(obj, recurse=explicit))
        elif isinstance(obj, Optimizer):
            pairs.extend(_optimizer_arrays(obj))
        else:
            raise TypeError(
                f"memory_report expects nn.Module or optim.Optimizer objects, got "
                f"{type(obj).__name__}"
            )
    rank = {c: i for i, c in enumerate(CATEGORIES)}
    pairs.sort(key=lambda cp: rank[cp[0]])  # stable: the first category to reach it wins
    seen, totals = set(), dict.fromkeys(CATEGORIES, 0)
    for cat, arr in pairs:
        key, nbytes = _allocation(arr)
        if key not in seen:
            seen.add(key)
            totals[cat] += int(nbytes)
    totals["total"] = sum(totals[c] for c in CATEGORIES)
    return totals


def _fmt(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


def memory_summary(*objects) -> str:
    """``memory_report`` as a small table (one line per category), naming the rank."""
    from . import distributed_c10d as c10d

    report = memory_report(*objects)
    who = (
        f"rank {c10d.get_rank()} of {c10d.get_world_size()}"
        if c10d.is_initialized()
        else "no process group"
    )
    lines = [f"ember memory summary ({who})"]
    for cat in (*CATEGORIES, "total"):
        lines.append(
            f"  {cat.replace('_', ' '):<22} {_fmt(report[cat]):>12}  ({report[cat]:,} bytes)"
        )
    return "\n".join(lines)
