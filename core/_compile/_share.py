"""Captured graphs shared across instances of one Module class (regional compilation).

``for layer in model.layers: layer.compile()`` (or ``ember.compile(Layer())`` per copy)
compiles many modules that run the same code on different parameters. torch reuses the
compiled code across them: the code object is the same and, with parameters as inputs, its
guards match. Here each compiled Module keeps its own cache entries (the executor binds its
parameters), but the expensive part, the trace, is done once: a capture of a module root is
stored under the module's *structure* and a later module of the same structure copies the
graph instead of tracing it again.

The structure (:func:`fingerprint`) is what a trace may have baked into the graph: per
submodule its path and class, the names, shapes, dtypes, devices and ``requires_grad`` of its
parameters and buffers, and every other instance attribute, by value for plain Python values
(``in_features``, ``eps``, tuples of them) and by identity for anything else (a function stored
on the instance, a hook, a config object). Together with the call's cache key (grad mode,
``training`` flags, the arguments' shapes/dtypes/scalar values) and the compile options, equal
structures trace to the same graph. A graph that reads a tensor it made while tracing (a
``_tensor_constant`` of the first instance) is not shared.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["fingerprint", "lookup", "plain_key", "reset", "share_key", "store"]

_SIMPLE = (int, float, bool, str, complex, bytes, type(None))
# Module housekeeping that the cache key holds already (``training``) or that no trace reads
_SKIP = frozenset(("training", "_non_persistent_buffers_set", "_state_dict_hooks"))
_LIMIT = 256  # templates kept; the oldest go first (compiler.reset() clears them all)


class _Id:
    """An object compared by identity inside a fingerprint (kept alive while the key is)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Id) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)


def _tensor_meta(t: Any) -> Any:
    if t is None:
        return None
    return (type(t), tuple(t.shape), t.dtype, str(t.device), t.requires_grad)


def _freeze(v: Any, depth: int = 0) -> Any:
    from ember import Tensor

    t = type(v)
    if t in _SIMPLE:
        return (t, v)
    if isinstance(v, Tensor):
        return ("tensor", _tensor_meta(v))
    if t in (tuple, list) and depth < 4:
        return (t, tuple(_freeze(x, depth + 1) for x in v))
    if isinstance(v, dict) and depth < 4:
        try:
            return (t, tuple((_freeze(k, depth + 1), _freeze(x, depth + 1)) for k, x in v.items()))
        except TypeError:  # pragma: no cover - defensive
            return _Id(v)
    return _Id(v)


def fingerprint(root: Any) -> tuple | None:
    """The structure of the module tree ``root`` (see the module docstring)."""
    from . import _CompiledForward

    parts = []
    for path, m in root.named_modules(remove_duplicate=False):
        items = []
        for k, v in m.__dict__.items():
            if k in _SKIP or (k == "forward" and isinstance(v, _CompiledForward)):
                continue  # (``module.compile()`` installs its own compiled forward)
            if k in ("_parameters", "_buffers"):
                items.append((k, tuple((n, _tensor_meta(t)) for n, t in v.items())))
            elif k == "_modules":
                items.append((k, tuple((n, type(c)) for n, c in v.items())))
            else:
                items.append((k, _freeze(v)))
        parts.append((path, type(m), tuple(items)))
    key = tuple(parts)
    try:
        hash(key)
    except TypeError:  # pragma: no cover - an attribute value that hashes badly
        return None
    return key


def plain_key(keys: tuple) -> bool:
    """Arguments keyed by value (tensors' metadata, scalars), not by an object's identity
    (``_frame_keys._arg_key``: ``"M"`` modules, ``"O"`` other objects)."""
    for k in keys:
        if k[0] in ("M", "O") or (k[0] in (tuple, list) and not plain_key(k[1])):
            return False
    return True


def share_key(cf: Any, values: list, static: bool, extra: dict) -> tuple | None:
    """The key under which the compiled function ``cf`` (``_frame.py``) shares a capture with
    other modules of its root's structure, or ``None`` where it does not share: a function
    root, symbolic sizes, a callable backend, module or other object arguments."""
    if not cf._is_module or not static or extra or callable(cf._backend):
        return None
    key = cf._key(values, False)
    if not plain_key(key[2]):
        return None
    fp = fingerprint(cf._root)
    return None if fp is None else (fp, key, cf._backend, cf._mode)


class _Template:
    __slots__ = ("graph", "guards", "targets")

    def __init__(self, graph: Any, guards: list, targets: tuple[str, ...]) -> None:
        self.graph, self.guards, self.targets = graph, guards, targets


_STORE: dict[tuple, _Template] = {}


def store(key: tuple, graph: Any, guards: list) -> None:
    """Keep a copy of ``graph`` (before any pass rewrites it) for modules of the same key."""
    targets = tuple(n.target for n in graph.nodes if n.op == "get_attr")
    if any(t.rpartition(".")[2].startswith("_tensor_constant") for t in targets):
        return  # a tensor made while tracing lives on the first instance only
    if len(_STORE) >= _LIMIT:
        _STORE.pop(next(iter(_STORE)))
    _STORE[key] = _Template(copy.deepcopy(graph), list(guards), targets)


def lookup(key: tuple, root: Any) -> tuple[Any, list] | None:
    """``(graph, guards)`` captured for another module of ``key``'s structure, the graph a
    fresh copy, or ``None``; every attribute the graph reads must exist on ``root``."""
    t = _STORE.get(key)
    if t is None:
        return None
    for target in t.targets:
        obj = root
        for part in target.split("."):
            obj = getattr(obj, part, _MISSING)
            if obj is _MISSING:
                return None
    return copy.deepcopy(t.graph), list(t.guards)


_MISSING = object()


def reset() -> None:
    """Forget every stored graph (``ember.compiler.reset``)."""
    _STORE.clear()
