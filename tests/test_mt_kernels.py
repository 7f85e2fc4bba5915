"""The compiled MT19937 engine (``core/_mt_kernels.py``): the same stream, word for word, as
NumPy's engine it stands in for, and torch's numbers for the large draws that use it."""

import math

import numpy as np
import pytest

import ember
from ember import _mt_engine as E
from ember import _mt_kernels as K
from ember import _mt_stream as S

pytestmark = pytest.mark.skipif(not K.AVAILABLE, reason="numba is not installed")


def _stream_at(pos: int) -> S.TorchStream:
    s = S.TorchStream(2024)
    s.raw32(pos)  # pos < COMPILED_MIN: NumPy's engine
    return s


@pytest.mark.parametrize("pos", [0, 1, 623, 624, 1000])
@pytest.mark.parametrize("n", [1, 311, 312, 623, 624, 625, 5001])
def test_fill_raw_and_bernoulli_follow_numpy_engine(pos, n):
    key, p0 = _stream_at(pos).engine_state()
    ref = S.TorchStream(0)
    ref.set_engine_state(key, p0)
    raw = ref.raw32(2 * n)  # NumPy's engine
    want_key, want_pos = ref.engine_state()

    words, out = key.copy(), np.empty(2 * n, dtype=np.uint64)
    assert K.fill_raw(words, p0, out) == want_pos
    np.testing.assert_array_equal(out, raw)
    np.testing.assert_array_equal(words, want_key)

    words, unit = key.copy(), np.empty(2 * n, dtype=np.float32)
    assert K.uniform24(words, p0, unit) == want_pos
    np.testing.assert_array_equal(unit, (raw & np.uint64(0xFFFFFF)) * np.float32(2.0**-24))

    t = math.ceil(0.7 * 2.0**53)
    k = ((raw[0::2] & np.uint64(0x1FFFFF)) << np.uint64(32)) | raw[1::2]
    words, hits = key.copy(), np.empty(n, dtype=bool)
    assert K.bernoulli53(words, p0, np.uint64(t), hits) == want_pos
    np.testing.assert_array_equal(hits, k < np.uint64(t))
    np.testing.assert_array_equal(words, want_key)


def test_stream_methods_equal_on_both_engines(monkeypatch):
    def draws():
        s = _stream_at(17)
        return [
            s.raw32(70001),
            s.bernoulli_scalar((300, 301), 0.25),
            s.random((50000,), dtype=np.float32),
            s.raw32(3),
        ]

    fast = draws()
    monkeypatch.setattr(E, "COMPILED_MIN", 1 << 62)
    slow = draws()
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(256, 512), (3, 70000)])
def test_large_draws_equal_torch(shape):
    torch = pytest.importorskip("torch")
    torch.manual_seed(11)
    ember.manual_seed(11)
    pairs = [
        (
            torch.nn.functional.dropout(torch.ones(shape), 0.1),
            ember.nn.functional.dropout(ember.ones(shape), 0.1),
        ),
        (torch.empty(shape).bernoulli_(0.3), ember.empty(shape).bernoulli_(0.3)),
        (torch.rand(shape), ember.rand(shape)),
        (torch.randn(shape), ember.randn(shape)),
        (torch.empty(shape).normal_(1.5, 3.0), ember.empty(shape).normal_(1.5, 3.0)),
        (torch.randint(0, 1000, shape), ember.randint(0, 1000, shape)),
    ]
    for a, b in pairs:
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # the streams are still in step afterwards
    np.testing.assert_array_equal(torch.rand(5).numpy(), ember.rand(5).numpy())


@pytest.mark.parametrize("n", [16, 48, 4096, 16 * 513])
def test_compiled_box_muller_is_bitwise_the_numpy_one(n):
    from ember import _mt_avx_math as M

    loop = M._compiled_loop()
    if not loop:
        pytest.skip("numba is disabled")
    data = S.TorchStream(5)._unit(n, 24).astype(np.float32)
    data[:8] = 0.0  # log(1 - 0) and the edge of the range
    data[8:16] = np.float32(1 - 2**-24)
    out = np.empty_like(data)
    loop(data, np.float32(0.5), np.float32(2.0), out)
    blocks = data.reshape(-1, 2, 8)
    radius = np.sqrt(np.float32(-2) * M.log_ps(np.float32(1) - blocks[:, 0]))
    sin_t, cos_t = M.sincos_ps(np.float32(2.0 * math.pi) * blocks[:, 1])
    want = np.empty_like(blocks)
    want[:, 0] = M.fma32(radius * cos_t, np.float32(2.0), np.float32(0.5))
    want[:, 1] = M.fma32(radius * sin_t, np.float32(2.0), np.float32(0.5))
    np.testing.assert_array_equal(out.view(np.uint32), want.reshape(-1).view(np.uint32))
