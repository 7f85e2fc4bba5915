"""``ember.nn.attention``: choose the scaled-dot-product-attention backends (``SDPBackend``,
``sdpa_kernel``); ``bias`` (causal variants) and ``flex_attention`` live in submodules.

ember has one attention implementation. It counts as MATH on every device and as
FLASH_ATTENTION on the CPU (like PyTorch's CPU flash kernel it is blocked over query rows for
long causal sequences). ``sdpa_kernel`` sets the same switches as the legacy
``ember.backends.cuda.enable_*_sdp`` / ``sdp_kernel``; restricting the backends to ones ember
cannot run on the input's device makes ``F.scaled_dot_product_attention`` raise PyTorch's
"No viable backend" error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from enum import IntEnum

from ...backends import cuda as _cuda

__all__ = [
    "SDPBackend",
    "sdpa_kernel",
    "WARN_FOR_UNFUSED_KERNELS",
    "register_flash_attention_impl",
    "activate_flash_attention_impl",
    "list_flash_attention_impls",
    "current_flash_attention_impl",
    "restore_flash_attention_impl",
]

#: PyTorch warns when a fused kernel cannot be used; ember has no fused kernel to warn about.
WARN_FOR_UNFUSED_KERNELS = False


class SDPBackend(IntEnum):
    """The implementations of scaled dot-product attention (PyTorch's values)."""

    ERROR = -1
    MATH = 0
    FLASH_ATTENTION = 1
    EFFICIENT_ATTENTION = 2
    CUDNN_ATTENTION = 3
    OVERRIDEABLE = 4


# backend -> key of the switch table in ember.backends.cuda
_KEYS = {
    SDPBackend.MATH: "math",
    SDPBackend.FLASH_ATTENTION: "flash",
    SDPBackend.EFFICIENT_ATTENTION: "mem_efficient",
    SDPBackend.CUDNN_ATTENTION: "cudnn",
    SDPBackend.OVERRIDEABLE: "overrideable",
}
_DEFAULT_PRIORITY = [
    SDPBackend.FLASH_ATTENTION,
    SDPBackend.EFFICIENT_ATTENTION,
    SDPBackend.MATH,
    SDPBackend.CUDNN_ATTENTION,
    SDPBackend.OVERRIDEABLE,
]
_priority: list[SDPBackend] = list(_DEFAULT_PRIORITY)


def _cur_sdpa_kernel_backends(with_priority: bool = False) -> list[SDPBackend]:
    """The backends enabled now (in priority order when ``with_priority``)."""
    order = _priority if with_priority else list(_KEYS)
    return [b for b in order if _cuda._sdp[_KEYS[b]]]


def _get_sdp_priority_order() -> list[int]:
    """The recorded backend priority order (ember runs its one implementation regardless)."""
    return [int(b) for b in _priority]


def _backend_list(backends) -> list[SDPBackend]:
    if isinstance(backends, SDPBackend):
        return [backends]
    ok = isinstance(backends, Iterable) and not isinstance(backends, (str, bytes))
    items = list(backends) if ok else None
    if items is None or not all(isinstance(b, SDPBackend) for b in items):
        raise AssertionError(
            "Backend must be an instance of SDPBackend or a list of SDPBackend instances, "
            f"got {type(backends).__name__}"
        )
    return items


@contextlib.contextmanager
def sdpa_kernel(
    backends: list[SDPBackend] | SDPBackend, set_priority: bool = False
) -> Iterator[None]:
    """Context manager (or decorator) that restricts which backends
    ``F.scaled_dot_product_attention`` may use.

    Args:
        backends: a backend or a list of backends to allow; every other one is disabled.
        set_priority: also record ``backends`` (in order) as the priority order; ember runs
            its one implementation, so the order has no further effect.

    Example::

        >>> from ember.nn.attention import SDPBackend, sdpa_kernel
        >>> with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.MATH]):
        ...     out = F.scaled_dot_product_attention(q, k, v)
    """
    global _priority
    wanted = set(_backend_list(backends))
    old_flags = dict(_cuda._sdp)
    old_priority = list(_priority)
    for backend, key in _KEYS.items():
        _cuda._sdp[key] = backend in wanted
    if set_priority:
        chosen = [b for b in _backend_list(backends) if b in _KEYS]
        _priority = chosen + [b for b in _priority if b not in chosen]
    try:
        yield
    finally:
        _cuda._sdp.update(old_flags)
        _priority = old_priority


def _sdpa_kernel_variadic(*backends: SDPBackend):
    """``sdpa_kernel`` taking the backends as positional arguments."""
    return sdpa_kernel(list(backends))


# PyTorch lets external flash-attention implementations (FA3, FA4) be registered and activated
# for CUDA; ember keeps a registry with the same calls, and the active name is only recorded.
_registry: dict[str, object] = {}
_active_impl: str | None = None


def register_flash_attention_impl(impl: str, *, register_fn) -> None:
    """Record ``register_fn`` as the flash-attention implementation named ``impl``."""
    if not callable(register_fn):
        raise TypeError(f"register_fn must be callable, got {type(register_fn).__name__}")
    _registry[impl] = register_fn


def list_flash_attention_impls() -> list[str]:
    """The names of the registered flash-attention implementations."""
    return sorted(_registry)


def activate_flash_attention_impl(impl: str) -> None:
    """Make the registered implementation ``impl`` the active one (recorded only)."""
    global _active_impl
    if impl not in _registry:
        raise ValueError(
            f"Unknown flash attention impl {impl!r}; registered: {list_flash_attention_impls()}"
        )
    _active_impl = impl


def current_flash_attention_impl() -> str | None:
    """The active flash-attention implementation's name, or ``None`` (the built-in one)."""
    return _active_impl


def restore_flash_attention_impl() -> None:
    """Go back to the built-in flash-attention implementation."""
    global _active_impl
    _active_impl = None


def can_use_flash_attention(params, debug: bool = False) -> bool:
    """Whether PyTorch's CUDA flash kernel could run on ``params``: always ``False`` in ember."""
    return _cuda.can_use_flash_attention(params, debug)


def can_use_efficient_attention(params, debug: bool = False) -> bool:
    """Whether the memory-efficient CUDA kernel could run: always ``False`` in ember."""
    return _cuda.can_use_efficient_attention(params, debug)


def __getattr__(name):
    # the submodules load on first use, as ``import ember.nn.attention.flex_attention`` would
    if name in ("bias", "flex_attention"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
