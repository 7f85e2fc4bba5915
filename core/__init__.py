"""ember: PyTorch's API on NumPy (CPU) and CuPy (GPU).

``import ember as torch`` is the intended way to port a script. Importing ember never imports
Ray or gRPC: the distributed layer loads on first use of ``ember.distributed``.
"""

from __future__ import annotations

__version__ = "2.13.0+ember.0.1.0"  # ember.version: the PyTorch API level + ember's release

# ruff: noqa: I001  (the order matters: Tensor, then the ops, then the method table)
from . import backend
from .backend import _malloc

_malloc.tune()  # reuse freed memory instead of re-faulting it every step (see _malloc.py)

from .backend import openblas_pool as _openblas_pool

_openblas_pool.quiet_on_import()  # OpenBLAS's idle workers sleep after ~1.6 ms, not ~0.1 s

from . import _numba_import_guard

_numba_import_guard.install()  # numba's lazy import survives a replaced builtins.print

import warnings as _warnings

# PyTorch gives inf / nan for 1/0, log(0), sqrt(-1) without a word; NumPy warns. Silence those
# warnings where ember's own code raised them (a filter costs nothing per op; np.errstate would).
_warnings.filterwarnings(
    "ignore", r"(divide by zero|invalid value|overflow) encountered", RuntimeWarning, r"ember(\.|$)"
)
from .backend.device import device
from .backend.dtype import (
    bfloat16,
    bool_ as bool,
    complex32,
    complex64,
    complex128,
    dtype,
    float8_e4m3fn,
    float8_e4m3fnuz,
    float8_e5m2,
    float8_e5m2fnuz,
    float8_e8m0fnu,
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
from .ops.segment import (  # torch.segment_reduce and the CSR index conversions
    _convert_indices_from_coo_to_csr,
    _convert_indices_from_csr_to_coo,
    _segment_reduce,
    segment_reduce,
)
from . import autograd, cuda, linalg, random

# <linalg_ext>
from . import fft  # noqa: E402  (ember.fft, torch.fft)

# </linalg_ext>
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

# <shape_ext>
from .creation_file import from_file
from .creation_ext import (
    _sample_dirichlet,
    _standard_gamma,
    asarray,
    binomial,
    empty_permuted,
    empty_strided,
    frombuffer,
    poisson,
    range,  # (shadows the builtin here, as torch.range does: use builtins.range below)
    resize_as_,
    scalar_tensor,
    tril_indices,
    triu_indices,
)

# </shape_ext>
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
cfloat, cdouble, chalf = complex64, complex128, complex32
float = float32  # noqa: A001 - PyTorch exports these names too
int = int32  # noqa: A001


def result_type(tensor1, tensor2):
    """The dtype that an arithmetic op on ``tensor1`` and ``tensor2`` returns, by PyTorch's
    promotion rules (Python scalars do not upcast a tensor's dtype within its kind).
    """
    from .ops._util import result_dtype

    return result_dtype(tensor1, tensor2)


# torch.<name> spellings of nn.functional ops (torch.conv2d, torch.dropout, ...): resolved lazily
# because ember.nn loads on first use.
_FROM_FUNCTIONAL = {
    "softmax",
    "log_softmax",
    # <nn-aliases>  (names in functional._toplevel.TORCH_SIGNATURES take ATen's signature)
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "convolution",
    "dropout",
    "dropout_",
    "alpha_dropout",
    "alpha_dropout_",
    "feature_dropout",
    "feature_dropout_",
    "feature_alpha_dropout",
    "feature_alpha_dropout_",
    "layer_norm",
    "batch_norm",
    "group_norm",
    "instance_norm",
    "rms_norm",
    "embedding",
    "embedding_bag",
    "prelu",
    "selu",
    "selu_",
    "celu",
    "celu_",
    "rrelu",
    "rrelu_",
    "threshold",
    "threshold_",
    "hardshrink",
    "relu_",
    "sigmoid_",
    "tanh_",
    "pixel_shuffle",
    "pixel_unshuffle",
    "channel_shuffle",
    "native_channel_shuffle",
    "cosine_similarity",
    "pairwise_distance",
    "pdist",
    "cdist",
    "bilinear",
    "kl_div",
    "binary_cross_entropy_with_logits",
    "cosine_embedding_loss",
    "hinge_embedding_loss",
    "margin_ranking_loss",
    "poisson_nll_loss",
    "triplet_margin_loss",
    "ctc_loss",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "max_pool1d_with_indices",
    "avg_pool1d",
    "adaptive_avg_pool1d",
    "adaptive_max_pool1d",
    "constant_pad_nd",
    "grid_sampler",
    "lstm",
    "gru",
    "rnn_tanh",
    "rnn_relu",
    "lstm_cell",
    "gru_cell",
    "rnn_tanh_cell",
    "rnn_relu_cell",
    # </nn-aliases>
}

# <misc>
# (the torch surface around the math: core/_torch_misc.py, _tensor_protocol.py, ...)
from .backend.dtype import uint16, uint32, uint64
from .backend.dtype import int1, int2, int3, int4, int5, int6, int7  # sub-byte: named only
from .backend.dtype import uint1, uint2, uint3, uint4, uint5, uint6, uint7
from .backend.finfo import finfo, iinfo
from ._tensor_protocol import (
    from_dlpack,
    get_device,
    is_complex,
    is_distributed,
    is_inference,
    is_nonzero,
    is_same_size,
    is_signed,
    to_dlpack,
)
from ._checks import (
    _assert,
    _assert_async,
    _check,
    _check_index,
    _check_is_size,
    _check_not_implemented,
    _check_type,
    _check_value,
    _check_with,
)
from ._sym import (
    OutOfMemoryError,
    SymBool,
    SymFloat,
    SymInt,
    sym_float,
    sym_int,
    sym_ite,
    sym_max,
    sym_min,
    sym_not,
    sym_sqrt,
    sym_sum,
)
from ._torch_misc import (
    are_deterministic_algorithms_enabled,
    can_cast,
    channels_last,
    channels_last_3d,
    contiguous_format,
    detach,
    detach_,
    e,
    get_default_device,
    get_deterministic_debug_mode,
    get_device_module,
    get_float32_matmul_precision,
    get_num_interop_threads,
    has_lapack,
    has_mkl,
    has_openmp,
    has_spectral,
    inf,
    init_num_threads,
    is_anomaly_check_nan_enabled,
    is_anomaly_enabled,
    is_deterministic_algorithms_warn_only_enabled,
    is_inference_mode_enabled,
    is_warn_always_enabled,
    jagged,
    layout,
    memory_format,
    nan,
    newaxis,
    pi,
    preserve_format,
    set_anomaly_enabled,
    set_default_device,
    set_default_tensor_type,
    set_deterministic_debug_mode,
    set_float32_matmul_precision,
    set_flush_denormal,
    set_num_interop_threads,
    set_printoptions,
    set_warn_always,
    strided,
    typename,
    use_deterministic_algorithms,
)
from ._legacy_types import (
    BFloat16Tensor,
    BoolTensor,
    ByteTensor,
    CharTensor,
    DoubleTensor,
    FloatTensor,
    HalfTensor,
    IntTensor,
    LongTensor,
    ShortTensor,
)
from . import accelerator, backends, cpu, functional, multiprocessing, testing
from . import torch_version, version
from .random import fork_rng
from ._higher_order import cond, while_loop  # noqa: E402  (torch.cond, torch.while_loop)
from . import sparse  # noqa: E402  (ember.sparse: the sparse COO layout, core/sparse/)
from .sparse import dsmm, sparse_coo, sparse_coo_tensor, spmm  # noqa: E402
from .sparse import (  # noqa: E402  (the compressed layouts, core/sparse/_compressed*.py)
    ccol_indices_copy,
    col_indices_copy,
    crow_indices_copy,
    indices_copy,
    row_indices_copy,
    sparse_bsc,
    sparse_bsc_tensor,
    sparse_bsr,
    sparse_bsr_tensor,
    sparse_compressed_tensor,
    sparse_csc,
    sparse_csc_tensor,
    sparse_csr,
    sparse_csr_tensor,
    values_copy,
)

__version__ = version.__version__
# </misc>

# <amp>  (mixed precision: core/amp/)
from .amp import GradScaler, autocast
from .amp.autocast_mode import (
    clear_autocast_cache,
    get_autocast_cpu_dtype,
    get_autocast_dtype,
    get_autocast_gpu_dtype,
    is_autocast_available,
    is_autocast_cache_enabled,
    is_autocast_cpu_enabled,
    is_autocast_enabled,
    set_autocast_cache_enabled,
    set_autocast_cpu_dtype,
    set_autocast_cpu_enabled,
    set_autocast_dtype,
    set_autocast_enabled,
    set_autocast_gpu_dtype,
)
# </amp>


# PyTorch's ``out=`` keyword on the top-level functions that lack one (core/_out_arg.py)
from ._out_arg import install as _install_out  # noqa: E402

_install_out(globals())
del _install_out

# ``__torch_function__`` on the rest of the public functions that take tensors (reshape,
# transpose, where ...): one generated test per tensor parameter (core/_torch_function.py)
from ._torch_function import install_namespace_dispatch as _install_tf  # noqa: E402

_install_tf(globals())
del _install_tf

_QUANTIZED = {
    "qint8",
    "quint8",
    "qint32",
    "quint4x2",
    "qscheme",
    "per_tensor_affine",
    "per_channel_affine",
    "per_tensor_symmetric",
    "per_channel_symmetric",
    "per_channel_affine_float_qparams",
    "quantize_per_tensor",
    "quantize_per_channel",
    "quantize_per_tensor_dynamic",
    "dequantize",
    "_make_per_tensor_quantized_tensor",
    "_make_per_channel_quantized_tensor",
    "fake_quantize_per_tensor_affine",
    "fake_quantize_per_channel_affine",
}


# TorchScript's scalar types (core/_script_types.py)
_script_types_names = frozenset(
    "BoolType ComplexType FloatType IntType NoneType NumberType StringType".split()
)


def __getattr__(name):
    # Lazy subpackages: heavy or optional pieces load on first use (import ember stays fast).
    import importlib

    if name in (
        "nn",
        "optim",
        "overrides",
        "utils",
        "distributed",
        "distributions",
        "special",
        "signal",
        "quasirandom",
        "func",
        "fx",
        "onnx",
        "jit",
        "export",
        "amp",
        "profiler",
        "serialization",
        "compiler",
        "_dynamo",
        "_export",
        "_compile",
        "_higher_order_ops",
        "_inductor",
        "_ops",
        "_subclasses",
        "_guards",
        "_tensor_str",
        "_utils",
        "_logging",
        "serve",
        "vision",
        "hub",
        "models",
        "nested",
        "masked",
        "library",
        "futures",
        "mps",
        "xpu",
        "__config__",
    ):
        return importlib.import_module(f"ember.{name}")
    if name == "_C":  # torch._C: its __torch_function__ switches (core/_C.py)
        return importlib.import_module("ember._C")
    if name in ("DisableTorchFunction", "DisableTorchFunctionSubclass"):
        return getattr(importlib.import_module("ember.overrides"), name)
    if name in ("ScriptModule", "ScriptFunction"):  # torch.ScriptModule is torch.jit's class
        return getattr(importlib.import_module("ember.jit"), name)
    if name == "types":  # torch.types' aliases (Number, Device, _size, ...), core/types.py
        return importlib.import_module("ember.types")
    if name == "TensorType":  # TorchScript's tensor type, named in annotations (core/jit/)
        return importlib.import_module("ember.jit._tensor_type").TensorType
    if name in _script_types_names:  # TorchScript's scalar types, named in checks
        return getattr(importlib.import_module("ember._script_types"), name)
    if name == "DeviceObjType":  # TorchScript's device type, named in annotations (as a class)
        return device
    if name == "PyTorchFileReader":  # torch.PyTorchFileReader (core/_pytorch_file.py)
        return importlib.import_module("ember._pytorch_file").PyTorchFileReader
    if name in ("UntypedStorage", "TypedStorage", "StorageBase"):  # (core/storage.py)
        from . import storage

        return getattr(storage, name)
    if name in ("Stream", "Event"):  # torch.Stream / torch.Event, device-generic (core/_streams.py)
        from . import _streams

        return getattr(_streams, name)
    if name == "Future":  # torch.Future is torch.futures.Future (Captum checks isinstance)
        return importlib.import_module("ember.futures").Future
    if name == "torch":  # torch.torch is torch itself (kornia writes torch.torch.Tensor)
        import sys

        return sys.modules[__name__]
    if name == "compile":  # torch.compile (core/_compile/)
        return importlib.import_module("ember._compile").compile
    if name == "vmap":  # torch.vmap: ember.func.vmap
        return importlib.import_module("ember.func").vmap
    if name in ("ao", "quantization"):  # ember.quantization: the legacy alias, as torch's
        return importlib.import_module(f"ember.{name}")
    if name in _QUANTIZED:  # ember.qint8, ember.quantize_per_tensor, ... (core/quantized.py)
        from . import quantized
        from .ops import quant_ops

        return getattr(quant_ops if name.startswith("fake_") else quantized, name)
    if name in ("save", "load", "save_safetensors", "load_safetensors"):
        from . import serialization

        return getattr(serialization, name)
    if name in _FROM_FUNCTIONAL:  # torch.softmax(input, dim, dtype=None), torch.conv2d, ...
        from .nn import functional
        from .nn.functional._toplevel import TORCH_SIGNATURES

        return TORCH_SIGNATURES.get(name) or getattr(functional, name)
    if name.startswith("_foreach_"):  # torch._foreach_add_, ... (core/_foreach.py)
        from . import _foreach

        if name in _foreach.__all__:
            return getattr(_foreach, name)
    if name.endswith("_copy"):  # torch.view_copy, torch.diagonal_copy, ...
        from .ops import view_copies

        fn = view_copies.get(name)
        if fn is not None:
            return fn
    raise AttributeError(f"module 'ember' has no attribute {name!r}")


# NumPy's axis=/keepdims= for dim/keepdim on Tensor methods and the linalg/special/fft functions,
# as torch's argument parser takes them (the ember.* wrappers above rename them themselves)
from . import _numpy_names, special  # noqa: E402

_numpy_names.install_methods(Tensor)
for _mod in (linalg, special, fft):
    _numpy_names.install_namespace(_mod)
del _mod

# einops: ember's backend is registered now if einops is loaded, else when it is (core/_einops.py)
from . import _einops

_einops.install()
# opt_einsum: ember's backend entry in its dispatch table, now or on import (core/_opt_einsum.py)
from . import _opt_einsum

_opt_einsum.install()
# torchrl: its compiled segment trees, in Python, when torch is ember (core/_torchrl_ext.py)
from . import _torchrl_ext

_torchrl_ext.install()
