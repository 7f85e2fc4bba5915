"""``ember.cuda`` random state. CUDA draws come from ember's default generator: a CuPy
generator that it seeds from its NumPy (CPU) stream at the first CUDA draw after each
``manual_seed``.

``get_rng_state`` captures that CuPy generator itself (its cuRAND states, copied from the
device), so that ``set_rng_state`` resumes the CUDA draws exactly where they were, as PyTorch's
CUDA state does: together with ``ember.get_rng_state`` (the CPU stream) it makes a resumed run
draw the same dropout masks as an uninterrupted one. Before the first CUDA draw the state just
says so (a few bytes): the restored generator is then seeded from the CPU stream again. A
captured CuPy generator is ``8 * 256 * multiprocessors`` cuRAND states (about 13 MB on an
H100), where PyTorch's Philox state is 16 bytes. ember keeps one CUDA generator for all
devices, so ``get_rng_state_all`` returns the same state per device and ``set_rng_state_all``
restores the first.
"""

from __future__ import annotations

import json

import numpy as np

from ._lazy import cupy_or_raise, has_cuda

__all__ = [
    "manual_seed",
    "manual_seed_all",
    "seed",
    "seed_all",
    "initial_seed",
    "get_rng_state",
    "get_rng_state_all",
    "set_rng_state",
    "set_rng_state_all",
]


def _gen():
    from ..random import default_generator

    return default_generator


def manual_seed(seed: int) -> None:
    """Seed CUDA draws (they share ember's default generator, so CPU draws are seeded too)."""
    _gen().manual_seed(seed)


def manual_seed_all(seed: int) -> None:
    """Seed the CUDA generator (ember has one generator for all devices); see
    :func:`manual_seed`."""
    manual_seed(seed)


def seed() -> None:
    """Reseed CUDA draws from a random number (a no-op without CUDA, as PyTorch)."""
    if has_cuda():  # pragma: no cover - GPU
        import numpy as np

        cp = cupy_or_raise()
        _gen()._cp = cp.random.default_rng(int(np.random.SeedSequence().entropy % (1 << 63)))


def seed_all() -> None:
    """Reseed the CUDA generator from a random number; see :func:`seed`."""
    seed()


def initial_seed() -> int:
    """The seed of the CUDA generator. Without CUDA it raises, as PyTorch's CPU build does."""
    cupy_or_raise()
    return _gen().initial_seed()  # pragma: no cover - GPU


_MAGIC = b"ember-cuda-rng\x00"
_VERSION = 1


def encode_state(header: dict, raw) -> np.ndarray:
    """``header`` (JSON) and the generator's raw bytes as one uint8 array."""
    head = json.dumps({"version": _VERSION, **header}).encode()
    raw = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
    out = np.empty(len(_MAGIC) + 4 + len(head) + raw.size, dtype=np.uint8)
    n = len(_MAGIC) + 4
    out[: len(_MAGIC)] = np.frombuffer(_MAGIC, dtype=np.uint8)
    out[len(_MAGIC) : n] = np.frombuffer(len(head).to_bytes(4, "little"), dtype=np.uint8)
    out[n : n + len(head)] = np.frombuffer(head, dtype=np.uint8)
    out[n + len(head) :] = raw
    return out


def decode_state(state) -> tuple[dict, np.ndarray]:
    """The header and raw bytes of a state from ``get_rng_state``; a clear error otherwise."""
    from ..tensor import Tensor

    data = state.numpy() if isinstance(state, Tensor) else np.asarray(state)
    if data.dtype != np.uint8 or data.ndim != 1:
        raise TypeError(
            "set_rng_state: expected a 1-D uint8 tensor from "
            f"ember.cuda.get_rng_state(), got dtype {data.dtype}, shape {data.shape}"
        )
    n = len(_MAGIC) + 4
    if data.size < n or data[: len(_MAGIC)].tobytes() != _MAGIC:
        raise RuntimeError(
            "set_rng_state: not a CUDA generator state from ember.cuda.get_rng_state()"
        )
    size = int.from_bytes(data[len(_MAGIC) : n].tobytes(), "little")
    try:
        header = json.loads(data[n : n + size].tobytes().decode())
    except ValueError:
        raise RuntimeError(
            "set_rng_state: the CUDA generator state is truncated or corrupt"
        ) from None
    if header.get("version") != _VERSION:
        raise RuntimeError(
            f"set_rng_state: CUDA generator state version "
            f"{header.get('version')!r}; this ember reads version {_VERSION}"
        )
    raw = data[n + size :]
    if raw.size != header.get("nbytes", 0):
        raise RuntimeError(
            f"set_rng_state: the CUDA generator state holds {raw.size} bytes, "
            f"its header says {header.get('nbytes', 0)} (truncated?)"
        )
    return header, raw


def get_rng_state(device="cuda"):
    """The CUDA generator's state (a uint8 tensor); ``set_rng_state`` resumes the CUDA draws
    from it exactly. Without CUDA: PyTorch's error."""
    from ..tensor import Tensor

    cp = cupy_or_raise()
    cuda = _gen()._cp  # pragma: no cover - GPU from here
    if cuda is None:  # no CUDA draw since the last seeding: seeded from the CPU stream later
        return Tensor._wrap(encode_state({"seeded": False, "nbytes": 0}, np.empty(0, np.uint8)))
    bg = cuda.bit_generator
    raw = cp.asnumpy(bg._state)
    header = {
        "seeded": True,
        "kind": type(bg).__name__,
        "size": int(bg._size),
        "device": int(bg._current_device_id),
        "nbytes": int(raw.nbytes),
    }
    return Tensor._wrap(encode_state(header, raw))


def set_rng_state(new_state, device="cuda") -> None:
    """Restore a state from ``get_rng_state`` (a no-op without CUDA, as PyTorch)."""
    if not has_cuda():
        return
    header, raw = decode_state(new_state)  # pragma: no cover - GPU from here
    gen = _gen()
    if not header["seeded"]:
        gen._cp = None
        return
    cp = cupy_or_raise()
    kind = getattr(cp.random, header["kind"], None)
    if kind is None:
        raise RuntimeError(f"set_rng_state: this CuPy has no bit generator {header['kind']!r}")
    dev = header["device"] if header["device"] < cp.cuda.runtime.getDeviceCount() else None
    with cp.cuda.Device(dev):
        bg = kind(0, size=header["size"])
        if bg._state.nbytes != raw.size:
            raise RuntimeError(
                f"set_rng_state: the state holds {raw.size} bytes, this CuPy's "
                f"{header['kind']} of size {header['size']} {bg._state.nbytes}"
            )
        bg._state[...] = cp.asarray(raw).view(bg._state.dtype)
        gen._cp = cp.random.Generator(bg)


def get_rng_state_all() -> list:
    """The generator state of every CUDA device, a list (empty without CUDA)."""
    from . import device_count

    return [get_rng_state(i) for i in range(device_count())]


def set_rng_state_all(new_states) -> None:
    """Restore the states from ``get_rng_state_all`` (ember's one CUDA generator: the first)."""
    new_states = list(new_states)
    if new_states:
        set_rng_state(new_states[0], 0)
