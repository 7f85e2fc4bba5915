"""The restricted unpickler behind ``ember.load`` of PyTorch checkpoints, and the safe-globals
registry (``ember.serialization.add_safe_globals`` / ``get_safe_globals`` / ``safe_globals``).

A ``torch.save`` file is a pickle whose globals name torch functions (``torch._utils.
_rebuild_tensor_v2``, ``torch.FloatStorage``, ``torch.float16``, ...). This module never imports
torch: each global that torch's ``weights_only=True`` unpickler allows is mapped to an ember
stand-in here, every other global is refused (naming it, as torch does) unless the user
allowlisted it, and the opcodes that call or mutate objects (REDUCE, NEWOBJ, BUILD) only act on
allowed callables and types. Storages come from ``persistent_load``, supplied by the caller.
"""

from __future__ import annotations

import _compat_pickle
import collections
import contextlib
import pickle
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import _torch_rebuild as rb
from .backend.device import device
from .tensor import Size, Tensor

__all__ = [
    "add_safe_globals",
    "clear_safe_globals",
    "get_safe_globals",
    "safe_globals",
    "RestrictedUnpickler",
]

# ---- the user's allowlist ---------------------------------------------------------------------
_user_globals: dict[str, Any] = {}


def _qualified_name(obj) -> str:
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not module or not name:
        raise TypeError(
            f"add_safe_globals: {obj!r} has no __module__/__qualname__; pass "
            "(obj, 'module.name') to name it"
        )
    return f"{module}.{name}"


def _entries(safe: Iterable) -> dict[str, Any]:
    if isinstance(safe, (str, bytes)) or not isinstance(safe, Iterable):
        raise TypeError(
            f"safe globals must be a list of classes/functions or (obj, 'module.name') "
            f"tuples, got {type(safe).__name__}"
        )
    out = {}
    for item in safe:
        if isinstance(item, tuple):
            if len(item) != 2 or not isinstance(item[1], str):
                raise TypeError(
                    f"a safe global given as a tuple must be (obj, 'module.name'), got {item!r}"
                )
            out[item[1]] = item[0]
        else:
            out[_qualified_name(item)] = item
    return out


def add_safe_globals(safe_globals: list) -> None:
    r"""Mark globals as safe for ``ember.load(..., weights_only=True)`` of PyTorch checkpoints.

    Args:
        safe_globals: classes or functions (matched by ``f"{obj.__module__}.{obj.__qualname__}"``
            against the name stored in the file), or ``(obj, "module.name")`` tuples to map a
            name stored in the file to ``obj``.
    """
    _user_globals.update(_entries(safe_globals))


def get_safe_globals() -> list:
    r"""The user-allowlisted globals, as ``add_safe_globals`` takes them."""
    return [
        obj if _safe_name_matches(name, obj) else (obj, name) for name, obj in _user_globals.items()
    ]


def _safe_name_matches(name: str, obj) -> bool:
    try:
        return _qualified_name(obj) == name
    except TypeError:
        return False


def clear_safe_globals() -> None:
    r"""Forget every global added with :func:`add_safe_globals`."""
    _user_globals.clear()


@contextlib.contextmanager
def safe_globals(safe_globals: list) -> Iterator[None]:
    r"""Context manager that adds ``safe_globals`` for its duration (restoring the list after)."""
    saved = dict(_user_globals)
    _user_globals.update(_entries(safe_globals))
    try:
        yield
    finally:
        _user_globals.clear()
        _user_globals.update(saved)


