"""The repr of a sparse COO tensor, laid out as PyTorch's."""

from __future__ import annotations

import re

from .._repr import tensor_repr

# the inner tensors are shown without the attributes the outer repr states once
_INNER_EXTRAS = re.compile(r"(, (dtype|device)=[^,)]*)+\)$")


def _inner(t, indent: int) -> str:
    text = _INNER_EXTRAS.sub(")", tensor_repr(t.detach()))
    # blank lines between blocks stay empty (no indent), as torch prints them
    return "\n".join((" " * indent + line) if line else "" for line in text.split("\n")).lstrip()


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


_COMPRESSED_NAMES = {
    "sparse_csr": ("crow_indices", "col_indices"),
    "sparse_bsr": ("crow_indices", "col_indices"),
    "sparse_csc": ("ccol_indices", "row_indices"),
    "sparse_bsc": ("ccol_indices", "row_indices"),
}


def _add_suffixes(text: str, suffixes: list, indent: int) -> str:
    """torch's ``_add_suffixes``: each suffix on the last line while it fits in 80 columns."""
    parts = [text]
    last = len(text) - text.rfind("\n") + 1  # as torch counts it
    for suffix in suffixes:
        if last + len(suffix) + 2 > 80:
            parts.append(",\n" + " " * indent + suffix)
            last = indent + len(suffix)
        else:
            parts.append(", " + suffix)
            last += len(suffix) + 2
    return "".join(parts) + ")"


def compressed_repr(s) -> str:
    """``tensor(crow_indices=..., col_indices=..., values=..., size=..., nnz=...,
    layout=ember.sparse_csr)`` as PyTorch prints a compressed tensor."""
    cname, pname = _COMPRESSED_NAMES[s.layout.name]
    pad = " " * len("tensor(")
    text = "\n".join(
        [
            f"tensor({cname}=" + _inner(s._cidx, len(f"tensor({cname}=")) + ",",
            pad + f"{pname}=" + _inner(s._pidx, len(pad + f"{pname}=")) + ",",
            pad + "values=" + _inner(s._vals, len(pad + "values=")),
        ]
    )
    suffixes = [f"size={tuple(s.shape)}", f"nnz={s._nnz()}"]
    if s.dtype.name not in ("float32", "int64", "bool"):  # torch's defaults go unstated
        suffixes.append(f"dtype={s.dtype}")
    if s.device.type != "cpu":
        suffixes.append(f"device='{s.device}'")
    suffixes.append(f"layout=ember.{s.layout.name}")
    if s.grad_fn is not None:
        suffixes.append(f"grad_fn=<{s.grad_fn.name()}>")
    elif s.requires_grad:
        suffixes.append("requires_grad=True")
    return _add_suffixes(text, suffixes, len(pad))
