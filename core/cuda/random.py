"""``ember.cuda`` random state. CUDA draws come from ember's default generator (a CuPy
generator it seeds from its NumPy state), so the CUDA seed and state are that generator's."""

from __future__ import annotations

from ._lazy import cupy_or_raise, has_cuda

__all__ = ["manual_seed", "manual_seed_all", "seed", "seed_all", "initial_seed",
           "get_rng_state", "get_rng_state_all", "set_rng_state", "set_rng_state_all"]


def _gen():
    from ..random import default_generator

    return default_generator


def manual_seed(seed: int) -> None:
    """Seed CUDA draws (they share ember's default generator, so CPU draws are seeded too)."""
    _gen().manual_seed(seed)


def manual_seed_all(seed: int) -> None:
    manual_seed(seed)


def seed() -> None:
    """Reseed CUDA draws from a random number (a no-op without CUDA, as PyTorch)."""
    if has_cuda():  # pragma: no cover - GPU
        import numpy as np

        cp = cupy_or_raise()
        _gen()._cp = cp.random.default_rng(int(np.random.SeedSequence().entropy % (1 << 63)))


def seed_all() -> None:
    seed()


def initial_seed() -> int:
    cupy_or_raise()
    return _gen().initial_seed()  # pragma: no cover - GPU


def get_rng_state(device="cuda"):
    """The generator state (a uint8 tensor); restoring it replays the CUDA draws after it."""
    cupy_or_raise()
    return _gen().get_state()  # pragma: no cover - GPU


def set_rng_state(new_state, device="cuda") -> None:
    """Restore a state from ``get_rng_state`` (a no-op without CUDA, as PyTorch)."""
    if has_cuda():  # pragma: no cover - GPU
        _gen().set_state(new_state)


def get_rng_state_all() -> list:
    from . import device_count

    return [get_rng_state(i) for i in range(device_count())]


def set_rng_state_all(new_states) -> None:
    for i, state in enumerate(new_states):
        set_rng_state(state, i)