# ---- what torch's weights_only unpickler allows, as ember objects --------------------------------
def _encode(obj, encoding="utf-8", errors="strict"):
    # bytes under pickle protocol 2 are written as _codecs.encode(str, "latin1")
    if not isinstance(obj, str) or not isinstance(encoding, str):
        raise pickle.UnpicklingError("_codecs.encode takes a str and an encoding name")
    import codecs

    if codecs.lookup(encoding).name not in ("iso8859-1", "utf-8", "ascii"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return codecs.encode(obj, encoding, errors)


def _device(type_or_str, index=None):
    if isinstance(type_or_str, int) and not isinstance(type_or_str, bool):
        return device("cuda", type_or_str)
    return device(type_or_str) if index is None else device(type_or_str, index)


def _dtype_by_name(name):
    from .backend.dtype import _NAMES

    d = _NAMES.get(name) if isinstance(name, str) else None
    if d is None:
        raise pickle.UnpicklingError(f"unknown dtype {name!r} in a checkpoint")
    return d


def _allowed_globals() -> dict[str, Any]:
    from .nn.parameter import Parameter

    table: dict[str, Any] = {
        "collections.OrderedDict": collections.OrderedDict,
        "collections.Counter": collections.Counter,
        "torch.nn.parameter.Parameter": Parameter,
        "torch.serialization._get_layout": rb.layout,
        "torch.Size": Size,
        "torch.Tensor": Tensor,
        "torch.device": _device,
        "_codecs.encode": _encode,
        "builtins.bytearray": bytearray,
        "builtins.set": set,
        "builtins.complex": complex,
        "torch._tensor._rebuild_from_type_v2": rb.rebuild_from_type_v2,
    }
    for name, dt in rb.TORCH_DTYPES.items():
        table[f"torch.{name}"] = dt
    for name, st in rb.STORAGE_TYPES.items():
        table[f"torch.{name}"] = st
    table["torch.storage.UntypedStorage"] = rb.STORAGE_TYPES["UntypedStorage"]
    table["torch.storage.TypedStorage"] = rb.STORAGE_TYPES["TypedStorage"]
    for name in rb.TENSOR_CLASSES:
        table[f"torch.{name}"] = rb.legacy_tensor_class(name)
    rb._quantized_tables()
    from .quantized import _rebuild_q

    table["ember.quantized._rebuild_q"] = _rebuild_q  # ember's own format (checks its args)
    table["ember.backend.dtype._by_name"] = _dtype_by_name  # a pickled dtype (qint8, ...)
    for name, dt in rb.TORCH_DTYPES.items():  # (the quantized ones are filled in now)
        table[f"torch.{name}"] = dt
    for name, scheme in rb.QSCHEMES.items():
        table[f"torch.{name}"] = scheme
    for name, fn in rb.REBUILD_FUNCTIONS.items():
        table[f"torch._utils.{name}"] = fn
    return table


_ALLOWED: dict[str, Any] | None = None


def allowed_globals() -> dict[str, Any]:
    global _ALLOWED
    if _ALLOWED is None:
        _ALLOWED = _allowed_globals()
    return _ALLOWED


def _refusal(full: str) -> pickle.UnpicklingError:
    shown = full[len("builtins.") :] if full.startswith("builtins.") else full
    return pickle.UnpicklingError(
        "Weights only load failed. In ember.load, weights_only=True (the default) allows only "
        "tensors, containers and primitive types. Re-running with weights_only=False will "
        "likely succeed, but it can result in arbitrary code execution: do it only if you "
        "trust the source of the checkpoint.\n"
        f"Unsupported global: GLOBAL {shown} was not an allowed global by default. Please use "
        f"`ember.serialization.add_safe_globals([{shown}])` or the "
        f"`ember.serialization.safe_globals([{shown}])` context manager to allowlist this "
        "global if you trust this class/function."
    )


_ALLOWED_IDS: set[int] = set()


def _is_allowed(obj) -> bool:
    if not _ALLOWED_IDS:
        _ALLOWED_IDS.update(id(v) for v in allowed_globals().values())
    ident = id(obj)  # by identity: the table holds unhashable objects too
    return ident in _ALLOWED_IDS or any(ident == id(v) for v in _user_globals.values())


def _ember_counterpart(module: str, name: str):
    """ember's object for a pickled ``torch.*`` global outside the table, for a trusted load
    (``weights_only=False``) of whole pickled objects: ``torch.nn.modules.conv.Conv2d`` is
    ``ember.nn.modules.conv.Conv2d`` (ultralytics' ``yolov8n.pt`` pickles whole models). A
    module class ember files elsewhere is found by its name in ``ember.nn``. ``None`` when
    ember has no such object."""
    import importlib

    obj = None
    try:
        obj = importlib.import_module("ember" + module[5:])
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        obj = None
    if obj is None and module.startswith("torch.nn.modules"):
        from . import nn

        obj = getattr(nn, name, None)
    return obj


class RestrictedUnpickler(pickle._Unpickler):
    """The pure-Python unpickler with every code-running path gated.

    Args:
        file: the pickle stream.
        persistent_load: resolves storage ids (``("storage", type, key, location, numel)``).
        weights_only: if False, globals outside the allowlist are imported as plain pickle
            would (torch's own globals still map to ember, other ``torch.*`` names to
            ember's object of the same path, and those ember lacks are refused because ember
            never imports torch).
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(
        self,
        file,
        persistent_load: Callable[[Any], Any],
        *,
        weights_only: bool = True,
        encoding: str = "utf-8",
    ):
        super().__init__(file, encoding=encoding)
        self._persistent = persistent_load
        self.weights_only = weights_only

    def persistent_load(self, pid):
        return self._persistent(pid)

    def find_class(self, module: str, name: str):
        if self.proto < 3:  # Python 2 names, as pickle itself maps them
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        full = f"{module}.{name}"
        table = allowed_globals()
        if full in table:
            return table[full]
        if full in _user_globals:
            return _user_globals[full]
        if self.weights_only:
            raise _refusal(full)
        if module == "torch" or module.startswith("torch."):
            found = _ember_counterpart(module, name)
            if found is not None:
                return found
            raise pickle.UnpicklingError(
                f"the checkpoint pickles {full}, which ember cannot rebuild without PyTorch "
                "(a whole torch object such as an nn.Module?); save its state_dict() instead"
            )
        return super().find_class(module, name)

    def load_reduce(self):
        args = self.stack.pop()
        func = self.stack[-1]
        if self.weights_only and not _is_allowed(func):
            raise pickle.UnpicklingError(
                f"Trying to call reduce for unrecognized function {func!r}"
            )
        self.stack[-1] = func(*args)

    dispatch[pickle.REDUCE[0]] = load_reduce

    def load_newobj(self):
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args))

    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def load_newobj_ex(self):
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        if self.weights_only and kwargs:
            raise pickle.UnpicklingError("NEWOBJ_EX with keyword arguments is not allowed")
        self.append(self._new(cls, args) if not kwargs else cls.__new__(cls, *args, **kwargs))

    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex

    def _new(self, cls, args):
        from .nn.parameter import Parameter

        if cls is Parameter:
            return Parameter(*args)
        if self.weights_only and not (isinstance(cls, type) and _is_allowed(cls)):
            raise pickle.UnpicklingError(
                "Can only create new object for nn.Parameter or classes "
                f"allowlisted via `add_safe_globals` but got {cls!r}"
            )
        return cls.__new__(cls, *args)

    def load_build(self):
        if not self.weights_only:
            return super().load_build()
        from .nn.parameter import Parameter

        state = self.stack.pop()
        inst = self.stack[-1]
        tp = type(inst)
        if tp is collections.OrderedDict or tp is Parameter:
            if not isinstance(state, dict):
                raise pickle.UnpicklingError(f"bad BUILD state for {tp.__name__}")
            inst.__dict__.update(state)
        elif _is_allowed(tp) and tp not in (Tensor, Size):
            setstate = getattr(inst, "__setstate__", None)
            if setstate is not None and not isinstance(inst, (dict, list, set)):
                setstate(state)
                return
            slotstate = None
            if isinstance(state, tuple) and len(state) == 2:
                state, slotstate = state
            if state:
                inst.__dict__.update(state)
            for k, v in (slotstate or {}).items():
                setattr(inst, k, v)
        else:
            raise pickle.UnpicklingError(
                "Can only build Parameter, OrderedDict or types "
                f"allowlisted via `add_safe_globals`, but got {tp}"
            )

    dispatch[pickle.BUILD[0]] = load_build


def globals_in_pickle(stream) -> list[str]:
    """The ``module.name`` globals one pickle in ``stream`` refers to, read without running it
    (``STACK_GLOBAL`` names are followed through pushed and memoised strings)."""
    import pickletools

    found: list[str] = []
    strings: list = []
    memo: dict = {}
    for op, arg, _ in pickletools.genops(stream):
        if op.name == "GLOBAL":
            module, name = arg.split(" ", 1)
            found.append(f"{module}.{name}")
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.append(f"{strings[-2]}.{strings[-1]}")
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
            strings.append(arg)
        elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = strings[-1] if strings else None
        elif op.name == "MEMOIZE":
            memo[len(memo)] = strings[-1] if strings else None
        elif op.name in ("BINGET", "LONG_BINGET", "GET") and isinstance(memo.get(arg), str):
            strings.append(memo[arg])
        if op.name == "STOP":
            break
    return list(dict.fromkeys(found))


def unsafe_names(names: list[str]) -> list[str]:
    """Those of ``names`` that weights-only loading would refuse."""
    table = allowed_globals()
    return [n for n in names if n not in table and n not in _user_globals]
