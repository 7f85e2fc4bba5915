"""The ``torch.*`` surface around the math (family ``misc``): layouts and memory formats,
constants, global switches (determinism, matmul precision, print options, warnings, anomaly),
``typename``/``can_cast``, and the legacy tensor types (``ember.FloatTensor`` ...).

Switches that have no effect on NumPy are recorded, readable, and documented as no-ops.
"""

from __future__ import annotations

import math
import warnings

# anomaly detection has one flag, kept by ember.autograd.anomaly_mode (detect_anomaly's)
from .autograd.anomaly_mode import (  # noqa: F401  (re-exported as ember.*)
    is_anomaly_check_nan_enabled,
    is_anomaly_enabled,
    set_anomaly_enabled,
)
from .autograd.grad_mode import is_inference_mode_enabled  # noqa: F401
from .backend.dtype import _BOOL, set_default_dtype, to_dtype
from .tensor import Tensor


# ---- layouts and memory formats ----------------------------------------------------------
class _NamedConstant:
    """A named singleton shown as ``ember.<name>``; it unpickles to the same object."""

    __slots__ = ("name",)
    _by_name: dict  # each subclass keeps its own instances, by name

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._by_name = {}

    def __init__(self, name: str):
        self.name = name
        type(self)._by_name[name] = self

    def __repr__(self) -> str:
        return f"ember.{self.name}"

    def __reduce__(self):
        return (_constant_by_name, (type(self), self.name))


def _constant_by_name(cls: type, name: str) -> _NamedConstant:
    return cls._by_name[name]


class layout(_NamedConstant):
    """A tensor memory layout; ember tensors are always ``ember.strided`` (dense)."""

    __slots__ = ()


#: The dense layout (and that of ``ember.nested`` tensors built with the default layout).
strided = layout("strided")
#: The jagged layout of ``ember.nested`` tensors: one ragged dimension, packed values + offsets.
jagged = layout("jagged")


class memory_format(_NamedConstant):
    """A memory format for ``.to``/``.contiguous``/``clone``/``is_contiguous``: ``channels_last``
    gives torch's NHWC strides (an NHWC array indexed NCHW); factories and ``*_like`` accept
    every format and return row-major arrays."""

    __slots__ = ()


#: Row-major (C-ordered) memory, the layout ember's ops produce.
contiguous_format = memory_format("contiguous_format")
#: NHWC order (``.contiguous``/``.to``/``clone``/``is_contiguous``, ``Module.to``).
channels_last = memory_format("channels_last")
#: NDHWC order, as ``channels_last`` for 5-D tensors.
channels_last_3d = memory_format("channels_last_3d")
#: Keep the input's memory format (``clone`` keeps ``channels_last``; others: row-major).
preserve_format = memory_format("preserve_format")


# ---- constants -----------------------------------------------------------------------------
newaxis = None
pi, e, inf, nan = math.pi, math.e, math.inf, math.nan

# What the NumPy/SciPy build provides (NumPy always has LAPACK and an FFT).
has_lapack = True
has_spectral = True
has_mkl = False  # ember's kernels are NumPy's (OpenBLAS in the wheels), never MKL directly
has_openmp = False


# ---- names and casting ---------------------------------------------------------------------
_LEGACY = {
    "float32": "FloatTensor",
    "float64": "DoubleTensor",
    "float16": "HalfTensor",
    "bfloat16": "BFloat16Tensor",
    "int64": "LongTensor",
    "int32": "IntTensor",
    "int16": "ShortTensor",
    "int8": "CharTensor",
    "uint8": "ByteTensor",
    "bool": "BoolTensor",
    "complex64": "ComplexFloatTensor",
    "complex128": "ComplexDoubleTensor",
}


def typename(obj) -> str:
    """``'ember.FloatTensor'`` for a tensor, else the object's qualified type name."""
    if isinstance(obj, Tensor):
        prefix = "ember." if obj.device.type == "cpu" else "ember.cuda."
        return prefix + _LEGACY.get(obj.dtype.name, obj.dtype.name)
    module, name = "", None
    if hasattr(obj, "__module__"):
        module = obj.__module__
    if hasattr(obj, "__qualname__"):
        name = obj.__qualname__
    elif hasattr(obj, "__name__"):
        name = obj.__name__
    else:
        module = obj.__class__.__module__
        name = obj.__class__.__qualname__
    if module in ("", "builtins"):
        return name
    return f"{module}.{name}"


