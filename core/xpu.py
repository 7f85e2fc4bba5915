"""``ember.xpu``: PyTorch's Intel GPU (XPU) module, for device-agnostic scripts.

ember has no XPU backend: :func:`is_available` is ``False``, :func:`device_count` ``0``, the
memory queries answer ``0``, seeding and ``empty_cache`` are no-ops (as PyTorch's without XPU)
and the calls that need a device raise PyTorch's kind of ``AssertionError``.
``ember.device("xpu")`` can be built, but a tensor placed on it raises.
"""

from __future__ import annotations

__all__ = [
    "is_available",
    "is_initialized",
    "init",
    "device_count",
    "current_device",
    "set_device",
    "get_device_name",
    "get_device_properties",
    "get_device_capability",
    "synchronize",
    "empty_cache",
    "manual_seed",
    "manual_seed_all",
    "seed",
    "seed_all",
    "initial_seed",
    "memory_allocated",
    "max_memory_allocated",
    "memory_reserved",
    "max_memory_reserved",
    "reset_peak_memory_stats",
    "is_bf16_supported",
    "is_tf32_supported",
    "get_arch_list",
    "get_gencode_flags",
    "get_rng_state",
    "set_rng_state",
    "get_rng_state_all",
    "set_rng_state_all",
    "mem_get_info",
    "memory_stats",
    "memory_snapshot",
    "current_stream",
]


def _no_xpu() -> AssertionError:
    return AssertionError("ember has no XPU backend (ember.xpu.is_available() is False)")


def is_available() -> bool:
    """Whether an XPU device can be used: always ``False``."""
    return False


def is_initialized() -> bool:
    return False


def init() -> None:
    raise _no_xpu()


def device_count() -> int:
    """The number of XPU devices: ``0``."""
    return 0


def current_device() -> int:
    raise _no_xpu()


def set_device(device) -> None:
    raise _no_xpu()


def get_device_name(device=None) -> str:
    raise _no_xpu()


def get_device_properties(device=None):
    raise _no_xpu()


def get_device_capability(device=None):
    raise _no_xpu()


def synchronize(device=None) -> None:
    raise _no_xpu()


def empty_cache() -> None:
    """Release cached XPU memory: a no-op (there is none)."""


def manual_seed(seed: int) -> None:
    """Seed the XPU generator: a no-op without XPU (as PyTorch's lazy seeding)."""
    int(seed)


def manual_seed_all(seed: int) -> None:
    int(seed)


def seed() -> None:
    pass


def seed_all() -> None:
    pass


def initial_seed() -> int:
    raise _no_xpu()


def memory_allocated(device=None) -> int:
    return 0


def max_memory_allocated(device=None) -> int:
    return 0


def memory_reserved(device=None) -> int:
    return 0


def max_memory_reserved(device=None) -> int:
    return 0


def reset_peak_memory_stats(device=None) -> None:
    pass


def is_bf16_supported(including_emulation: bool = True) -> bool:
    return False


def is_tf32_supported() -> bool:
    return False


def get_arch_list() -> list:
    return []


def get_gencode_flags() -> str:
    return ""


def get_rng_state(device="xpu"):
    raise _no_xpu()


def set_rng_state(new_state, device="xpu") -> None:
    raise _no_xpu()


def get_rng_state_all() -> list:
    return []


def set_rng_state_all(new_states) -> None:
    pass


def mem_get_info(device=None):
    raise _no_xpu()


def memory_stats(device=None) -> dict:
    from collections import OrderedDict

    return OrderedDict()


def memory_snapshot() -> list:
    return []


def current_stream(device=None):
    raise _no_xpu()
