"""``ember.utils._pytree``: PyTorch's pytree utilities (``torch.utils._pytree``).

A pytree is a nest of registered containers (tuple, list, dict, namedtuple, OrderedDict,
defaultdict, deque, and any class given to :func:`register_pytree_node`) whose leaves are
everything else, ``None`` included (as in PyTorch 2.13). ``tree_flatten(tree) -> (leaves,
spec)`` and ``tree_unflatten(leaves, spec)`` are inverses; dict children come in insertion
order. This is the one pytree of ember: ``ember.func`` uses it through ``ember.func._pytree``.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict, deque, namedtuple
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from ._pytree_extra import (
    GetAttrKey,
    KeyEntry,
    KeyPath,
    MappingKey,
    SequenceKey,
    _broadcast_to_and_flatten,  # noqa: F401  (PyTorch's, libraries use it)
    arg_tree_leaves,
    is_structseq,
    is_structseq_class,
    is_structseq_instance,
    key_get,
    keystr,
    map_only,
    register_dataclass,
    tree_all,
    tree_all_only,
    tree_any,
    tree_any_only,
    tree_flatten_with_path,
    tree_leaves_with_path,
    tree_map_only,
    tree_map_only_,
    tree_map_with_path,
    treespec_pprint,
)

__all__ = [
    "TreeSpec",
    "LeafSpec",
    "SUPPORTED_NODES",
    "register_pytree_node",
    "register_dataclass",
    "KeyEntry",
    "KeyPath",
    "tree_is_leaf",
    "tree_flatten",
    "tree_unflatten",
    "tree_iter",
    "tree_leaves",
    "tree_structure",
    "tree_map",
    "tree_map_",
    "map_only",
    "tree_map_only",
    "tree_map_only_",
    "tree_all",
    "tree_any",
    "tree_all_only",
    "tree_any_only",
    "SequenceKey",
    "MappingKey",
    "GetAttrKey",
    "keystr",
    "key_get",
    "tree_flatten_with_path",
    "tree_leaves_with_path",
    "tree_map_with_path",
    "treespec_pprint",
    "arg_tree_leaves",
    "is_namedtuple",
    "is_namedtuple_class",
    "is_namedtuple_instance",
    "is_structseq",
    "is_structseq_class",
    "is_structseq_instance",
]

PyTree = Any
Context = Any  # a node's flatten context (PyTorch's type alias)
FlattenFunc = Callable[[PyTree], tuple[list, Context]]
UnflattenFunc = Callable[[Iterable, Context], PyTree]


class NodeDef(NamedTuple):
    type: Any
    flatten_fn: Callable
    unflatten_fn: Callable
    flatten_with_keys_fn: Callable | None


SUPPORTED_NODES: dict[Any, NodeDef] = {}


def register_pytree_node(
    cls: type,
    flatten_fn: Callable[[Any], tuple[list, Any]],
    unflatten_fn: Callable[[Iterable, Any], Any],
    *,
    serialized_type_name: str | None = None,
    to_dumpable_context: Callable | None = None,
    from_dumpable_context: Callable | None = None,
    flatten_with_keys_fn: Callable | None = None,
) -> None:
    r"""Register ``cls`` as a pytree node.

    Args:
        cls (type): the container type.
        flatten_fn (Callable): ``obj -> (children, context)``; ``context`` must be comparable.
        unflatten_fn (Callable): ``(children, context) -> obj``.
        flatten_with_keys_fn (Callable, optional): ``obj -> ([(key, child), ...], context)``
            for :func:`tree_flatten_with_path`.
        serialized_type_name, to_dumpable_context, from_dumpable_context: accepted for
            PyTorch compatibility; ember does not serialize tree specs.
    """
    if not isinstance(cls, type):
        raise TypeError(f"register_pytree_node: expected a class, got {cls!r}")
    if cls in SUPPORTED_NODES:
        raise ValueError(f"{cls} is already registered as pytree node.")
    SUPPORTED_NODES[cls] = NodeDef(cls, flatten_fn, unflatten_fn, flatten_with_keys_fn)


_register_pytree_node = register_pytree_node  # PyTorch's older private spelling


def _deregister_pytree_node(cls: type) -> None:
    SUPPORTED_NODES.pop(cls, None)


# ---- the built-in nodes -------------------------------------------------------------------
def is_namedtuple_class(cls: Any) -> bool:
    """Whether ``cls`` is a namedtuple class (a tuple subclass with ``_fields``)."""
    return (
        isinstance(cls, type)
        and issubclass(cls, tuple)
        and isinstance(getattr(cls, "_fields", None), tuple)
        and callable(getattr(cls, "_make", None))
    )


def is_namedtuple_instance(obj: Any) -> bool:
    return is_namedtuple_class(type(obj))


def is_namedtuple(obj: Any) -> bool:
    return is_namedtuple_class(obj if isinstance(obj, type) else type(obj))


def _seq_keys(d):
    return [(SequenceKey(i), v) for i, v in enumerate(d)]


# the builtins' (un)flatten functions under PyTorch's private names: libraries register their
# own dict-like classes with them (diffusers' BaseOutput uses _dict_flatten/_dict_unflatten)
def _tuple_flatten(d: tuple) -> tuple[list, Any]:
    return list(d), None


def _tuple_unflatten(values: Iterable[Any], context: Any) -> tuple:
    return tuple(values)


def _list_flatten(d: list) -> tuple[list, Any]:
    return list(d), None


def _list_unflatten(values: Iterable[Any], context: Any) -> list:
    return list(values)


def _dict_flatten(d: dict) -> tuple[list, Any]:
    return list(d.values()), list(d.keys())


def _dict_unflatten(values: Iterable[Any], context: Any) -> dict:
    return dict(zip(context, values))


def _seq_flatten_with_keys(d) -> tuple[list, Any]:
    return _seq_keys(d), None


_tuple_flatten_with_keys = _list_flatten_with_keys = _seq_flatten_with_keys


def _dict_flatten_with_keys(d: dict) -> tuple[list, Any]:
    return [(MappingKey(k), v) for k, v in d.items()], list(d)


def _register_builtins() -> None:
    reg = register_pytree_node
    reg(
        tuple,
        _tuple_flatten,
        _tuple_unflatten,
        flatten_with_keys_fn=_tuple_flatten_with_keys,
    )
    reg(
        list,
        _list_flatten,
        _list_unflatten,
        flatten_with_keys_fn=_list_flatten_with_keys,
    )
    reg(
        dict,
        _dict_flatten,
        _dict_unflatten,
        flatten_with_keys_fn=_dict_flatten_with_keys,
    )
    # every namedtuple class is a node under the one key ``namedtuple`` (as PyTorch's)
    SUPPORTED_NODES[namedtuple] = NodeDef(
        namedtuple,
        lambda d: (list(d), type(d)),
        lambda v, c: c(*v),
        lambda d: ([(GetAttrKey(f), v) for f, v in zip(d._fields, d)], type(d)),
    )
    reg(
        OrderedDict,
        lambda d: (list(d.values()), list(d.keys())),
        lambda v, c: OrderedDict(zip(c, v)),
        flatten_with_keys_fn=lambda d: ([(MappingKey(k), v) for k, v in d.items()], list(d)),
    )
    reg(
        defaultdict,
        lambda d: (list(d.values()), [d.default_factory, list(d.keys())]),
        lambda v, c: defaultdict(c[0], zip(c[1], v)),
        flatten_with_keys_fn=lambda d: (
            [(MappingKey(k), v) for k, v in d.items()],
            [d.default_factory, list(d)],
        ),
    )
    reg(
        deque,
        lambda d: (list(d), d.maxlen),
        lambda v, c: deque(v, maxlen=c),
        flatten_with_keys_fn=lambda d: (_seq_keys(d), d.maxlen),
    )


_register_builtins()
_DICT_TYPES = (dict, OrderedDict, defaultdict)
_BUILTINS = frozenset((tuple, list, dict, namedtuple, OrderedDict, defaultdict, deque))


def _node_type(tree: Any) -> Any:
    t = type(tree)
    return namedtuple if is_namedtuple_class(t) else t


def tree_is_leaf(tree: PyTree, is_leaf: Callable[[PyTree], bool] | None = None) -> bool:
    """Whether ``tree`` is a leaf: not a registered node (or ``is_leaf(tree)`` says so)."""
    if is_leaf is not None and is_leaf(tree):
        return True
    return _node_type(tree) not in SUPPORTED_NODES


# PyTorch's private spellings, which libraries (Lightning's apply_func, ...) import
_get_node_type = _node_type
_is_leaf = tree_is_leaf


# ---- TreeSpec -----------------------------------------------------------------------------
class TreeSpec:
    r"""The structure of a pytree: the node type, its context (dict keys, the namedtuple
    class, ...) and one child spec per child; :class:`LeafSpec` (printed ``*``) for a leaf."""

    __slots__ = ("type", "context", "_children", "num_nodes", "num_leaves", "num_children")

    def __init__(self, type: Any, context: Any, children_specs: list[TreeSpec]) -> None:
        self.type = type
        self.context = context
        self._children = list(children_specs)
        self.num_children = len(self._children)
        self.num_nodes = 1 + sum(c.num_nodes for c in self._children)
        self.num_leaves = sum(c.num_leaves for c in self._children)

    @property
    def children_specs(self) -> list[TreeSpec]:
        return self._children

    def children(self) -> list[TreeSpec]:
        return list(self._children)

    def child(self, index: int) -> TreeSpec:
        return self._children[index]

    def is_leaf(self) -> bool:
        return self.num_nodes == 1 and self.num_leaves == 1

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        return (
            type(other) is type(self)
            and self.type is other.type
            and self.context == other.context
            and self._children == other._children
        )

    def __hash__(self) -> int:
        return hash((self.type, repr(self.context), self.num_children, self.num_leaves))

    def __repr__(self, indent: int = 0) -> str:
        name = getattr(self.type, "__name__", repr(self.type))
        head = f"TreeSpec({name}, {self.context}, ["
        if not self._children:
            return head + "])"
        indent += 2
        parts = [c.__repr__(indent) for c in self._children]
        return head + (",\n" + " " * indent).join(parts) + "])"

    def unflatten(self, leaves: Iterable[Any]) -> PyTree:
        """Rebuild a tree of this structure from ``leaves``."""
        leaves = list(leaves)
        if len(leaves) != self.num_leaves:
            raise ValueError(
                f"treespec.unflatten(leaves): `leaves` has length {len(leaves)} but the spec "
                f"refers to a pytree that holds {self.num_leaves} items ({self})."
            )
        return _build(iter(leaves), self)

    def flatten_up_to(self, tree: PyTree) -> list[PyTree]:
        """The subtrees of ``tree`` at this spec's leaves (``tree`` has this spec as a prefix)."""
        out: list[PyTree] = []
        _up_to(self, tree, out)
        return out