def can_cast(from_, to) -> bool:
    """Whether PyTorch's casting rules allow ``from_`` to ``to`` (no lowering of category)."""
    a, b = to_dtype(from_), to_dtype(to)
    if a.category > b.category:
        return False
    return not (a.category != _BOOL and b.category == _BOOL)


# ---- default device and tensor type ------------------------------------------------------


def get_default_device():
    """The device new tensors are created on by default (``cpu`` unless changed)."""
    from .backend.device import default_device

    return default_device()


def set_default_device(device) -> None:
    """The device factories (``zeros``, ``randn``, ``tensor`` of Python data, ...) use when no
    ``device=`` is given; ``None`` restores ``cpu``."""
    from .backend.device import _DEFAULT
    from .backend.device import device as _device

    # kept unresolved ("cuda", not "cuda:0"): like torch, a CUDA default is accepted without
    # CUDA, and the factories that use it fail then
    if device is not None and not isinstance(device, _device):
        device = _device("cuda", device) if isinstance(device, int) else _device(device)
    _DEFAULT[0] = device


def set_default_tensor_type(t) -> None:
    """Deprecated PyTorch API: ``set_default_tensor_type(ember.DoubleTensor)`` or its name.
    Sets the default floating dtype."""
    warnings.warn(
        "torch.set_default_tensor_type() is deprecated as of PyTorch 2.1, please use "
        "torch.set_default_dtype() and torch.set_default_device() as alternatives.",
        UserWarning,
        stacklevel=2,
    )
    if isinstance(t, str):
        name = t.rsplit(".", 1)[-1]
        t = {v: k for k, v in _LEGACY.items()}.get(name)
        if t is None:
            raise TypeError(f"invalid type: '{name}'")
        t = to_dtype(t)
    else:
        t = getattr(t, "dtype", t)
    set_default_dtype(t)


# ---- global switches ----------------------------------------------------------------------
_flags = {
    "deterministic": False,
    "warn_only": False,
    "matmul_precision": "highest",
    "warn_always": False,
    "interop_threads": None,
}


def use_deterministic_algorithms(mode: bool, *, warn_only: bool = False) -> None:
    """Ask for deterministic algorithms. NumPy kernels are deterministic already; on CUDA the
    flag is read by ops whose CuPy kernels use atomics."""
    _flags["deterministic"] = bool(mode)
    _flags["warn_only"] = bool(warn_only)


def are_deterministic_algorithms_enabled() -> bool:
    """Whether :func:`use_deterministic_algorithms` turned deterministic mode on."""
    return _flags["deterministic"]


def is_deterministic_algorithms_warn_only_enabled() -> bool:
    """Whether deterministic mode only warns (``use_deterministic_algorithms(True,
    warn_only=True)``) instead of raising.
    """
    return _flags["warn_only"]


def deterministic_requested() -> bool:
    """What ops read: determinism asked for by ``use_deterministic_algorithms`` or by
    ``ember.backends.cudnn.deterministic`` (ember's CUDA kernels stand in for cuDNN's)."""
    from .backends import cudnn

    return _flags["deterministic"] or bool(cudnn.deterministic)


def set_deterministic_debug_mode(debug_mode: int | str) -> None:
    """0/"default": off, 1/"warn": warn-only, 2/"error": error (as PyTorch)."""
    if isinstance(debug_mode, str):
        modes = {"default": 0, "warn": 1, "error": 2}
        if debug_mode not in modes:
            raise RuntimeError(
                "invalid value of debug_mode, expected one of `default`, `warn`, "
                f"`error`, but got {debug_mode}"
            )
        debug_mode = modes[debug_mode]
    if debug_mode not in (0, 1, 2):
        raise RuntimeError(
            f"invalid value of debug_mode, expected 0, 1, or 2, but got {debug_mode}"
        )
    use_deterministic_algorithms(debug_mode != 0, warn_only=debug_mode == 1)


def get_deterministic_debug_mode() -> int:
    """The deterministic mode as a number: 0 off, 1 warn only, 2 raise (see
    :func:`set_deterministic_debug_mode`).
    """
    if not _flags["deterministic"]:
        return 0
    return 1 if _flags["warn_only"] else 2


