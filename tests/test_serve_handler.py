"""BaseHandler's batching without Ray: grouping, padding and splitting back per request."""

import io
import os

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
    reqs = [
        rng.integers(1, 11, (n, t)).astype(np.int64)
        for n, t in ((1, 5), (2, 3), (1, 5), (3, 7), (1, 1))
    ]
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


@pytest.mark.parametrize("use_orjson", [True, False])
def test_response_json_equals_stdlib_json(monkeypatch, use_orjson):
    import json

    from ember.serve import _codec

    if use_orjson:
        pytest.importorskip("orjson")
    else:
        monkeypatch.setattr(_codec, "orjson", None)
    rng = np.random.default_rng(0)
    y32 = rng.standard_normal((3, 4)).astype(np.float32)
    body = {
        "outputs": _codec.encode_arrays([y32[:, ::2]]),
        "model": "m",
        "batch_size": 2,
        "extra": [np.float16(1.5), np.arange(3, dtype=np.int64), {"k": True}],
    }
    got = json.loads(_codec.dumps(body))
    # float32 values written as float32 (shortest repr) must read back exactly
    np.testing.assert_array_equal(np.asarray(got["outputs"], np.float32), y32[:, ::2])
    assert got["extra"] == [1.5, [0, 1, 2], {"k": True}] and got["batch_size"] == 2
    with pytest.raises(_codec.RequestError, match="malformed JSON"):
        _codec.parse_body(b'{"inputs": [1,', 1 << 10)
    assert _codec.parse_body(b'{"inputs": [[1, 2]]}', 1 << 10) == {"inputs": [[1, 2]]}


def test_serve_env_keeps_values_already_set(monkeypatch):
    from ember.serve import _api

    for k in _api.SERVE_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("RAY_SERVE_PROXY_USE_GRPC", "0")  # a user's own choice wins
    env = _api.serve_env()
    assert env["RAY_SERVE_PROXY_USE_GRPC"] == "0"
    assert env["RAY_SERVE_USE_GRPC_BY_DEFAULT"] == "1" and env["RAY_worker_niceness"] == "0"


def test_serve_env_leaves_sync_handles_usable():
    # Handles in the deploying process read Serve's constants from its environment: the
    # router must stay on its own loop, or serve.predict from plain code raises.
    import subprocess
    import sys

    pytest.importorskip("ray.serve")
    code = (
        "from ember.serve import serve_env; serve_env(); "
        "from ray.serve._private import constants as c; "
        "print(c.RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP, c.RAY_SERVE_PROXY_USE_GRPC)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["True", "True"]


def test_exported_input_dtype_decodes_json_numbers():
    """An exported float model given JSON integers gets float32 (the dtype it was exported with),
    not PyTorch's int64 inference, which would fail inside the model."""
    from ember.serve import _codec

    model = nn.Linear(4, 2).eval()
    buf = io.BytesIO()
    ember.export.save(ember.export.export(model, (ember.randn(1, 4),)), buf)
    h = BaseHandler()
    h.initialize(Context("m", "v", "export", artifact=buf.getvalue()))
    assert h.metadata()["inputs"][0]["dtype"] == "float32"
    arr = _codec.decode_inputs([[1, 2, 3, 4]], h.metadata()["inputs"][0])
    assert arr.dtype == np.float32
    (out,) = h.handle([{"body": arr}])[0]
    with ember.no_grad():
        np.testing.assert_allclose(out, model(ember.tensor([[1.0, 2, 3, 4]])).numpy(), rtol=1e-6)
