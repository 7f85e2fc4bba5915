"""``ember.backends``: switches for the compute backends, with PyTorch's names.

Each submodule mirrors ``torch.backends.<name>``. ``is_available()`` answers truthfully for
ember (NumPy on the CPU, CuPy on CUDA). Flags that change what ember computes are read by the
ops (e.g. ``cudnn.deterministic`` joins ``ember.use_deterministic_algorithms``); the others are
recorded so that scripts setting them run unchanged, and are documented as no-ops on NumPy.
"""

from __future__ import annotations

import contextlib

from . import (  # noqa: F401
    cpu,
    cuda,
    cudnn,
    cusparselt,
    kleidiai,
    mha,
    miopen,
    mkl,
    mkldnn,
    mps,
    nnpack,
    openmp,
    opt_einsum,
    python_native,
    quantized,
)

__all__ = [
    "cpu",
    "cuda",
    "cudnn",
    "cusparselt",
    "kleidiai",
    "mha",
    "miopen",
    "mkl",
    "mkldnn",
    "mps",
    "nnpack",
    "openmp",
    "opt_einsum",
    "python_native",
    "quantized",
]


@contextlib.contextmanager
def flags_frozen():
    """Kept for PyTorch compatibility: ember's flags are plain attributes, never frozen."""
    yield


__allow_nonbracketed_mutation_flag = True


@contextlib.contextmanager
def __allow_nonbracketed_mutation():
    """torch's private guard around setting backend flags outside ``flags()`` (MONAI's
    ``set_determinism`` enters it); ember never freezes flags, so it only records the state."""
    global __allow_nonbracketed_mutation_flag
    old = __allow_nonbracketed_mutation_flag
    __allow_nonbracketed_mutation_flag = True
    try:
        yield
    finally:
        __allow_nonbracketed_mutation_flag = old


def set_flags_on(module, **values) -> dict:
    """Set attributes of a backend module, returning the previous values (for ``flags``)."""
    old = {k: getattr(module, k) for k in values}
    for k, v in values.items():
        if v is not None:
            setattr(module, k, v)
    return old
