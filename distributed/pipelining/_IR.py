"""Automatic splitting: ``pipe_split()`` markers or a ``split_spec`` of ``SplitPoint``s, an
``ember.fx`` trace of the whole model, and one ``GraphModule`` per stage (``Pipe``).

The traced graph is cut at every ``pipe_split`` node. Each stage's module takes the values
that are live at its start (stage 0: the model's own arguments) and returns the values later
stages still need; values skipping a stage are passed through it. Parameters are shared with
the original model (stage modules hold the same submodules), so a stage's gradients land in
the original model's parameters under their original names.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import ember
from ember.fx import Graph, GraphModule, Node, Tracer
from ember.fx.node import map_arg
from ember.nn import Module
from ember.tensor import Tensor

from .stage import PipelineStage

__all__ = ["Pipe", "SplitPoint", "pipe_split", "pipeline"]

_TRACER: list = []  # the tracer of a running ``pipeline`` trace (pipe_split records into it)


def pipe_split() -> None:
    """Mark a stage boundary inside ``forward``; a no-op when the model runs eagerly."""
    if _TRACER:
        _TRACER[-1].create_proxy("call_function", pipe_split, (), {})


class SplitPoint(Enum):
    """Where ``split_spec`` cuts around a submodule: before it starts or after it ends."""

    BEGINNING = 1
    END = 2


class _PipeTracer(Tracer):
    def __init__(self, split_spec: dict[str, SplitPoint]) -> None:
        super().__init__()
        self.split_spec = split_spec
        self.seen: set[str] = set()

    def call_module(self, m, forward, args, kwargs):
        name = self.path_of_module(m)
        point = self.split_spec.get(name)
        if point is not None:
            self.seen.add(name)
        if point is SplitPoint.BEGINNING:
            pipe_split()
        out = super().call_module(m, forward, args, kwargs)
        if point is SplitPoint.END:
            pipe_split()
        return out


def _segments(graph: Graph) -> tuple[list[Node], list[list[Node]], Node]:
    placeholders, segs, output = [], [[]], None
    for n in graph.nodes:
        if n.op == "placeholder":
            placeholders.append(n)
        elif n.op == "output":
            output = n
        elif n.op == "call_function" and n.target is pipe_split:
            segs.append([])
        else:
            segs[-1].append(n)
    return placeholders, segs, output


def _uses(nodes: list[Node]) -> list[Node]:
    seen: dict[Node, None] = {}
    for n in nodes:
        map_arg((n.args, n.kwargs), lambda a: seen.setdefault(a, None))
    return list(seen)


def _split(root: Module, graph: Graph) -> list[GraphModule]:
    placeholders, segs, output = _segments(graph)
    if len(segs) == 1:
        raise ValueError("pipeline: found no split point (call pipe_split() or pass split_spec)")
    attr = {n for n in graph.nodes if n.op == "get_attr"}
    # get_attr nodes are copied into every segment that reads them rather than sent
    # a split at the very start or end (or two in a row) would make an empty stage: drop it
    segs = [c for c in ([n for n in s if n not in attr] for s in segs) if c]
    if len(segs) < 2:
        raise ValueError("pipeline: the split points leave fewer than 2 non-empty stages")
    owner = {n: -1 for n in placeholders}
    for k, s in enumerate(segs):
        owner.update(dict.fromkeys(s, k))
    order = {n: i for i, n in enumerate(graph.nodes)}
    num = len(segs)
    # live_in[k]: values defined before segment k and used by segment k or later (or output)
    used_from: list[set[Node]] = [set() for _ in range(num)]
    for k, s in enumerate(segs):
        used_from[k].update(u for u in _uses(s) if u not in attr)
    used_from[-1].update(u for u in _uses([output]) if u not in attr)
    live_in: list[list[Node]] = [list(placeholders)]
    later: set[Node] = set()
    for k in range(num - 1, 0, -1):
        later |= used_from[k]
        live_in.insert(1, sorted((u for u in later if owner[u] < k), key=order.__getitem__))
    mods = []
    for k, s in enumerate(segs):
        g, env = Graph(), {}
        for n in live_in[k]:
            env[n] = g.placeholder(n.name)

        def arg(a: Node, g=g, env=env) -> Node:
            if a not in env and a in attr:
                env[a] = g.get_attr(a.target)
            return env[a]

        for n in s:
            env[n] = g.node_copy(n, arg)
        if k == num - 1:
            g.output(map_arg(output.args[0], arg))
        else:
            outs = [arg(n) for n in live_in[k + 1]]
            if not outs:
                raise ValueError(f"pipeline: stage {k} passes nothing to stage {k + 1}")
            g.output(outs[0] if len(outs) == 1 else tuple(outs))
        g.lint()
        mods.append(GraphModule(root, g, f"PipeStage{k}"))
    return mods


class Pipe(Module):
    """The split model: ``split_gm.submod_<i>`` is stage ``i``'s module."""

    def __init__(self, split_gm: Module, num_stages: int) -> None:
        super().__init__()
        self.split_gm = split_gm
        self.num_stages = num_stages

    def get_stage_module(self, stage_idx: int) -> Module:
        if not 0 <= stage_idx < self.num_stages:
            raise ValueError(f"stage_idx {stage_idx} is out of range for {self.num_stages} stages")
        return getattr(self.split_gm, f"submod_{stage_idx}")

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the stages one after another in this process (the unsplit model's result)."""
        out = self.get_stage_module(0)(*args, **kwargs)
        for i in range(1, self.num_stages):
            out = self.get_stage_module(i)(*(out if isinstance(out, tuple) else (out,)))
        return out

    def build_stage(self, stage_index: int, device: Any, group: Any = None) -> PipelineStage:
        """The ``PipelineStage`` running stage ``stage_index`` on this rank."""
        return PipelineStage(
            self.get_stage_module(stage_index), stage_index, self.num_stages, device, group=group
        )


def pipeline(
    module: Module,
    mb_args: tuple,
    mb_kwargs: dict | None = None,
    split_spec: dict[str, SplitPoint] | None = None,
) -> Pipe:
    """Trace ``module`` with ``ember.fx`` and split it at its ``pipe_split()`` calls and at
    ``split_spec``'s submodules (``{"layers.2": SplitPoint.BEGINNING}``)."""
    if not isinstance(module, Module):
        raise TypeError(f"pipeline expects an ember.nn.Module, got {type(module).__name__}")
    split_spec = dict(split_spec or {})
    for name, point in split_spec.items():
        if not isinstance(point, SplitPoint):
            raise TypeError(f"split_spec[{name!r}] must be a SplitPoint, got {point!r}")
    names = dict(module.named_modules())
    missing = sorted(set(split_spec) - set(names))
    if missing:
        raise ValueError(f"split_spec names submodules that do not exist: {missing}")
    tracer = _PipeTracer(split_spec)
    _TRACER.append(tracer)
    try:
        graph = tracer.trace(module)
    finally:
        _TRACER.pop()
    n_in = sum(1 for n in graph.nodes if n.op == "placeholder")
    given = len(mb_args) + len(mb_kwargs or {})
    if given > n_in:
        raise ValueError(f"pipeline: mb_args/mb_kwargs give {given} inputs, forward takes {n_in}")
    never = sorted(set(split_spec) - tracer.seen)
    if never:
        raise ValueError(f"split_spec submodules never called in forward: {never}")
    mods = _split(module, graph)
    _check_boundaries(mods, tuple(mb_args), dict(mb_kwargs or {}))
    holder = Module()
    for i, m in enumerate(mods):
        holder.add_module(f"submod_{i}", m)
    return Pipe(holder, len(mods))


def _check_boundaries(mods: list[GraphModule], args: tuple, kwargs: dict) -> None:
    """Run the stages once on the example micro-batch: what crosses a cut must be tensors
    (it travels as messages)."""
    with ember.no_grad():
        out = mods[0](*args, **kwargs)
        for k in range(1, len(mods)):
            outs = out if isinstance(out, tuple) else (out,)
            names = [n.name for n in mods[k].graph.nodes if n.op == "placeholder"]
            for name, v in zip(names, outs):
                if not isinstance(v, Tensor):
                    raise TypeError(
                        f"pipeline: stage {k - 1} would send {name!r}, a "
                        f"{type(v).__name__}, to stage {k}; only tensors can cross a split "
                        "point (compute it after the split, or make it a tensor)"
                    )
            out = mods[k](*outs)
