"""``ExportedProgram``: a captured graph with its weights lifted to inputs (torch.export's)."""

from __future__ import annotations

import copy
from typing import Any

from ember.fx import Graph, GraphModule
from ember.fx.node import Node, map_aggregate

from .dynamic_shapes import InputGuards
from .graph_signature import ExportGraphSignature, InputKind

__all__ = ["ExportedProgram"]


class ExportedProgram:
    """A model captured by :func:`ember.export.export`.

    ``graph_module`` is functional: its placeholders are the lifted parameters, buffers and
    tensor constants (named ``p_*``, ``b_*``, ``c_*``) followed by the user inputs, as
    ``graph_signature`` describes. ``module()`` gives a callable Module that holds the weights
    and checks the input guards (``Dim`` ranges, static sizes) on every call.
    """

    def __init__(
        self,
        graph_module: GraphModule,
        graph_signature: ExportGraphSignature,
        state_dict: dict[str, Any],
        constants: dict[str, Any],
        guards: InputGuards,
        example_inputs: tuple | None = None,
    ) -> None:
        self._graph_module = graph_module
        self._graph_signature = graph_signature
        self._state_dict = state_dict
        self._constants = constants
        self._guards = guards
        self._example_inputs = example_inputs

    # ---- torch.export's attributes -------------------------------------------------------
    @property
    def graph_module(self) -> GraphModule:
        return self._graph_module

    @property
    def graph(self) -> Graph:
        return self._graph_module.graph

    @property
    def graph_signature(self) -> ExportGraphSignature:
        return self._graph_signature

    @property
    def state_dict(self) -> dict[str, Any]:
        return self._state_dict

    @property
    def constants(self) -> dict[str, Any]:
        return self._constants

    @property
    def example_inputs(self) -> tuple | None:
        return self._example_inputs

    @property
    def range_constraints(self) -> dict[str, tuple[int, int | None]]:
        """``{dim name: (min, max)}`` for every dynamic dimension (max None: unbounded)."""
        out = {}
        for rec in self._guards.inputs:
            for d in rec["dims"].values():
                d = d.get("root", d)  # a derived dim (dx + 1) constrains its root
                out[d["name"]] = (d["min"], d["max"])
        return out

    def parameters(self):
        yield from (v for k, v in self._state_dict.items() if k in self._graph_signature.parameters)

    def named_parameters(self):
        yield from (
            (k, v) for k, v in self._state_dict.items() if k in self._graph_signature.parameters
        )

    def buffers(self):
        for k in self._graph_signature.buffers:
            yield self._state_dict[k] if k in self._state_dict else self._constants[k]

    def __call__(self, *args, **kwargs):
        raise RuntimeError(
            "Unable to call ExportedProgram directly. You should use "
            "`exported_program.module()` instead."
        )

    def __str__(self) -> str:
        return (
            f"ExportedProgram:\n{self._graph_module.print_readable(print_output=False)}\n"
            f"Graph signature: {self._graph_signature}\n"
            f"Range constraints: {self.range_constraints}\n"
        )

    __repr__ = __str__

    # ---- running -------------------------------------------------------------------------
    def _lifted_values(self) -> list:
        vals = []
        for s in self._graph_signature.input_specs:
            if s.kind is InputKind.USER_INPUT:
                continue
            src = self._state_dict if s.target in self._state_dict else self._constants
            vals.append(src[s.target])
        return vals

    def module(self) -> GraphModule:
        """A GraphModule holding the weights (as ``get_attr``) that checks the input guards."""
        graph = Graph()
        env: dict[Node, Node] = {}
        sig = self._graph_signature
        lifted = {s.arg.name: s for s in sig.input_specs if s.kind is not InputKind.USER_INPUT}
        for n in self.graph.nodes:
            if n.op == "placeholder" and n.name in lifted:
                env[n] = graph.get_attr(lifted[n.name].target)
                env[n].meta = dict(n.meta)
            else:
                env[n] = graph.node_copy(n, lambda x: env[x])
        # get_attr nodes first (a placeholder after them keeps forward's signature intact)
        root: dict[str, Any] = {}
        for s in lifted.values():
            src = self._state_dict if s.target in self._state_dict else self._constants
            root[s.target] = src[s.target]
        gm = _GuardedModule(_module_tree(root, sig), graph, "GraphModule")
        gm.__dict__["_guards"] = self._guards
        gm.__dict__["_exported_program"] = self  # (aot_compile keeps the dynamic dims)
        gm.__dict__["_baked_inputs"] = getattr(self, "_baked_inputs", None)
        return gm

    def run_decompositions(self, decomp_table: dict | None = None) -> ExportedProgram:
        """A new program with ``decomp_table``'s decompositions applied (``{op: fn}``: each
        call of ``op`` is replaced by the ops ``fn`` runs), and Tensor-method calls
        normalized to ember's functions where one of the same name exists."""
        from .decompositions import decompose

        gm = decompose(self._graph_module, decomp_table or {})
        return ExportedProgram(
            gm,
            copy.deepcopy(self._graph_signature),
            self._state_dict,
            self._constants,
            self._guards,
            self._example_inputs,
        )

    def validate(self) -> None:
        """Check the graph against its signature (placeholders in order, known targets)."""
        names = [n.name for n in self.graph.nodes if n.op == "placeholder"]
        want = [s.arg.name for s in self._graph_signature.input_specs]
        if names != want:
            raise ValueError(f"graph placeholders {names} do not match the signature {want}")
        self.graph.lint()


