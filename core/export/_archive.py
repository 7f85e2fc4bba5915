"""The saved-program file shared by ``ember.export.save`` and ``ember.jit.save``.

One zip file::

    <kind>/header.json       {"format", "version", "ember_version", "sha256": {member: hex}}
    <kind>/graph.json        the fx graph (ember.fx.graph_to_json)
    <kind>/program.json      signature, guards, parameter/buffer roles
    <kind>/weights.safetensors

Loading checks, before anything is built: the zip is whole, the member list is exactly this,
every member's SHA-256 matches the header, the format version is this ember's, every
``call_function`` target resolves to one of ember's tensor functions (no file, seed or global
setting functions, no classes), ``builtins.getattr`` reads only public attributes,
``call_method`` names only public tensor methods and every ``get_attr`` names a saved tensor.
Nothing is unpickled, so a saved program can only ever run ember's own ops.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Callable
from typing import Any

__all__ = [
    "FORMAT_VERSION",
    "write_archive",
    "read_archive",
    "validate_graph",
    "register_safe_target",
]

FORMAT_VERSION = 1
_MEMBERS = ("graph.json", "program.json", "weights.safetensors")
# call_function targets allowed beyond ember's tensor functions (ember.jit.script's cond, ...)
_SAFE_EXTRA: dict[str, Callable] = {}
_SAFE_PREFIXES = (
    "ember.ops.",
    "ember.nn.functional.",
    "ember.nn.modules.",
    "ember.linalg.",
    "ember.fft.",
    "ember.special.",
)
_DENIED_WORDS = (
    "set_",
    "seed",
    "use_",
    "load",
    "save",
    "open",
    "file",
    "compile",
    "exec",
    "eval",
    "import",
    "hook",
    "register",
    "print",
)
_OPERATOR_OK = frozenset(
    {
        "add",
        "sub",
        "mul",
        "truediv",
        "floordiv",
        "mod",
        "pow",
        "matmul",
        "neg",
        "pos",
        "abs",
        "invert",
        "and_",
        "or_",
        "xor",
        "lshift",
        "rshift",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "getitem",
        "setitem",
        "not_",
        "truth",
        "contains",
        "iadd",
        "isub",
        "imul",
        "itruediv",
    }
)

_DUNDER_OK = frozenset(
    f"__{p}{n.rstrip('_')}__"
    for p in ("", "r", "i")
    for n in (
        "add",
        "sub",
        "mul",
        "truediv",
        "floordiv",
        "mod",
        "pow",
        "matmul",
        "and_",
        "or_",
        "xor",
        "lshift",
        "rshift",
    )
) | frozenset(
    f"__{n}__"
    for n in (
        "neg",
        "pos",
        "abs",
        "invert",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "getitem",
        "setitem",
        "len",
        "contains",
    )
)


def register_safe_target(name: str, fn: Callable) -> None:
    """Allow ``fn`` (named ``name`` in saved graphs) as a call_function target on load."""
    _SAFE_EXTRA[name] = fn


def _check_target_name(name: str) -> None:
    from ember.fx._names import _name_table

    if name in _SAFE_EXTRA:
        return
    head, _, rest = name.partition(".")
    if head == "operator":
        if rest in _OPERATOR_OK:
            return
        raise ValueError(f"operator.{rest} is not an allowed graph operation")
    if name == "builtins.getattr":
        return
    last = name.rsplit(".", 1)[-1].lower()
    if any(w in last for w in _DENIED_WORDS):
        raise ValueError(f"{name} is not a tensor operation")
    if name in set(_name_table().values()) or name.startswith(_SAFE_PREFIXES):
        return
    raise ValueError(f"{name} is not one of ember's tensor operations")


def validate_graph(graph, tensor_names: set[str]) -> None:
    """Reject a loaded graph that could do anything but run ember's tensor ops."""
    from ember import Tensor
    from ember.fx._names import target_name

    for n in graph.nodes:
        where = f"node {n.name!r}"
        if n.op == "call_function":
            name = target_name(n.target)
            _check_target_name(name)
            if isinstance(n.target, type):
                raise ValueError(f"{where}: {name} is a class, not an operation")
            if n.target is getattr:
                attr = n.args[1] if len(n.args) > 1 else None
                if not isinstance(attr, str) or attr.startswith("_"):
                    raise ValueError(
                        f"{where}: getattr of {attr!r} is not allowed (only public attributes)"
                    )
        elif n.op == "call_method":
            if (
                not isinstance(n.target, str)
                or not n.target.isidentifier()
                or (n.target.startswith("_") and n.target not in _DUNDER_OK)
            ):
                raise ValueError(f"{where}: method {n.target!r} is not allowed")
            if not (
                hasattr(Tensor, n.target)
                or n.target in ("keys", "values", "items", "index", "count")
            ):
                raise ValueError(f"{where}: {n.target!r} is not a Tensor method")
        elif n.op == "get_attr":
            sub = n.meta.get("subgraph")  # a cond/while_loop branch (fx/serialize.py)
            if sub is not None:
                validate_graph(sub, set())
            elif n.target not in tensor_names:
                raise ValueError(f"{where} reads {n.target!r}, which the file does not hold")
        elif n.op == "call_module":
            raise ValueError(
                f"{where}: call_module nodes cannot be loaded (export lowers modules to functions)"
            )
        elif n.op not in ("placeholder", "output"):
            raise ValueError(f"{where}: unknown opcode {n.op!r}")


