"""Idioms of the pytorch/tutorials compile recipes (regional compilation, compile caching,
``torch.compiler`` modes and stances, compiled autograd, FX profiling, Inductor debugging), each
a small program of our own with the same idiom, checked against eager ember or torch 2.13.

Regional compilation: modules of one class and structure share one captured graph
(``core/_compile/_share.py``); what makes two modules differ (an attribute's value, a
parameter's shape, a hook, a function stored on the instance) keeps their captures apart."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import ember
import ember.nn as nn
from ember._compile import _share


def _np(t):
    return t.detach().cpu().numpy()


class Block(nn.Module):
    def __init__(self, width: int = 6, scale: float = 1.0) -> None:
        super().__init__()
        self.linear1 = nn.Linear(width, width)
        self.relu = nn.ReLU()
        self.linear2 = nn.Linear(width, width)
        self.scale = scale

    def forward(self, x):
        a = ember.sigmoid(self.relu(self.linear1(x)))
        return self.linear2(a) * self.scale


def _reuses(caplog) -> int:
    return sum("reuses a graph captured before" in r.getMessage() for r in caplog.records)


@pytest.fixture
def fresh():
    ember.compiler.reset()
    yield
    ember.compiler.reset()


@pytest.mark.parametrize("how", ["ember.compile", "Module.compile"])
def test_regional_compilation_shares_one_capture(fresh, caplog, how):
    ember.manual_seed(0)
    blocks = [Block() for _ in range(6)]
    eager = [lambda x, b=b: type(b).forward(b, x) for b in blocks]
    if how == "ember.compile":
        blocks = [ember.compile(b) for b in blocks]
    else:
        for b in blocks:
            b.compile()
    x = ember.randn(3, 6, requires_grad=True)  # every block sees a tensor that requires grad
    with caplog.at_level(logging.INFO, logger="ember._dynamo"):
        y, want = x, x
        for b, e in zip(blocks, eager):
            y, want = b(y), e(want)
    assert _reuses(caplog) == 5  # one trace, five copies
    np.testing.assert_allclose(_np(y), _np(want), rtol=1e-5, atol=1e-6)
    # each copy trains its own parameters: the gradients are eager's, module by module
    mods = [getattr(b, "_orig_mod", b) for b in blocks]
    y.sum().backward()
    got = [_np(m.linear2.weight.grad).copy() for m in mods]
    for m in mods:
        m.zero_grad()
    want.sum().backward()
    for m, g in zip(mods, got):
        np.testing.assert_allclose(g, _np(m.linear2.weight.grad), rtol=1e-5, atol=1e-6)
    assert not np.allclose(got[-1], got[-2])


def test_what_differs_is_not_shared(fresh, caplog):
    ember.manual_seed(0)
    x = ember.randn(3, 6)
    plain, scaled, wide = Block(), Block(scale=3.0), Block(width=6)
    wide.linear1 = nn.Linear(6, 6, bias=False)  # another parameter set
    hooked = Block()
    hooked.relu.register_forward_hook(lambda m, i, o: o * 0)
    with caplog.at_level(logging.INFO, logger="ember._dynamo"):
        outs = [ember.compile(m)(x) for m in (plain, scaled, wide, hooked)]
    assert _reuses(caplog) == 0
    for m, out in zip((plain, scaled, wide, hooked), outs):
        np.testing.assert_allclose(_np(out), _np(m(x)), rtol=1e-5, atol=1e-6)
    # another input shape, grad mode or training flag is another key, traced again
    with caplog.at_level(logging.INFO, logger="ember._dynamo"):
        again = Block()
        compiled = ember.compile(again)
        compiled(x)
        with ember.no_grad():
            compiled(x)
        compiled(ember.randn(5, 6))
    assert _reuses(caplog) == 1  # only the first call matches a capture above (`plain`'s)


class WithConstant(nn.Module):
    def __init__(self, offset: float) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.offset = offset

    def forward(self, x):
        return self.lin(x) + ember.full((4,), self.offset)  # a tensor made while tracing


def test_tensors_made_while_tracing_stay_with_their_module(fresh, caplog):
    mods = [WithConstant(1.0), WithConstant(1.0)]
    x = ember.randn(2, 4)
    with caplog.at_level(logging.INFO, logger="ember._dynamo"):
        outs = [ember.compile(m)(x) for m in mods]
    for m, out in zip(mods, outs):
        np.testing.assert_allclose(_np(out), _np(m(x)), rtol=1e-6)


def test_reset_forgets_shared_graphs(fresh):
    ember.compile(Block())(ember.randn(2, 6))
    assert _share._STORE
    ember.compiler.reset()
    assert not _share._STORE


def test_fingerprint_keys_plain_values_by_value():
    a, b, c = Block(), Block(), Block(scale=2.0)
    assert _share.fingerprint(a) == _share.fingerprint(b) != _share.fingerprint(c)
    b.act = lambda t: t  # a function on the instance: compared by identity
    assert _share.fingerprint(a) != _share.fingerprint(b)


# ---- torch_compile_torch_function_modes recipe: TorchFunctionMode ---------------------------
class AddAsMul(ember.overrides.BaseTorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func == ember.Tensor.add or func is ember.add:
            func = ember.mul
        return super().__torch_function__(func, types, args, kwargs)


def test_function_mode_rewrites_ops_around_and_inside_compile():
    x, y = ember.rand(2, 2), ember.rand(2, 2)
    plain = (ember.add, ember.Tensor.__add__, ember.Tensor.add, ember.nn.functional.relu)

    @ember.compile
    def outside(a, b):
        return a + b * a  # `+` is reported as Tensor.add

    with AddAsMul():
        np.testing.assert_allclose(_np(outside(x, y)), _np(x * y * x), rtol=1e-6)
        np.testing.assert_allclose(_np(ember.add(x, y)), _np(x * y), rtol=1e-6)
    np.testing.assert_allclose(_np(outside(x, y)), _np(x + y * x), rtol=1e-6)  # mode gone

    @ember.compile
    def inside(a, b):
        with AddAsMul():
            return a + b * a

    np.testing.assert_allclose(_np(inside(x, y)), _np(x * y * x), rtol=1e-6)
    # the last mode to exit puts every function back
    assert plain == (ember.add, ember.Tensor.__add__, ember.Tensor.add, ember.nn.functional.relu)


def test_function_mode_sees_what_torch_sees():
    torch = pytest.importorskip("torch")

    def program(fw):
        import importlib

        mode_base = importlib.import_module(f"{fw.__name__}.overrides").TorchFunctionMode

        class Log(mode_base):
            def __init__(self):
                self.seen = []

            def __torch_function__(self, func, types, args=(), kwargs=None):
                self.seen.append(func.__name__)
                return func(*args, **(kwargs or {}))

        x = fw.ones(2, 3)
        with Log() as outer:
            r = (x + x).add(1) * 2
            fw.nn.functional.relu(-x).sum()
            fw.zeros(2)
            with Log() as inner:  # the inner mode's calls reach the outer one too
                x.mul(x)
        return outer.seen, inner.seen, r.tolist()

    assert program(ember) == program(torch)


# ---- compiled_autograd tutorial: the flags and context manager, graph_break, counters -------
def test_compiled_autograd_idioms_run_and_match_eager(fresh):
    ember.manual_seed(0)
    model = nn.Linear(10, 10)
    x = ember.randn(4, 10, requires_grad=True)
    x.register_hook(lambda g: g + 10)  # a backward hook: still runs

    @ember.compile(backend="aot_eager")
    def fn(v):
        temp = model(v) + 10
        ember._dynamo.graph_break()  # a graph break: a graph before it and one after
        return temp.sum()

    ember._dynamo.utils.counters.clear()
    loss = fn(x)
    # the two pieces (torch: 3, with compiled autograd's backward graph)
    assert ember._dynamo.utils.counters["stats"]["unique_graphs"] == 2
    with ember._dynamo.compiled_autograd.enable(ember.compile(fullgraph=True)):
        assert ember._dynamo.config.compiled_autograd
        loss.backward()
    assert not ember._dynamo.config.compiled_autograd
    got = _np(x.grad).copy(), _np(model.weight.grad).copy()
    x.grad, model.weight.grad = None, None
    (model(x) + 10).sum().backward()
    np.testing.assert_allclose(got[0], _np(x.grad), rtol=1e-6)
    np.testing.assert_allclose(got[1], _np(model.weight.grad), rtol=1e-6)
    # a graph without breaks counts once; ``compile(lambda: loss.backward())`` runs backward
    ember.compile(lambda v: model(v).relu())(x)
    assert ember._dynamo.utils.counters["stats"]["unique_graphs"] == 3
    loss = model(x).sum()
    ember.compile(lambda: loss.backward(), backend="eager")()
    assert model.bias.grad is not None


# ---- torch_compile_caching recipes: save/load_cache_artifacts --------------------------------
def test_cache_artifacts_round_trip_like_torch(fresh, caplog):
    assert ember.compiler.save_cache_artifacts() is None  # nothing compiled yet (torch: None)
    f = ember.compile(lambda v: v.sin() + 1)
    f(ember.randn(4))
    blob, info = ember.compiler.save_cache_artifacts()
    assert isinstance(blob, bytes) and info.artifacts["ember"][0].endswith("<lambda>")
    assert ember.compiler.load_cache_artifacts(blob) == info
    with caplog.at_level(logging.WARNING, logger="ember.compiler"):
        assert ember.compiler.load_cache_artifacts(b"garbage") is None
    assert "Failed to read cache artifacts" in caplog.text


# ---- inductor_debug_cpu / dynamo tutorials: backends agree, ``same``, concrete_args ----------
def test_backends_agree_and_same_reports_accuracy(caplog):
    def foo(x1, x2):
        return ember.cat([ember.maximum(x2, ember.neg(x1))], dim=0)

    u1 = ember.randint(256, (1, 8), dtype=ember.uint8)
    u2 = ember.randint(256, (64, 8), dtype=ember.uint8)
    want = foo(u1, u2)
    for backend in ("eager", "aot_eager", "inductor"):
        got = ember.compile(foo, backend=backend)(u1, u2)
        assert got.dtype == ember.uint8 and bool((got == want).all())
    from ember._dynamo.utils import same

    f1, f2 = ember.randn(1, 8), ember.randn(64, 8)
    assert same(foo(f1, f2), ember.compile(foo)(f1, f2))
    with caplog.at_level(logging.ERROR, logger="ember._dynamo.utils"):
        assert not same([foo(f1, f2)], [foo(f1, f2) * 2])
    assert "Accuracy failed: allclose not within tol=0.0001" in caplog.text


@pytest.mark.filterwarnings("ignore:Was not able to add assertion")  # (torch's, for a tensor)
def test_symbolic_trace_with_a_concrete_first_argument():
    torch = pytest.importorskip("torch")

    def f1(x, y):
        if x.sum() < 0:
            return -y
        return y

    x, y = np.ones((2, 2), np.float32), np.arange(4, dtype=np.float32).reshape(2, 2)
    for fw in (ember, torch):
        gm = fw.fx.symbolic_trace(f1, concrete_args={"x": fw.tensor(x)})
        # the branch taken for this x is baked in; x stays in the signature
        np.testing.assert_array_equal(gm(fw.tensor(-x), fw.tensor(y)).numpy(), y)


# ---- debug_mode recipe: DebugMode (ember function level) -----------------------------------
def test_debug_mode_logs_eager_and_compiled_runs_alike(fresh):
    from ember.utils._debug_mode import DebugMode

    class Toy(nn.Module):
        def forward(self, x):
            return ember.relu(x).mm(x)

    x = ember.randn(4, 4)
    logs = []
    for model in (Toy(), ember.compile(Toy(), backend="aot_eager")):
        with (
            DebugMode(record_ids=True) as dm,
            DebugMode.log_tensor_hashes(hash_inputs=True),
            DebugMode.dispatch_hooks(log_hook=lambda *a: {"seen": True}),
        ):
            model(x)
        logs.append(dm.debug_string())
    assert logs[0] == logs[1]
    first, second = logs[0].splitlines()
    assert first.startswith("    ember::relu(t$0: f32[4, 4])  ->  t$1: f32[4, 4]  # {")
    norm = float(ember.relu(x).double().abs().sum())  # the "norm" hash: the 1-norm
    assert "'seen': True" in first and f"'hash': {norm!r}" in first
    assert second.startswith("    ember::mm(t$1: f32[4, 4], t$0: f32[4, 4])")

    class Bar(nn.Module):
        def __init__(self):
            super().__init__()
            self.abc = nn.Sequential(nn.Linear(4, 4))

        def forward(self, v):
            return self.abc(v)

    bar = Bar()
    with DebugMode(record_nn_module=True, record_stack_trace=True) as dm:
        bar(x)
    lines = dm.debug_string(show_stack_trace=True).splitlines()
    assert [ln.strip() for ln in lines[:3]] == [
        "[nn.Mod] Bar",
        "[nn.Mod] Bar.abc",
        "[nn.Mod] Bar.abc.0",
    ]
    assert "ember::linear(" in dm.debug_string()


# ---- foreach_map recipe: an Adam step written with foreach_map -------------------------------
def test_foreach_map_adam_matches_torch():
    torch = pytest.importorskip("torch")

    def run(fw):
        import importlib

        foreach_map = importlib.import_module(
            f"{fw.__name__}._higher_order_ops.foreach_map"
        ).foreach_map
        ps = [
            fw.tensor(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3) * (i + 1))
            for i in range(3)
        ]
        gs = [p * 0.5 + 0.1 for p in ps]
        ms, vs = [fw.zeros_like(p) for p in ps], [fw.zeros_like(p) for p in ps]
        steps = [fw.tensor(0.0) for _ in ps]
        steps = foreach_map(lambda s: s + 1, steps)
        ms = foreach_map(fw.lerp, ms, gs, 0.1)
        vs = foreach_map(lambda v, g, b2: v.mul(b2).addcmul(g, g, value=1 - b2), vs, gs, 0.999)

        def update(p, s, m, v, b1, b2, lr, eps):
            step_size = (lr / (1 - fw.pow(b1, s))).neg()
            denom = (v.sqrt() / ((1 - fw.pow(b2, s)).sqrt() * step_size)).add(eps / step_size)
            return fw.add(p, fw.div(m, denom))

        return [p.numpy() for p in foreach_map(update, ps, steps, ms, vs, 0.9, 0.999, 1e-2, 1e-8)]

    for a, b in zip(run(ember), run(torch)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="different lengths"):
        from ember._higher_order_ops import foreach_map

        foreach_map(ember.add, [ember.ones(1)], [ember.ones(1)] * 2)


def test_module_compile_survives_deepcopy_and_pickle(fresh):
    import copy
    import pickle

    m = nn.Sequential(nn.Linear(3, 3))
    m.compile()
    x = ember.randn(2, 3)
    y = m(x)
    twin = copy.deepcopy(m)  # (an EMA copy): its forward runs its own parameters
    with ember.no_grad():
        twin[0].weight.mul_(2)
    assert not ember.allclose(twin(x), y) and ember.allclose(m(x), y)
    np.testing.assert_allclose(_np(twin(x)), _np(type(twin).forward(twin, x)), rtol=1e-6)
    back = pickle.loads(pickle.dumps(m))
    np.testing.assert_allclose(_np(back(x)), _np(y), rtol=1e-6)
    assert back.forward._ember_compiled._root is back
