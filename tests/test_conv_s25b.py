"""Convolution, session 25 (issue 23, h6): the channels-last forward kernels' blocks of input
channels (``conv_direct_cl.BLOCK_BYTES``, ``_channel_block``): equal blocks whose weights fit
the budget; one block, several blocks and the tail's blocks against torch (forward, input and
weight gradients) and by float64 gradcheck; the forward kernels compute only the position
table's rows up to their own multiple (``_trim``), the same values as over the whole table."""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember.autograd import gradcheck
from ember.ops import conv_direct_cl as DCL

torch = pytest.importorskip("torch")
K = pytest.importorskip("ember.ops._numba_conv_cl")
pytestmark = pytest.mark.skipif(not K.AVAILABLE, reason="numba is not installed")


@pytest.fixture(autouse=True)
def restore():
    prev = DCL.BLOCK_BYTES
    yield
    DCL.BLOCK_BYTES = prev


@pytest.fixture
def calls(monkeypatch):
    """The names of the channels-last kernels called (the path taken, and how often)."""
    seen = []
    orig = DCL._call

    def spy(name, macs, *args, mod=None):
        if name.startswith("forward_cl"):
            seen.append((name, args[4]))  # (kernel, channels a block)
        orig(name, macs, *args, mod=mod)

    monkeypatch.setattr(DCL, "_call", spy)
    return seen


@pytest.mark.parametrize(
    "c, per, budget, want",
    [
        (64, 9 * 256, 589824, 64),  # one block
        (256, 9 * 256, 589824, 256),
        (257, 9 * 256, 589824, 129),  # two equal blocks, not 256 + 1
        (64, 9 * 256, 32768, 13),  # 5 blocks: 13 x 4 + 12
        (96, 27 * 256, 589824, 48),
        (8, 9 * 256, 1024, 4),  # at least 4
    ],
)
def test_channel_block(c, per, budget, want):
    DCL.BLOCK_BYTES = budget
    assert DCL._channel_block(c, per) == want


@pytest.mark.parametrize("budget", [589824, 32768, 8192])
@pytest.mark.parametrize("c, o, hw", [(64, 64, (8, 8)), (48, 80, (5, 7)), (32, 80, (7, 7))])
def test_blocks_vs_torch(c, o, hw, budget, calls):
    # 80 output channels: one whole vector and a 16-lane tail (its own blocks); 2 x 7^2: the
    # kernels compute 102 (whole vectors) and 108 (the tail) of the table's 120 rows
    DCL.BLOCK_BYTES = budget
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, c) + hw).astype(np.float32)
    w = (rng.standard_normal((o, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    g = rng.standard_normal((2, o) + hw).astype(np.float32)
    xe, we, be = (ember.tensor(a, requires_grad=True) for a in (x, w, b))
    ye = F.conv2d(xe, we, be, padding=1)
    ye.backward(ember.tensor(g))
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv2d(xt, wt, bt, padding=1)
    yt.backward(torch.tensor(g))
    assert calls, "the channels-last path was not taken"
    if budget == 8192:
        assert max(cb for _, cb in calls) < c  # several blocks a call
    for e, t in ((ye, yt), (xe.grad, xt.grad), (we.grad, wt.grad)):
        np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("budget", [589824, 8192])
def test_blocks_gradcheck(budget, calls):
    DCL.BLOCK_BYTES = budget
    rng = np.random.default_rng(2)
    x = ember.tensor(rng.standard_normal((1, 16, 4, 5)), requires_grad=True)
    w = ember.tensor(rng.standard_normal((40, 16, 3, 3)) * 0.2, requires_grad=True)
    b = ember.tensor(rng.standard_normal(40), requires_grad=True)
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=1), (x, w, b))
    assert calls, "the channels-last path was not taken"


@pytest.mark.parametrize("o", [64, 80])
def test_trim_bitwise(o, calls):
    # the kernels on the trimmed table and rows: the same bits as on the whole padded table
    rng = np.random.default_rng(3)
    n, c, s = 4, 32, 7
    x = rng.standard_normal((n, c, s, s)).astype(np.float32)
    w = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
    with ember.no_grad():
        y = F.conv2d(ember.tensor(x), ember.tensor(w), padding=1).numpy()
    orig = DCL._trim
    try:
        DCL._trim = lambda j, p: -(-j // DCL.POS_ALIGN) * DCL.POS_ALIGN  # the whole table
        with ember.no_grad():
            y_full = F.conv2d(ember.tensor(x), ember.tensor(w), padding=1).numpy()
    finally:
        DCL._trim = orig
    assert DCL._trim(n * s * s, DCL.CL_P) < -(-n * s * s // DCL.POS_ALIGN) * DCL.POS_ALIGN
    np.testing.assert_array_equal(y, y_full)
    # whole vectors only: the chunks straight back to channels-first (session 26)
    assert {name for name, _ in calls} == (
        {"forward_cl", "forward_cl_tail"} if o == 80 else {"forward_cl_nchw"}
    )
