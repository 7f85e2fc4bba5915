"""User-level CUDA graph capture (ember.cuda.CUDAGraph / graph) on a device."""

from __future__ import annotations

import pytest

import ember

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not ember.cuda.is_available(), reason="needs CUDA and CuPy"),
]


def test_capture_and_replay_rewrite_the_static_output():
    static_in = ember.ones(1024, device="cuda")
    g = ember.cuda.CUDAGraph()
    with ember.cuda.graph(g):
        static_out = (static_in * 2).sin()
    static_in.copy_(ember.full((1024,), 3.0, device="cuda"))
    g.replay()
    ember.cuda.synchronize()
    expect = ember.full((1024,), 6.0).sin()
    assert ember.allclose(static_out.cpu(), expect)
    g.reset()
    with pytest.raises(RuntimeError, match="needs a captured graph"):
        g.replay()
