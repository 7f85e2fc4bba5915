"""Idioms of a fifth batch of pytorch/tutorials programs that stopped an ``import ember as
torch`` port, each a small program of our own with the same idiom: ``torch.compiler.set_stance``
as a function, context manager and decorator (set_stance recipe) and the control-flow operators
of ``torch._higher_order_ops`` (``map``, ``scan``, ``associative_scan``, ``cond``,
``while_loop``; control flow tutorial), checked against torch's plain ops where torch's own
operators would compile (slow); and the knowledge-distillation tutorial's pooled 2-D features
with ``CosineEmbeddingLoss``, against torch."""

from __future__ import annotations

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _np(t):
    return t.detach().cpu().numpy()


# ---- set_stance recipe -------------------------------------------------------------------
def _signed():
    @ember.compile
    def f(x):
        # compiled: +1, eager: -1 (the recipe's probe of which path ran)
        return x + 1 if ember.compiler.is_compiling() else x - 1

    return f


def test_set_stance_function_context_and_decorator():
    f, x = _signed(), ember.zeros(3)
    assert f(x).tolist() == [1, 1, 1]
    with ember.compiler.set_stance("force_eager"):
        assert f(x).tolist() == [-1, -1, -1]
    assert f(x).tolist() == [1, 1, 1]  # restored on exit

    @ember.compiler.set_stance("force_eager")
    def eager_caller(v):
        return f(v)

    assert f(x).tolist() == [1, 1, 1]  # decorating does not change the stance
    assert eager_caller(x).tolist() == [-1, -1, -1]
    ember.compiler.set_stance("force_eager")
    try:
        assert f(x).tolist() == [-1, -1, -1]
    finally:
        ember.compiler.set_stance("default")
    assert f(x).tolist() == [1, 1, 1]


def test_set_stance_recompile_stances():
    f = _signed()
    assert f(ember.zeros(3)).tolist() == [1, 1, 1]  # first compile
    with ember.compiler.set_stance("eager_on_recompile"):
        assert f(ember.zeros(3)).tolist() == [1, 1, 1]  # cached entry still used
        assert f(ember.zeros(4)).tolist() == [-1] * 4  # would recompile: eager
    with ember.compiler.set_stance("fail_on_recompile"):
        f(ember.zeros(3))
        with pytest.raises(RuntimeError, match="Detected recompile.*fail_on_recompile"):
            f(ember.zeros(5))
    g = _signed()
    with ember.compiler.set_stance("eager_then_compile"):
        assert g(ember.zeros(2)).tolist() == [-1, -1]  # first call eager
        assert g(ember.zeros(2)).tolist() == [1, 1]
    # a stance set inside a compiled region ends the compile with torch's AssertionError
    h = ember.compile(lambda v: ember.compiler.set_stance("default") and v + 1)
    with pytest.raises(AssertionError, match="Attempt to trace forbidden callable"):
        h(ember.zeros(2))
    assert ember.compiler.set_stance("default").prev == "default"


def test_set_stance_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown stance 'fast'"):
        ember.compiler.set_stance("fast")
    with pytest.raises(NotImplementedError, match="force_backend"):
        ember.compiler.set_stance("default", force_backend="eager")
    assert ember._compile._stance.current() == "default"


# ---- control flow operators (torch._higher_order_ops) ---------------------------------------
def test_scan_carries_state_and_stacks_along_dim():
    from ember._higher_order_ops.scan import scan

    xs = np.arange(12.0, dtype=np.float32).reshape(3, 4)

    def step(carry, x):
        new = carry + x
        return new, (new * 2.0, x + 1)

    for reverse in (False, True):
        carry, (ys, zs) = scan(step, ember.zeros(3), ember.tensor(xs), dim=1, reverse=reverse)
        t = torch.tensor(xs)
        ref = t.flip(1).cumsum(1).flip(1) if reverse else t.cumsum(1)
        np.testing.assert_allclose(_np(carry), t.sum(1).numpy())
        np.testing.assert_allclose(_np(ys), 2 * ref.numpy())  # ys keep the slices' positions
        np.testing.assert_allclose(_np(zs), xs + 1)
    with pytest.raises(RuntimeError, match="same structure, shapes and dtypes as init"):
        scan(lambda c, x: (c.sum(), x), ember.zeros(3), ember.tensor(xs), dim=1)


