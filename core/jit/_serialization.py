"""``ember.jit.save`` / ``ember.jit.load``: the safe archive of ember.export, for compiled
programs (graph JSON + safetensors + format version; nothing pickled)."""

from __future__ import annotations

import os
from typing import IO, Any

from ember.export._archive import read_archive, write_archive

from ._script_module import RecursiveScriptModule, ScriptFunction, ScriptModule

__all__ = ["save", "load"]


def save(
    m: ScriptModule | ScriptFunction,
    f: str | os.PathLike | IO[bytes],
    _extra_files: dict[str, Any] | None = None,
) -> None:
    """Save a traced/scripted module or function to ``f``.

    Only ``forward`` is saved (methods added by ``trace_module`` are not).
    """
    from ember.nn import Parameter

    if isinstance(m, ScriptModule) and m.__dict__.get("_legacy"):
        m = m._compiled()  # a pre-1.2 style subclass: compiled on first use
    if isinstance(m, ScriptFunction):
        gm, kind = m.graph_module, "function"
    elif isinstance(m, ScriptModule):
        gm, kind = m, "module"
    else:
        raise TypeError(
            f"ember.jit.save expects a ScriptModule or ScriptFunction (from "
            f"ember.jit.trace or ember.jit.script), got {type(m).__name__}"
        )
    tensors, params, buffers = dict(gm.named_parameters()), [], {}
    params = list(tensors)
    for name, mod in gm.named_modules():
        for k, b in mod._buffers.items():
            if b is not None:
                path = f"{name}.{k}" if name else k
                tensors[path] = b
                buffers[path] = k not in mod._non_persistent_buffers_set
    for n in gm.graph.nodes:
        if n.op == "get_attr" and n.target not in tensors:
            *prefix, field = n.target.split(".")
            owner = gm.get_submodule(".".join(prefix)) if prefix else gm
            value = getattr(owner, field)
            if n.meta.get("subgraph") is not None or _is_graph_module(value):
                continue  # a cond/while_loop branch: its graph is in the graph JSON
            tensors[n.target] = value
            if isinstance(value, Parameter):
                params.append(n.target)
            elif field in getattr(owner, "_buffers", {}):
                buffers[n.target] = field not in owner._non_persistent_buffers_set
    program = {
        "kind": kind,
        "name": type(gm).__name__ if kind == "module" else m.name,
        "training": bool(gm.training),
        "parameters": params,
        "buffers": buffers,
        "extra_files": {str(k): str(v) for k, v in (_extra_files or {}).items()},
        "modules": _submodule_names(gm) if kind == "module" else {},
    }
    write_archive(f, "jit", gm.graph, program, tensors)


def _submodule_names(gm) -> dict[str, str]:
    """``{path: original class name}`` of a traced/scripted module's submodules."""
    from ._submodules import TracedSubmodule

    return {p: m._get_name() for p, m in gm.named_modules() if p and isinstance(m, TracedSubmodule)}


def _is_graph_module(value: Any) -> bool:
    from ember.fx import GraphModule

    return isinstance(value, GraphModule)


def load(
    f: str | os.PathLike | IO[bytes], map_location=None, _extra_files: dict[str, Any] | None = None
):
    """Load what :func:`save` wrote: a ScriptModule (or ScriptFunction), without the model's
    class or source and without running pickled code. A truncated, modified or
    version-mismatched file raises ValueError before anything runs.

    A TorchScript archive written by PyTorch (``torch.jit.save``) loads too, as a
    :class:`~ember.jit._torchscript_module.TorchScriptModule` whose methods run the archive's
    TorchScript code on ember's operators (``core/jit/_torchscript_load.py``). That code is
    executed as ``torch.jit.load`` executes it (it is the model), in a namespace of aten ops
    and a few builtins; its pickles are read by the weights-only unpickler. Load such files
    only from sources you would run ``torch.jit.load`` on.
    """
    from ._torchscript_load import is_torchscript, load_torchscript

    if is_torchscript(f):
        return load_torchscript(f, map_location, _extra_files)
    from ember.export.exported_program import _module_tree
    from ember.export.graph_signature import ExportGraphSignature, InputKind, InputSpec

    graph, program, tensors = read_archive(f, "jit", map_location)
    try:
        kind = program["kind"]
        name = str(program["name"])
        specs = [InputSpec(InputKind.PARAMETER, None, k) for k in program["parameters"]]
        specs += [
            InputSpec(InputKind.BUFFER, None, k, bool(p)) for k, p in program["buffers"].items()
        ]
        extra = program.get("extra_files", {})
        training = bool(program.get("training", False))
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"invalid jit archive: bad program record ({e!r})") from None
    if _extra_files is not None:
        for k in list(_extra_files):
            _extra_files[k] = extra.get(k, "")
    name = name if name.isidentifier() else "ScriptModule"
    tree = _module_tree(tensors, ExportGraphSignature(specs, []))
    if kind == "function":
        from ember.fx import GraphModule

        return ScriptFunction(GraphModule(tree, graph, name), name)
    sm = RecursiveScriptModule(tree, graph, name)
    sm.train(training)
    modules = program.get("modules") or {}
    if isinstance(modules, dict):
        from ._submodules import apply_module_names

        apply_module_names(sm, {str(k): str(v) for k, v in modules.items()})
    return sm