class LeafSpec(TreeSpec):
    """The spec of a leaf."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(None, None, [])
        self.num_nodes = self.num_leaves = 1

    def __repr__(self, indent: int = 0) -> str:
        return "*"


_LEAF_SPEC = LeafSpec()


def _build(it, spec: TreeSpec) -> PyTree:
    if spec.is_leaf():
        return next(it)
    values = [_build(it, c) for c in spec._children]
    return SUPPORTED_NODES[spec.type].unflatten_fn(values, spec.context)


def _up_to(spec: TreeSpec, node: PyTree, out: list) -> None:
    if spec.is_leaf():
        out.append(node)
        return
    ntype = _node_type(node)
    both_dicts = spec.type in _DICT_TYPES and ntype in _DICT_TYPES
    if not both_dicts and ntype is not spec.type:
        kind = "Node type" if spec.type in _BUILTINS else "Type"
        raise ValueError(f"{kind} mismatch; expected {spec.type!r}, but got {ntype!r}.")
    if both_dicts:
        keys = spec.context[1] if spec.type is defaultdict else spec.context
        if len(node) != spec.num_children:
            raise ValueError(
                f"Node arity mismatch; expected {spec.num_children}, but got {len(node)}."
            )
        if set(node) != set(keys):
            missing, extra = set(keys) - set(node), set(node) - set(keys)
            msg = (f"; missing key(s): {missing}" if missing else "") + (
                f"; extra key(s): {extra}" if extra else ""
            )
            raise ValueError(f"Node keys mismatch{msg}.")
        children = [node[k] for k in keys]
    else:
        children, context = SUPPORTED_NODES[ntype].flatten_fn(node)
        if len(children) != spec.num_children:
            raise ValueError(
                f"Node arity mismatch; expected {spec.num_children}, but got {len(children)}."
            )
        if ntype is not deque and context != spec.context:
            raise ValueError(
                f"Node context mismatch for node type {spec.type!r}; "
                f"expected {spec.context!r}, but got {context!r}."
            )
    for c, sub in zip(spec._children, children):
        _up_to(c, sub, out)


# ---- flatten / unflatten / map ------------------------------------------------------------
def tree_flatten(
    tree: PyTree, is_leaf: Callable[[PyTree], bool] | None = None
) -> tuple[list[Any], TreeSpec]:
    r"""The leaves of ``tree`` (depth first) and its :class:`TreeSpec`."""
    leaves: list[Any] = []
    return leaves, _flatten(tree, leaves, is_leaf)


def _flatten(tree: PyTree, leaves: list, is_leaf) -> TreeSpec:
    if is_leaf is not None and is_leaf(tree):
        leaves.append(tree)
        return _LEAF_SPEC
    ntype = _node_type(tree)
    node = SUPPORTED_NODES.get(ntype)
    if node is None:
        leaves.append(tree)
        return _LEAF_SPEC
    children, context = node.flatten_fn(tree)
    return TreeSpec(ntype, context, [_flatten(c, leaves, is_leaf) for c in children])


def tree_unflatten(leaves: Iterable[Any], treespec: TreeSpec) -> PyTree:
    r"""Rebuild a tree of structure ``treespec`` from ``leaves``."""
    if not isinstance(treespec, TreeSpec):
        raise TypeError(
            f"tree_unflatten(leaves, treespec): Expected `treespec` to be instance of "
            f"TreeSpec but got item of type {type(treespec)}."
        )
    return treespec.unflatten(leaves)


def tree_iter(tree: PyTree, is_leaf: Callable[[PyTree], bool] | None = None):
    """Iterate over the leaves of ``tree``."""
    if tree_is_leaf(tree, is_leaf):
        yield tree
        return
    for child in SUPPORTED_NODES[_node_type(tree)].flatten_fn(tree)[0]:
        yield from tree_iter(child, is_leaf)


def tree_leaves(tree: PyTree, is_leaf: Callable[[PyTree], bool] | None = None) -> list[Any]:
    return list(tree_iter(tree, is_leaf))


def tree_structure(tree: PyTree, is_leaf: Callable[[PyTree], bool] | None = None) -> TreeSpec:
    return tree_flatten(tree, is_leaf)[1]


def tree_map(
    func: Callable[..., Any],
    tree: PyTree,
    *rests: PyTree,
    is_leaf: Callable[[PyTree], bool] | None = None,
) -> PyTree:
    r"""``tree`` with ``func`` applied to every leaf; with ``rests`` (trees having ``tree`` as
    a prefix), ``func`` takes one argument from each tree."""
    leaves, spec = tree_flatten(tree, is_leaf)
    flat = [leaves] + [spec.flatten_up_to(r) for r in rests]
    return spec.unflatten(map(func, *flat))


def tree_map_(
    func: Callable[..., Any],
    tree: PyTree,
    *rests: PyTree,
    is_leaf: Callable[[PyTree], bool] | None = None,
) -> PyTree:
    r"""Call ``func`` on every leaf for its side effects; returns ``tree`` itself."""
    leaves, spec = tree_flatten(tree, is_leaf)
    flat = [leaves] + [spec.flatten_up_to(r) for r in rests]
    for args in zip(*flat):
        func(*args)
    return tree
