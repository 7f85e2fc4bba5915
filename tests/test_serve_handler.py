"""BaseHandler's batching without Ray: grouping, padding and splitting back per request."""

import io

import numpy as np
import pytest

import ember
import ember.nn as nn
from ember.serve import BaseHandler, Context


def _handler(model, example, pad: bool) -> BaseHandler:
    buf = io.BytesIO()
    ember.jit.save(ember.jit.trace(model, example), buf)
    h = BaseHandler()
    h.initialize(Context("m", "v", "jit", artifact=buf.getvalue(), pad_sequences=pad))
    return h


@pytest.mark.parametrize("pad", [False, True])
def test_batched_outputs_equal_one_by_one(pad):
    ember.manual_seed(0)
    model = nn.Sequential(nn.Embedding(11, 6), nn.Linear(6, 3)).eval()  # per position
    h = _handler(model, ember.randint(0, 11, (2, 5)), pad)
    rng = np.random.default_rng(0)
    reqs = [rng.integers(1, 11, (n, t)).astype(np.int64)
            for n, t in ((1, 5), (2, 3), (1, 5), (3, 7), (1, 1))]
    got = h.handle([{"body": r} for r in reqs])
    for r, (out,) in zip(reqs, got):
        with ember.no_grad():
            want = model(ember.from_numpy(r)).numpy()
        assert out.shape == want.shape
        np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)
    # how many forward passes: one per distinct length without padding, one with it
    groups = h.preprocess([{"body": r} for r in reqs])
    assert len(groups) == (1 if pad else 4)
    if pad:
        assert groups[0][1].shape == (8, 7)  # 1+2+1+3+1 rows, padded to the longest


def test_mlp_rows_split_back():
    ember.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    h = _handler(model, ember.randn(2, 4), False)
    reqs = [np.full((k, 4), k, np.float32) for k in (1, 3, 2)]
    got = h.handle([{"body": r} for r in reqs])
    w, b = model[0].weight.detach().numpy(), model[0].bias.detach().numpy()
    for r, (out,) in zip(reqs, got):
        np.testing.assert_allclose(out, r @ w.T + b, rtol=1e-5, atol=1e-6)
