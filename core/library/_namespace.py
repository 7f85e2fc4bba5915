"""``ember.ops.<ns>``: the operator namespaces (``torch.ops.mylib.crop``, ``torch.ops.aten.mm``).

``ember.ops`` is ember's own op package, so its module ``__getattr__`` (reached only for names
it does not hold) hands out these namespace objects. A custom namespace resolves names to the
registered operators; ``aten`` resolves a name to ember's op of the same name, any overload
(``aten.add.Tensor``, ``aten.mm.default``) calling that one function.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OpNamespace", "namespace"]

_CACHE: dict[str, OpNamespace] = {}

# aten names whose ember function is spelled differently
_ATEN_ALIASES = {
    "clamp_min": "clamp",
    "true_divide": "div",
}


class OpNamespace:
    """``ember.ops.<ns>``: attribute access gives ``ember.ops.<ns>.<op>`` packets."""

    def __init__(self, ns: str) -> None:
        self.name = ns

    def __repr__(self) -> str:
        return f"<OpNamespace 'ember.ops.{self.name}'>"

    def __iter__(self):
        from ._custom_op import OPS

        return iter(sorted(q.split("::")[1] for q in OPS if q.startswith(self.name + "::")))

    def __getattr__(self, op_name: str) -> Any:
        if op_name.startswith("__"):
            raise AttributeError(op_name)
        from ._custom_op import OPS

        op = OPS.get(f"{self.name}::{op_name}")
        if op is None and self.name in _BUILTIN_NAMESPACES:  # registered on first use
            import importlib

            importlib.import_module(_BUILTIN_NAMESPACES[self.name])
            op = OPS.get(f"{self.name}::{op_name}")
        if op is not None:
            self.__dict__[op_name] = op.packet  # later lookups skip __getattr__
            return op.packet
        if self.name == "aten":
            return _aten_packet(op_name)
        if self.name in _COLLECTIVE_NAMESPACES:
            key = self.__dict__[op_name] = _CollectiveKey(self.name, op_name)
            return key
        raise AttributeError(
            f"'_OpNamespace' 'ember.ops.{self.name}' object has no attribute '{op_name}': no "
            f"operator {self.name}::{op_name} is defined (define it with "
            "ember.library.custom_op or ember.library.define)"
        )


def _aten_fn(op_name: str):
    import ember
    from ember import Tensor

    from ._aten_extra import ATEN_EXTRA

    name = _ATEN_ALIASES.get(op_name, op_name)
    fn = ATEN_EXTRA.get(name) or getattr(ember, name, None)
    if fn is None:
        import ember.nn.functional as F

        fn = getattr(F, name, None)
    # the in-place ops (add_, relu_) and the method-only ones (new_zeros, new_empty)
    if fn is None and hasattr(Tensor, name) and callable(getattr(Tensor, name)):
        meth = getattr(Tensor, name)
        fn = lambda self, *a, **k: meth(self, *a, **k)  # noqa: E731
        fn.__name__ = name
    if not callable(fn) or isinstance(fn, type):
        raise AttributeError(
            f"ember.ops.aten.{op_name}: ember has no op named {op_name!r} (aten ops resolve "
            "by name to ember's own functions: ember.<name> or ember.nn.functional.<name>)"
        )
    return fn


# ember's own operator namespaces, defined by the module named here when first reached
_BUILTIN_NAMESPACES = {"profiler": "ember.profiler._ops"}

# torch's functional-collective op namespaces: libraries key their __torch_dispatch__ tables by
# these ops at import (torchao: ``torch.ops._c10d_functional.wait_tensor.default``)
_COLLECTIVE_NAMESPACES = ("c10d_functional", "_c10d_functional", "c10d")


class _CollectiveKey:
    """``ember.ops.<collective namespace>.<name>`` (and its ``.default``): a hashable op key.
    ember's collectives are ``ember.distributed``'s functions, so calling one raises."""

    def __init__(self, ns: str, name: str) -> None:
        self._ns, self._name, self.__name__ = ns, name, name

    @property
    def default(self) -> _CollectiveKey:
        return self

    def name(self) -> str:
        return f"{self._ns}::{self._name}"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"ember.ops.{self._ns}.{self._name}: ember runs collectives through "
            "ember.distributed's functions, not as operators"
        )

    def __repr__(self) -> str:
        return f"{self._ns}.{self._name}"


class AtenOverload:
    """``ember.ops.aten.<op>.<overload>``: calls ember's function of that name."""

    def __init__(self, op_name: str, overload: str, fn) -> None:
        self._name, self._overloadname, self._fn = op_name, overload, fn
        self.__name__ = f"{op_name}.{overload}"

    def __call__(self, *args, **kwargs):
        from ._custom_op import _find_proxy

        proxy = _find_proxy(args, kwargs)
        if proxy is not None:  # record ember's own function: the graph keeps ember's names
            return proxy.tracer.create_proxy("call_function", self._fn, args, kwargs)
        return self._fn(*args, **kwargs)

    def name(self) -> str:
        return f"aten::{self._name}" + (
            f".{self._overloadname}" if self._overloadname != "default" else ""
        )

    def __repr__(self) -> str:
        return f"aten.{self._name}.{self._overloadname}"

    # equal to the op objects a __torch_dispatch__ handler is handed (core/_dispatch_ops.py),
    # so ``func == aten.mm.default`` and tables keyed by these objects match
    def __eq__(self, other) -> bool:
        if self is other:
            return True
        name = getattr(other, "_name", None)
        over = getattr(other, "_overloadname", None)
        return name == self._name and over == self._overloadname and hasattr(other, "name")

    def __hash__(self) -> int:
        return hash(("aten", self._name, self._overloadname))

    def __deepcopy__(self, memo) -> AtenOverload:  # torch's op objects are singletons
        return self


class AtenPacket:
    """``ember.ops.aten.<op>``: callable; any overload attribute resolves to the same op."""

    def __init__(self, op_name: str, fn) -> None:
        self._name, self._fn = op_name, fn
        self.__name__ = op_name
        self.default = AtenOverload(op_name, "default", fn)

    def __getattr__(self, overload: str) -> AtenOverload:
        if overload.startswith("_"):
            raise AttributeError(overload)
        ov = AtenOverload(self._name, overload, self._fn)
        setattr(self, overload, ov)
        return ov

    def __call__(self, *args, **kwargs):
        return self.default(*args, **kwargs)

    def overloads(self) -> list[str]:
        return ["default"]

    def __deepcopy__(self, memo) -> AtenPacket:
        # one object per op, as torch's: ptflops deep-copies its table keyed by packets
        return self

    def __repr__(self) -> str:
        return f"<OpOverloadPacket(op='aten.{self._name}')>"


_ATEN: dict[str, AtenPacket] = {}


def _aten_packet(op_name: str) -> AtenPacket:
    p = _ATEN.get(op_name)
    if p is None:
        p = _ATEN[op_name] = AtenPacket(op_name, _aten_fn(op_name))
    return p


def namespace(ns: str) -> OpNamespace:
    n = _CACHE.get(ns)
    if n is None:
        n = _CACHE[ns] = OpNamespace(ns)
    return n
