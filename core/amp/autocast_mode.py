"""``ember.autocast`` / ``ember.amp.autocast``: mixed-precision regions with torch's cast policy.

Inside an enabled region, the ops listed in ``_policy.py`` cast their floating inputs: matmul,
linear, conv and attention run in the region's dtype (float16 or bfloat16), losses, norms and
reductions in float32, and mixed-dtype ops such as ``cat`` in the widest input dtype. Casts are
ordinary graph nodes, so gradients reach each parameter in its own dtype. State is process-wide
(PyTorch keeps it per thread).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from typing import Any

from ..backend.dtype import bfloat16, float16, float32
from ..backend.dtype import dtype as _dtype
from . import _state

__all__ = ["autocast", "custom_fwd", "custom_bwd", "is_autocast_available"]

_SUPPORTED = ("cpu", "cuda")
# torch's other autocast device types, with torch's default dtypes: ember has no such device,
# so their autocast is never on, but asking about it is not an error (kornia asks about "mps")
_OTHER = {"mps": float16, "xpu": float16, "hpu": bfloat16, "xla": bfloat16, "ipu": float16}


def is_autocast_available(device_type: str) -> bool:
    """Whether autocast knows ``device_type`` (``"cpu"`` and ``"cuda"`` in ember)."""
    return device_type in _SUPPORTED


def _check_device(device_type) -> str:
    if not isinstance(device_type, str):
        raise ValueError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
    if device_type not in _SUPPORTED:
        raise RuntimeError(f"User specified an unsupported autocast device_type '{device_type}'")
    return device_type


# ---- torch.* state functions ------------------------------------------------------------------
def is_autocast_enabled(device_type: str | None = None) -> bool:
    """Whether autocast is on for ``device_type`` (no argument: CUDA, as torch's)."""
    if device_type in _OTHER:
        return False
    return _state.DEVICES[_check_device(device_type or "cuda")][0]


def set_autocast_enabled(device_type: str, enabled: bool | None = None) -> None:
    """Turn autocast on or off for ``device_type`` (``"cpu"`` or ``"cuda"``), as entering an
    :class:`~ember.autocast` region does. The legacy one-argument form
    ``set_autocast_enabled(True)`` means CUDA.
    """
    if enabled is None:  # torch's legacy one-argument form: set_autocast_enabled(enabled)
        device_type, enabled = "cuda", device_type
    _state.DEVICES[_check_device(device_type)][0] = bool(enabled)
    _state.refresh()


def get_autocast_dtype(device_type: str) -> _dtype:
    """The lower-precision dtype autocast uses on ``device_type``."""
    if device_type in _OTHER:
        return _OTHER[device_type]
    return _state.DEVICES[_check_device(device_type)][1]


def set_autocast_dtype(device_type: str, dtype: _dtype) -> None:
    """Set the low-precision dtype autocast uses on ``device_type``: ``float16``, ``bfloat16`` or
    ``float32``.
    """
    if dtype not in (float16, bfloat16, float32):
        raise RuntimeError(
            f"Currently, AutocastCPU/CUDA only support float16, bfloat16 and "
            f"float32 as the autocast dtype, got {dtype}"
        )
    _state.DEVICES[_check_device(device_type)][1] = dtype


def is_autocast_cache_enabled() -> bool:
    """Whether autocast caches the low-precision copies of leaf parameters within a region
    (on by default).
    """
    return _state.CACHE_ENABLED[0]


def set_autocast_cache_enabled(enabled: bool) -> None:
    """Turn autocast's cache of low-precision parameter copies on or off."""
    _state.CACHE_ENABLED[0] = bool(enabled)


def clear_autocast_cache() -> None:
    """Drop the cached low-precision copies of parameters."""
    _state.CACHE.clear()


def is_autocast_cpu_enabled() -> bool:
    """Whether autocast is on for CPU (``is_autocast_enabled('cpu')``)."""
    return is_autocast_enabled("cpu")


def get_autocast_cpu_dtype() -> _dtype:
    """The autocast dtype for CPU (``get_autocast_dtype('cpu')``)."""
    return get_autocast_dtype("cpu")


def get_autocast_gpu_dtype() -> _dtype:
    """The autocast dtype for CUDA (``get_autocast_dtype('cuda')``)."""
    return get_autocast_dtype("cuda")


def set_autocast_cpu_enabled(enabled: bool) -> None:
    """Turn autocast on or off for CPU (``set_autocast_enabled('cpu', enabled)``)."""
    set_autocast_enabled("cpu", enabled)


def set_autocast_cpu_dtype(dtype: _dtype) -> None:
    """Set the autocast dtype for CPU (``set_autocast_dtype('cpu', dtype)``)."""
    set_autocast_dtype("cpu", dtype)


def set_autocast_gpu_dtype(dtype: _dtype) -> None:
    """Set the autocast dtype for CUDA (``set_autocast_dtype('cuda', dtype)``)."""
    set_autocast_dtype("cuda", dtype)


# ---- the context manager ----------------------------------------------------------------------
class autocast:
    r"""Run the ops of a region in mixed precision, as ``torch.autocast``.

    Args:
        device_type: ``"cuda"`` or ``"cpu"``: only tensors on that device type are cast.
        dtype: the lower-precision dtype (default: ``get_autocast_dtype(device_type)``, float16
            on CUDA and bfloat16 on CPU).
        enabled: ``False`` makes a region that runs everything in the inputs' own dtypes.
        cache_enabled: cache the low-precision copies of leaf parameters for the outermost
            region (default: ``is_autocast_cache_enabled()``).

    Usable as a context manager or a decorator; regions nest. Run ``backward()`` outside the
    region: backward ops run in the dtype their forward ops used.
    """

    def __init__(
        self,
        device_type: str,
        dtype: _dtype | None = None,
        enabled: bool = True,
        cache_enabled: bool | None = None,
    ):
        self.device = _check_device(device_type)
        self.fast_dtype = get_autocast_dtype(self.device) if dtype is None else dtype
        self._cache_enabled = (
            is_autocast_cache_enabled() if cache_enabled is None else cache_enabled
        )
        if enabled:
            if self.device == "cuda":
                from .. import cuda

                if not cuda.is_available():
                    warnings.warn(
                        "CUDA is not available or torch_xla is imported. Disabling autocast.",
                        stacklevel=2,
                    )
                    enabled = False
                elif self.fast_dtype is bfloat16 and not cuda.is_bf16_supported():
                    raise RuntimeError(
                        "Current CUDA Device does not support bfloat16. Please "
                        "switch dtype to float16."
                    )
            if enabled and self.fast_dtype not in (bfloat16, float16):
                name = self.device.upper()
                warnings.warn(
                    f"In {name} autocast, but the target dtype is not supported. "
                    f"Disabling autocast.\n{name} Autocast only supports dtypes of "
                    "ember.bfloat16, ember.float16 currently.",
                    stacklevel=2,
                )
                enabled = False
        self._enabled = bool(enabled)

    def __enter__(self) -> autocast:
        state = _state.DEVICES[self.device]
        self.prev_cache_enabled = _state.CACHE_ENABLED[0]
        self.prev, self.prev_fastdtype = state[0], state[1]
        state[0] = self._enabled
        state[1] = self.fast_dtype
        _state.NESTING[0] += 1
        _state.CACHE_ENABLED[0] = self._cache_enabled
        _state.refresh()
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> bool:
        _state.NESTING[0] -= 1
        if _state.NESTING[0] == 0:  # the outermost region: drop the weight casts
            _state.CACHE.clear()
        state = _state.DEVICES[self.device]
        state[0], state[1] = self.prev, self.prev_fastdtype
        _state.CACHE_ENABLED[0] = self.prev_cache_enabled
        _state.refresh()
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def decorate_autocast(*args, **kwargs):
            with self:
                return func(*args, **kwargs)

        return decorate_autocast


# ---- custom autograd Functions ----------------------------------------------------------------
def _cast_arrays(value, device_type: str, dtype: _dtype):
    """Floating arrays of ``device_type`` in ``value`` cast to ``dtype`` (Function.forward gets
    arrays; the engine returns each gradient in its input's dtype). A user Function's
    forward gets tensors (autograd/_user_function.py): those are cast with ``.to``."""
    from ..tensor import Tensor

    if isinstance(value, Tensor):
        if value.is_floating_point() and value.device.type == device_type:
            return value.to(dtype)
        return value
    if (
        hasattr(value, "dtype")
        and hasattr(value, "astype")
        and getattr(value, "ndim", None) is not None
    ):
        if _state.is_float(value.dtype) and _state._device_type(value) == device_type:
            return value.astype(dtype.np) if value.dtype != dtype.np else value
        return value
    if type(value) in (list, tuple):
        return type(value)(_cast_arrays(v, device_type, dtype) for v in value)
    if type(value) is dict:
        return {k: _cast_arrays(v, device_type, dtype) for k, v in value.items()}
    return value


def custom_fwd(fwd=None, *, device_type: str, cast_inputs: _dtype | None = None):
    """Decorator for a custom ``Function.forward``: with ``cast_inputs``, inside an enabled
    autocast region its floating inputs are cast to ``cast_inputs`` and it runs with autocast
    off; outside one it is a no-op. Records the region's state for :func:`custom_bwd`."""
    if not isinstance(device_type, str):
        raise ValueError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
    if fwd is None:
        return functools.partial(custom_fwd, device_type=device_type, cast_inputs=cast_inputs)

    @functools.wraps(fwd)
    def decorate_fwd(*args, **kwargs):
        ctx = args[0]
        ctx._dtype = get_autocast_dtype(device_type)
        if cast_inputs is None:
            ctx._fwd_used_autocast = is_autocast_enabled(device_type)
            return fwd(*args, **kwargs)
        ctx._fwd_used_autocast = False
        if not is_autocast_enabled(device_type):
            return fwd(*args, **kwargs)
        with autocast(device_type=device_type, enabled=False):
            return fwd(
                ctx,
                *_cast_arrays(args[1:], device_type, cast_inputs),
                **_cast_arrays(kwargs, device_type, cast_inputs),
            )

    return decorate_fwd


def custom_bwd(bwd=None, *, device_type: str):
    """Decorator for a custom ``Function.backward``: runs it with the autocast state its
    forward ran under."""
    if not isinstance(device_type, str):
        raise ValueError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
    if bwd is None:
        return functools.partial(custom_bwd, device_type=device_type)

    @functools.wraps(bwd)
    def decorate_bwd(*args, **kwargs):
        ctx = args[0]
        with autocast(
            device_type=device_type,
            enabled=getattr(ctx, "_fwd_used_autocast", False),
            dtype=getattr(ctx, "_dtype", None),
        ):
            return bwd(*args, **kwargs)

    return decorate_bwd


def snapshot_autocast():
    """The autocast state active now, as a function returning a context manager that re-enters
    it: ``torch.utils.checkpoint`` recomputes a region in backward (outside the user's autocast
    block) under the state its forward ran with, and so does ``ember.utils.checkpoint``."""
    saved = [(dev, state[0], state[1]) for dev, state in _state.DEVICES.items()]
    cache = _state.CACHE_ENABLED[0]

    def enter() -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        for dev, enabled, dtype in saved:
            if enabled != _state.DEVICES[dev][0] or dtype is not _state.DEVICES[dev][1]:
                region = autocast.__new__(autocast)  # no availability checks: it ran before
                region.device, region.fast_dtype = dev, dtype
                region._enabled, region._cache_enabled = enabled, cache
                stack.enter_context(region)
        return stack

    return enter


def with_current_autocast(fn):
    """``fn`` wrapped to run under the autocast state active now (see ``snapshot_autocast``)."""
    enter = snapshot_autocast()

    def run(*args, **kwargs):
        with enter():
            return fn(*args, **kwargs)

    return run
