"""Capture: trace a Module's ``forward`` (or a function) into an ember.fx Graph for compile.

The capture is ember.fx's symbolic trace with a stricter Tracer. ember.fx records calls only
when a Proxy is among their arguments, and runs everything else once, at trace time. For a
compiler that would change results silently (a random tensor drawn once and frozen, an
optimizer step taken once), so while a compile trace runs:

- ember's random factories (``ember.randn(3)``, ...) are recorded even with no Proxy argument;
- in-place methods and ``backward`` on real tensors, ``Optimizer.step``/``zero_grad``,
  ``print``, ``.item()``/``.tolist()``/``.numpy()`` and functions marked with
  ``ember.compiler.disable`` raise :class:`GraphBreak` naming the user's line;
- every module is traced through (no ``call_module`` nodes) except ember.nn modules whose
  ``forward`` cannot be traced (Python control flow on shapes, as in LSTM): those are retried
  as leaves and called as modules when the graph runs.
"""

from __future__ import annotations

import builtins
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ember.fx import _patch
from ember.fx.graph import Graph
from ember.fx.tracer import Tracer
from ember.fx.tracer import _user_line as fx_user_line

from ._capture_util import (  # (re-exported: ember._compile._capture.signature_of, ...)
    _filled,
    _first_line,
    _is_builtin_module,
    _recording,
    _static_function_slots,
    _subclasses,
    closed_over_modules,
    signature_of,  # noqa: F401
)

__all__ = ["ForbiddenCallable", "GraphBreak", "Unsupported", "capture", "is_compiling"]

_RANDOM_FACTORIES = (
    "rand",
    "randn",
    "randint",
    "randperm",
    "rand_like",
    "randn_like",
    "randint_like",
    "normal",
    "bernoulli",
    "multinomial",
    "poisson",
)
# with static shapes a size is an int, so ``ember.zeros(x.size(0), 4)`` has no Proxy argument:
# recorded all the same, so each call gets a fresh tensor (never one constant shared by calls)
_SIZED_FACTORIES = ("zeros", "ones", "full", "empty", "arange", "eye", "linspace", "logspace")
_BREAK_METHODS = {
    "item": "Tensor.item() (a data-dependent Python scalar)",
    "tolist": "Tensor.tolist() (data-dependent Python values)",
    "numpy": "Tensor.numpy() (leaves ember for NumPy)",
    "backward": "Tensor.backward() inside the compiled region",
    "__array__": "conversion to a NumPy array",
}
_MAX_LEAF_RETRIES = 32
_compiling = 0
_allowed_in_graph: list[Callable] = []


class Unsupported(RuntimeError):
    """Raised by ``fullgraph=True`` (as torch._dynamo.exc.Unsupported) at a graph break."""


class GraphBreak(Exception):
    """Tracing met code that cannot be captured; ``reason`` says what and where."""

    def __init__(self, reason: str, user_stack: str = "") -> None:
        super().__init__(reason + user_stack)
        self.reason = reason
        where = user_stack.strip()
        if where.startswith("(at ") and where.endswith(")"):
            where = where[4:-1]
        self.user_stack = where  # "file:line: source"


class ForbiddenCallable(AssertionError):
    """A call that must not be traced (``set_stance`` in a compiled region): it ends the
    compile with this error instead of a graph break, as torch's AssertionError does."""

    def __init__(self, fn: Any) -> None:
        # the user's line: the innermost frame outside ember._compile, ember.fx, ember.compiler
        at = fx_user_line((*_SKIP_DIRS, _CORE_DIR + "/compiler.py")).strip()
        where = at[4:-1] if at.startswith("(at ") else ""
        tail = f"\n\nfrom user code:\n   {where}" if where else ""
        super().__init__(f"Attempt to trace forbidden callable {fn!r}{tail}")


_SKIP_DIRS = tuple(str(Path(__file__).resolve().parents[1] / d) for d in ("fx", "_compile"))
_CORE_DIR = str(Path(__file__).resolve().parents[1])


def _user_line(tb=None) -> str:
    """`` (at file:line: source)`` for the innermost frame outside ember.fx and ember._compile
    (of the traceback ``tb`` when given: its innermost frame outside ember, if any)."""
    frames = []
    if tb is not None:
        frames = [(f.filename, f.lineno, f.line) for f in traceback.extract_tb(tb)]
        outside = [fr for fr in frames if not fr[0].startswith(_CORE_DIR)]
        frames = outside or [fr for fr in frames if not fr[0].startswith(_SKIP_DIRS)]
        if not frames:
            return ""
        fname, lineno, src = frames[-1]
        return f" (at {fname}:{lineno}: {(src or '').strip()})"
    return fx_user_line(_SKIP_DIRS)


def is_compiling() -> bool:
    """True while ember.compile is tracing (torch.compiler.is_compiling)."""
    return _compiling > 0


