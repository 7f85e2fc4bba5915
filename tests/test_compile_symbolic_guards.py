"""With symbolic sizes (``dynamic=True``, automatic dynamic, ``mark_dynamic``), Python control
flow on a size is a guard, not a graph break: it takes the call's value, the compiled entry
guards the relation, and a call that violates it recompiles (torch.compile's behaviour; the
recompile counts below are torch 2.13's on the same calls, checked live for two functions)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import ember
import ember.nn.functional as F


def _orient(g):  # nanochat's Muon step: the smaller Gram matrix
    if g.size(-2) > g.size(-1):
        return g.mT @ g
    return g @ g.mT


def _parity(x):
    if x.shape[0] % 2:
        return x * 2
    return x + 1


def _blocks(x):
    out = x
    for i in range(x.size(0) // 4):
        out = out + i
    return out


def _at_least_8(x):
    return x.sum(-1) * max(x.size(1), 8)  # symbolic max: no guard, as torch's sym_max


def _numel(x):
    if x.numel() > 24:
        return F.relu(x)
    return x.sigmoid()


def _halves(x):  # size arithmetic that only flows into a shape: symbolic, no guard
    b, s = x.size(0), x.size(1)
    return x.view(b, -1, s // 2).sum(-1)


# (function, shapes called in order, compiles after each call with dynamic=True, guards)
CASES = [
    (_orient, [(4, 3), (5, 2), (3, 5), (2, 6)], [1, 1, 2, 2], 2),
    (_parity, [(3, 2), (5, 2), (4, 2), (6, 2)], [1, 1, 2, 2], 2),
    (_blocks, [(8, 2), (9, 2), (12, 2), (13, 2)], [1, 1, 2, 2], 2),
    (_at_least_8, [(2, 3), (2, 9), (3, 12)], [1, 1, 1], 0),
    (_numel, [(4, 7), (5, 7), (2, 3), (3, 3)], [1, 1, 2, 2], 2),
    (_halves, [(2, 4, 3), (3, 6, 3), (4, 8, 2)], [1, 1, 1], 0),
]


def _compiled_counts(fn, shapes, **kw):
    c = ember.compile(fn, fullgraph=True, **kw)
    rng = np.random.default_rng(0)
    counts = []
    for s in shapes:
        x = ember.tensor(rng.standard_normal(s))
        np.testing.assert_allclose(c(x).numpy(), fn(x).numpy(), rtol=1e-12)
        counts.append(c._ember_compiled._compiles)
    return counts, c._ember_compiled


@pytest.mark.parametrize("fn, shapes, counts, n_guards", CASES, ids=[c[0].__name__ for c in CASES])
def test_branch_on_symbolic_size_is_a_guard(fn, shapes, counts, n_guards):
    got, state = _compiled_counts(fn, shapes, dynamic=True)
    assert got == counts
    assert not state.break_reasons
    assert sum(len(e.guards) for e in state.entries) == n_guards


@pytest.mark.parametrize("fn", [_orient, _parity], ids=["orient", "parity"])
def test_recompile_counts_match_torch_compile(fn):
    shapes = [(4, 3), (5, 2), (3, 5), (2, 6), (7, 3)]
    for dynamic in (True, None):
        torch._dynamo.reset()
        n = [0]

        def count(gm, example_inputs, n=n):
            n[0] += 1
            return gm.forward

        tc = torch.compile(fn, backend=count, dynamic=dynamic, fullgraph=True)
        want = []
        for s in shapes:
            tc(torch.randn(s, dtype=torch.float64))
            want.append(n[0])
        assert _compiled_counts(fn, shapes, dynamic=dynamic)[0] == want


def test_guard_text_explain_and_fullgraph():
    state = _compiled_counts(_orient, [(4, 3), (3, 5)], dynamic=True)[1]
    assert [g.text for e in state.entries for g in e.guards] == [
        "g.size(-2) > g.size(-1)",
        "g.size(-2) <= g.size(-1)",
    ]
    assert "g.size" not in state.entries[0].source  # the guard's nodes left the graph
    report = ember._dynamo.explain(ember.compile(_orient, dynamic=True))(ember.randn(4, 3))
    assert report.graph_count == 1 and report.graph_break_count == 0
    assert "size: g.size(-2) > g.size(-1)" in report.out_guards
    loop = _compiled_counts(_blocks, [(9, 2)], dynamic=True)[1]
    assert loop.entries[0].guards[0].text == "x.size(0) // 4 == 2"


def test_guard_on_an_intermediate_size_matches_torch():
    def step(g, buf, w):  # a Muon-like step: in place on inputs, a branch on derived sizes
        buf.lerp_(g, 0.1)
        h = (buf.float() @ w.float()).tanh()
        if h.size(-2) > h.size(-1):
            h = h.mT @ h
        else:
            h = h @ h.mT
        return h * min(h.size(-2), h.size(-1)) ** 0.5

    c = ember.compile(step, dynamic=True, fullgraph=True)
    rng = np.random.default_rng(1)
    for n, k in ((5, 3), (6, 2), (2, 7), (3, 4)):
        arrs = [rng.standard_normal(s) for s in ((n, 4), (n, 4), (4, k))]
        e = [ember.tensor(a) for a in arrs]
        t = [torch.tensor(a) for a in arrs]
        np.testing.assert_allclose(c(*e).numpy(), step(*t).numpy(), rtol=1e-5)  # float32
        np.testing.assert_allclose(e[1].numpy(), t[1].numpy())  # the in-place update ran once
    state = c._ember_compiled
    assert state._compiles == 2 and not state.break_reasons
    assert state.entries[0].guards[0].text == "<matmul>.size(-2) > <matmul>.size(-1)"


def test_automatic_dynamic_and_mark_dynamic_keep_one_graph_per_relation():
    counts, state = _compiled_counts(_orient, [(4, 3), (5, 2), (3, 5), (2, 6), (9, 1)])
    # static, then symbolic with a guard, then its negation; a size 1 is specialized (torch's)
    assert counts == [1, 2, 3, 3, 4]
    c = ember.compile(_parity)
    for n in (3, 5, 7):
        x = ember.randn(n, 2)
        ember._dynamo.mark_dynamic(x, 0)
        assert ember.allclose(c(x), _parity(x))
    assert c._ember_compiled._compiles == 1


@pytest.mark.parametrize(
    "calls, counts",
    [  # torch 2.13's recompile counts on the same calls (dynamic=True)
        ([((1, 3), 5), ((2, 3), 5), ((3, 3), 5), ((0, 3), 5), ((6, 3), 7)], [1, 2, 2, 3, 3]),
        ([((4, 4), 4), ((5, 5), 5), ((4, 3), 4), ((4, 3), 3), ((6, 3), 7)], [1, 1, 2, 3, 3]),
    ],
    ids=["zero_one", "duck"],
)
def test_zero_one_specialization_and_duck_sizing(calls, counts):
    def f(x, y):
        return (x * 2).sum(0) + y.sum()

    c = ember.compile(f, dynamic=True)
    got = []
    for s, n in calls:
        x, y = ember.randn(*s), ember.randn(n)
        assert ember.allclose(c(x, y), f(x, y))
        got.append(c._ember_compiled._compiles)
    assert got == counts
    if counts[1] == 1:  # (4, 4), (4,): one symbol for all three sizes
        assert [g.text for g in c._ember_compiled.entries[0].guards] == [
            "x.size(1) == x.size(0)",
            "y.size(0) == x.size(0)",
        ]


def test_guard_failure_respects_recompile_limit():
    cfg = ember._dynamo.config
    old = cfg.recompile_limit
    cfg.recompile_limit = 1
    try:
        c = ember.compile(_orient, dynamic=True)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            for s in ((4, 3), (3, 5), (2, 6)):
                x = ember.randn(*s)
                assert ember.allclose(c(x), _orient(x))
        msgs = [str(m.message) for m in w if "recompile_limit" in str(m.message)]
        assert len(msgs) == 1 and "size guard failed: g.size(-2) > g.size(-1)" in msgs[0]
        assert c._ember_compiled._compiles == 1
    finally:
        cfg.recompile_limit = old


def test_sizes_the_rules_cannot_follow_still_break():
    def f(x):
        y = x[x > 0]  # data-dependent size
        if y.size(0) > 2:
            return y * 2
        return y

    c = ember.compile(f, dynamic=True)
    x = ember.tensor([1.0, -1.0, 2.0, 3.0])
    assert ember.equal(c(x), f(x))
    assert len(c._ember_compiled.break_reasons) == 1
    with pytest.raises(ember._dynamo.exc.Unsupported, match="control flow"):
        ember.compile(f, dynamic=True, fullgraph=True)(x)


def test_docs_snippet_runs():
    import textwrap
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "compile.md").read_text()
    section = text.split("**Guards on symbolic sizes**", 1)[1]
    code = textwrap.dedent(section.split("```python\n", 1)[1].split("```", 1)[0])
    exec(compile(code, "docs/compile.md", "exec"), {"ember": ember})
