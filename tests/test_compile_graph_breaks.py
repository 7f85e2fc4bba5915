"""ember.compile splits a function at a graph break into graphs, as torch.compile does.

Each case runs the same code under ember and torch 2.13 (the library is a closure variable,
so the split also carries closure cells): compiled values and gradients equal eager ember's,
and ``explain``'s graph and break counts equal ``torch._dynamo.explain``'s.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _np(t):
    return t.detach().numpy()


def _print_fn(lib):
    def f(x, w):
        y = (x @ w).sin()
        print("logged", tuple(y.shape))
        z = y.cos() + 1
        return z.sum()

    return f


def _item_fn(lib):
    def f(x, w):
        y = (x @ w).relu() + 1
        s = y.mean().item()  # a Python float read after the break
        return (y * s).sum()

    return f


def _graph_break_fn(lib):
    def f(x, w):
        y = x @ w
        lib._dynamo.graph_break()
        return y.tanh().sum()

    return f


def _if_fn(lib):
    def f(x, w):
        y = x @ w
        if y.sum() > 0:  # data-dependent: the condition is graph 1's last value
            return y.exp().sum()
        return (y * y).sum()

    return f


def _two_breaks_fn(lib):
    def f(x, w):
        y = x @ w
        print("first")
        y = y.sigmoid() * 2
        lib._dynamo.graph_break()
        return (y - 1).sum()

    return f


CASES = [_print_fn, _item_fn, _graph_break_fn, _if_fn, _two_breaks_fn]


def _inputs(lib, sign=1.0):
    rng = np.random.default_rng(0)
    x = lib.tensor(sign * np.abs(rng.standard_normal((4, 3))).astype(np.float32))
    w = lib.tensor(rng.standard_normal((3, 5)).astype(np.float32), requires_grad=True)
    return x, w


def _torch_counts(make, sign=1.0):
    torch._dynamo.reset()
    out = torch._dynamo.explain(make(torch))(*_inputs(torch, sign))
    return out.graph_count, out.graph_break_count


@pytest.mark.parametrize("make", CASES, ids=lambda m: m.__name__.strip("_"))
def test_split_matches_eager_and_torch_counts(make, capsys):
    f = make(ember)
    compiled = ember.compile(f)
    for sign in (1.0, -1.0) if make is _if_fn else (1.0,):  # both outcomes of the if
        x, w = _inputs(ember, sign)
        ref = f(x, w)
        (gref,) = ember.autograd.grad(ref, [w])
        for _ in range(2):  # the second call runs the cached pieces
            out = compiled(x, w)
            (g,) = ember.autograd.grad(out, [w])
            np.testing.assert_allclose(_np(out), _np(ref), rtol=1e-6)
            np.testing.assert_allclose(_np(g), _np(gref), rtol=1e-6)
        report = ember._dynamo.explain(f)(x, w)
        counts = (report.graph_count, report.graph_break_count)
        assert counts == _torch_counts(make, sign), report
        assert len(report.ops_per_graph) == report.graph_count and all(report.ops_per_graph)
    state = compiled._ember_compiled
    assert not any(getattr(b, "not_split", None) for b in state.break_reasons)
    if make is _print_fn:  # printed on every call: 2 compiled, eager, explain, torch
        assert capsys.readouterr().out.count("logged (4, 5)") == 5


def test_pieces_are_compiled_once_and_reused():
    f = _two_breaks_fn(ember)
    compiled = ember.compile(f)
    x, w = _inputs(ember)
    ember._dynamo.utils.counters.clear()
    compiled(x, w)
    state = compiled._ember_compiled
    graphs = [e for e in state.entries if e.graph is not None]
    assert len(graphs) == 3 and all(e.fn is not None for e in graphs)
    assert ember._dynamo.utils.counters["stats"]["unique_graphs"] == 3
    n = len(state.entries)
    for _ in range(3):
        compiled(x, w)
    assert len(state.entries) == n  # no capture on later calls
    assert ember._dynamo.utils.counters["stats"]["unique_graphs"] == 3
    with pytest.raises(ember._dynamo.exc.Unsupported, match="print"):
        ember.compile(f, fullgraph=True)(x, w)


def test_data_dependent_if_caches_one_continuation_per_outcome():
    f = _if_fn(ember)
    compiled = ember.compile(f)
    xp, w = _inputs(ember, 1.0)
    xn, _ = _inputs(ember, -1.0)
    for x in (xp, xn, xp, xn):
        np.testing.assert_allclose(_np(compiled(x, w)), _np(f(x, w)), rtol=1e-6)
    state = compiled._ember_compiled
    assert len(state.break_reasons) == 1
    assert sum(e.graph is not None for e in state.entries) == 3  # condition + two branches
    runner = state.entries[0].fn
    assert sorted(runner._conts) == [False, True]


class _Net:
    @staticmethod
    def make(lib):
        nn, F = lib.nn, lib.nn.functional

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1, self.fc2 = nn.Linear(6, 16), nn.Linear(16, 3)
                self.stat = 0.0

            def forward(self, x):
                h = F.relu(self.fc1(x))
                self.stat = h.mean().item()  # logging: a break in forward
                return self.fc2(h)

        return Net


def test_module_forward_split_trains_like_eager_with_adam():
    net_cls = _Net.make(ember)
    ember.manual_seed(0)
    eager = net_cls()
    model = net_cls()
    model.load_state_dict(eager.state_dict())
    compiled = ember.compile(model)
    opts = [ember.optim.Adam(m.parameters(), lr=1e-2) for m in (eager, model)]
    rng = np.random.default_rng(1)
    for _ in range(4):
        x = ember.tensor(rng.standard_normal((8, 6)).astype(np.float32))
        y = ember.tensor(rng.integers(0, 3, 8))
        for net, opt in zip((eager, compiled), opts):
            opt.zero_grad()
            ember.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        assert model.stat == eager.stat
    for a, b in zip(eager.parameters(), model.parameters()):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-6, atol=1e-7)
    x = ember.randn(8, 6)
    report = ember._dynamo.explain(compiled)(x)
    torch._dynamo.reset()
    ref = torch._dynamo.explain(_Net.make(torch)())(torch.randn(8, 6))
    assert (report.graph_count, report.graph_break_count) == (2, 1)
    assert (ref.graph_count, ref.graph_break_count) == (2, 1)
    assert "Tensor.item()" in report.break_reasons[0].reason


_SCALE = 3.0  # a global read by the pieces


def test_returns_globals_closures_and_unbound_names_keep_their_meaning():
    offset = ember.tensor(0.5)

    def f(x, early: bool):
        y = x * _SCALE
        if early:
            return y  # a return in the prefix graph
        if y.sum() > 100:
            z = y  # bound on one path only
        print("break")
        if y.sum() > 100:
            return z + offset
        return y - offset

    compiled = ember.compile(f)
    for x in (ember.ones(3), ember.full((3,), 50.0)):
        for early in (True, False):
            np.testing.assert_array_equal(_np(compiled(x, early)), _np(f(x, early)))

    def containers(x):
        d = {"a": x * 2, "b": [x, x + 1]}
        n = x.shape[0]
        d["a"] += 1
        ember._dynamo.graph_break()
        return d["a"] * n + d["b"][1]

    compiled = ember.compile(containers)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no recompile_limit warning: a dict keyed by content
        for _ in range(10):
            x = ember.randn(3)
            np.testing.assert_allclose(_np(compiled(x)), _np(containers(x)), rtol=1e-6)
    assert sum(e.graph is not None for e in compiled._ember_compiled.entries) == 2


def _helper(x):
    print("inside a helper")
    return x + 1


def test_breaks_that_are_not_split_run_the_signature_eagerly_and_say_why():
    def in_loop(x):
        for _ in range(2):
            x = x + 1
            print("loop")
        return x * 2

    def in_helper(x):
        y = x * 2
        y = _helper(y)
        return y * 3

    def in_comprehension(x):
        ys = [print(i) or x * i for i in range(2)]
        return ys[0] + ys[1]

    def closure_across(x):
        scale = x * 2
        shift = lambda t: t + scale  # noqa: E731 (traced, it would hold the trace's values)
        print("break")
        return shift(x)

    x = ember.ones(2)
    for fn, why in [
        (in_loop, "inside a `for` statement"),
        (in_helper, "inside _helper()"),
        (in_comprehension, "inside a comprehension"),
        (closure_across, "shift, a function or class defined before the break"),
    ]:
        np.testing.assert_array_equal(_np(ember.compile(fn)(x)), _np(fn(x)))
        report = ember._dynamo.explain(fn)(x)
        assert (report.graph_count, report.graph_break_count) == (0, 1)
        assert "not split: " in report.break_reasons[0].reason
        assert why in report.break_reasons[0].reason, report.break_reasons[0].reason
    lam = ember.compile(lambda t: print("lambda") or t + 1)
    np.testing.assert_array_equal(_np(lam(x)), [2.0, 2.0])


def test_stances_and_recompile_limit_reach_the_pieces():
    f = _item_fn(ember)
    compiled = ember.compile(f)
    x, w = _inputs(ember)
    with ember.compiler.set_stance("force_eager"):
        compiled(x, w)
    assert compiled._ember_compiled.entries == []
    compiled(x, w)
    with ember.compiler.set_stance("fail_on_recompile"):
        compiled(x, w)  # cached pieces: no recompile
        with pytest.raises(RuntimeError, match="fail_on_recompile"):
            compiled(x * 2, w)  # a new .item() value: the continuation would recompile


def test_scalars_across_a_break_specialize_then_become_graph_inputs():
    def scaled(x):
        y = x.relu() + 1
        s = y.mean().item()  # a new value every call
        return (y * s) / (s + 1.0)

    def branching(x):
        y = x.relu() + 1
        s = y.mean().item()
        if s > 1.3:  # control flow on the value: stays specialized
            return y * 2
        return y * s

    for fn, graphs in ((scaled, 3), (branching, 1 + 5)):
        compiled = ember.compile(fn)
        for i in range(5):
            x = ember.randn(5) + 0.1 * i
            np.testing.assert_allclose(_np(compiled(x)), _np(fn(x)), rtol=1e-6)
        state = compiled._ember_compiled
        # scaled: the prefix, the continuation specialized on the first value, then one with
        # ``s`` as a graph input (torch's automatic dynamic); branching: one per value
        assert sum(e.graph is not None for e in state.entries) == graphs
        assert len(state.break_reasons) == 1
        if fn is scaled:
            assert "v0_s + 1.0" in state.entries[-1].source
