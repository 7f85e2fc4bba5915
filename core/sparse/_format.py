"""The repr of a sparse COO tensor, laid out as PyTorch's."""

from __future__ import annotations

import re

from .._repr import tensor_repr

# the inner tensors are shown without the attributes the outer repr states once
_INNER_EXTRAS = re.compile(r"(, (dtype|device)=[^,)]*)+\)$")


def _inner(t, indent: int) -> str:
    text = _INNER_EXTRAS.sub(")", tensor_repr(t.detach()))
    return text.replace("\n", "\n" + " " * indent)


def sparse_repr(s) -> str:
    head = "tensor(indices="
    pad = " " * len("tensor(")
    parts = [
        head + _inner(s._idx, len(head)) + ",",
        pad + "values=" + _inner(s._vals, len(pad + "values=")) + ",",
    ]
    tail = f"size={tuple(s.shape)}, nnz={s._nnz()}"
    if s.dtype.name not in ("float32", "int64", "bool"):  # torch's defaults go unstated
        tail += f", dtype={s.dtype}"
    if s.device.type != "cpu":
        tail += f", device='{s.device}'"
    tail += ", layout=ember.sparse_coo"
    if s.grad_fn is not None:
        tail += f",\n{pad}grad_fn=<{s.grad_fn.name()}>"
    elif s.requires_grad:
        tail += ", requires_grad=True"
    return "\n".join(parts) + "\n" + pad + tail + ")"
