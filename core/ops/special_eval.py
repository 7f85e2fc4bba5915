"""How the special-function ops evaluate: ``_ev`` calls ``scipy.special`` on CPU and
``cupyx.scipy.special`` on GPU (the host for functions CuPy lacks), in the dtype of its float
arguments; on tensors, during double backward (``create_graph=True``), it calls ember's own
differentiable special ops instead, so every backward written with it can be differentiated
again.
"""

from __future__ import annotations

import numpy as np


def _special_module(xp):
    """scipy.special, cupyx.scipy.special, or None when ``xp`` is ember's tensor namespace."""
    if xp is np:
        import scipy.special

        return scipy.special
    if getattr(xp, "__name__", "") == "cupy":
        import cupyx.scipy.special

        return cupyx.scipy.special
    return None


def _ev(xp, name: str, *args):
    """Special function ``name`` (scipy's name) of raw arrays, in the dtype of its float array
    arguments; of tensors (through ember's differentiable ops) during double backward."""
    mod = _special_module(xp)
    if mod is None:
        # the table of ember's ops is built where both families are (they import this module)
        from .special_binary import _TENSOR_SPECIAL

        return getattr(_TENSOR_SPECIAL, name)(*args)
    ref = next((a for a in reversed(args) if hasattr(a, "dtype") and a.dtype.kind in "fV"), None)
    dtype = ref.dtype if ref is not None else None
    if dtype is not None and dtype.kind == "V":  # bfloat16: scipy has no loop for it
        args = tuple(
            a.astype(np.float32) if hasattr(a, "dtype") and a.dtype == dtype else a for a in args
        )
    fn = getattr(mod, name, None)
    if fn is None:  # no GPU kernel for this one: evaluate on the host
        import scipy.special

        out = xp.asarray(
            getattr(scipy.special, name)(*(a.get() if hasattr(a, "get") else a for a in args))
        )
    else:
        out = fn(*args)
    out = xp.asarray(out)
    return out.astype(dtype, copy=False) if dtype is not None and out.dtype != dtype else out


def _not_implemented(name: str):
    raise NotImplementedError(f"the derivative for '{name}' is not implemented.")
