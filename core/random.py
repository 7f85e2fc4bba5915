"""Random number generation: ``Generator``, ``manual_seed``, RNG state save/restore.

CPU draws follow PyTorch's CPU generator: a Mersenne Twister seeded as ``torch.manual_seed``
seeds it, read through torch's transformations (``core/_mt_stream.py``,
``core/_mt_samplers.py``), so the same seed gives torch's numbers for ``rand``, ``randn``,
``randint``, ``randperm``, ``bernoulli``, ``poisson``, ``binomial``, the gamma and Dirichlet
samplers, ``nn.init``, dropout masks, the data samplers and ``torch.distributions``' samples.
The state is torch's 5056-byte layout: ``get_rng_state()`` saved by either framework restores
in the other. CUDA draws come from CuPy's generator seeded
from this one (not torch's CUDA numbers).
"""

from __future__ import annotations

import time

import numpy as np

from ._mt_stream import TorchStream
from .backend import _cupy
from .backend.meta import xp as meta_xp

# torch's CPUGeneratorImplState (the legacy THGeneratorState, then the float normal cache)
_STATE = np.dtype(
    [
        ("the_initial_seed", "<u8"),
        ("left", "<i4"),
        ("seeded", "<i4"),
        ("next", "<u8"),
        ("state", "<u8", (624,)),
        ("normal_x", "<f8"),
        ("normal_y", "<f8"),
        ("normal_rho", "<f8"),
        ("normal_is_valid", "<i4"),
        ("_pad", "<i4"),
        ("next_float_normal_sample", "<f4"),
        ("is_next_float_normal_sample_valid", "u1"),
        ("_pad2", "u1", (3,)),
    ]
)
_LEGACY_SIZE = 5048  # the state without the float cache (older PyTorch), also accepted


class Generator:
    """A random number generator, ``torch.Generator``: ``manual_seed``, ``get_state``..."""

    def __init__(self, device="cpu"):
        from .backend.device import device as _device

        # an ember.device, as torch's (diffusers' randn_tensor reads generator.device.type)
        self.device = _device(device if device is not None else "cpu")
        self._np = TorchStream(67280421310721)  # PyTorch's default initial seed
        self._cp = None

    @property
    def _seed(self) -> int:
        return self._np.initial_seed

    def manual_seed(self, seed: int) -> Generator:
        seed = int(seed)
        if seed < 0:
            seed &= (1 << 64) - 1
        self._np.seed(seed)
        self._cp = None
        return self

    def seed(self) -> int:
        s = time.time_ns() & ((1 << 63) - 1)
        self.manual_seed(s)
        return s

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self):
        """The state as a uint8 tensor in PyTorch's layout (``torch.get_rng_state()``'s 5056
        bytes: the seed, the Mersenne Twister words and position, the cached normals)."""
        from .tensor import Tensor

        st = self._np
        key, pos = st.engine_state()
        rec = np.zeros((), dtype=_STATE)
        rec["the_initial_seed"] = st.initial_seed
        rec["seeded"] = 1
        # torch reads word `next` and counts `left` down to a twist at 0 (left + next == 625)
        rec["next"] = 0 if st.fresh else pos
        rec["left"] = 1 if pos >= 624 else 625 - pos
        rec["state"] = key
        if st.normal_cache is not None:
            rec["normal_is_valid"], rec["normal_y"] = 1, st.normal_cache
        if st.float_normal_cache is not None:
            rec["is_next_float_normal_sample_valid"] = 1
            rec["next_float_normal_sample"] = st.float_normal_cache
        return Tensor._wrap(np.frombuffer(rec.tobytes(), dtype=np.uint8).copy())

    def set_state(self, state) -> Generator:
        """Restore a state from :meth:`get_state` (or from PyTorch's ``get_rng_state()``)."""
        from .tensor import Tensor

        if isinstance(state, Tensor) and state.dtype.np != np.uint8:
            raise TypeError(
                f"expected a torch.ByteTensor, but got {state.dtype} for the generator state"
            )
        data = np.asarray(state, dtype=np.uint8).tobytes()
        if data[:1] == b"{" and b'"state"' in data[:200]:  # earlier ember's JSON of PCG64
            raise RuntimeError(
                "this generator state was saved by an earlier ember (NumPy's PCG64 generator); "
                "ember's generator is now PyTorch's Mersenne Twister and cannot continue that "
                "stream: reseed with manual_seed"
            )
        if len(data) not in (_STATE.itemsize, _LEGACY_SIZE):
            raise RuntimeError(
                f"Expected either a THGeneratorState of size {_LEGACY_SIZE} or a "
                f"CPUGeneratorImplState of size {_STATE.itemsize} but found the input RNG state "
                f"size to be {len(data)}"
            )
        rec = np.frombuffer(data.ljust(_STATE.itemsize, b"\0"), dtype=_STATE)[0]
        left, nxt = int(rec["left"]), int(rec["next"])
        if not 1 <= left <= 624 or nxt > 624:
            raise RuntimeError("The generator state is corrupted (its position is out of range)")
        st = self._np
        st.seed(int(rec["the_initial_seed"]))
        st.set_engine_state(rec["state"].astype(np.uint32), 624 if left == 1 else nxt)
        st.fresh = left == 1 and nxt == 0
        st.normal_cache = float(rec["normal_y"]) if rec["normal_is_valid"] else None
        valid_f = len(data) == _STATE.itemsize and rec["is_next_float_normal_sample_valid"]
        st.float_normal_cache = float(rec["next_float_normal_sample"]) if valid_f else None
        self._cp = None
        return self

    def numpy(self) -> TorchStream:
        """The stream behind this generator: NumPy ``Generator``'s methods, torch's numbers."""
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

    It is PyTorch's layout (5056 bytes): a state saved by torch restores here, and the reverse.
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


def torch_stream(generator, xp):
    """The generator's :class:`TorchStream` when ``xp`` is NumPy (torch's CPU numbers), else
    None (CuPy and meta arrays draw their own way)."""
    return (generator or default_generator)._np if xp is np else None


def seed_draw(generator=None) -> int:
    """``torch.empty((), dtype=torch.int64).random_(generator=g).item()``: the seed torch's
    samplers and data loaders draw for a pass."""
    return int((generator or default_generator)._np.random_full(np.int64))


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
