"""PyTorch's CPU random streams: a Mersenne Twister seeded as ``torch.manual_seed`` seeds it,
and the transformations torch's CPU kernels apply to its 32-bit outputs.

The same seed gives the same numbers as PyTorch's CPU generator, bit for bit, for
``rand``/``uniform_``, ``randn``/``normal_`` (float64, float32 and the half types; float32 from
16 elements through torch's AVX2 ``log``/``sincos``, ``core/_mt_avx_math.py``),
``randint``/``random_``, ``randperm``, ``bernoulli`` and the draws built on them (``nn.init``,
dropout masks, ``RandomSampler``, ``random_split``); the rejection samplers (gamma, Poisson,
binomial) and the per-element fills are in ``core/_mt_samplers.py``. The engine is NumPy's
``MT19937`` with its legacy (``init_genrand``) seeding, which is the ``std::mt19937`` sequence
torch's ``at::mt19937`` produces.

What each op does with the 32-bit outputs ``r`` (read from ATen's CPU distribution helpers,
and checked against torch 2.13 in ``tests/test_torch_streams.py``):

- uniform floats: ``(r & (2**d - 1)) * 2**-d`` with ``d`` the mantissa digits (24 for float32
  from one output; 53 for float64 from two, high word first), scaled as ``x * (to - from) +
  from`` in the tensor's dtype;
- normal, 16 elements or more: the whole tensor filled with uniforms (the half types: only
  the full blocks'), then Box-Muller over blocks of 16 (the first 8 as ``u1``, the next 8 as
  ``u2``) ending in ``fma(n, std, mean)``, the last partial block redrawn from 16 fresh
  uniforms; fewer than 16: one double Box-Muller pair per two elements, the sine half kept for
  the next call (the generator's cached normal), ``z * std + mean`` rounded once (an FMA);
- integers in ``[low, high)``: ``r % (high - low) + low`` (two outputs when the range is
  2**28 or more); ``random_()`` without bounds: ``r % (2**d + 1)`` for floats,
  ``r % (max + 1)`` for integers (64-bit types from two outputs);
- ``randperm(n)``: Fisher-Yates from the front, swapping ``i`` with ``i + r % (n - i)``;
- Bernoulli with a scalar ``p``: a float64 uniform ``< p``; with a tensor of probabilities, a
  uniform of the probabilities' dtype ``< p``.

NumPy ``Generator`` methods not listed here (``choice``, ``beta``, ...) come from a NumPy
``Generator`` over the same engine: reproducible under ``manual_seed``, not torch's numbers.
"""

from __future__ import annotations

import math

import numpy as np

from . import _mt_avx_math
from ._mt_engine import _compiled_engine, _fisher_yates
from ._mt_fast import (
    _DTYPES,
    _FAST,
    _M24,
    _M53,
    _S24,
    _S53,
    _TWO_PI,
    _f32_bounds,
    _fast_bound,
    _floats,
    _shape,
)

__all__ = ["TorchStream", "mantissa_digits"]

_N = 624  # the Mersenne Twister's state words
_U32 = np.uint64(0xFFFFFFFF)


def mantissa_digits(dtype) -> int:
    """The significand bits of a float dtype (``std::numeric_limits<T>::digits``) or the value
    bits of an integer dtype."""
    dt = np.dtype(dtype)
    if dt.kind == "f" or dt.name == "bfloat16":
        return {2: 11 if dt.name == "float16" else 8, 4: 24, 8: 53}[dt.itemsize]
    if dt.kind == "b":
        return 1
    info = np.iinfo(dt)
    return int(info.bits - (1 if info.min < 0 else 0))


# torch draws a 64-bit value for a ``random_(from, to)`` / ``randint`` span of 2**28 or more
# (less modulo bias), one 32-bit output below (checked against torch 2.13 for int32 / int64 /
# float64 at spans 4 .. 2**39: sbi's MCMC seeds come from ``randint(high=2**31)``).
_WIDE_SPAN = 1 << 28


