"""``ember.mps``: PyTorch's Apple Metal (MPS) module, for device-agnostic scripts.

ember has no Metal backend: :func:`is_available` is ``False`` and :func:`device_count` ``0``;
seeding is a no-op (as PyTorch's without MPS) and the calls that need the device raise
PyTorch's kind of ``RuntimeError``. ``ember.device("mps")`` can be built, but a tensor placed
on it raises. See also ``ember.backends.mps``.
"""

from __future__ import annotations

__all__ = [
    "is_available",
    "device_count",
    "synchronize",
    "manual_seed",
    "seed",
    "get_rng_state",
    "set_rng_state",
    "empty_cache",
    "set_per_process_memory_fraction",
    "current_allocated_memory",
    "driver_allocated_memory",
    "recommended_max_memory",
]


def _no_mps(what: str):
    return RuntimeError(f"Cannot execute {what}() without MPS backend (ember has none).")


def is_available() -> bool:
    """Whether an MPS device can be used: always ``False``."""
    return False


def device_count() -> int:
    """The number of MPS devices: ``0``."""
    return 0


def synchronize() -> None:
    """Wait for the MPS device; raises, as ember has none."""
    raise _no_mps("deviceSynchronize")


def manual_seed(seed: int) -> None:
    """Seed the MPS generator: a no-op without MPS (as PyTorch's)."""
    int(seed)  # PyTorch rejects what is not an integer


def seed() -> None:
    """Seed the MPS generator randomly: a no-op without MPS."""


def get_rng_state(device="mps"):
    """The MPS generator's state; raises, as ember has no MPS device."""
    raise _no_mps("getRNGState")


def set_rng_state(new_state, device="mps") -> None:
    """Set the MPS generator's state; raises, as ember has no MPS device."""
    raise _no_mps("setRNGState")


def empty_cache() -> None:
    """Release the MPS cache; raises, as ember has no MPS device."""
    raise _no_mps("emptyCache")


def set_per_process_memory_fraction(fraction: float) -> None:
    """Cap the MPS memory this process may allocate; raises, as ember has no MPS device."""
    raise _no_mps("setMemoryFraction")


def current_allocated_memory() -> int:
    """The bytes of MPS memory held by tensors; raises, as ember has no MPS device."""
    raise _no_mps("getCurrentAllocatedMemory")


def driver_allocated_memory() -> int:
    """The bytes the Metal driver allocated; raises, as ember has no MPS device."""
    raise _no_mps("getDriverAllocatedMemory")


def recommended_max_memory() -> int:
    """Metal's recommended working-set size in bytes; raises, as ember has no MPS device."""
    raise _no_mps("getRecommendedMaxMemory")
