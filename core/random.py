"""Random number generation: ``Generator``, ``manual_seed``, RNG state save/restore.

CPU draws come from NumPy's PCG64; CUDA draws from CuPy's generator seeded alongside it. The
numbers differ from PyTorch's (parity tests copy weights instead of sharing seeds).
"""

from __future__ import annotations

import json
import time

import numpy as np

from .backend import _cupy
from .backend.meta import xp as meta_xp


class Generator:
    """A random number generator, ``torch.Generator``: ``manual_seed``, ``get_state``..."""

    def __init__(self, device="cpu"):
        from .backend.device import device as _device

        # an ember.device, as torch's (diffusers' randn_tensor reads generator.device.type)
        self.device = _device(device if device is not None else "cpu")
        self._seed = 67280421310721  # PyTorch's default initial seed
        self._np = np.random.Generator(np.random.PCG64(self._seed))
        self._cp = None

    def manual_seed(self, seed: int) -> Generator:
        seed = int(seed)
        if seed < 0:
            seed &= (1 << 64) - 1
        self._seed = seed
        self._np = np.random.Generator(np.random.PCG64(seed))
        self._cp = None
        return self

    def seed(self) -> int:
        s = time.time_ns() & ((1 << 63) - 1)
        self.manual_seed(s)
        return s

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self):
        """The state as a uint8 tensor (JSON of the bit generator state), like PyTorch's."""
        from .tensor import Tensor

        blob = json.dumps(
            {"seed": self._seed, "state": self._np.bit_generator.state}, default=int
        ).encode()
        return Tensor._wrap(np.frombuffer(blob, dtype=np.uint8).copy())

    def set_state(self, state) -> Generator:
        data = bytes(np.asarray(state, dtype=np.uint8).tobytes())
        try:
            d = json.loads(data.decode())
            bg = np.random.PCG64()
            bg.state = d["state"]
        except Exception as exc:
            raise RuntimeError(
                f"Generator.set_state: not a valid ember generator state ({exc})"
            ) from None
        self._seed = d["seed"]
        self._np = np.random.Generator(bg)
        self._cp = None
        return self

    def numpy(self) -> np.random.Generator:
        return self._np

    def xp_generator(self, xp):
        """The generator to draw with for arrays of module ``xp`` (numpy or cupy)."""
        if xp is np:
            return self._np
        if xp is meta_xp:  # meta tensors draw nothing (and leave this generator's state alone)
            return meta_xp.xp_generator()
        if self._cp is None:  # pragma: no cover - GPU
            seed = int(self._np.integers(0, 2**63 - 1))
            self._cp = _cupy.require_cupy().random.default_rng(seed)
        return self._cp  # pragma: no cover


#: The generator that random ops use when none is passed (CPU and CUDA draws).
default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the default generator (CPU and CUDA draws)."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    """Seed the default generator from the clock (a non-deterministic seed) and return that
    seed.
    """
    return default_generator.seed()


def initial_seed() -> int:
    """The seed the default generator was last seeded with (by :func:`manual_seed` or
    :func:`seed`).
    """
    return default_generator.initial_seed()


def get_rng_state():
    """The state of the default generator, as a ``uint8`` tensor that :func:`set_rng_state`
    accepts.

    ember's state is the serialized PCG64 state of NumPy's generator: it has a different length and
    meaning than PyTorch's Mersenne-Twister state and is not interchangeable with it.
    """
    return default_generator.get_state()


def set_rng_state(state) -> None:
    """Restore the CPU stream from ``get_rng_state``. The CUDA generator is left where it is
    (``ember.cuda.set_rng_state`` restores it), as PyTorch's, so the two restores may come in
    either order."""
    cuda = default_generator._cp
    default_generator.set_state(state)
    default_generator._cp = cuda


def fork_rng_state():
    """Snapshot of the default generator, for ``with ember.random.fork_rng():``-style code."""
    return default_generator.get_state()


def gen_for(generator, xp):
    """The NumPy or CuPy generator behind ``generator`` (the default generator when None) for the
    array module ``xp``. Used by ember's own random ops.
    """
    return (generator or default_generator).xp_generator(xp)


def thread_safe_generator():
    """The generator a thread should draw from when one was installed for it; ember keeps one
    process-wide default generator, so there is none (None, as PyTorch without one)."""
    return None


class fork_rng:
    """Fork the RNG: inside the block draws may be reseeded freely; on exit the default
    generator (CPU and CUDA draws alike) is back where it was.

    ``devices``/``device_type`` are accepted for PyTorch compatibility: ember's CUDA draws come
    from the same default generator, so restoring it restores them too. ``enabled=False``
    makes the context a no-op. Usable as a decorator.
    """

    def __init__(
        self,
        devices=None,
        enabled: bool = True,
        _caller: str = "fork_rng",
        _devices_kw: str = "devices",
        device_type: str = "cuda",
    ):
        self.enabled = enabled
        self._saved = None

    def __enter__(self):
        if self.enabled:
            g = default_generator
            self._saved = (g.get_state(), g._cp)
        return None

    def __exit__(self, *exc):
        if self._saved is not None:
            state, cp_gen = self._saved
            default_generator.set_state(state)
            default_generator._cp = cp_gen
            self._saved = None
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with fork_rng(enabled=self.enabled):
                return fn(*args, **kwargs)

        return wrapper
