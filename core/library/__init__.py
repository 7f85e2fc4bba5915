"""ember.library: define custom operators (torch.library's API), docs/custom_ops.md.

A custom operator wraps any Python function (a NumPy kernel, PIL, a C extension) so that it
behaves like one of ember's own ops: it is reachable as ``ember.ops.<ns>.<name>``, it is one
node in ``ember.fx`` / ``ember.export`` / ``ember.compile`` / ``make_fx`` graphs, it runs on
the meta device through its fake kernel, it trains through its registered backward, and
``ember.func.vmap`` loops it over the batch::

    @ember.library.custom_op("mylib::numpy_sin", mutates_args=())
    def numpy_sin(x: ember.Tensor) -> ember.Tensor:
        return ember.from_numpy(np.sin(x.numpy()))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._custom_op import OPS, CustomOpDef, OpOverload, OpOverloadPacket, _OpDef, get_op
from ._opcheck import opcheck
from ._schema import FunctionSchema, infer_schema, parse_schema, split_qualname

__all__ = [
    "CustomOpDef",
    "Library",
    "custom_op",
    "define",
    "impl",
    "infer_schema",
    "opcheck",
    "register_autograd",
    "register_fake",
    "register_kernel",
    "register_torch_dispatch",
    "register_vmap",
    "fallthrough_kernel",
    "get_ctx",
]

# dispatch keys Library.impl accepts -> a device type kernel, the fake kernel, or a
# composite (runs with autograd on, so its own ember ops give the gradient)
_KEYS = {
    "CPU": "cpu",
    "CUDA": "cuda",
    "Meta": "meta",
    "": None,
    "CompositeExplicitAutograd": None,
    "CompositeImplicitAutograd": "composite",
    "Autograd": "autograd",
    "AutogradCPU": "autograd",
    "AutogradCUDA": "autograd",
}


def _define(schema: FunctionSchema, kernel: Callable | None = None) -> _OpDef:
    if schema.name in OPS:
        raise RuntimeError(
            f"operator {schema.name!r} is already defined (schema: {OPS[schema.name].schema}); "
            "each 'namespace::name' can be defined once per process"
        )
    op = OPS[schema.name] = _OpDef(schema, kernel)
    return op


def _resolve(op: Any) -> _OpDef:
    if isinstance(op, (CustomOpDef, OpOverload, OpOverloadPacket)):
        return op._op
    if isinstance(op, str):
        split_qualname(op)
        return get_op(op)
    raise TypeError(
        f"expected an operator: a 'namespace::name' string, a CustomOpDef or "
        f"ember.ops.<ns>.<name>[.default], got {type(op).__name__}"
    )


def custom_op(
    name: str,
    fn: Callable | None = None,
    /,
    *,
    mutates_args: Sequence[str] | str,
    device_types: str | Sequence[str] | None = None,
    schema: str | None = None,
) -> Callable:
    """Wrap ``fn`` as the custom operator ``name``; a decorator when ``fn`` is omitted.

    The operator is also reachable as ``ember.ops.<ns>.<op>``.

    Args:
        name: the qualified name, ``"ns::op"``.
        fn: the implementation (its type hints give the schema).
        mutates_args: the names of the Tensor arguments ``fn`` writes into (``()``: none;
            PyTorch's ``"unknown"`` is refused).
        device_types: the device type(s) ``fn`` is the kernel of (``"cpu"``, ``"cuda"``);
            ``None``: all of them.
        schema: the schema (``"(Tensor x, float factor) -> Tensor"``) instead of the inferred
            one.

    Returns:
        A :class:`CustomOpDef`, callable like ``fn``.

    Example::

        >>> @ember.library.custom_op("mylib::scale", mutates_args=())
        ... def scale(x: ember.Tensor, factor: float) -> ember.Tensor:
        ...     return x * factor
        >>> scale.register_autograd(
        ...     lambda ctx, grad: (grad * ctx.factor, None),
        ...     setup_context=lambda ctx, inputs, output: setattr(ctx, "factor", inputs[1]),
        ... )
        >>> ember.ops.mylib.scale(ember.ones(2), 3.0)
        tensor([3., 3.])
    """
    ns, opname = split_qualname(name)

    def make(f: Callable) -> CustomOpDef:
        if not callable(f):
            raise TypeError(f"custom_op expects a function, got {f!r}")
        if schema is None:
            text = infer_schema(f, mutates_args=mutates_args)
        else:
            text = schema
        parsed = parse_schema(text, f"{ns}::{opname}")
        if parsed.name != f"{ns}::{opname}":
            raise ValueError(f"schema names {parsed.name!r} but the op is {ns}::{opname}")
        declared = set([mutates_args] if isinstance(mutates_args, str) else mutates_args)
        if schema is not None and declared != set(parsed.mutated_args):
            raise ValueError(
                f"{name}: mutates_args {sorted(declared)} disagrees with the schema's mutated "
                f"arguments {parsed.mutated_args}"
            )
        op = _define(parsed)
        result = CustomOpDef(op, f)
        result.register_kernel(device_types, f)
        return result

    return make(fn) if fn is not None else make


def define(qualname: str, schema: str, *, lib: Library | None = None, tags=()) -> None:
    """Define an operator from its schema, ``define("mylib::sin", "(Tensor x) -> Tensor")``."""
    split_qualname(qualname)
    parsed = parse_schema(schema, qualname)
    if parsed.name != qualname:
        raise ValueError(f"schema names {parsed.name!r} but define was asked for {qualname!r}")
    _define(parsed)
    if lib is not None:
        lib._defined.append(qualname)


def impl(qualname: Any, types: str | Sequence[str], func: Callable | None = None, *, lib=None):
    """Register ``func`` as the kernel of ``qualname`` for device ``types`` (``"cpu"``,
    ``"cuda"``, ``"default"`` or a dispatch key such as ``"CPU"``); decorator or call."""
    op = _resolve(qualname)

    def register(f: Callable) -> Callable:
        for t in [types] if isinstance(types, str) else types:
            _register(op, f, _KEYS.get(t, t.lower() if t != "default" else None))
        return f

    return register(func) if func is not None else register


def _register(op: _OpDef, fn: Callable, key: str | None) -> None:
    if not callable(fn):
        raise TypeError(f"{op.qualname}: the kernel must be callable, got {fn!r}")
    if key == "meta":
        op.fake = fn
    elif key == "composite":
        # its body is made of ember ops: autograd follows them, no registered backward needed
        op.kernels[None] = fn
        op.composite = fn
    elif key == "autograd":
        # an Autograd-key kernel redispatches below autograd (torch's dispatcher levels),
        # which ember does not have: it would call itself
        raise NotImplementedError(
            f"{op.qualname}: kernels for the Autograd dispatch keys are not supported; give the "
            "backward with ember.library.register_autograd(op, backward, setup_context=...)"
        )
    elif key in (None, "cpu", "cuda"):
        op.kernels[key] = fn
    else:
        raise ValueError(
            f"{op.qualname}: unknown dispatch key or device type {key!r} (expected one of "
            f"{', '.join(k for k in _KEYS if k)}, 'cpu', 'cuda', 'default')"
        )


def register_kernel(op: Any, device_types: str | Sequence[str] | None, func=None, *, lib=None):
    """``torch.library.register_kernel``: a kernel of ``op`` for ``device_types``."""
    o = _resolve(op)
    return CustomOpDef(o, lambda: None).register_kernel(device_types, func)


def register_fake(op: Any, func: Callable | None = None, /, *, lib=None, _stacklevel=1):
    """Register ``op``'s fake (meta) kernel: it builds outputs of the right shape and dtype
    with ``new_empty``/``empty_like`` from the inputs' metadata; decorator or call."""
    o = _resolve(op)

    def register(f: Callable) -> Callable:
        if not callable(f):
            raise TypeError(f"register_fake expects a function, got {f!r}")
        o.fake = f
        return f

    return register(func) if func is not None else register


def register_autograd(
    op: Any, backward: Callable, /, *, setup_context: Callable | None = None, lib=None
) -> None:
    """Give ``op`` a backward formula.

    Args:
        op: the operator (a :class:`CustomOpDef`, an op object or ``"ns::op"``).
        backward: ``backward(ctx, *grads)``, returning one gradient per input (``None`` for a
            non-Tensor input).
        setup_context: ``setup_context(ctx, inputs, output)``, run after the forward to save
            on ``ctx`` what ``backward`` needs.
        lib: accepted for PyTorch's signature; unused.
    """
    _resolve(op).set_autograd(backward, setup_context)


def register_vmap(op: Any, func: Callable | None = None, /, *, lib=None):
    """Batch ``op`` under ``ember.func.vmap`` with ``func(info, in_dims, *args)``, which returns
    ``(output, out_dims)``; without one, vmap loops the op over the batch."""
    return CustomOpDef(_resolve(op), lambda: None).register_vmap(func)


def register_torch_dispatch(op: Any, torch_dispatch_class: type, func=None, *, lib=None):
    """Register ``func`` as ``op``'s rule under ``torch_dispatch_class``'s ``__torch_dispatch__``.

    Args:
        op: the operator, as a qualified name (``"mylib::foo"``) or an op object.
        torch_dispatch_class: the tensor subclass or dispatch mode the rule applies to.
        func: the rule, called as ``func(mode_or_subclass, op, types, args, kwargs)``; without
            it the call returns a decorator.
        lib: accepted for PyTorch's signature; unused.
    """
    o = _resolve(op)
    return CustomOpDef(o, lambda: None).register_torch_dispatch(torch_dispatch_class, func)


def fallthrough_kernel(*args, **kwargs):
    """PyTorch's marker kernel for a dispatch key that falls through to the next one.

    ember's dispatcher has no fall-through: registered with :meth:`Library.impl`, it raises
    ``NotImplementedError`` when the operator runs under that key.
    """
    raise NotImplementedError("fallthrough_kernel is a registration marker, not a kernel")


def get_ctx():
    """The context of a fake kernel (PyTorch's ``FakeImplCtx``, for data-dependent sizes).

    Raises ``NotImplementedError``: fake kernels run on meta tensors in ember, and output sizes
    that depend on the data (``ctx.new_dynamic_size()``) are not supported.
    """
    raise NotImplementedError(
        "ember.library.get_ctx: fake kernels run on meta tensors here; data-dependent output "
        "sizes (ctx.new_dynamic_size) are not supported"
    )


class Library:
    """``Library("mylib", "DEF" | "IMPL" | "FRAGMENT")``: define ops and register kernels."""

    _def_namespaces: set[str] = set()

    def __init__(self, ns: str, kind: str, dispatch_key: str = "") -> None:
        if kind not in ("DEF", "IMPL", "FRAGMENT"):
            raise ValueError(f"Library kind must be 'DEF', 'IMPL' or 'FRAGMENT', got {kind!r}")
        split_qualname(f"{ns}::x")
        if kind == "DEF":
            if ns in Library._def_namespaces:
                raise RuntimeError(
                    f"namespace {ns!r} already has a DEF library; use Library({ns!r}, "
                    "'FRAGMENT') to add operators to it"
                )
            Library._def_namespaces.add(ns)
        self.ns, self.kind, self.dispatch_key = ns, kind, dispatch_key
        self._defined: list[str] = []

    def __repr__(self) -> str:
        return f"Library(kind={self.kind}, ns={self.ns}, dispatch_key={self.dispatch_key})"

    def define(self, schema: str, alias_analysis: str = "", *, tags=()) -> str:
        """Define the operator ``schema`` (``"foo(Tensor x) -> Tensor"``) in this library's
        namespace and return its name.

        Args:
            schema: the operator's schema, without the namespace.
            alias_analysis: accepted for PyTorch's signature; unused.
            tags: accepted for PyTorch's signature; unused.

        Example::

            >>> lib = ember.library.Library("mylib", "FRAGMENT")
            >>> lib.define("twice(Tensor x) -> Tensor")
            'twice'
        """
        if self.kind == "IMPL":
            raise RuntimeError(f"Library({self.ns!r}, 'IMPL') cannot define operators")
        parsed = parse_schema(schema, f"{self.ns}::_")
        if parsed.name.split("::")[0] != self.ns:
            raise ValueError(f"schema {schema!r} is outside this library's namespace {self.ns!r}")
        _define(parsed)
        self._defined.append(parsed.name)
        return parsed.name.split("::")[1]

    def impl(self, op_name: Any, fn: Callable, dispatch_key: str = "", *, with_keyset=False):
        """Register ``fn`` as the kernel of ``op_name`` for ``dispatch_key``.

        Args:
            op_name: the operator, by name in this namespace (``"twice"``), qualified name
                (``"mylib::twice"``) or op object.
            fn: the kernel.
            dispatch_key: ``"CPU"``, ``"CUDA"``, ``"Meta"``, ``"Autograd"``, ...; defaults to
                the library's own key (``""``: every device).
            with_keyset: accepted for PyTorch's signature; unused.
        """
        if isinstance(op_name, str) and "::" not in op_name:
            op_name = f"{self.ns}::{op_name}"
        op = _resolve(op_name)
        key = dispatch_key or self.dispatch_key
        if key not in _KEYS:
            raise ValueError(
                f"{op.qualname}: unknown dispatch key {key!r} (known: "
                f"{', '.join(k for k in _KEYS if k)})"
            )
        _register(op, fn, _KEYS[key])

    def _destroy(self) -> None:
        """Remove the operators this library defined (tests re-define names)."""
        from ._namespace import namespace

        for q in self._defined:
            OPS.pop(q, None)
            ns, name = q.split("::")
            namespace(ns).__dict__.pop(name, None)
        self._defined.clear()
        if self.kind == "DEF":
            Library._def_namespaces.discard(self.ns)
