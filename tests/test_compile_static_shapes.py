"""ember.compile specializes on sizes (torch.compile's default): shape-dependent Python runs on
ints during capture, guarded shapes recompile, ``dynamic=True`` and ``mark_dynamic`` stay
shape-generic, and ``recompile_limit`` falls back to eager with a warning."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch

import ember
import ember._logging
import ember.nn as nn


def _orient(lib, g):  # nanochat's Muon step: the smaller Gram matrix
    if g.size(-2) > g.size(-1):
        return g.mT @ g
    return g @ g.mT


def _shape_loop(lib, x):
    out = x[0]
    for i in range(1, x.shape[0]):  # a Python loop over a size
        out = out * 0.5 + x[i]
    n = len(x) * x.dim() + x.numel() // x.ndim
    b, t = x.size(0), x.size(1)
    return out.sum() + x.reshape(b * t, -1).mean(0).sum() * n


def _torch(t):
    return torch.from_numpy(np.asarray(t.detach().numpy()))


def _compiled(fn, **kw):
    c = ember.compile(lambda x: fn(ember, x), fullgraph=True, **kw)
    return c, c._ember_compiled


@pytest.mark.parametrize("fn", [_orient, _shape_loop], ids=["branch", "loop"])
def test_shape_dependent_python_under_fullgraph_equals_eager_and_torch(fn):
    ember.compiler.reset()
    c, state = _compiled(fn)
    for shape in [(4, 3), (3, 5)] if fn is _orient else [(3, 4), (5, 2)]:
        x = ember.randn(*shape, dtype=ember.float64)
        got = c(x)
        np.testing.assert_allclose(got.numpy(), fn(ember, x).numpy(), rtol=1e-12)
        np.testing.assert_allclose(got.numpy(), fn(torch, _torch(x)).numpy(), rtol=1e-10)
    assert state._compiles == 2  # the second shape recompiled once
    assert not state.break_reasons


def test_second_shape_recompiles_once_and_both_results_are_right():
    ember.compiler.reset()
    c, state = _compiled(_orient)
    a, b = ember.randn(6, 2), ember.randn(2, 6)
    for _ in range(3):
        assert c(a).shape == (2, 2) and c(b).shape == (2, 2)
    assert state._compiles == 2
    assert ember.allclose(c(a), a.mT @ a) and ember.allclose(c(b), b @ b.mT)
    src = state.entries[0].source  # the branch is resolved at capture: one matmul, no size
    assert ".size(" not in src and src.count(" @ ") == 1


def test_intermediate_sizes_are_ints_and_inputs_are_untouched():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 6)

        def forward(self, x):
            h = self.lin(x)
            h.add_(1.0)  # an in-place op before the size query: evaluated on a copy
            b, t, c = h.shape
            return h.view(b * t, c // 2, 2).sum(-1)

    ember.manual_seed(0)
    net = Net()
    x = ember.randn(2, 3, 4)
    before = x.clone()
    out = ember.compile(net, fullgraph=True)(x)
    assert ember.equal(x, before)
    assert ember.allclose(out, net(x))


def test_random_draws_are_not_consumed_by_capture():
    def noisy(x):
        y = x + ember.randn(x.shape[0], 1)
        return y * y.size(0)

    c = ember.compile(noisy, fullgraph=True)
    x = ember.randn(3, 2)
    ember.manual_seed(7)
    got = c(x)
    ember.manual_seed(7)
    assert ember.equal(got, noisy(x))


def test_dynamic_true_stays_shape_generic():
    def f(x):
        return (x * 2).sum(-1) + x.size(-1)

    c = ember.compile(f, dynamic=True)
    for n in (3, 4, 5):
        x = ember.randn(2, n)
        assert ember.allclose(c(x), f(x))
    assert c._ember_compiled._compiles == 1


def test_mark_dynamic_compiles_one_generic_graph():
    def f(x):
        return x.softmax(-1) * 3

    c = ember.compile(f)
    state = c._ember_compiled
    for n in (3, 4, 5):
        x = ember.randn(n, 4)
        ember._dynamo.mark_dynamic(x, 0)
        assert ember.allclose(c(x), f(x))
    assert state._compiles == 1
    y = ember.randn(3, 4)  # unmarked: specialized, a second entry
    assert ember.allclose(c(y), f(y)) and state._compiles == 2
    ember._dynamo.mark_static(y)
    with pytest.raises(IndexError, match="out of range"):
        ember._dynamo.mark_dynamic(y, 2)


def test_recompile_limit_warns_then_runs_eagerly_and_logs_why(capsys):
    cfg = ember._dynamo.config
    old = cfg.cache_size_limit
    cfg.cache_size_limit = 2
    ember._logging.set_logs(recompiles=True)
    try:
        c, state = _compiled(_orient)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            for n in (2, 3, 4, 5):
                x = ember.randn(n, 3)
                assert ember.allclose(c(x), _orient(ember, x))
        assert state._compiles == 2
        msgs = [str(m.message) for m in w if "recompile_limit" in str(m.message)]
        # the second call went symbolic with a guard on the branch; (4, 3) fails it
        assert len(msgs) == 1 and "last reason: size guard failed: x.size(-2) <=" in msgs[0]
    finally:
        cfg.cache_size_limit = old
        ember._logging.set_logs(recompiles=False)
    err = capsys.readouterr().err
    logged = err + "".join(
        h.stream.getvalue() if hasattr(h.stream, "getvalue") else ""
        for h in logging.getLogger("ember._dynamo.recompiles").handlers
    )
    assert "Recompiling function" in logged and "size mismatch" in logged


def test_docs_snippet_runs():
    import textwrap
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "compile.md").read_text()
    section = text.split("**Sizes are Python ints**", 1)[1]
    code = textwrap.dedent(section.split("```python\n", 1)[1].split("```", 1)[0])
    exec(compile(code, "docs/compile.md", "exec"), {"ember": ember})
