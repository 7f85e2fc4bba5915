"""``ember._dynamo``: ``explain``, ``reset``, ``config``, ``exc``, ``graph_break``,
``compiled_autograd.enable`` and ``utils.counters`` (torch._dynamo's names)."""

from __future__ import annotations

import functools
import logging
import sys
import types
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ember._compile import OptimizedModule, Unsupported, config
from ember._compile._capture import GraphBreak
from ember._compile._frame import counters as _counters
from ember._compile._static import mark_dynamic, mark_static
from ember.compiler import allow_in_graph, disable, is_compiling, reset

__all__ = [
    "ExplainOutput",
    "OptimizedModule",
    "allow_in_graph",
    "assume_constant_result",
    "compiled_autograd",
    "config",
    "disable",
    "exc",
    "explain",
    "graph_break",
    "is_compiling",
    "mark_dynamic",
    "mark_static",
    "mark_static_address",
    "maybe_mark_dynamic",
    "reset",
    "same",
    "utils",
]

# ember makes a marked dim's capture shape-generic or, where it cannot, runs that call eagerly
maybe_mark_dynamic = mark_dynamic


def mark_static_address(t: Any, guard: bool = True) -> None:
    """Mark ``t``'s memory as fixed across calls (torch._dynamo.mark_static_address: a hint
    for CUDA graphs, which transformers gives its static KV cache). ember keeps no CUDA graphs
    of compiled code, so the hint is checked and has no effect."""
    from ember import Tensor

    if not isinstance(t, Tensor):
        raise TypeError(f"mark_static_address expects a tensor but received {type(t)}")


def assume_constant_result(fn: Callable) -> Callable:
    """torch._dynamo.assume_constant_result: in torch, the traced graph keeps ``fn``'s first
    result as a constant. ember's capture runs ``fn`` on every call instead, which gives the
    same results whenever the assumption holds (transformers marks its kernel probes so)."""
    return fn


def graph_break() -> None:
    """End the graph here (torch._dynamo.graph_break): inside ``ember.compile`` the code
    before and after it become separate graphs (when called from a top-level statement of
    the compiled function; elsewhere the call signature runs eagerly)."""
    from ember._compile._capture import _user_line
    from ember._compile._capture import is_compiling as capturing

    if capturing():  # (not while exporting: torch's non-strict export runs it as Python)
        raise GraphBreak("torch._dynamo.graph_break()", _user_line())


@contextmanager
def _compiled_autograd_enable(compiler_fn: Callable | None = None):
    """``torch._dynamo.compiled_autograd.enable(compiler_fn)``: ember's autograd engine runs
    the backward inside (eagerly, hooks included); accepted so programs run unchanged."""
    prev, config.compiled_autograd = config.compiled_autograd, True
    try:
        yield
    finally:
        config.compiled_autograd = prev


def same(ref: Any, res: Any, tol: float = 1e-4, equal_nan: bool = False, **_: Any) -> bool:
    """Whether ``res`` matches ``ref`` (torch._dynamo.utils.same): tensors within ``tol``
    (relative and absolute) with the same shape, containers item by item, the rest by ``==``;
    a mismatch is logged as torch does (``Accuracy failed: allclose not within tol=...``)."""
    from ember import Tensor, allclose

    if isinstance(ref, (list, tuple)):
        return (
            isinstance(res, (list, tuple))
            and len(ref) == len(res)
            and all(same(a, b, tol, equal_nan) for a, b in zip(ref, res))
        )
    if isinstance(ref, dict):
        return (
            isinstance(res, dict)
            and ref.keys() == res.keys()
            and all(same(ref[k], res[k], tol, equal_nan) for k in ref)
        )
    if isinstance(ref, Tensor):
        if not isinstance(res, Tensor) or tuple(ref.shape) != tuple(res.shape):
            return False
        a, b = ref.detach(), res.detach()
        if not a.is_floating_point():
            return bool((a == b).all())
        ok = allclose(a.double(), b.double(), rtol=tol, atol=tol, equal_nan=equal_nan)
        if not ok:
            logging.getLogger("ember._dynamo.utils").error(
                "Accuracy failed: allclose not within tol=%s", tol
            )
        return bool(ok)
    return bool(ref == res)


@functools.cache
def _warn_once(msg: str, stacklevel: int = 1) -> None:
    """Warn with ``msg`` the first time only (torch._dynamo.utils.warn_once; torchao's kernels)."""
    warnings.warn(msg, stacklevel=stacklevel + 1)


def _submodule(name: str, **attrs: Any) -> types.ModuleType:
    # ember._dynamo is one file: its torch submodules are registered so that
    # ``from torch._dynamo.utils import same`` ports as ``from ember._dynamo.utils import same``
    mod = types.ModuleType(f"{__name__}.{name}")
    mod.__dict__.update(attrs)
    sys.modules[mod.__name__] = mod
    return mod


# (torch 2.13 names it ``_enable``; the tutorial's ``enable`` is the older name)
compiled_autograd = _submodule(
    "compiled_autograd", enable=_compiled_autograd_enable, _enable=_compiled_autograd_enable
)
# torch._dynamo.utils.counters: counters["stats"]["unique_graphs"] counts captured graphs
utils = _submodule("utils", counters=_counters, same=same, warn_once=_warn_once)
# ``import torch._dynamo.config`` (litgpt's generate): the config object answers as that module
sys.modules[f"{__name__}.config"] = config


