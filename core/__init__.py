"""ember: PyTorch's API on NumPy (CPU) and CuPy (GPU).

``import ember as torch`` is the intended way to port a script. Importing ember never imports
Ray or gRPC: the distributed layer loads on first use of ``ember.distributed``.
"""

from __future__ import annotations

__version__ = "0.1.0"

# ruff: noqa: I001  (the order matters: Tensor, then the ops, then the method table)
from . import backend
from .backend import _malloc

_malloc.tune()  # reuse freed memory instead of re-faulting it every step (see _malloc.py)
from .backend.device import device
from .backend.dtype import (
    bfloat16,
    bool_ as bool,
    complex64,
    complex128,
    dtype,
    float16,
    float32,
    float64,
    get_default_dtype,
    int8,
    int16,
    int32,
    int64,
    promote_types,
    set_default_dtype,
    uint8,
)
from .backend.threads import get_num_threads, set_num_threads
from .tensor import Size, Tensor, is_tensor
from . import ops
from . import _tensor_methods  # binds the method table onto Tensor
from .ops import *  # noqa: F403  (the public op functions, PyTorch's names)
from .ops import abs, all, any, max, min, pow, round, sum  # shadow builtins, as torch does
from . import autograd, cuda, linalg, random
from .autograd import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .creation import (
    arange,
    as_tensor,
    bernoulli,
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    is_floating_point,
    linspace,
    logspace,
    multinomial,
    normal,
    numel,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randint_like,
    randn,
    randn_like,
    randperm,
    tensor,
    zeros,
    zeros_like,
)
from .random import (
    Generator,
    default_generator,
    get_rng_state,
    initial_seed,
    manual_seed,
    seed,
    set_rng_state,
)

half, double, short, long = float16, float64, int16, int64
cfloat, cdouble = complex64, complex128
float = float32  # noqa: A001 - PyTorch exports these names too
int = int32  # noqa: A001


def result_type(tensor1, tensor2):
    from .ops._util import result_dtype

    return result_dtype(tensor1, tensor2)



# torch.<name> spellings of nn.functional ops (torch.conv2d, torch.dropout, ...): resolved lazily
# because ember.nn loads on first use.
_FROM_FUNCTIONAL = {
    "softmax", "log_softmax",
    # <nn-aliases>
    # </nn-aliases>
}

# <misc>
# </misc>


def __getattr__(name):
    # Lazy subpackages: heavy or optional pieces load on first use (import ember stays fast).
    import importlib

    if name in ("nn", "optim", "utils", "distributed"):
        return importlib.import_module(f"ember.{name}")
    if name in ("save", "load", "save_safetensors", "load_safetensors"):
        from . import serialization

        return getattr(serialization, name)
    if name in _FROM_FUNCTIONAL:  # torch.softmax(input, dim, dtype=None), torch.conv2d, ...
        from .nn import functional

        return getattr(functional, name)
    raise AttributeError(f"module 'ember' has no attribute {name!r}")
