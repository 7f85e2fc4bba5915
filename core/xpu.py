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
    """Whether the XPU runtime is initialized: always ``False``."""
    return False


def init() -> None:
    """Initialize the XPU runtime; raises, as ember has no XPU backend."""
    raise _no_xpu()


def device_count() -> int:
    """The number of XPU devices: ``0``."""
    return 0


def current_device() -> int:
    """The index of the current XPU device; raises, as ember has no XPU backend."""
    raise _no_xpu()


def set_device(device) -> None:
    """Select the current XPU device; raises, as ember has no XPU backend."""
    raise _no_xpu()


def get_device_name(device=None) -> str:
    """The name of an XPU device; raises, as ember has no XPU backend."""
    raise _no_xpu()


def get_device_properties(device=None):
    """The properties of an XPU device; raises, as ember has no XPU backend."""
    raise _no_xpu()


def get_device_capability(device=None):
    """The capability of an XPU device; raises, as ember has no XPU backend."""
    raise _no_xpu()


def synchronize(device=None) -> None:
    """Wait for the work queued on an XPU device; raises, as ember has no XPU backend."""
    raise _no_xpu()


def empty_cache() -> None:
    """Release cached XPU memory: a no-op (there is none)."""


def manual_seed(seed: int) -> None:
    """Seed the XPU generator: a no-op without XPU (as PyTorch's lazy seeding)."""
    int(seed)


def manual_seed_all(seed: int) -> None:
    """Seed the generators of all XPU devices: a no-op without XPU."""
    int(seed)


def seed() -> None:
    """Seed the XPU generator randomly: a no-op without XPU."""


def seed_all() -> None:
    """Seed the generators of all XPU devices randomly: a no-op without XPU."""


def initial_seed() -> int:
    """The XPU generator's initial seed; raises, as ember has no XPU backend."""
    raise _no_xpu()


def memory_allocated(device=None) -> int:
    """The bytes of XPU memory held by tensors: ``0``."""
    return 0


def max_memory_allocated(device=None) -> int:
    """The peak of :func:`memory_allocated`: ``0``."""
    return 0


def memory_reserved(device=None) -> int:
    """The bytes of XPU memory held by the caching allocator: ``0``."""
    return 0


def max_memory_reserved(device=None) -> int:
    """The peak of :func:`memory_reserved`: ``0``."""
    return 0


def reset_peak_memory_stats(device=None) -> None:
    """Reset the peaks of the XPU memory statistics: a no-op without XPU."""


def is_bf16_supported(including_emulation: bool = True) -> bool:
    """Whether the XPU device supports ``bfloat16``: ``False``."""
    return False


def is_tf32_supported() -> bool:
    """Whether the XPU device supports TF32: ``False``."""
    return False


def get_arch_list() -> list:
    """The XPU architectures ember was built for: ``[]``."""
    return []


def get_gencode_flags() -> str:
    """The XPU code-generation flags ember was built with: ``""``."""
    return ""


def get_rng_state(device="xpu"):
    """The XPU generator's state; raises, as ember has no XPU backend."""
    raise _no_xpu()


def set_rng_state(new_state, device="xpu") -> None:
    """Set the XPU generator's state; raises, as ember has no XPU backend."""
    raise _no_xpu()


def get_rng_state_all() -> list:
    """The generator states of all XPU devices: ``[]``."""
    return []


def set_rng_state_all(new_states) -> None:
    """Set the generator states of all XPU devices: a no-op without XPU."""


def mem_get_info(device=None):
    """The free and total XPU memory in bytes; raises, as ember has no XPU backend."""
    raise _no_xpu()


def memory_stats(device=None) -> dict:
    """The XPU caching allocator's statistics: an empty ``OrderedDict``."""
    from collections import OrderedDict

    return OrderedDict()


def memory_snapshot() -> list:
    """A snapshot of the XPU caching allocator's state: ``[]``."""
    return []


def current_stream(device=None):
    """The current XPU stream; raises, as ember has no XPU backend."""
    raise _no_xpu()
