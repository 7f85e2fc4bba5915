"""A small pytree: nested tuples, lists, dicts and namedtuples whose leaves are anything else.

``tree_flatten(tree) -> (leaves, spec)`` and ``tree_unflatten(leaves, spec)`` are inverses;
``spec`` compares equal for trees of the same structure and prints like PyTorch's ``TreeSpec``
(``*`` for a leaf), which the transforms' error messages show.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TreeSpec", "LEAF", "tree_flatten", "tree_unflatten", "tree_map"]


class TreeSpec:
    r"""The structure of a pytree: the container type, its keys (dict keys, namedtuple
    class) and one child spec per element; ``LEAF`` for a leaf."""

    __slots__ = ("type", "context", "children", "num_leaves")

    def __init__(self, type_: type | None, context: Any, children: list[TreeSpec]) -> None:
        self.type = type_
        self.context = context
        self.children = children
        self.num_leaves = 1 if type_ is None else sum(c.num_leaves for c in children)

    def is_leaf(self) -> bool:
        return self.type is None

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TreeSpec)
            and self.type is other.type
            and self.context == other.context
            and self.children == other.children
        )

    def __hash__(self) -> int:
        return hash((self.type, repr(self.context), len(self.children)))

    def __repr__(self) -> str:
        if self.type is None:
            return "*"
        inner = ", ".join(map(repr, self.children))
        name = self.type.__name__
        ctx = "None" if self.type in (tuple, list) else repr(self.context)
        return f"TreeSpec({name}, {ctx}, [{inner}])"


LEAF = TreeSpec(None, None, [])


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def tree_flatten(tree: Any) -> tuple[list[Any], TreeSpec]:
    r"""The leaves of ``tree`` (depth first, dict keys in insertion order) and its spec."""
    leaves: list[Any] = []
    return leaves, _flatten(tree, leaves)


def _flatten(tree: Any, leaves: list[Any]) -> TreeSpec:
    if isinstance(tree, dict):
        keys = list(tree.keys())
        return TreeSpec(dict, keys, [_flatten(tree[k], leaves) for k in keys])
    if _is_namedtuple(tree):
        return TreeSpec(type(tree), type(tree), [_flatten(v, leaves) for v in tree])
    if type(tree) in (tuple, list):
        return TreeSpec(type(tree), None, [_flatten(v, leaves) for v in tree])
    leaves.append(tree)
    return LEAF


def tree_unflatten(leaves: list[Any], spec: TreeSpec) -> Any:
    r"""Rebuild a tree of structure ``spec`` from ``leaves`` (as many as ``spec`` has)."""
    leaves = list(leaves)
    if len(leaves) != spec.num_leaves:
        raise ValueError(
            f"tree_unflatten(leaves, spec): `leaves` has {len(leaves)} elements "
            f"but `spec` expects {spec.num_leaves}"
        )
    it = iter(leaves)
    return _build(it, spec)


def _build(it, spec: TreeSpec) -> Any:
    if spec.type is None:
        return next(it)
    values = [_build(it, c) for c in spec.children]
    if spec.type is dict:
        return dict(zip(spec.context, values))
    if spec.type in (tuple, list):
        return spec.type(values)
    return spec.type(*values)  # a namedtuple


def tree_map(fn, tree: Any) -> Any:
    r"""``tree`` with ``fn`` applied to every leaf."""
    leaves, spec = tree_flatten(tree)
    return tree_unflatten([fn(x) for x in leaves], spec)
