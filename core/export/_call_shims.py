"""What the recording tracer does at a module call before tracing into it: a
``forward(*args, **kwargs)`` gets one named input per argument it was given, and a quantized
module is refused with an error that says what to do instead."""

from __future__ import annotations

import inspect

from ember.fx.proxy import TraceError

__all__ = ["_named_forward", "_refuse_quantized"]

_QUANTIZED_MODULES = ("ember.ao.nn.quantized", "ember.ao.nn.intrinsic.quantized")


def _refuse_quantized(tracer, m) -> None:
    if (type(m).__module__ or "").startswith(_QUANTIZED_MODULES):
        # int8 kernels over raw codes: nothing ember's graph ops could record or save
        raise TraceError(
            f"cannot record the quantized module {tracer.path_of_module(m)!r} "
            f"({m._get_name()}): its int8 kernels run outside ember's graph ops. "
            "Keep it eager, trace/export the float model, or export it with "
            "ember.onnx.export (QDQ ONNX for quantized Linear/Conv layers)"
        )


def _named_forward(root, params: list, bound, given: set | None = None):
    """A view of ``root`` whose forward names every input ``forward(*args, **kwargs)`` got:
    ``args_0, args_1, ...`` for the ``*args`` items and the keys of ``**kwargs`` (the
    "ExportHelper" wrappers of torch.export's tutorials). The view shares ``root``'s state.
    Trailing positional parameters the call left to their defaults (not in ``given``) are
    left out, as in the call itself: ``forward(tensordict=None, *args, **kwargs)`` called with
    keywords only must not receive ``None`` positionally (tensordict's dispatch)."""
    from ember.nn import Module

    pos, kw, flat = [], [], []  # (placeholder name, value)
    for p in params:
        v = bound.arguments[p.name]
        if p.kind is p.VAR_POSITIONAL:
            pos += [(f"{p.name}_{i}", e) for i, e in enumerate(v)]
        elif p.kind is p.VAR_KEYWORD:
            kw += list(v.items())
        elif p.kind is p.KEYWORD_ONLY:
            kw.append((p.name, v))
        else:
            pos.append((p.name, v))
    if given is not None:
        names = {p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD}
        while pos and pos[-1][0] in names and pos[-1][0] not in given:
            pos.pop()
    flat = pos + kw
    taken = {n for n, _ in pos}
    if any(n in taken for n, _ in kw):
        raise TypeError("tracing forward(*args, **kwargs): a keyword repeats a positional name")
    orig = type(root).forward
    n_pos, kw_names = len(pos), [n for n, _ in kw]

    def call(self, vals):
        return orig(self, *vals[:n_pos], **dict(zip(kw_names, vals[n_pos:])))

    # a fixed arity (a ``*vals`` function would get the tracer's one-Proxy varargs treatment)
    slots = ", ".join(f"_v{i}" for i in range(len(flat)))
    scope: dict = {"call": call}
    tail = "," if flat else ""
    exec(f"def forward(self, {slots}):\n    return call(self, ({slots}{tail}))", scope)
    forward = scope["forward"]

    P = inspect.Parameter
    forward.__signature__ = inspect.Signature(
        [P("self", P.POSITIONAL_OR_KEYWORD)] + [P(n, P.POSITIONAL_OR_KEYWORD) for n, _ in flat]
    )
    forward.__qualname__ = getattr(orig, "__qualname__", "forward")
    view = Module.__new__(type(type(root).__name__, (type(root),), {"forward": forward}))
    view.__dict__ = root.__dict__  # same parameters, buffers and submodules
    new_bound = forward.__signature__.bind(view, *[v for _, v in flat])
    del new_bound.arguments["self"]
    return view, new_bound
