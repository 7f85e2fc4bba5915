"""Exact resume: the CPU and CUDA generator states in a checkpoint (``ember.get_rng_state``,
``ember.cuda.get_rng_state_all``) round-trip, and a resumed run with dropout continues exactly
as the uninterrupted one."""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F
from ember.cuda.random import decode_state, encode_state

STEPS = 3


def _model():
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.4), nn.Linear(16, 2))


def _steps(model, opt, n, start, device="cpu"):
    rng = np.random.default_rng(start)
    losses = []
    for _ in range(n):
        x = ember.tensor(rng.standard_normal((5, 6)).astype(np.float32), device=device)
        y = ember.tensor(rng.standard_normal((5, 2)).astype(np.float32), device=device)
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _checkpoint(model, opt):
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": ember.get_rng_state(),
        "cuda_rng": ember.cuda.get_rng_state_all(),
    }


def _restore(model, opt, state):
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    ember.set_rng_state(state["rng"])
    ember.cuda.set_rng_state_all(state["cuda_rng"])


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda", marks=pytest.mark.skipif(not ember.cuda.is_available(), reason="needs CUDA")
        ),
    ],
)
def test_resume_with_dropout_is_exact(tmp_path, device):
    ember.manual_seed(0)
    model = _model().to(device)
    opt = ember.optim.Adam(model.parameters(), lr=1e-2)
    _steps(model, opt, STEPS, start=1, device=device)  # the CUDA generator is in use by now
    ember.save(_checkpoint(model, opt), tmp_path / "ckpt.pt")
    expected = _steps(model, opt, STEPS, start=2, device=device)
    want = [p.detach().cpu().numpy().copy() for p in model.parameters()]

    ember.manual_seed(123)  # a different process state: other weights, other RNG
    fresh = _model().to(device)
    fresh_opt = ember.optim.Adam(fresh.parameters(), lr=1e-2)
    _steps(fresh, fresh_opt, 1, start=9, device=device)
    _restore(fresh, fresh_opt, ember.load(tmp_path / "ckpt.pt"))
    assert _steps(fresh, fresh_opt, STEPS, start=2, device=device) == expected
    for p, w in zip(fresh.parameters(), want):
        np.testing.assert_array_equal(p.detach().cpu().numpy(), w)


def test_cuda_state_without_cuda_matches_torch():
    torch = pytest.importorskip("torch")
    if ember.cuda.is_available() or torch.cuda.is_available():
        pytest.skip("checks the CPU-only behaviour")
    assert ember.cuda.get_rng_state_all() == torch.cuda.get_rng_state_all() == []
    for lib in (ember, torch):
        with pytest.raises(AssertionError, match="not compiled with CUDA enabled"):
            lib.cuda.get_rng_state()
        lib.cuda.set_rng_state_all([])  # nothing to restore: no error
        lib.cuda.set_rng_state(lib.zeros(2, dtype=lib.uint8))  # a no-op without CUDA


def test_cpu_restore_keeps_the_cuda_generator():
    # as torch's: ember.set_rng_state restores the CPU stream only, so the CPU and CUDA
    # restores may come in either order
    g = ember.random.default_generator
    before = g._cp
    try:
        marker = object()  # stands for a live CuPy generator: only its identity is checked
        g._cp = marker
        ember.set_rng_state(ember.get_rng_state())
        assert g._cp is marker
        ember.manual_seed(1)  # seeding resets both streams
        assert g._cp is None
    finally:
        g._cp = before


def test_cuda_state_codec_round_trips():
    raw = np.arange(48, dtype=np.int8)  # the layout of a CuPy bit generator's state buffer
    header = {"seeded": True, "kind": "XORWOW", "size": 1, "device": 0, "nbytes": 48}
    state = ember.tensor(encode_state(header, raw))
    assert state.dtype == ember.uint8 and state.dim() == 1
    got_header, got_raw = decode_state(state)
    assert got_header == {"version": 1, **header}
    np.testing.assert_array_equal(got_raw.view(np.int8), raw)
    # before the first CUDA draw the state is only a header
    unseeded = encode_state({"seeded": False, "nbytes": 0}, np.empty(0, np.uint8))
    got_header, got_raw = decode_state(unseeded)
    assert got_header == {"version": 1, "seeded": False, "nbytes": 0} and got_raw.size == 0


@pytest.mark.parametrize(
    "bad,error,match",
    [
        (np.zeros(40, np.uint8), RuntimeError, "not a CUDA generator state"),
        (np.zeros((2, 3), np.uint8), TypeError, "1-D uint8"),
        (np.zeros(4, np.float32), TypeError, "1-D uint8"),
        ("truncated", RuntimeError, "truncated"),
        ("version", RuntimeError, "version 9"),
    ],
)
def test_bad_cuda_state_is_refused(bad, error, match):
    good = encode_state(
        {"seeded": True, "kind": "XORWOW", "size": 1, "device": 0, "nbytes": 8},
        np.arange(8, dtype=np.uint8),
    )
    if isinstance(bad, str) and bad == "truncated":
        bad = good[:-3]
    elif isinstance(bad, str):
        bad = encode_state({"nbytes": 0}, np.empty(0, np.uint8))
        bad = bytes(bad).replace(b'"version": 1', b'"version": 9')
        bad = np.frombuffer(bad, dtype=np.uint8)
    with pytest.raises(error, match=match):
        decode_state(bad)