def set_float32_matmul_precision(precision: str) -> None:
    """ "highest" (full float32), "high" or "medium" (TF32/bf16 allowed on CUDA). Shared with
    ``ember.backends.cuda.matmul.allow_tf32``; NumPy matmuls are always full precision."""
    if precision not in ("highest", "high", "medium"):
        raise RuntimeError(
            f"Invalid precision: {precision}. Valid options are 'highest', 'high', 'medium'"
        )
    _flags["matmul_precision"] = precision


def get_float32_matmul_precision() -> str:
    """The float32 matrix-product precision set by :func:`set_float32_matmul_precision`:
    ``"highest"`` (the default), ``"high"`` or ``"medium"``.
    """
    return _flags["matmul_precision"]


def set_warn_always(b: bool) -> None:
    """Warn every time instead of once (ember warns through Python's ``warnings`` module)."""
    _flags["warn_always"] = bool(b)
    if b:
        warnings.simplefilter("always", UserWarning)


def is_warn_always_enabled() -> bool:
    """Whether :func:`set_warn_always` asked for warnings on every occurrence."""
    return _flags["warn_always"]


def set_flush_denormal(mode: bool) -> bool:
    """Flushing denormals to zero is not controllable from NumPy: returns False (unsupported),
    as PyTorch does on CPUs without the feature."""
    return False


def get_num_interop_threads() -> int:
    """ember runs ops on one Python thread; the value set (or the core count) is reported."""
    import os

    n = _flags["interop_threads"]
    return n if n is not None else (os.cpu_count() or 1)


def set_num_interop_threads(num: int) -> None:
    """Record the number of inter-op threads. ember runs ops one at a time, so the value is
    only reported back, as PyTorch's would be.

    Raises:
        RuntimeError: ``num`` is not a positive integer.
    """
    if not isinstance(num, int) or num < 1:
        raise RuntimeError("Expected positive number of threads")
    _flags["interop_threads"] = num


def init_num_threads() -> None:
    """No-op: the thread pools are set up at import."""


def get_device_module(device=None):
    """The module for a device type: ``ember.cuda`` or ``ember.cpu``."""
    import importlib

    from .backend.device import device as _device

    if device is None:
        from .backend.device import is_available

        kind = "cuda" if is_available() else "cpu"
    elif isinstance(device, _device):
        kind = device.type
    else:
        kind = str(device).split(":")[0]
    if kind not in ("cpu", "cuda"):
        raise RuntimeError(
            f"Device '{kind}' does not have a corresponding module registered as 'ember.{kind}'."
        )
    return importlib.import_module(f"ember.{kind}")


def detach(input: Tensor) -> Tensor:
    """A new tensor sharing the data of ``input``, cut from the autograd graph; see
    :meth:`Tensor.detach`.
    """
    return input.detach()


def detach_(input: Tensor) -> Tensor:
    """Cut ``input`` from the autograd graph in place and return it; see :meth:`Tensor.detach_`."""
    return input.detach_()


def set_printoptions(
    precision: int | None = None,
    threshold: float | None = None,
    edgeitems: int | None = None,
    linewidth: int | None = None,
    profile: str | None = None,
    sci_mode: bool | None = None,
) -> None:
    """Set how tensors print (``repr``/``str``), as ``torch.set_printoptions``.

    Args:
        precision: digits after the decimal point (default 4).
        threshold: element count above which the output is summarised (default 1000).
        edgeitems: items shown at each end of a summarised dimension (default 3).
        linewidth: characters per line (default 80).
        profile: ``"default"``, ``"short"`` or ``"full"``; applied before the other arguments.
        sci_mode: force (True) or forbid (False) scientific notation; None chooses.
    """
    from ._repr import PRINT_OPTIONS as opts

    profiles = {
        "default": (4, 1000, 3, 80),
        "short": (2, 1000, 2, 80),
        "full": (4, math.inf, 3, 80),
    }
    if profile is not None:
        if profile not in profiles:
            raise ValueError(f"Unknown print profile {profile!r}")
        p = profiles[profile]
        opts.update(precision=p[0], threshold=p[1], edgeitems=p[2], linewidth=p[3])
    for key, value in (
        ("precision", precision),
        ("threshold", threshold),
        ("edgeitems", edgeitems),
        ("linewidth", linewidth),
    ):
        if value is not None:
            opts[key] = value
    opts["sci_mode"] = sci_mode