def write_archive(f, kind: str, graph, program: dict, tensors: dict[str, Any]) -> None:
    """Write the zip described in the module docstring to a path or binary file."""
    from ember.fx import graph_to_json
    from ember.serialization import save_safetensors

    buf = io.BytesIO()
    plain = {k: v.detach() if v.requires_grad else v for k, v in tensors.items()}
    save_safetensors({k: v.contiguous() for k, v in plain.items()}, buf)
    members = {
        "graph.json": graph_to_json(graph).encode(),
        "program.json": json.dumps(program, sort_keys=True).encode(),
        "weights.safetensors": buf.getvalue(),
    }
    import ember

    header = {
        "format": f"ember.{kind}",
        "version": FORMAT_VERSION,
        "ember_version": ember.version.ember,
        "sha256": {k: hashlib.sha256(v).hexdigest() for k, v in members.items()},
    }
    if isinstance(f, (str, os.PathLike)):
        os.makedirs(os.path.dirname(os.path.abspath(f)), exist_ok=True)
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(f"{kind}/header.json", json.dumps(header, sort_keys=True))
        for k, v in members.items():
            z.writestr(f"{kind}/{k}", v)


def read_archive(f, kind: str, map_location=None):
    """Check and read an archive: returns ``(graph, program dict, {name: Tensor})``."""
    from ember.fx import graph_from_json
    from ember.serialization import load_safetensors

    what = f if isinstance(f, (str, os.PathLike)) else "the file"
    try:
        with zipfile.ZipFile(f) as z:
            names = set(z.namelist())
            want = {f"{kind}/header.json"} | {f"{kind}/{m}" for m in _MEMBERS}
            if names != want:
                other = "export" if kind == "jit" else "jit"
                if f"{other}/header.json" in names:
                    raise ValueError(
                        f"{what} was saved by ember.{other}.save; load it with ember.{other}.load"
                    )
                raise ValueError(
                    f"{what} is not an ember.{kind} archive (members: {sorted(names)[:6]})"
                )
            header = json.loads(z.read(f"{kind}/header.json"))
            data = {m: z.read(f"{kind}/{m}") for m in _MEMBERS}
    except zipfile.BadZipFile as e:
        raise ValueError(
            f"{what} is not a readable ember.{kind} archive (truncated or corrupted: {e})"
        ) from None
    except (zipfile.LargeZipFile, EOFError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{what} could not be read as an ember.{kind} archive: {e}") from None
    if not isinstance(header, dict) or header.get("format") != f"ember.{kind}":
        raise ValueError(f"{what}: header does not describe an ember.{kind} archive")
    if header.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{what} has format version {header.get('version')!r}; this ember "
            f"reads version {FORMAT_VERSION} (saved by ember "
            f"{header.get('ember_version')})"
        )
    digests = header.get("sha256") or {}
    for m, blob in data.items():
        if hashlib.sha256(blob).hexdigest() != digests.get(m):
            raise ValueError(
                f"{what}: {kind}/{m} does not match its checksum (the file was modified or damaged)"
            )
    try:
        graph = graph_from_json(data["graph.json"].decode(), extra_targets=_SAFE_EXTRA)
        program = json.loads(data["program.json"])
        dev = "cpu" if map_location is None else map_location
        tensors = load_safetensors(io.BytesIO(data["weights.safetensors"]), device=dev)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{what}: invalid {kind} archive contents: {e}") from None
    validate_graph(graph, set(tensors))
    return graph, program, tensors