class _CompileTracer(Tracer):
    """ember.fx's Tracer, with the strict rules of the module docstring."""

    proxy_buffer_attributes = True  # buffers read in forward (BatchNorm stats) become get_attr

    def __init__(
        self,
        leaves: set[str],
        extra_modules: dict[str, Any],
        examples: dict[str, Any] | None = None,
        guard_examples: dict[str, Any] | None = None,
    ) -> None:
        from ember.nn.attention.flex_attention import flex_attention

        # flex_attention is one opaque call of the graph (its band loop is data-dependent);
        # its score_mod/mask_mod/BlockMask arguments are constants (create_arg)
        super().__init__(autowrap_functions=(*_allowed_in_graph, flex_attention))
        self.record_stack_traces = True
        self._leaves = leaves
        self._extra_modules = extra_modules
        self._examples = examples  # None: sizes stay symbolic (dynamic shapes)
        self._static = None
        # symbolic sizes: the call's arguments, to turn control flow on a size into a guard
        self._guard_examples = guard_examples
        self.size_guards = None
        self._not_guardable: str | None = None  # why the last size expression had no guard

    def trace(self, root, concrete_args=None):
        if self._examples is not None or self._guard_examples is not None:
            from ember import Tensor

            # Tensor's methods as they are before the trace patches them (size evaluation
            # must call the real ones); the root module is set by ``trace``
            self._static_methods = dict(Tensor.__dict__)
        return super().trace(root, concrete_args)

    def concrete_meta(self, proxy, what: str, args: tuple):
        """Answer a Proxy's size query with the example's value (``_static.py``)."""
        if self._examples is None:
            from ember.fx.proxy import _NO_META

            if self._guard_examples is None:
                return _NO_META
            from ._guards import input_meta

            return input_meta(self._guard_examples, proxy, what)
        if self._static is None:
            from ._static import StaticShapes

            self._static = StaticShapes(self._examples, self.root, self._static_methods)
        return self._static.query(proxy, what, args)

    def _size_value(self, obj, kind: type):
        """``kind(obj)`` for a symbolic size expression: its value here, plus a guard."""
        from ._guards import NotGuardable, SizeGuards

        self._not_guardable = None
        if self._guard_examples is None:
            return None
        if self.size_guards is None:
            self.size_guards = SizeGuards(self._guard_examples, self.root, self._static_methods)
        try:
            return self.size_guards.value(obj.node, kind)
        except NotGuardable as e:
            self._not_guardable = str(e)
            return None

    def proxy(self, node):
        if self._guard_examples is None:
            return super().proxy(node)
        from ._guards import SizeProxy

        return SizeProxy(node, self)

    def to_bool(self, obj) -> bool:
        v = self._size_value(obj, bool)
        if v is None:  # a TraceError: an ember.nn module's forward is retried as a leaf
            from ember.fx.proxy import TraceError

            why = getattr(self, "_not_guardable", None)
            raise TraceError(
                "symbolically traced variables cannot be used as inputs to control flow"
                + (f" (not a guardable size expression: {why})" if why else "")
                + _user_line()
            )
        return v

    def is_leaf_module(self, m, module_qualified_name: str) -> bool:
        return module_qualified_name in self._leaves

    def create_arg(self, a: Any) -> Any:
        # a plain function (flex_attention's score_mod/mask_mod) or a BlockMask: a constant
        # of the graph, called at run time, unless its closure holds a value of the trace
        import types

        from ember.fx.proxy import Proxy
        from ember.nn.attention.flex_attention import BlockMask

        if isinstance(a, types.FunctionType):
            cells = [c.cell_contents for c in a.__closure__ or () if _filled(c)]
            if any(isinstance(c, Proxy) for c in cells):
                raise GraphBreak(
                    f"function {a.__qualname__} passed to a graph call closes over a traced value",
                    _user_line(),
                )
            return a
        if isinstance(a, BlockMask):
            return a
        return super().create_arg(a)

    def _index_root(self) -> None:
        for name, mod in self._extra_modules.items():  # modules a compiled function closes over
            self.root.add_module(name, mod)
        super()._index_root()

    def call_module(self, m, forward: Callable, args: tuple, kwargs: dict) -> Any:
        try:
            return super().call_module(m, forward, args, kwargs)
        except (GraphBreak, ForbiddenCallable):
            raise
        except Exception as e:  # innermost module first: the one whose forward failed
            if not hasattr(e, "_ember_module"):
                e._ember_module = (self.path_of_module(m), m)
            raise

    def create_proxy(
        self, kind, target, args, kwargs, name=None, type_expr=None, proxy_factory_fn=None
    ):
        if kind == "call_method" and target in _BREAK_METHODS:
            raise GraphBreak(_BREAK_METHODS[target], _user_line())
        if kind == "call_function" and getattr(target, "_ember_compile_disabled", False):
            raise GraphBreak(
                f"call to {target.__qualname__}, marked ember.compiler.disable", _user_line()
            )
        return super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)

    def _patch_all(self, patcher: _patch.Patcher, cache: dict, fn: Callable) -> None:
        super()._patch_all(patcher, cache, fn)
        import ember
        from ember import Tensor
        from ember._tensor_methods import METHODS

        tracer = self
        factories = _RANDOM_FACTORIES
        if self._examples is not None:
            factories += _SIZED_FACTORIES
        for name in factories:  # record even without a Proxy: never freeze a draw
            orig = getattr(ember, name, None)
            if orig is not None:
                orig = _patch._originals.get(id(orig), orig)
                patcher.set_attr(ember, name, _recording(tracer, orig))
        for name in list(METHODS) + ["backward", "__setitem__"]:
            if (name.endswith("_") and not name.endswith("__")) or name in (
                "backward",
                "__setitem__",
                "item",
                "tolist",
                "numpy",
            ):
                cur = Tensor.__dict__.get(name)
                if callable(cur):
                    patcher.set_attr(Tensor, name, _real_mutation_guard(name, cur))
        for cls, name, fn in _static_function_slots(self._autowrap_ids):
            # ``_fn = staticmethod(F.relu)`` holds the function itself, out of the patched
            # namespaces' reach: record it too, rather than tracing into it
            patcher.set_attr(cls, name, staticmethod(_patch.tracing_wrapper(fn)))
        patcher.set_attr(
            builtins, "print", _breaker("print() (a Python side effect)", builtins.print)
        )
        if self._guard_examples is not None:
            from ._guards import sym_min_max

            # ``max(x.size(1), 8)`` of symbolic sizes stays symbolic (torch's sym_max): no guard
            for name in ("min", "max"):
                patcher.set_attr(builtins, name, sym_min_max(tracer, getattr(builtins, name)))
        from ember.optim.optimizer import Optimizer

        for cls in _subclasses(Optimizer):
            for meth in ("step", "zero_grad"):
                if meth in cls.__dict__:
                    patcher.set_attr(
                        cls,
                        meth,
                        _breaker(
                            f"{cls.__name__}.{meth}() (optimizer updates run outside the graph)"
                        ),
                    )


