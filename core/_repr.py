"""PyTorch-style ``repr`` for tensors: ``tensor([[1., 2.]], requires_grad=True)``."""

from __future__ import annotations

import numpy as np

from .backend.dtype import get_default_dtype

_PREFIX = "tensor("

# ember.set_printoptions writes these (see core/_torch_misc.py); PyTorch's defaults.
PRINT_OPTIONS = {
    "precision": 4,
    "threshold": 1000,
    "edgeitems": 3,
    "linewidth": 80,
    "sci_mode": None,
}


def _float_formatter(values: np.ndarray):
    p, sci = PRINT_OPTIONS["precision"], PRINT_OPTIONS["sci_mode"]
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return lambda x: _special(x) or f"{x:.{p}f}"
    ints = np.all(finite == np.round(finite))
    # Python floats: comparing a float16 array scalar with 1e8 would overflow in the cast
    # (the ratio test uses the non-zero values, as PyTorch's formatter does)
    nonzero = np.abs(finite[finite != 0])
    amax = float(np.abs(finite).max())
    amin = float(nonzero.min()) if nonzero.size else 0.0
    if sci is True:
        return lambda x: _special(x) or f"{x:.{p}e}"
    if ints:
        if amax >= 1e8 and sci is None:
            return lambda x: _special(x) or f"{x:.{p}e}"
        return lambda x: _special(x) or f"{x:.0f}."
    if sci is None and (amax >= 1e8 or (amin > 0 and (amax / amin > 1000 or amin < 1e-4))):
        return lambda x: _special(x) or f"{x:.{p}e}"
    return lambda x: _special(x) or f"{x:.{p}f}"


def _special(x) -> str | None:
    if np.isnan(x):
        return "nan"
    if np.isinf(x):
        return "inf" if x > 0 else "-inf"
    return None


def _format(data: np.ndarray, prefix: str = _PREFIX) -> str:
    if data.dtype.kind == "V":  # bfloat16 (ml_dtypes)
        data = data.astype(np.float32)
    opts = PRINT_OPTIONS
    summarize = data.size > opts["threshold"]
    edge = opts["edgeitems"]
    # as PyTorch, the format (fixed or scientific, the width) follows the values printed only
    shown = _summarized(data, edge) if summarize else data
    if data.dtype.kind == "f":
        fmt = _float_formatter(shown)
    elif data.dtype.kind == "b":

        def fmt(x):
            return "True" if x else "False"
    elif data.dtype.kind == "c":
        # as PyTorch: the real and imaginary parts each get their own float format
        fr, fi = _float_formatter(shown.real), _float_formatter(shown.imag)

        def fmt(x):
            imag = fi(x.imag)
            return fr(x.real) + ("" if imag[0] in "+-" else "+") + imag + "j"
    else:
        fmt = str
    if data.ndim == 0:
        return fmt(data.item() if data.dtype.kind != "f" else data)
    flat = shown.reshape(-1)
    if data.dtype.kind == "f":
        # PyTorch sizes the columns by the non-zero finite values only: zeros, inf and nan are
        # padded to that width but never widen it (``[[0., -inf], [0., 0.]]``)
        flat = flat[np.isfinite(flat) & (flat != 0)]
    width = max((len(fmt(x)) for x in flat), default=1 if data.dtype.kind == "f" else 0)

    def item(x):
        return fmt(x).rjust(width)

    return _nested(data, len(prefix), summarize, item, width)


def _summarized(data: np.ndarray, edge: int) -> np.ndarray:
    """The values a summarized print shows: ``edge`` items at each end of every long dim."""
    for dim, n in enumerate(data.shape):
        if n > 2 * edge:
            keep = np.r_[0:edge, n - edge : n]
            data = np.take(data, keep, axis=dim)
    return data


def _nested(data: np.ndarray, indent: int, summarize: bool, item, width: int) -> str:
    """PyTorch's layout (``torch/_tensor_str.py``): each innermost row wraps at
    ``(linewidth - indent) // (width + 2)`` items, closing brackets not counted; rows of a
    matrix are joined by a comma and a line break, matrices by one blank line more per dim."""
    edge = PRINT_OPTIONS["edgeitems"]
    n = data.shape[0]
    cut = summarize and n > 2 * edge
    if data.ndim == 1:
        per_line = max(1, (PRINT_OPTIONS["linewidth"] - indent) // (width + 2))
        if cut:
            cells = [item(x) for x in data[:edge]] + [" ..."] + [item(x) for x in data[-edge:]]
        else:
            cells = [item(x) for x in data]
        lines = [", ".join(cells[i : i + per_line]) for i in range(0, len(cells), per_line)]
        return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"
    rows = range(edge) if cut else range(n)
    parts = [_nested(data[i], indent + 1, summarize, item, width) for i in rows]
    if cut:
        parts.append("...")
        parts += [_nested(data[i], indent + 1, summarize, item, width) for i in range(n - edge, n)]
    return "[" + ("," + "\n" * (data.ndim - 1) + " " * (indent + 1)).join(parts) + "]"


def tensor_repr(t) -> str:
    if t.is_meta:
        return _meta_repr(t)
    d = t._data if type(t._data) is np.ndarray else t._data.get()
    # a user's Tensor subclass prints its name, as PyTorch's (``Meters([1., 2.])``)
    cls = type(t)
    internal = cls.__module__ == "ember" or cls.__module__.startswith("ember.")
    prefix = _PREFIX if internal else cls.__name__ + "("
    body = _format(d, prefix) if d.size or d.ndim == 0 else "[]"
    extras = []
    if t.device.type != "cpu":
        extras.append(f"device='{t.device}'")
    default_float = get_default_dtype().np
    default_complex = np.dtype(np.complex128 if default_float == np.float64 else np.complex64)
    default_dtypes = (default_float, np.dtype(np.int64), np.dtype(np.bool_), default_complex)
    if d.size == 0 and d.dtype in default_dtypes and d.shape != (0,):
        extras.append(f"size={tuple(d.shape)}")
    if d.dtype not in default_dtypes or (d.size == 0 and d.dtype != get_default_dtype().np):
        extras.append(f"dtype={t.dtype}")
    if t.grad_fn is not None:
        extras.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t.requires_grad:
        extras.append("requires_grad=True")
    return _add_suffixes(prefix + body, extras, len(prefix))


def _add_suffixes(text: str, suffixes: list[str], indent: int) -> str:
    """PyTorch's: a suffix that would pass the line width starts a line of its own."""
    parts = [text]
    last = len(text) - text.rfind("\n") + 1
    for suffix in suffixes:
        if last + len(suffix) + 2 > PRINT_OPTIONS["linewidth"]:
            parts.append(",\n" + " " * indent + suffix)
            last = indent + len(suffix)
        else:
            parts.append(", " + suffix)
            last += len(suffix) + 2
    return "".join(parts) + ")"


def _meta_repr(t) -> str:
    # torch: no values, the size always, the dtype unless it is the default float type
    extras = ["device='meta'", f"size={tuple(t._data.shape)}"]
    if t._data.dtype != get_default_dtype().np:
        extras.append(f"dtype={t.dtype}")
    if t.grad_fn is not None:
        extras.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t.requires_grad:
        extras.append("requires_grad=True")
    return _PREFIX + "..." + "".join(", " + e for e in extras) + ")"