def test_scan_lstm_matches_nn_lstm_with_gradients():
    from ember._higher_order_ops.scan import scan

    ember.manual_seed(0)
    lstm = ember.nn.LSTM(5, 6)
    cell = ember.nn.LSTMCell(5, 6)
    cell.load_state_dict({k[:-3]: v for k, v in lstm.state_dict().items()})
    xs = ember.randn(4, 5, requires_grad=True)
    h0, c0 = ember.zeros(6), ember.zeros(6)

    def combine(carry, x):
        h, c = cell(x, carry)
        return (h, c.clone()), h.clone()

    (h, _), ys = scan(combine, (h0, c0), xs)
    ref, (h_ref, _) = lstm(xs, (h0[None], c0[None]))
    np.testing.assert_allclose(_np(ys), _np(ref), atol=1e-6)
    np.testing.assert_allclose(_np(h), _np(h_ref[0]), atol=1e-6)
    (g,) = ember.autograd.grad(ys.sum(), xs)
    (g_ref,) = ember.autograd.grad(ref.sum(), xs)
    np.testing.assert_allclose(_np(g), _np(g_ref), atol=1e-6)

    # compiled whole (the tutorial's fullgraph=True): the loop unrolls for these shapes
    class ScanCell(ember.nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = cell

        def forward(self, init, v):
            def step(carry, x):
                h, c = self.cell(x, carry)
                return (h, c.clone()), h.clone()

            return scan(step, init, v)[1]

    compiled = ember.compile(ScanCell(), fullgraph=True)
    np.testing.assert_allclose(_np(compiled((h0, c0), xs)), _np(ref), atol=1e-6)


def test_associative_scan_and_map():
    from ember._higher_order_ops import associative_scan, cond, map, while_loop

    xs = np.arange(1.0, 7.0, dtype=np.float32).reshape(2, 3)
    t = torch.tensor(xs)
    out = associative_scan(lambda a, b: a * b, ember.tensor(xs), dim=1)
    np.testing.assert_allclose(_np(out), t.cumprod(1).numpy())
    out = associative_scan(lambda a, b: a + b, ember.tensor(xs), 1, reverse=True)
    np.testing.assert_allclose(_np(out), t.flip(1).cumsum(1).flip(1).numpy())

    # an S5-style state-space kernel: a pytree of (decay, input) pairs
    def s5(x, y):
        return y[0] * x[0], y[0] * x[1] + y[1]

    a = ember.full((4, 2), 0.5)
    decay, state = associative_scan(s5, (a, ember.ones(4, 2)), dim=0, combine_mode="generic")
    np.testing.assert_allclose(_np(decay[:, 0]), [0.5, 0.25, 0.125, 0.0625])
    np.testing.assert_allclose(_np(state[:, 0]), [1.0, 1.5, 1.75, 1.875])

    # map over the leading dim with an extra argument and a pytree input
    np.testing.assert_allclose(
        _np(map(lambda x, y: x**y, ember.arange(5), ember.tensor(2))), [0, 1, 4, 9, 16]
    )
    s, d = map(lambda p: (p[0] + p[1], p[0] - p[1]), (ember.tensor(xs), ember.ones(2, 3)))
    np.testing.assert_allclose(_np(s), xs + 1)
    np.testing.assert_allclose(_np(d), xs - 1)

    # cond / while_loop re-exported under their torch._higher_order_ops paths
    pred = (ember.tensor(xs).sum() > 0).unsqueeze(0)
    assert cond(pred, lambda v: (v.cos(),), lambda v: (v.sin(),), (ember.zeros(1),))[0].item() == 1
    _, total = while_loop(
        lambda i, s: i < 5, lambda i, s: (i + 1, s + i), (ember.tensor(0), ember.tensor(0))
    )
    assert total.item() == 10
    with pytest.raises(RuntimeError, match=r"size 2 along dim 0, got shape \(3,\)"):
        map(lambda p: p, (ember.ones(2), ember.ones(3)))
    with pytest.raises(ValueError, match="combine_mode"):
        associative_scan(lambda a, b: a + b, ember.ones(2), 0, combine_mode="fast")


# ---- knowledge_distillation_tutorial: pooled flat features + CosineEmbeddingLoss -------------
def test_distillation_cosine_loss_on_pooled_features():
    rng = np.random.default_rng(0)
    t_np = rng.standard_normal((4, 16)).astype(np.float32)
    s_np = rng.standard_normal((4, 8)).astype(np.float32)
    out = []
    for m in (ember, torch):
        teacher, student = m.tensor(t_np), m.tensor(s_np, requires_grad=True)
        # avg_pool1d on a 2-D (batch, features) tensor: an unbatched (C, L) input, halving L
        pooled = m.nn.functional.avg_pool1d(teacher, 2)
        loss = m.nn.CosineEmbeddingLoss()(student, pooled, target=m.ones(4))
        loss.backward()
        out.append((_np(pooled), loss.item(), _np(student.grad)))
    (pe, le, ge), (pt, lt, gt) = out
    np.testing.assert_allclose(pe, pt, atol=1e-6)
    assert abs(le - lt) < 1e-6
    np.testing.assert_allclose(ge, gt, atol=1e-6)


# ---- regional_compilation recipe: compiled blocks in a ModuleList, a fresh cache ------------
def test_regional_compilation_with_fresh_inductor_cache():
    class Block(ember.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = ember.nn.Linear(4, 4)

        def forward(self, x):
            return ember.sigmoid(self.linear(x).relu())

    ember.manual_seed(0)
    eager = ember.nn.ModuleList([Block() for _ in range(3)])
    regional = ember.nn.ModuleList([ember.compile(Block()) for _ in range(3)])
    for r, e in zip(regional, eager):
        r._orig_mod.load_state_dict(e.state_dict())
    x = ember.randn(2, 4)
    ember.compiler.reset()
    with ember._inductor.utils.fresh_inductor_cache():
        y, z = x, x
        for r, e in zip(regional, eager):
            y, z = r(y), e(z)
    np.testing.assert_allclose(_np(y), _np(z), atol=1e-6)
    assert next(iter(regional.state_dict())) == "0._orig_mod.linear.weight"  # torch's keys
    # Inductor settings are accepted and read back; names never set raise as torch's do
    ember._inductor.config.freezing = True
    ember._inductor.config.cpp.threads = 2
    assert ember._inductor.config.freezing and ember._inductor.config.cpp.threads == 2
    ember._inductor.config.freezing = False
    with pytest.raises(AttributeError):
        ember._inductor.config.no_such_setting  # noqa: B018


# ---- torch_logs recipe: set_logs(graph=True / graph_code=True / output_code=True) -----------
def test_set_logs_prints_graph_and_output_code(capsys):
    @ember.compile
    def fn(x, y):
        return x + y + 2

    try:
        ember._logging.set_logs(graph=True, graph_code=True, output_code=True)
        fn(ember.ones(2, 2), ember.zeros(2, 2))
    finally:
        ember._logging.set_logs()
    err = capsys.readouterr().err
    assert "[ember._dynamo.graph] TRACED GRAPH" in err and "call_function" in err
    assert "[ember._dynamo.graph_code] TRACED GRAPH" in err and "def forward(self, x, y)" in err
    assert "[ember._dynamo.output_code] Output code of " in err and "def compiled_forward" in err
    ember.compiler.reset()
    fn(ember.ones(2, 2), ember.zeros(2, 2))  # logs off again: nothing printed
    assert capsys.readouterr().err == ""


def test_higher_order_ops_names_survive_importing_their_submodules():
    """``import ember._higher_order_ops.cond`` after the package must not replace the package's
    ``cond`` function with the submodule (the CI order imported every module first)."""
    import importlib

    import ember._higher_order_ops as hop

    for name in ("cond", "while_loop", "map", "scan", "associative_scan"):
        importlib.import_module(f"ember._higher_order_ops.{name}")
        assert callable(getattr(hop, name)), name
