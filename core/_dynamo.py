"""``ember._dynamo``: ``explain``, ``reset``, ``config`` and ``exc`` (torch._dynamo's names)."""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ember._compile import Unsupported, config
from ember._compile._capture import GraphBreak
from ember._compile._static import mark_dynamic, mark_static
from ember.compiler import allow_in_graph, disable, is_compiling, reset

__all__ = [
    "ExplainOutput",
    "allow_in_graph",
    "config",
    "disable",
    "exc",
    "explain",
    "is_compiling",
    "mark_dynamic",
    "mark_static",
    "maybe_mark_dynamic",
    "reset",
]

# ember makes a marked dim's capture shape-generic or, where it cannot, runs that call eagerly
maybe_mark_dynamic = mark_dynamic

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
                graphs.append(GraphModule(e.root, e.graph))
                ops = [
                    n.target if n.op != "call_function" else target_name(n.target)
                    for n in e.graph.nodes
                    if n.op in ("call_function", "call_method", "call_module")
                ]
                ops_per_graph.append(ops)
            if e.break_reason is not None:
                br = e.break_reason
                reasons.append(
                    GraphCompileReason(br.reason, [br.user_stack] if br.user_stack else [])
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