class _GuardedModule(GraphModule):
    """``ExportedProgram.module()``: checks the export-time input guards, then runs."""

    def __call__(self, *args, **kwargs):
        guards: InputGuards = self.__dict__["_guards"]
        baked = self.__dict__.get("_baked_inputs")
        if baked and baked[1] and len(args) + len(kwargs) > len(guards.inputs):
            args, kwargs = _drop_baked(baked, guards, args, kwargs)
        if kwargs:  # bind by name, in the exported input order
            names = [r["name"] for r in guards.inputs]
            args = args + tuple(kwargs[n] for n in names[len(args) :] if n in kwargs)
            kwargs = {}
        guards.check(list(args))
        return super().__call__(*args, **kwargs)


def _drop_baked(baked, guards: InputGuards, args: tuple, kwargs: dict):
    """Take forward's whole argument list, as torch's unlifted module does: the Python values
    baked into the program must equal the export-time ones, and are then left out."""
    names, consts = baked
    if len(args) > len(names):
        return args, kwargs  # the guards name the count that was expected
    vals = dict(zip(names, args))
    vals.update(kwargs)
    for k, want in consts.items():
        got = vals.get(k, want)
        if not (got is want or (type(got) is type(want) and _equal(got, want))):
            i = names.index(k)
            raise AssertionError(
                f"Guard failed: input {k!r} (forward's argument {i}) was exported as the "
                f"constant {want!r}; got {got!r}. Export again to use another value"
            )
    keep = [r["name"] for r in guards.inputs]
    return tuple(vals[n] for n in keep if n in vals), {}


def _equal(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:  # (containers of tensors: not a constant match)
        return False


def _module_tree(root: dict[str, Any], sig: ExportGraphSignature):
    """A plain Module tree holding ``root``'s tensors at their dotted paths, registering
    parameters as Parameters and buffers as (non-)persistent buffers."""
    from ember.nn import Module, Parameter

    top = Module()
    persistent = {s.target: s.persistent for s in sig.input_specs if s.kind is InputKind.BUFFER}
    params = set(sig.parameters)
    for path, t in root.items():
        *prefix, field = path.split(".")
        m = top
        for p in prefix:
            if p not in m._modules:
                m.add_module(p, Module())
            m = m._modules[p]
        if path in params:
            m.register_parameter(field, t if isinstance(t, Parameter) else Parameter(t))
        elif path in persistent:
            m.register_buffer(field, t, persistent=persistent[path] is not False)
        else:
            setattr(m, field, t)
    return top


def flat_outputs(result: Any) -> list:
    out: list = []
    map_aggregate(result, lambda a: out.append(a) or a)
    return out
