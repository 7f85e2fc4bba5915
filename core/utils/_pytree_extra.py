"""The rest of ``ember.utils._pytree`` (re-exported there): key paths (``SequenceKey``,
``MappingKey``, ``GetAttrKey``, ``tree_flatten_with_path``, ``keystr``, ...), the
``*_only`` / ``tree_all`` / ``tree_any`` family and a few helpers libraries import."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, Protocol

__all__ = [
    "KeyEntry",
    "KeyPath",
    "register_dataclass",
    "SequenceKey",
    "MappingKey",
    "GetAttrKey",
    "keystr",
    "key_get",
    "tree_flatten_with_path",
    "tree_leaves_with_path",
    "tree_map_with_path",
    "map_only",
    "tree_map_only",
    "tree_map_only_",
    "tree_all",
    "tree_any",
    "tree_all_only",
    "tree_any_only",
    "arg_tree_leaves",
    "treespec_pprint",
]


# ---- keys ----------------------------------------------------------------------------
class KeyEntry(Protocol):
    """What one step of a key path provides (``SequenceKey``, ``MappingKey``, ``GetAttrKey``)."""

    def __hash__(self) -> int: ...

    def __eq__(self, other: object) -> bool: ...

    def __str__(self) -> str: ...

    def get(self, parent: Any) -> Any: ...


KeyPath = tuple  # a tuple of KeyEntry


@dataclasses.dataclass(frozen=True)
class SequenceKey:
    idx: int

    def __str__(self) -> str:
        return f"[{self.idx!r}]"

    def get(self, sequence: Any) -> Any:
        return sequence[self.idx]


@dataclasses.dataclass(frozen=True)
class MappingKey:
    key: Any

    def __str__(self) -> str:
        return f"[{self.key!r}]"

    def get(self, mapping: Any) -> Any:
        return mapping[self.key]


@dataclasses.dataclass(frozen=True)
class GetAttrKey:
    name: str

    def __str__(self) -> str:
        return f".{self.name}"

    def get(self, obj: Any) -> Any:
        return getattr(obj, self.name)


# ---- key paths ----------------------------------------------------------------------------
def _key_paths(path: tuple, tree: Any, is_leaf) -> Iterable[tuple[tuple, Any]]:
    if _pt.tree_is_leaf(tree, is_leaf):
        yield path, tree
        return
    ntype = _pt._node_type(tree)
    fn = _pt.SUPPORTED_NODES[ntype].flatten_with_keys_fn
    if fn is None:
        raise ValueError(
            f"Did not find a flatten_with_keys_fn for type: {ntype}. "
            "Please pass a flatten_with_keys_fn argument to register_pytree_node."
        )
    for key, child in fn(tree)[0]:
        yield from _key_paths((*path, key), child, is_leaf)


def tree_flatten_with_path(tree: Any, is_leaf=None) -> tuple[list[tuple[tuple, Any]], _pt.TreeSpec]:
    r"""Like :func:`tree_flatten`, with each leaf paired with its key path."""
    return list(_key_paths((), tree, is_leaf)), _pt.tree_structure(tree, is_leaf)


def tree_leaves_with_path(tree: Any, is_leaf=None) -> list[tuple[tuple, Any]]:
    return list(_key_paths((), tree, is_leaf))


def tree_map_with_path(func: Callable, tree: Any, *rests: Any, is_leaf=None) -> Any:
    r"""Like :func:`tree_map`, with the leaf's key path as ``func``'s first argument."""
    pairs, spec = tree_flatten_with_path(tree, is_leaf)
    flat = [[p for p, _ in pairs], [v for _, v in pairs]] + [spec.flatten_up_to(r) for r in rests]
    return spec.unflatten(func(*xs) for xs in zip(*flat))


def keystr(kp: tuple) -> str:
    """A key path printed as a Python access expression: ``['a'][0].b``."""
    return "".join(str(k) for k in kp)


def key_get(obj: Any, kp: tuple) -> Any:
    """The value at key path ``kp`` of ``obj``."""
    for k in kp:
        obj = k.get(obj)
    return obj


def register_dataclass(
    cls: type,
    *,
    field_names: list[str] | None = None,
    drop_field_names: list[str] | None = None,
    serialized_type_name: str | None = None,
) -> None:
    r"""Register a dataclass as a pytree node whose children are its fields (``field_names``,
    by default every ``init`` field not in ``drop_field_names``); keys are ``GetAttrKey``."""
    if field_names is None:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(
                f"register_dataclass: {cls.__name__} is not a dataclass; pass field_names"
            )
        drop = set(drop_field_names or ())
        field_names = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in drop]
    names = list(field_names)

    def flatten(obj):
        return [getattr(obj, n) for n in names], None

    def unflatten(values, context):
        return cls(**dict(zip(names, values)))

    def flatten_with_keys(obj):
        return [(GetAttrKey(n), getattr(obj, n)) for n in names], None

    _pt.register_pytree_node(cls, flatten, unflatten, flatten_with_keys_fn=flatten_with_keys)


# ---- the *_only / all / any family --------------------------------------------------------
def _pred(type_or_types_or_pred) -> Callable[[Any], bool]:
    if isinstance(type_or_types_or_pred, (type, tuple)):
        return lambda x: isinstance(x, type_or_types_or_pred)
    if callable(type_or_types_or_pred):
        return type_or_types_or_pred
    raise TypeError(
        f"Argument must be a type, a tuple of types, or a callable, got {type_or_types_or_pred!r}"
    )


def map_only(type_or_types_or_pred) -> Callable[[Callable], Callable]:
    r"""Decorator: the wrapped function applies only to leaves of the given type(s) (or
    passing the predicate); other leaves pass through unchanged."""
    pred = _pred(type_or_types_or_pred)

    def wrap(func: Callable) -> Callable:
        def wrapped(x):
            return func(x) if pred(x) else x

        wrapped.__wrapped__ = func
        return wrapped

    return wrap


def tree_map_only(type_or_types_or_pred, func: Callable, tree: Any, is_leaf=None) -> Any:
    return _pt.tree_map(map_only(type_or_types_or_pred)(func), tree, is_leaf=is_leaf)


def tree_map_only_(type_or_types_or_pred, func: Callable, tree: Any, is_leaf=None) -> Any:
    return _pt.tree_map_(map_only(type_or_types_or_pred)(func), tree, is_leaf=is_leaf)


def tree_all(pred: Callable[[Any], bool], tree: Any, is_leaf=None) -> bool:
    return all(map(pred, _pt.tree_iter(tree, is_leaf)))


def tree_any(pred: Callable[[Any], bool], tree: Any, is_leaf=None) -> bool:
    return any(map(pred, _pt.tree_iter(tree, is_leaf)))


def tree_all_only(type_or_types, pred: Callable, tree: Any, is_leaf=None) -> bool:
    ok = _pred(type_or_types)
    return all(pred(x) for x in _pt.tree_iter(tree, is_leaf) if ok(x))


def tree_any_only(type_or_types, pred: Callable, tree: Any, is_leaf=None) -> bool:
    ok = _pred(type_or_types)
    return any(pred(x) for x in _pt.tree_iter(tree, is_leaf) if ok(x))


def arg_tree_leaves(*args: Any, **kwargs: Any) -> list[Any]:
    """The leaves of ``(args, kwargs)`` without building a spec."""
    return _pt.tree_leaves(args) + _pt.tree_leaves(kwargs)


def _broadcast_to_and_flatten(tree: Any, treespec: _pt.TreeSpec, is_leaf=None) -> list | None:
    """``tree`` (a prefix of ``treespec``'s structure) with each of its leaves repeated once
    per leaf of the subtree it covers; ``None`` when it is not a prefix."""
    full = treespec.unflatten([0] * treespec.num_leaves)
    out: list = []
    try:
        _pt.tree_map_(
            lambda x, sub: out.extend([x] * _pt.tree_structure(sub, is_leaf).num_leaves),
            tree,
            full,
            is_leaf=is_leaf,
        )
    except ValueError:
        return None
    return out


def is_structseq_class(cls: Any) -> bool:
    r"""Whether ``cls`` is a C struct sequence type (``os.stat_result``, ``time.struct_time``;
    PyTorch's ``torch.return_types``; ember's return types are namedtuples instead)."""
    return (
        isinstance(cls, type)
        and cls.__bases__ == (tuple,)
        and isinstance(getattr(cls, "n_sequence_fields", None), int)
        and isinstance(getattr(cls, "n_fields", None), int)
        and isinstance(getattr(cls, "n_unnamed_fields", None), int)
    )


def is_structseq(obj: Any) -> bool:
    r"""Whether ``obj`` is a struct sequence type or an instance of one."""
    return is_structseq_class(obj) or is_structseq_instance(obj)


def is_structseq_instance(obj: Any) -> bool:
    r"""Whether ``obj`` is an instance of a struct sequence type."""
    return is_structseq_class(type(obj))


def treespec_pprint(treespec: _pt.TreeSpec) -> str:
    """The structure drawn as the tree itself with ``*`` for each leaf."""

    class _Star(str):
        def __repr__(self) -> str:
            return "*"

    return repr(treespec.unflatten([_Star("*")] * treespec.num_leaves))


# Last, so that either module may be imported first (_pytree imports this one's names).
from . import _pytree as _pt  # noqa: E402
