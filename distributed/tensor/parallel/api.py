"""``parallelize_module``: apply parallel styles to a module tree (PyTorch's
``torch.distributed.tensor.parallel.parallelize_module``)."""

from __future__ import annotations

import fnmatch

from .... import nn
from .._api import _require_mesh
from .style import ParallelStyle

__all__ = ["parallelize_module"]


def _children_matching(module: nn.Module, pattern: str) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in module.named_children() if fnmatch.fnmatchcase(n, pattern)]


def _resolve(module, parts: list[str], prefix: str, full: str) -> list[tuple[str, nn.Module]]:
    """Every (path, submodule) a plan entry names; an error if it names none."""
    if not parts:
        return [(prefix, module)]
    head, rest = parts[0], parts[1:]
    hits = _children_matching(module, head)
    if not hits:
        names = [n for n, _ in module.named_children()]
        where = f"'{prefix}'" if prefix else "the root module"
        raise ValueError(
            f"parallelize_module: plan entry '{full}' names no submodule: {where} "
            f"({type(module).__name__}) has no child matching '{head}' (children: {names})"
        )
    out = []
    for name, child in hits:
        out += _resolve(child, rest, f"{prefix}.{name}" if prefix else name, full)
    return out


def parallelize_module(
    module: nn.Module,
    device_mesh=None,
    parallelize_plan: ParallelStyle | dict[str, ParallelStyle] | None = None,
    *,
    src_data_rank: int | None = 0,
) -> nn.Module:
    """Shard ``module`` over a 1-d ``device_mesh`` by ``parallelize_plan``: one
    ``ParallelStyle`` for the module itself, or a dict from submodule paths (dotted,
    ``fnmatch`` wildcards per part such as ``"layers.*.attn.q"``) to styles. Returns the
    module, changed in place.

    Args:
        module (nn.Module): the module to parallelize.
        device_mesh (DeviceMesh, optional): a 1-d mesh (slice a named dimension of a larger
            one, e.g. ``mesh["tp"]``). Default: the whole world.
        parallelize_plan (ParallelStyle | dict, optional): what to do; nothing if ``None``.
        src_data_rank (int | None, optional): whose parameter values are sharded: rank 0's
            (the default, a broadcast) or each rank's own (``None``).
    """
    mesh = _require_mesh(device_mesh, "parallelize_module")
    if mesh.ndim != 1:
        raise ValueError(
            f"parallelize_module: expected a 1-d DeviceMesh, got a {mesh.ndim}-d mesh of "
            f"shape {mesh.shape}; slice one dimension, e.g. mesh['tp']"
        )
    if parallelize_plan is None:
        return module
    if isinstance(parallelize_plan, ParallelStyle):
        parallelize_plan.src_data_rank = src_data_rank
        return parallelize_plan._apply(module, mesh, "")
    if not isinstance(parallelize_plan, dict):
        raise TypeError(
            "parallelize_module: parallelize_plan must be a ParallelStyle or a dict of them, "
            f"got {type(parallelize_plan).__name__}"
        )
    # resolve every entry before changing anything, so a bad plan leaves the module as it was
    todo = []
    for path, style in parallelize_plan.items():
        if not isinstance(style, ParallelStyle):
            raise TypeError(
                f"parallelize_module: plan entry '{path}' must be a ParallelStyle, "
                f"got {type(style).__name__}"
            )
        if not path:
            raise ValueError("parallelize_module: empty submodule path in the plan")
        todo += [(fqn, sub, style) for fqn, sub in _resolve(module, path.split("."), "", path)]
    for fqn, sub, style in todo:
        style._validate(sub, mesh, fqn)
    for fqn, sub, style in todo:
        style.src_data_rank = src_data_rank
        style._apply(sub, mesh, fqn)
    return module
