"""A compiled callable: guards, a cache of captured graphs, recompilation and graph breaks.

Each call computes a cache key from what the captured graph assumed (torch.compile's guards):
grad mode, the ``training`` flag of every module involved, and per argument its kind —
tensors by shape (or rank, once shapes are dynamic), dtype, device and ``requires_grad``;
Python scalars and strings by value (they are baked into the graph); modules by identity.
An entry also checks, per call, that every parameter and buffer it bound is still the one
installed on its module. A miss compiles a new entry, up to ``config.recompile_limit``; after
that the call runs eagerly (one warning). A graph break caches an entry for that key that runs
the call eagerly or split into graphs around the break (``_resume.py``): traced once.
"""

from __future__ import annotations

import collections
import logging
import sys
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from .._function_mode import _ACTIVE as _MODES
from . import _resume, _share, _stance
from ._artifact_logs import log_entry
from ._capture import GraphBreak, Unsupported, capture, is_compiling, signature_of
from ._cudagraph import CUDAGraphRunner
from ._cudagraph_train import training_runner
from ._executor import build, plan_inplace
from ._frame_keys import _SCALARS, _arg_key, _loosen, _on_cuda, _sym_shape  # noqa: F401
from ._fuse_conv import fuse_conv_pool_relu
from ._fuse_rnn import fuse_embedding_lstm
from ._gpu_codegen import fuse_elementwise
from ._guards import Guard, check_guards, duck_guards
from ._reorder import relu_after_max_pool
from ._static import _DIM_MARKS, _marked_dynamic

# ember._logging.set_logs(graph_breaks=True / recompiles=True / dynamo=logging.INFO) shows these
_breaks_log = logging.getLogger("ember._dynamo.graph_breaks")
_recompiles_log = logging.getLogger("ember._dynamo.recompiles")
_log = logging.getLogger("ember._dynamo")

__all__ = ["CompiledFunction", "config"]


class _Config:
    """``ember._dynamo.config`` (the knobs torch._dynamo.config has that apply here)."""

    recompile_limit: int = 8
    # accepted: ember's own autograd engine runs every backward (hooks included)
    compiled_autograd: bool = False
    accumulated_recompile_limit: int = 256
    verbose: bool = False
    # ember-only: rewrite ``lstm(embedding(ids))`` to project the table (see _fuse_rnn)
    fuse_embedding_rnn: bool = True
    # ember-only: ``relu(max_pool2d(conv2d(x), 2))`` as one channels-last Function (_fuse_conv)
    fuse_conv_pool: bool = True
    # ember-only: elementwise chains as generated CuPy kernels when compiled for CUDA inputs
    fuse_elementwise_gpu: bool = True

    # torch's older name for recompile_limit (tutorials still set it)
    @property
    def cache_size_limit(self) -> int:
        return self.recompile_limit

    @cache_size_limit.setter
    def cache_size_limit(self, value: int) -> None:
        self.recompile_limit = value


config = _Config()
# torch._dynamo.utils.counters (ember._dynamo.utils): "stats"/"unique_graphs" per capture
counters: collections.defaultdict = collections.defaultdict(collections.Counter)
_REGISTRY: weakref.WeakSet = weakref.WeakSet()
_HOOK_DICTS = (
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
)


class _Entry:
    __slots__ = ("fn", "source", "graph", "root", "attr_guards", "break_reason", "seconds")
    __slots__ += ("guards",)

    def __init__(self) -> None:
        self.fn = None
        self.source = ""
        self.graph = None
        self.root = None
        self.attr_guards: list = []
        self.break_reason: GraphBreak | None = None
        self.seconds = 0.0
        self.guards: list[Guard] = []  # on symbolic sizes (``_guards.py``)

    def valid(self) -> bool:
        for d, name, obj in self.attr_guards:
            if d.get(name) is not obj:
                return False
        return True