class TransformGetItemToIndex:
    """``with TransformGetItemToIndex(): vmap(fn)(...)``: in torch, a function mode that turns
    ``x[idx]`` with 0-d tensor indices into ``aten.index`` so that vmap can batch it
    (HuggingFace transformers builds its attention masks this way). ember's vmap batches
    tensor indexing itself, so the context changes nothing here (and costs no mode patching)."""

    def __enter__(self) -> TransformGetItemToIndex:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


# torch._dynamo.eval_frame.OptimizedModule: what compiling a Module returns (accelerate's
# is_compiled_module checks it)
eval_frame = _submodule("eval_frame", OptimizedModule=OptimizedModule)
_trace_wrapped_higher_order_op = _submodule(
    "_trace_wrapped_higher_order_op", TransformGetItemToIndex=TransformGetItemToIndex
)

exc = types.SimpleNamespace(Unsupported=Unsupported, GraphBreak=GraphBreak)


@dataclass
class GraphCompileReason:
    """Why a graph ended early (torch._dynamo.output_graph.GraphCompileReason)."""

    reason: str
    user_stack: list[str] = field(default_factory=list)
    graph_break: bool = True


@dataclass
class ExplainOutput:
    """What ``explain(fn)(*args)`` found (torch._dynamo.backends.debugging.ExplainOutput)."""

    graphs: list
    graph_count: int
    graph_break_count: int
    break_reasons: list[GraphCompileReason]
    op_count: int
    ops_per_graph: list[list[Any]] | None = None
    out_guards: list[str] | None = None
    compile_times: str | None = None

    def __str__(self) -> str:
        lines = [
            f"Graph Count: {self.graph_count}",
            f"Graph Break Count: {self.graph_break_count}",
            f"Op Count: {self.op_count}",
            "Break Reasons:",
        ]
        for i, r in enumerate(self.break_reasons, 1):
            lines.append(f"  Break Reason {i}:\n    Reason: {r.reason}")
            lines += [f"    User Stack:\n      {s}" for s in r.user_stack]
        lines.append("Ops per Graph:")
        for i, ops in enumerate(self.ops_per_graph or [], 1):
            lines.append(f"  Ops {i}:")
            lines += [f"    {op}" for op in ops]
        if self.compile_times:
            lines.append(f"Compile Times: {self.compile_times}")
        return "\n".join(lines) + "\n"


def explain(f: Callable, *extra_args: Any, **extra_kwargs: Any) -> Callable[..., ExplainOutput]:
    """``explain(fn)(*args, **kwargs)``: capture ``fn`` on these inputs (running it once) and
    report graphs, graph breaks and their reasons, op counts and guards."""
    from ember.fx import GraphModule
    from ember.fx._names import target_name

    from ._compile import _data_parallel_inner
    from ._compile._frame import CompiledFunction

    orig = getattr(f, "_torchdynamo_orig_callable", None) or getattr(f, "_orig_mod", None) or f
    # DDP/FSDP: their forward stays eager under compile; report the module they wrap
    inner_mod = _data_parallel_inner(orig)
    orig = orig if inner_mod is None else inner_mod

    def inner(*args: Any, **kwargs: Any) -> ExplainOutput:
        # a compiled callable's ``dynamic`` carries over: symbolic sizes report their guards
        state = getattr(f, "_ember_compiled", None) or getattr(f, "_compiled", None)
        cf = CompiledFunction(orig, backend="eager", dynamic=getattr(state, "_dynamic", None))
        cf(*args, **kwargs)
        graphs, ops_per_graph, reasons = [], [], []
        for e in cf.entries:
            if e.graph is not None:
                ops = [
                    n.target if n.op != "call_function" else target_name(n.target)
                    for n in e.graph.nodes
                    if n.op in ("call_function", "call_method", "call_module")
                ]
                if ops or not cf.break_reasons:  # torch compiles no empty piece of a split
                    graphs.append(GraphModule(e.root, e.graph))
                    ops_per_graph.append(ops)
            if e.break_reason is not None:
                br = e.break_reason
                why = getattr(br, "not_split", None)  # not split: the signature ran eagerly
                reasons.append(
                    GraphCompileReason(
                        br.reason + (f" (not split: {why})" if why else ""),
                        [br.user_stack] if br.user_stack else [],
                    )
                )
        guards = []
        if cf.entries:
            guards = [
                "grad_mode",
                "module.training (each module)",
                "tensor shape/dtype/device/requires_grad (each tensor input)",
                "parameter and buffer identity",
            ]
            # control flow on symbolic sizes: one guard per decision (torch's shape_env guards)
            guards += [f"size: {g.text}" for e in cf.entries for g in e.guards]
        times = ", ".join(f"{e.seconds * 1e3:.1f} ms" for e in cf.entries)
        return ExplainOutput(
            graphs,
            len(graphs),
            len(reasons),
            reasons,
            sum(map(len, ops_per_graph)),
            ops_per_graph,
            guards,
            f"capture+codegen: {times}" if times else None,
        )

    if extra_args or extra_kwargs:  # the old spelling explain(fn, *args)
        return inner(*extra_args, **extra_kwargs)
    return inner