def _breaker(reason: str, orig: Callable | None = None) -> Callable:
    owner = threading.get_ident()  # builtins are process-wide: other threads keep printing

    def fail(*args, **kwargs):
        if orig is not None and threading.get_ident() != owner:
            return orig(*args, **kwargs)
        raise GraphBreak(reason, _user_line())

    return fail


def _real_mutation_guard(name: str, method: Callable) -> Callable:
    # only real tensors reach here: a Proxy has its own methods. ember.fx's wrapper (``method``)
    # still records the call when a Proxy is among the arguments (``buf.copy_(proxy)``).
    def guarded(self, *args, **kwargs):
        if _patch._find_proxy(args, kwargs) is not None:
            return method(self, *args, **kwargs)
        what = (
            _BREAK_METHODS.get(name)
            or f"in-place Tensor.{name}() on a tensor that is not "
            "an input of the compiled region (its effect would happen only once)"
        )
        raise GraphBreak(what, _user_line())

    guarded.__name__ = name
    return guarded


def capture(
    root: Any,
    concrete_args: dict[str, Any],
    modules: dict[str, Any] | None = None,
    examples: dict[str, Any] | None = None,
    guard_examples: dict[str, Any] | None = None,
    guards: list | None = None,
) -> tuple[Graph, Any]:
    """Trace ``root`` (a Module or function); return ``(graph, tracer_root_module)``.

    ``modules``: Module arguments of a compiled function, installed (as the modules it closes
    over) on the trace's root so their parameters become ``get_attr`` nodes.
    ``examples``: the call's arguments by name: sizes become Python ints (static shapes);
    ``None`` keeps them symbolic.
    ``guard_examples``: with symbolic sizes, the call's arguments by name: Python control flow
    on a size takes its value on them and appends a guard (``_guards.py``) to ``guards``.
    Raises :class:`GraphBreak` when the code cannot be captured whole.
    """
    from ember.nn import Module

    global _compiling
    extra = {} if isinstance(root, Module) else {**closed_over_modules(root), **(modules or {})}
    leaves: set[str] = set()
    for _ in range(_MAX_LEAF_RETRIES):
        tracer = _CompileTracer(leaves, extra, examples, guard_examples)
        _compiling += 1
        try:
            graph = tracer.trace(root, concrete_args)
            sg = tracer.size_guards
            if sg is not None and sg.guards:
                from ._guards import drop_dead

                drop_dead(graph, sg.nodes)
                if guards is not None:
                    guards.extend(sg.guards)
            return graph, tracer.root
        except (GraphBreak, ForbiddenCallable):
            raise
        except Exception as e:
            where = getattr(e, "_ember_module", None)
            if (
                where is not None
                and _is_builtin_module(where[1])
                and where[0] not in leaves
                and where[0]
            ):
                leaves.add(where[0])  # an ember.nn module with Python control flow: a leaf
                continue
            msg = _first_line(e)
            raise GraphBreak(
                f"{type(e).__name__}: {msg}", "" if " (at " in msg else _user_line(e.__traceback__)
            ) from e
        finally:
            _compiling -= 1
    raise GraphBreak("too many untraceable ember.nn modules")