class CompiledFunction:
    """What ``ember.compile`` returns for a function (and runs inside an OptimizedModule)."""

    _sym_scalars: frozenset[str] = frozenset()

    def __init__(
        self,
        root: Any,
        *,
        fullgraph: bool = False,
        dynamic: bool | None = None,
        backend: str | Callable = "ember",
        mode: str | None = None,
    ) -> None:
        from ember.nn import Module

        from ._capture import closed_over_modules

        self._root = root
        self._is_module = isinstance(root, Module)
        self._sig = signature_of(root)
        self._fullgraph = fullgraph
        self._dynamic = dynamic
        self._backend = backend
        self._mode = mode
        mods = [root] if self._is_module else list(closed_over_modules(root).values())
        self._modules = [m for top in mods for m in top.modules()]
        self._hookable = root if self._is_module else None
        self._kinds = [p.kind for p in self._sig.parameters.values()]
        self._has_varkw = any(k == k.VAR_KEYWORD for k in self._kinds)
        self.reset()
        _REGISTRY.add(self)

    # ---- state --------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every compiled entry (``ember.compiler.reset``)."""
        # key -> entries, newest first; entries under one key differ by their size guards
        self._cache: dict[Any, list[_Entry]] = {}
        self._dynamic_shapes = self._dynamic is True
        self._auto_dynamic_failed = False  # a shape-generic capture broke: stay specialized
        self._compiles = 0
        self._own: set[tuple[str, int]] = set()  # dims whose duck-sizing guard failed
        self._warned = False
        self.break_reasons: list[GraphBreak] = []
        self.entries: list[_Entry] = []  # every entry compiled, in order (explain reads it)

    # ---- calling --------------------------------------------------------------------------
    def _eager(self, args: tuple, kwargs: dict) -> Any:
        return self._root(*args, **kwargs)

    def __call__(self, *args, **kwargs):
        if is_compiling() or self._has_varkw:  # inside another capture: trace straight through
            return self._eager(args, kwargs)
        if _MODES[0]:  # a TorchFunctionMode is active: it sees the ops run eagerly
            return self._eager(args, kwargs)
        if _stance.eager_now(self):  # ember.compiler.set_stance("force_eager"), ...
            return self._eager(args, kwargs)
        h = self._hookable
        if h is not None and any(getattr(h, d, None) for d in _HOOK_DICTS):
            return self._eager(args, kwargs)  # hooks on the compiled module itself run eagerly
        try:
            bound = self._sig.bind(*args, **kwargs)
        except TypeError:
            return self._eager(args, kwargs)  # let the function report its own error
        bound.apply_defaults()
        values = list(bound.arguments.values())
        key = self._key(values, self._dynamic_shapes)
        entry = self._lookup(key, values)
        if entry is None and self._dynamic_shapes and self._dynamic is None:
            # automatic dynamic: the shapes compiled before it went symbolic still match
            entry = self._lookup(self._key(values, False), values)
        if entry is None:
            entry = self._miss(key, values, bound)
            if entry is None:
                return self._eager(args, kwargs)
        if entry.fn is None:  # a graph break for this signature: eager
            return self._eager(args, kwargs)
        return entry.fn(*values)

    def _lookup(self, key: tuple, values: list) -> _Entry | None:
        env = None
        for e in self._cache.get(key, ()):
            if not e.valid():
                continue
            if e.guards:
                env = env or self._env(values)
                if check_guards(e.guards, env) is not None:
                    continue
            return e
        return None

    def _env(self, values: list) -> dict[str, Any]:
        return dict(zip(self._sig.parameters, values))

    def _key(self, values: list, dynamic: bool) -> tuple:
        from ember import is_grad_enabled

        return (
            is_grad_enabled(),
            tuple(m.training for m in self._modules),
            tuple(_arg_key(v, dynamic) for v in values),
        )

    def _miss(self, key: tuple, values: list, bound) -> _Entry | None:
        if _stance.eager_on_miss(self, lambda: self._why(values)):
            return None  # set_stance("eager_on_recompile")
        auto = False
        if (
            not self._dynamic_shapes
            and self._dynamic is None
            and self._cache
            and not self._auto_dynamic_failed
        ):
            # torch's automatic dynamic: a second shape for the same code makes shapes symbolic
            loose = self._key(values, True)
            if any(self._key_loose(k) == loose for k in self._cache):
                self._dynamic_shapes = auto = True
                exact, key = key, loose
                hit = self._lookup(key, values)
                if hit is not None:
                    return hit
        env = self._env(values)
        for e in self._cache.get(key, ()):  # a failed duck-sizing guard: that dim goes alone
            self._own.update(g.duck for g in e.guards if g.duck is not None and not g.holds(env))
        if self._compiles >= config.recompile_limit:
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"ember._dynamo hit config.recompile_limit ({config.recompile_limit})\n"
                    f"   function: {self._name()!r}\n"
                    f"   last reason: {self._why(values)}\n"
                    "Later new signatures run eagerly. To log all recompilation reasons, use "
                    "ember._logging.set_logs(recompiles=True); "
                    "ember._dynamo.config.recompile_limit raises the limit.",
                    stacklevel=3,
                )
            return None
        self._compiles += 1
        if self._compiles > 1:
            _recompiles_log.debug(
                "Recompiling function %s\n    triggered by the following guard failure(s):\n"
                "    - %s",
                self._name(),
                self._why(values),
            )
        _log.info("ember.compile: compiling %s (compile #%d)", self._name(), self._compiles)
        static = not self._dynamic_shapes and not any(_marked_dynamic(v) for v in values)
        entry = self._compile(values, bound, static, self._fullgraph and not auto)
        if auto and entry.break_reason is not None:
            # ember's symbolic sizes cannot express this code (a branch on a size): keep
            # specializing on each shape, as torch does for sizes it cannot make dynamic
            self._dynamic_shapes, self._auto_dynamic_failed = False, True
            self.break_reasons.remove(entry.break_reason)
            key = exact
            entry = self._compile(values, bound, True, self._fullgraph)
        # a size guard's miss adds an entry beside the others of this key
        self._cache[key] = [entry, *(e for e in self._cache.get(key, ()) if e.valid())]
        self.entries.append(entry)
        log_entry(self._name(), entry)  # set_logs(graph=True / output_code=True)
        return entry

    def _why(self, values: list) -> str:
        """The first guard of the newest entry that this call fails (torch's recompile log)."""
        from ember import is_grad_enabled

        if not self._cache:
            return "no compiled entry yet"
        for e in self._cache.get(self._key(values, self._dynamic_shapes), ()):
            failed = check_guards(e.guards, self._env(values)) if e.valid() else None
            if failed is not None:
                return f"size guard failed: {failed.text}"
        grad, training, args = next(reversed(self._cache))
        if grad != is_grad_enabled():
            return f"grad_mode changed (expected {grad})"
        if training != tuple(m.training for m in self._modules):
            return "a module's training flag changed"
        names = list(self._sig.parameters)
        for i, (old, v) in enumerate(zip(args, values)):
            new = _arg_key(v, self._dynamic_shapes)
            if old != new:
                name = names[i] if i < len(names) else f"args[{i}]"
                if old[0] == "T" and new[0] == "T":
                    what = ("size", "dtype", "device", "requires_grad")
                    for label, a, b in zip(what, old[1:], new[1:]):
                        if a != b:
                            return f"tensor '{name}' {label} mismatch: expected {a}, actual {b}"
                return f"'{name}' changed: expected {old}, actual {new}"
        return "a guard on bound parameters or buffers failed"

    def _key_loose(self, key: tuple) -> tuple:
        grad, training, args = key
        return grad, training, tuple(_loosen(a) for a in args)

    def _compile(self, values: list, bound, static: bool, fullgraph: bool) -> _Entry:
        from ember import Tensor, is_grad_enabled
        from ember.nn import Module

        entry = _Entry()
        t0 = time.perf_counter()
        concrete: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        # static shapes: sizes are the call's own ints (guarded by the exact-shape key)
        examples = dict(bound.arguments) if static else None
        # symbolic sizes: a branch on a size takes the call's value and guards it
        guard_examples = None if static else dict(bound.arguments)
        for (name, value), kind in zip(bound.arguments.items(), self._kinds):
            if kind in (kind.VAR_POSITIONAL, kind.VAR_KEYWORD):
                continue
            sym = name in self._sym_scalars  # a symbolic scalar input (_piece.py)
            if (type(value) in _SCALARS and not sym) or isinstance(value, Module):
                concrete[name] = value  # baked into the graph; the key holds the value/identity
                if isinstance(value, Module):
                    extra[name] = value
        share = _share.share_key(self, values, static, extra)
        shared = _share.lookup(share, self._root) if share is not None else None
        try:
            if shared is not None:  # another module of this structure was traced (_share.py)
                graph, guards = shared
                troot = self._root
                entry.guards.extend(guards)
                _log.info("ember.compile: %s reuses a graph captured before", self._name())
            else:
                graph, troot = capture(
                    self._root, concrete, extra, examples, guard_examples, entry.guards
                )
                if share is not None:
                    _share.store(share, graph, entry.guards)
        except GraphBreak as e:
            if fullgraph:
                where = f"\n  at {e.user_stack}" if e.user_stack else ""
                raise Unsupported(
                    f"ember.compile(fullgraph=True): graph break: {e.reason}{where}"
                ) from e
            entry.break_reason = e
            self.break_reasons.append(e)
            _breaks_log.debug(
                "Graph break in %s: %s%s",
                self._name(),
                e.reason,
                f"\n  at {e.user_stack}" if e.user_stack else "",
            )
            entry.fn = _resume.try_split(self, e)  # graphs around the break (_resume.py)
            entry.seconds = time.perf_counter() - t0
            return entry
        backend = self._backend
        if callable(backend):
            from ember.fx import GraphModule

            gm = GraphModule(troot, graph)
            examples = [v for v in values if isinstance(v, Tensor)]
            entry.fn = backend(gm, examples)
            _, entry.source, entry.attr_guards = build(graph, troot)
        else:
            if backend in ("ember", "inductor"):
                _custom_pass(graph, troot)
                relu_after_max_pool(graph)
                if config.fuse_conv_pool:
                    fuse_conv_pool_relu(graph, troot)
                if config.fuse_elementwise_gpu and _on_cuda(values):
                    fuse_elementwise(graph)
                if config.fuse_embedding_rnn:
                    fuse_embedding_lstm(graph, troot)
            optimise = backend in ("ember", "inductor") and not is_grad_enabled()
            entry.fn, entry.source, entry.attr_guards = build(
                graph, troot, plan_inplace(graph) if optimise else None
            )
        if self._mode == "reduce-overhead" and entry.fn is not None:
            # replays only on CUDA; with autograd on, forward and backward graphs
            entry.fn = (
                training_runner(self, entry, graph, troot)
                if is_grad_enabled()
                else CUDAGraphRunner(entry.fn)
            )
        if not static:
            entry.guards += duck_guards(dict(bound.arguments), self._symbolic_dims, self._own)
        entry.graph, entry.root = graph, troot
        entry.seconds = time.perf_counter() - t0
        counters["stats"]["unique_graphs"] += 1
        return entry

    def _symbolic_dims(self, t: Any) -> set[int]:
        if self._dynamic_shapes:
            # a nested tensor's ragged size (NestedInt) is not an int: no duck guard on it
            return {d for d, n in enumerate(t.shape) if type(n) is int and n >= 2}
        marks = _DIM_MARKS.get(id(t))
        return set(marks[1]) if marks is not None and marks[0]() is t else set()

    def _name(self) -> str:
        r = self._root
        return type(r).__name__ if self._is_module else getattr(r, "__qualname__", repr(r))


def reset_all() -> None:
    for cf in list(_REGISTRY):
        cf.reset()
    _share.reset()


def _custom_pass(graph: Any, troot: Any) -> None:
    # a program's ember._inductor.config.post_grad_custom_post_pass (a pattern matcher's)
    fn = getattr(sys.modules.get("ember._inductor.config"), "post_grad_custom_post_pass", None)
    if callable(fn):
        from ember._inductor.pattern_matcher import run_custom_pass

        run_custom_pass(fn, graph, troot)