class TorchStream:
    """One ``torch.Generator``'s CPU stream. Methods named as NumPy's ``Generator`` draw with
    torch's transformations; any other NumPy distribution is drawn from the same engine."""

    def __init__(self, seed: int = 67280421310721) -> None:
        self.seed(seed)

    # ---- state ----------------------------------------------------------------------------
    def seed(self, seed: int) -> None:
        """Reseed as ``torch.manual_seed``: the engine takes the seed's low 32 bits."""
        self.initial_seed = int(seed) & ((1 << 64) - 1)
        self._bg = np.random.MT19937(0)
        self._bg._legacy_seeding(self.initial_seed & 0xFFFFFFFF)
        self._np = np.random.Generator(self._bg)
        self.normal_cache: float | None = None  # the Box-Muller sine half (double)
        self.float_normal_cache: float | None = None  # (kept in the state only)
        self.fresh = True  # no draw since seeding (torch's state then says next = 0)

    def engine_state(self) -> tuple[np.ndarray, int]:
        """The 624 state words and the index of the next word to read (624: twist first)."""
        st = self._bg.state["state"]
        return np.asarray(st["key"], dtype=np.uint32), int(st["pos"])

    def set_engine_state(self, key, pos: int) -> None:
        state = self._bg.state
        state["state"] = {"key": np.asarray(key, dtype=np.uint32), "pos": int(pos)}
        self._bg.state = state
        self._np = np.random.Generator(self._bg)

    def __getattr__(self, name: str):
        # the rest of NumPy's distributions (poisson, gamma, choice, ...), on the same engine
        return getattr(self._np, name)

    # ---- raw outputs ----------------------------------------------------------------------
    def raw32(self, n: int) -> np.ndarray:
        """The next ``n`` 32-bit outputs (as uint64)."""
        self.fresh = False
        if n <= 0:
            return np.empty(0, dtype=np.uint64)
        kernels = _compiled_engine(n)
        if kernels is None:
            return self._bg.random_raw(n)
        out = np.empty(n, dtype=np.uint64)
        self._run_engine(kernels.fill_raw, out)
        return out

    def _run_engine(self, kernel, *args) -> None:
        """``kernel(words, pos, *args)`` of ``_mt_kernels`` on this engine's state, which it
        advances (the same stream as NumPy's engine, word for word)."""
        st = self._bg.state
        words = np.array(st["state"]["key"], dtype=np.uint32)
        pos = kernel(words, int(st["state"]["pos"]), *args)
        st["state"] = {"key": words, "pos": int(pos)}
        self._bg.state = st

    def raw64(self, n: int) -> np.ndarray:
        """The next ``n`` 64-bit values, each two outputs (high word first)."""
        r = self.raw32(2 * n)
        return (r[0::2] << np.uint64(32)) | r[1::2]

    def _unit_list(self, n: int, digits: int) -> list[float]:
        """:meth:`_unit` as Python floats (for a few values)."""
        r = self.raw32(2 * n if digits > 32 else n).tolist()
        if digits == 24:
            return [(v & _M24) * _S24 for v in r]
        if digits == 53:
            it = iter(r)
            return [(((h << 32) | lo) & _M53) * _S53 for h, lo in zip(it, it)]
        mask, scale = (1 << digits) - 1, 2.0**-digits
        if digits > 32:
            it = iter(r)
            return [(((h << 32) | lo) & mask) * scale for h, lo in zip(it, it)]
        return [(v & mask) * scale for v in r]

    def _unit(self, n: int, digits: int) -> np.ndarray:
        """``n`` uniforms on [0, 1) as float64 holding ``digits``-bit fractions."""
        r = self.raw64(n) if digits > 32 else self.raw32(n)
        return (r & np.uint64((1 << digits) - 1)).astype(np.float64) * (2.0**-digits)

    def _unit_f32(self, n: int) -> np.ndarray:
        """:meth:`_unit` with 24 digits, as float32 (exact either way)."""
        kernels = _compiled_engine(n)
        if kernels is None:
            return self._unit(n, 24).astype(np.float32)
        self.fresh = False
        out = np.empty(n, dtype=np.float32)
        self._run_engine(kernels.uniform24, out)
        return out

    # ---- uniform --------------------------------------------------------------------------
    def random(self, size=None, dtype=np.float64, out=None):
        """Uniform [0, 1), torch's ``rand`` (NumPy's ``Generator.random`` signature)."""
        return self.uniform_fill(size, dtype, 0.0, 1.0)

    def uniform_fill(self, size, dtype, low: float, high: float):
        """torch's ``uniform_(low, high)`` on a fresh tensor of ``size`` and ``dtype``."""
        shape = _shape(size)
        n = math.prod(shape)
        dt = _DTYPES.get(dtype) or np.dtype(dtype)
        wide = dt == np.float64
        if 0 < n <= _FAST and low == 0 and high == 1 and _fast_bound(low) and _fast_bound(high):
            out = _floats(self._unit_list(n, 53 if wide else 24), dt, shape)  # (x * 1 + 0 == x)
            return out if size is not None else out[()]
        if 0 < n <= _FAST and _fast_bound(low) and _fast_bound(high):
            if wide:
                scale, off = float(high - low), float(low)
            else:
                scale, off = _f32_bounds(float(low), float(high))
            vals = self._unit_list(n, 53 if wide else 24)
            if wide and (scale != 1.0 or off != 0.0):  # torch's x * (to - from) + from: an FMA
                vals = _mt_avx_math.fma_list(vals, scale, off)
            elif not wide:
                vals = [x * scale + off for x in vals]
            out = _floats(vals, dt, shape)
            return out if size is not None else out[()]
        if dt == np.float32 and low == 0 and high == 1:  # (x * 1 + 0 == x, exact in float32)
            out = self._unit_f32(n).reshape(shape)
            return out if size is not None else out[()]
        x = self._unit(n, 53 if wide else 24)  # (the half types round a float32 draw)
        if wide:  # x * (to - from) + from, contracted to an FMA in torch's build
            out = x if high - low == 1 and low == 0 else _mt_avx_math.fma64(x, high - low, low)
        else:  # bounds in float32, the scaling in float64, one rounding at the end
            f32 = np.float32
            out = x * float(f32(high) - f32(low)) + float(f32(low))
        out = out.astype(dt).reshape(shape)
        return out if size is not None else out[()]

    # ---- normal ---------------------------------------------------------------------------
    def standard_normal(self, size=None, dtype=np.float64, out=None):
        """Standard normal, torch's ``randn``."""
        return self.normal_fill(size, dtype, 0.0, 1.0)

    def normal_fill(self, size, dtype, mean: float, std: float, contiguous: bool = True):
        """torch's ``normal_(mean, std)`` on a fresh tensor of ``size`` and ``dtype``."""
        shape = _shape(size)
        n = math.prod(shape)
        dt = _DTYPES.get(dtype) or np.dtype(dtype)
        if n >= 16 and contiguous:
            out = self._normal_blocks(n, dt, mean, std)
        elif n <= _FAST and type(mean) in (float, int) and type(std) in (float, int):
            z = self._normal_list(n)
            if std != 1.0 or mean != 0.0:  # z * std + mean rounded once (an FMA)
                z = _mt_avx_math.fma_list(z, float(std), float(mean))
            out = _floats(z, dt, shape)
            return out if size is not None else out[()]
        elif std == 1.0 and mean == 0.0:
            out = self._normal_pairs(n).astype(dt)
        else:  # z * std + mean rounded once (an FMA in torch's kernel)
            out = _mt_avx_math.fma64(self._normal_pairs(n), std, mean).astype(dt)
        out = out.reshape(shape)
        return out if size is not None else out[()]

    def _normal_pairs(self, n: int) -> np.ndarray:
        """``n`` float64 normals one at a time, the sine half of each pair cached."""
        return np.array(self._normal_list(n), dtype=np.float64)

    def _normal_list(self, n: int) -> list[float]:
        """:meth:`_normal_pairs` as Python floats: a Box-Muller pair per two elements, from two
        float64 uniforms, through the C library's log1p/cos/sin as torch's scalar path (NumPy's
        vector loops differ from them in the last bit now and then)."""
        out: list[float] = []
        if not n:
            return out
        if self.normal_cache is not None:
            out.append(self.normal_cache)
            self.normal_cache = None
        pairs = (n - len(out) + 1) // 2
        if pairs:
            sqrt, log1p, cos, sin = math.sqrt, math.log1p, math.cos, math.sin
            it = iter(self.raw32(4 * pairs).tolist())
            for h1, l1, h2, l2 in zip(it, it, it, it):
                radius = sqrt(-2.0 * log1p(-((((h2 << 32) | l2) & _M53) * _S53)))
                theta = _TWO_PI * ((((h1 << 32) | l1) & _M53) * _S53)
                out += (radius * cos(theta), radius * sin(theta))
            if len(out) > n:  # an odd count: the last sine waits for the next draw
                self.normal_cache = out.pop()
        return out

    def _normal_blocks(self, n: int, dt: np.dtype, mean: float, std: float) -> np.ndarray:
        """torch's ``normal_fill``: uniforms for every element, Box-Muller per 16."""
        wide = dt == np.float64
        work = np.float64 if wide else np.float32
        digits = 53 if wide else 24  # (half types: float32 uniforms, float32 math)
        full = n - n % 16
        # float32/64 fill every element with a uniform first; the half types draw only the
        # full blocks' (so their last partial block reads other uniforms)
        m = n if dt.itemsize > 2 else full
        data = self._unit(m, digits).astype(work) if wide else self._unit_f32(m)
        out = np.empty(n, dtype=work)
        if full:
            out[:full] = self._box_muller16(data[:full], work, mean, std)
        if n % 16:
            tail = self._unit(16, digits).astype(work)
            out[n - 16 :] = self._box_muller16(tail, work, mean, std)
        return out.astype(dt, copy=False)

    @staticmethod
    def _box_muller16(data: np.ndarray, work, mean: float, std: float) -> np.ndarray:
        if work is not np.float64:  # the AVX2 kernel's own log/sincos (core/_mt_avx_math.py)
            return _mt_avx_math.box_muller16(data, mean, std)
        blocks = data.reshape(-1, 2, 8)
        radius = np.sqrt(-2.0 * np.log(1.0 - blocks[:, 0]))
        theta = (2.0 * math.pi) * blocks[:, 1]
        res = np.empty_like(blocks)
        res[:, 0] = radius * np.cos(theta)
        res[:, 1] = radius * np.sin(theta)
        if std != 1.0 or mean != 0.0:  # torch's std::fma(n, std, mean): rounded once
            res = _mt_avx_math.fma64(res, std, mean)
        return res.reshape(-1)

    # ---- integers -------------------------------------------------------------------------
    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        """Integers in ``[low, high)``: torch's ``randint`` / ``random_(low, high)``."""
        if high is None:
            low, high = 0, low
        high = int(high) + (1 if endpoint else 0)
        low = int(low)
        span = high - low
        if span <= 0:
            raise ValueError(
                f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}"
            )
        shape = _shape(size)
        n = math.prod(shape)
        if span >= (1 << 64):
            raise ValueError(f"random_ expects a range below 2**64, but got [{low}, {high})")
        if 0 < n <= _FAST and -(1 << 63) <= low and high <= (1 << 63):
            r = self.raw32(n if span < _WIDE_SPAN else 2 * n).tolist()
            if span < _WIDE_SPAN:
                vals = [v % span + low for v in r]
            else:
                it = iter(r)
                vals = [((h << 32) | lo) % span + low for h, lo in zip(it, it)]
            out = np.array(vals, dtype=np.int64)
            if dtype is not np.int64:
                out = out.astype(dtype)
            out = out if len(shape) == 1 else out.reshape(shape)
            return out if size is not None else out[()]
        r = self.raw32(n) if span < _WIDE_SPAN else self.raw64(n)
        out = ((r % np.uint64(span)).astype(np.int64) + low).astype(dtype).reshape(shape)
        return out if size is not None else out[()]

    def random_full(self, dtype, size=None):
        """torch's ``random_()`` without bounds: ``[0, 2**digits]`` of a float dtype, ``[0,
        max]`` of an integer one."""
        dt = np.dtype(dtype)
        digits = mantissa_digits(dt)
        shape = () if size is None else tuple(size)
        n = math.prod(shape)
        wide = dt == np.float64 or dt == np.int64
        r = self.raw64(n) if wide else self.raw32(n)
        # floats: [0, 2**digits]; integers: [0, max] (bool: the lowest bit)
        mod = (1 << digits) + 1 if dt.kind == "f" or dt.name == "bfloat16" else 1 << digits
        vals = [int(v) % mod for v in r] if mod > (1 << 63) else (r % np.uint64(mod)).tolist()
        return (
            np.array(vals, dtype=np.float64 if dt.kind == "f" else np.int64)
            .astype(dt)
            .reshape(shape)
        )

    def permutation(self, x):
        """torch's ``randperm(n)`` (NumPy's ``permutation`` signature for an int)."""
        if not isinstance(x, (int, np.integer)):
            return self._np.permutation(x)
        n = int(x)
        if 2 <= n <= _FAST:  # Fisher-Yates in Python ints
            p = list(range(n))
            for i, v in enumerate(self.raw32(n - 1).tolist()):
                j = i + v % (n - i)
                p[i], p[j] = p[j], p[i]
            return np.array(p, dtype=np.int64)
        perm = np.arange(n, dtype=np.int64)
        if n < 2:
            return perm
        z = (self.raw32(n - 1) % np.arange(n, 1, -1, dtype=np.uint64)).astype(np.int64)
        _fisher_yates(perm, z)
        return perm

    # ---- exponential, multinomial ---------------------------------------------------------
    def exponential_fill(self, shape, dtype, lambd: float) -> np.ndarray:
        """torch's ``exponential_(lambd)``: ``-1/lambd * log1p(-u)`` of float64 uniforms."""
        n = math.prod(shape)
        if (_DTYPES.get(dtype) or np.dtype(dtype)) == np.float64:  # the C library's log1p
            scale, log1p = -1.0 / lambd, math.log1p  # (NumPy's differs in the last bit)
            vals = [scale * log1p(-x) for x in self._unit_list(n, 53)]
            return np.array(vals, dtype=np.float64).reshape(shape)
        u = np.array(self._unit_list(n, 53)) if n <= _FAST else self._unit(n, 53)
        return ((-1.0 / lambd) * np.log1p(-u)).astype(dtype).reshape(shape)

    def multinomial(self, probs: np.ndarray, num_samples: int, replacement: bool) -> np.ndarray:
        """torch's ``multinomial`` on rows of (unnormalised) weights ``probs`` (2-D): one draw
        or draws without replacement by ``argmax``/``topk`` of ``probs / Exp(1)`` (the Gumbel
        trick), more with replacement by searching the normalised cumulative weights."""
        if not replacement or num_samples == 1:
            q = self.exponential_fill(probs.shape, probs.dtype, 1.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                keys = probs / q
            if num_samples == 1:
                return np.argmax(keys, axis=-1)[:, None]
            # topk: the largest first, the lower index first among equals
            order = np.argsort(-keys, axis=-1, kind="stable")
            return order[:, :num_samples]
        cum = np.cumsum(probs.astype(np.float64), axis=1)
        cum /= cum[:, -1:]
        cum[:, -1] = 1.0
        # the rows' uniforms in torch's order (row by row), then each row's left search
        # (how many of its cumulative weights lie below each uniform), in row chunks
        u = self._unit(probs.shape[0] * num_samples, 53).reshape(probs.shape[0], num_samples)
        out = np.empty((probs.shape[0], num_samples), dtype=np.int64)
        step = max(1, (1 << 22) // max(1, num_samples * probs.shape[1]))
        for i in range(0, probs.shape[0], step):
            c, v = cum[i : i + step, None, :], u[i : i + step, :, None]
            out[i : i + step] = (c < v).sum(axis=-1)
        return out

    # ---- Bernoulli ------------------------------------------------------------------------
    def bernoulli_scalar(self, shape, p: float) -> np.ndarray:
        """``bernoulli_(p)`` with a float ``p``: a float64 uniform below ``p`` (bool array)."""
        # u < p with u = k * 2**-53 (k < 2**53, exact) is k < p * 2**53 (exact too), that is
        # k < ceil(p * 2**53): compared as integers, without making the floats
        n, t = math.prod(shape), float(p) * 2.0**53
        if not t > 0.0:  # (p <= 0 or NaN: nothing below it)
            self.raw32(2 * n)
            return np.zeros(shape, dtype=bool)
        if t > 2.0**53:
            self.raw32(2 * n)
            return np.ones(shape, dtype=bool)
        t = math.ceil(t)
        if n <= _FAST:
            it = iter(self.raw32(2 * n).tolist())
            hits = [(((h << 32) | lo) & _M53) < t for h, lo in zip(it, it)]
            return np.array(hits, dtype=bool).reshape(shape)
        kernels = _compiled_engine(2 * n)
        if kernels is not None:  # one compiled pass: the value compared as it is made
            self.fresh = False
            hits = np.empty(shape, dtype=bool)
            self._run_engine(kernels.bernoulli53, np.uint64(t), hits.reshape(-1))
            return hits
        r = self.raw32(2 * n)
        k = ((r[0::2] & np.uint64(0x1FFFFF)) << np.uint64(32)) | r[1::2]
        return (k < np.uint64(t)).reshape(shape)

    def bernoulli_tensor(self, probs: np.ndarray) -> np.ndarray:
        """``bernoulli(probs)``: per element, a uniform of the probabilities' dtype."""
        digits = 53 if probs.dtype == np.float64 else 24
        return self._unit(probs.size, digits).reshape(probs.shape) < probs
