"""``ember.export.save`` / ``ember.export.load``: one safe file (see ``_archive.py``)."""

from __future__ import annotations

import os
from typing import IO

from ._archive import read_archive, write_archive
from .dynamic_shapes import InputGuards
from .exported_program import ExportedProgram
from .graph_signature import ExportGraphSignature

__all__ = ["save", "load"]


def save(ep: ExportedProgram, f: str | os.PathLike | IO[bytes]) -> None:
    """Write ``ep`` (graph JSON + safetensors weights + format version) to ``f``."""
    if not isinstance(ep, ExportedProgram):
        raise TypeError(f"ember.export.save expects an ExportedProgram, got {type(ep).__name__}")
    sig = ep.graph_signature
    program = {
        "signature": sig.to_json(),
        "guards": ep._guards.to_json(),
        "class_name": type(ep.graph_module).__name__,
        "state_dict": sorted(ep.state_dict),
        "constants": sorted(ep.constants),
    }
    write_archive(f, "export", ep.graph, program, {**ep.state_dict, **ep.constants})


def load(f: str | os.PathLike | IO[bytes], *, map_location=None) -> ExportedProgram:
    """Read a program written by :func:`save`. Needs neither the model's class nor its source,
    and runs no pickled code; a truncated, modified or version-mismatched file raises
    ValueError before anything runs."""
    from ember.fx import GraphModule
    from ember.nn import Parameter

    graph, program, tensors = read_archive(f, "export", map_location)
    try:
        sig = ExportGraphSignature.from_json(program["signature"])
        guards = InputGuards(program["guards"])
        params = set(sig.parameters)
        state = {
            k: Parameter(tensors[k]) if k in params else tensors[k] for k in program["state_dict"]
        }
        consts = {k: tensors[k] for k in program["constants"]}
        class_name = str(program.get("class_name", "GraphModule"))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"invalid export archive: bad program record ({e!r})") from None
    names = [n.name for n in graph.nodes if n.op == "placeholder"]
    if names != [s.arg.name for s in sig.input_specs]:
        raise ValueError("invalid export archive: the graph's inputs do not match its signature")
    gm = GraphModule({}, graph, class_name if class_name.isidentifier() else "GraphModule")
    return ExportedProgram(gm, sig, state, consts, guards, None)
