"""Argument checks and slicing shared by map, scan and associative_scan."""

from __future__ import annotations

from typing import Any


def leaves_along(what: str, name: str, tree: Any, dim: int) -> tuple[list, Any, int, int]:
    """Flatten ``tree`` (tensors) and check its leaves share a size along ``dim``.

    Returns (leaves, spec, dim normalised against the first leaf, that size)."""
    from ember import Tensor
    from ember.fx import Proxy
    from ember.utils._pytree import tree_flatten

    leaves, spec = tree_flatten(tree)
    if not leaves:
        raise RuntimeError(f"{what}: expected at least one tensor in {name}")
    for leaf in leaves:
        if not isinstance(leaf, (Tensor, Proxy)):  # a Proxy: ember.compile is tracing
            raise RuntimeError(
                f"{what}: expected {name} to hold only tensors, got {type(leaf).__name__}"
            )
        if leaf.dim() == 0:
            raise RuntimeError(f"{what}: {name} must have a dimension to iterate over (got 0-d)")
    nd = leaves[0].dim()
    if not -nd <= dim < nd:
        raise IndexError(f"{what}: dim {dim} is out of range for {name} of {nd} dimension(s)")
    dim = dim % nd
    size = leaves[0].shape[dim]
    for leaf in leaves[1:]:
        if leaf.dim() <= dim or leaf.shape[dim] != size:
            raise RuntimeError(
                f"{what}: expected all tensors of {name} to have size {size} along dim {dim}, "
                f"got shape {tuple(leaf.shape)}"
            )
    return leaves, spec, dim, size


def stack_outputs(what: str, outs: list, dim: int) -> Any:
    """Stack a list of same-structured pytrees of tensors leaf by leaf along ``dim``."""
    import ember
    from ember.utils._pytree import tree_flatten, tree_unflatten

    flat = [tree_flatten(o) for o in outs]
    spec = flat[0][1]
    for _, s in flat[1:]:
        if s != spec:
            raise RuntimeError(f"{what}: the function returned outputs of different structures")
    cols = zip(*(leaves for leaves, _ in flat))
    return tree_unflatten([ember.stack(list(c), dim=dim) for c in cols], spec)
