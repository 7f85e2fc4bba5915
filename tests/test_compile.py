"""ember.compile: API, capture and guards, graph breaks, and compiled == eager (values, gradients,
training trajectories), with torch as the reference where one exists."""

import copy
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F


def _mlp(p=0.1):
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(p), nn.Linear(16, 3))


def _cnn():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    )


class _LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 6)
        self.lstm = nn.LSTM(6, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, tokens):
        h, _ = self.lstm(self.emb(tokens))
        return self.head(h[:, -1])


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True)
        self.ln = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(F.gelu(self.ln(self.layer(x))).mean(dim=1))


def _case(name):
    ember.manual_seed(0)
    if name == "mlp":
        return _mlp(), ember.randn(5, 6, dtype=ember.float64)
    if name == "cnn":
        return _cnn(), ember.randn(4, 1, 8, 8, dtype=ember.float64)
    if name == "lstm":
        return _LSTMNet(), ember.randint(0, 10, (3, 5))
    return _Block(), ember.randn(2, 4, 8, dtype=ember.float64)


# ---- API --------------------------------------------------------------------------------------
def test_decorator_forms_and_optimized_module():
    torch = pytest.importorskip("torch")

    @ember.compile
    def f(x, y):
        return ember.relu(x) * y + 1

    @ember.compile(backend="eager", fullgraph=True)
    def g(x):
        return ember.tanh(x) - x

    x = ember.randn(3, 4)
    np.testing.assert_array_equal(f(x, x).numpy(), (ember.relu(x) * x + 1).numpy())
    np.testing.assert_array_equal(g(x).numpy(), (ember.tanh(x) - x).numpy())
    assert f.__name__ == "f"
    m = _mlp()
    cm = ember.compile(m)
    assert type(cm).__name__ == "OptimizedModule" and cm._orig_mod is m
    tm = torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(16, 3)
    )
    assert list(cm.state_dict()) == list(torch.compile(tm).state_dict())
    m.note = "kept"
    assert cm.note == "kept" and cm.training  # attributes read through to the original
    assert ember.compile(m, disable=True) is m


@pytest.mark.parametrize(
    "kwargs, err, msg",
    [
        ({"backend": "tvm"}, ValueError, "unknown backend 'tvm'"),
        ({"mode": "fast"}, RuntimeError, "Unrecognized mode='fast'"),
        ({"mode": "max-autotune", "options": {}}, RuntimeError, "Either mode or options"),
        ({"dynamic": "yes"}, TypeError, "dynamic must be None, True or False"),
    ],
)
def test_bad_arguments(kwargs, err, msg):
    with pytest.raises(err, match=re.escape(msg)):
        ember.compile(_mlp(), **kwargs)
    with pytest.raises(TypeError, match="expected a Module or a callable, got int"):
        ember.compile(3)


# ---- compiled == eager: outputs, gradients, training --------------------------------------
@pytest.mark.parametrize("name", ["mlp", "cnn", "lstm", "block"])
@pytest.mark.parametrize("backend", ["ember", "eager"])
def test_outputs_and_gradients_equal_eager(name, backend, monkeypatch):
    # bitwise: off with the embedding+LSTM rewrite, which reassociates the dW_ih/dE sums
    # (tests/test_compile_fuse.py checks it to rounding)
    monkeypatch.setattr(ember._dynamo.config, "fuse_embedding_rnn", False)
    model, x = _case(name)
    model = model.double()
    twin = copy.deepcopy(model)
    cm = ember.compile(twin, backend=backend)
    ember.manual_seed(7)
    out = model(x)
    out.square().sum().backward()
    ember.manual_seed(7)  # dropout draws the same stream
    cout = cm(x)
    cout.square().sum().backward()
    np.testing.assert_array_equal(cout.detach().numpy(), out.detach().numpy())
    for (n, p), q in zip(model.named_parameters(), twin.parameters()):
        np.testing.assert_array_equal(q.grad.numpy(), p.grad.numpy(), err_msg=n)
    entry = cm._compiled.entries[0]
    assert entry.fn is not None and entry.break_reason is None  # captured, not a fallback


def test_matches_torch_with_copied_weights():
    torch = pytest.importorskip("torch")
    m = _mlp(0.0).double()
    tm = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    tm = tm.double()
    with torch.no_grad():
        for tp, p in zip(tm.parameters(), m.parameters()):
            tp.copy_(torch.from_numpy(p.detach().numpy()))
    x = np.random.default_rng(0).standard_normal((5, 6))
    cm = ember.compile(m)
    ex = ember.tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    cm(ex).tanh().sum().backward()
    tm(tx).tanh().sum().backward()
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    with ember.no_grad():  # the inference plan (activations in place) gives the same values
        np.testing.assert_allclose(
            cm(ember.tensor(x)).numpy(), tm(tx).detach().numpy(), rtol=1e-12, atol=1e-12
        )
    assert "inplace=True" in cm._compiled.entries[-1].source


@pytest.mark.parametrize("name", ["mlp", "cnn", "block"])
def test_adam_training_matches_eager(name):
    model, x = _case(name)
    model = model.double()
    twin = copy.deepcopy(model)
    cm = ember.compile(twin)
    y = ember.tensor([0, 1, 2, 0, 1][: x.shape[0]])
    opts = [ember.optim.Adam(m.parameters(), lr=1e-2) for m in (model, twin)]
    for step in range(4):
        for fwd, opt in zip((model, cm), opts):
            ember.manual_seed(step)
            opt.zero_grad()
            F.cross_entropy(fwd(x), y).backward()
            opt.step()
    for (n, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        np.testing.assert_array_equal(b.numpy(), a.numpy(), err_msg=n)  # incl. BN buffers


# ---- guards and recompilation ----------------------------------------------------------------
def test_guards_recompile_on_shape_dtype_grad_mode_and_training():
    m = _mlp()
    cm = ember.compile(m, dynamic=False)
    cf = cm._compiled
    cm(ember.randn(2, 6))
    cm(ember.randn(2, 6))
    assert len(cf.entries) == 1
    cm(ember.randn(3, 6))  # shape
    cm(ember.randn(3, 6, dtype=ember.float64).float())  # same key again
    assert len(cf.entries) == 2
    with ember.no_grad():  # grad mode
        cm(ember.randn(3, 6))
    assert len(cf.entries) == 3
    cm.eval()  # training flags: dropout is baked per mode
    x = ember.randn(3, 6)
    np.testing.assert_array_equal(cm(x).detach().numpy(), m(x).detach().numpy())
    assert len(cf.entries) == 4
    m[0].weight = nn.Parameter(ember.zeros(16, 6))  # parameter identity
    np.testing.assert_array_equal(cm(x).detach().numpy(), m(x).detach().numpy())
    assert len(cf.entries) == 5


def test_automatic_dynamic_shapes_and_recompile_limit():
    calls = []

    def backend(gm, example_inputs):
        calls.append([tuple(t.shape) for t in example_inputs])
        return gm

    f = ember.compile(lambda x: x.sin() * x.shape[0], backend=backend)
    for n in (2, 3, 4, 5):
        x = ember.randn(n, 2)
        np.testing.assert_allclose(f(x).numpy(), (x.sin() * n).numpy(), rtol=1e-6)
    assert calls == [[(2, 2)], [(3, 2)]]  # the second shape made the graph shape-generic

    # a Python number goes symbolic after one recompile (torch's automatic dynamic): five
    # values, two graphs, no warning
    h = ember.compile(lambda x, k: x * k)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outs = [h(ember.ones(2), k).numpy() for k in range(5)]
    np.testing.assert_array_equal(np.stack(outs), np.arange(5)[:, None] * np.ones((5, 2)))
    assert len(h._ember_compiled.entries) == 2
    g = ember.compile(lambda x, k: x * k, dynamic=False)  # specializes on every value
    old = ember._dynamo.config.recompile_limit
    ember._dynamo.config.recompile_limit = 2
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            outs = [g(ember.ones(2), k).numpy() for k in range(5)]
        assert sum("recompile_limit (2)" in str(x.message) for x in w) == 1
        np.testing.assert_array_equal(np.stack(outs), np.arange(5)[:, None] * np.ones((5, 2)))
        assert len(g._ember_compiled.entries) == 2
    finally:
        ember._dynamo.config.recompile_limit = old


# ---- graph breaks, explain, fullgraph --------------------------------------------------------
def _branchy(x):
    if x.sum() > 0:
        return x + 1
    return x - 1


def _item(x):
    return x * x.max().item()


def _printing(x):
    print("value")
    return x * 2


def _to_numpy(x):
    return ember.tensor(x.numpy() + 1)


# graphs around the break (tests/test_compile_graph_breaks.py): the condition and the branch
# for _branchy; nothing before a break in the first statement, the rest after it
@pytest.mark.parametrize(
    "fn, reason, line, graphs",
    [
        (_branchy, "cannot be used as inputs to control flow", "if x.sum() > 0:", 2),
        (_item, "Tensor.item()", "return x * x.max().item()", 0),
        (_printing, "print()", 'print("value")', 1),
        (_to_numpy, "numpy()", "return ember.tensor(x.numpy() + 1)", 0),
    ],
)
def test_graph_breaks_fall_back_and_are_explained(fn, reason, line, graphs, capsys):
    x = ember.randn(4)
    expected = fn(x).numpy()
    out = ember.compile(fn)(x)
    np.testing.assert_array_equal(out.numpy(), expected)
    report = ember._dynamo.explain(fn)(x)
    assert (report.graph_count, report.graph_break_count) == (graphs, 1)
    assert reason in report.break_reasons[0].reason
    with pytest.raises(ember._dynamo.exc.Unsupported, match=re.escape(line)):
        ember.compile(fn, fullgraph=True)(x)
    if fn is _printing:  # the eager fallback really prints, every call
        assert capsys.readouterr().out.count("value") == 3


def test_explain_counts_a_captured_graph():
    report = ember._dynamo.explain(lambda x: F.relu(x @ x.T).sum(dim=0))(ember.randn(3, 3))
    assert (report.graph_count, report.graph_break_count, report.op_count) == (1, 0, 4)
    assert (
        report.ops_per_graph[0][0] == "builtins.getattr"
        and "ember.nn.functional.relu" in report.ops_per_graph[0]
    )
    assert "Graph Count: 1" in str(report)


def test_side_effects_are_never_frozen():
    counter = ember.zeros(1)

    def bump(x):
        counter.add_(1)  # mutates state outside the graph: must run every call
        return x + ember.randn(3)  # a fresh draw every call, as eager

    f = ember.compile(bump)
    ember.manual_seed(3)
    a = f(ember.zeros(3))
    ember.manual_seed(3)
    b = bump(ember.zeros(3))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    f(ember.zeros(3))
    assert counter.item() == 3.0

    def noisy(x):
        return x + ember.randn(3)

    g = ember.compile(noisy)
    ember.manual_seed(5)
    first, second = g(ember.zeros(3)), g(ember.zeros(3))
    ember.manual_seed(5)
    np.testing.assert_array_equal(first.numpy(), noisy(ember.zeros(3)).numpy())
    np.testing.assert_array_equal(second.numpy(), noisy(ember.zeros(3)).numpy())
    assert g._ember_compiled.entries[0].fn is not None  # captured: randn is a graph node


def test_closed_over_module_and_module_argument():
    m = _mlp(0.0)

    def f(x):
        return m(x).softmax(dim=-1)

    def g(model, x):
        return model(x) * 2

    x = ember.randn(2, 6)
    cf, cg = ember.compile(f), ember.compile(g)
    np.testing.assert_array_equal(cf(x).detach().numpy(), f(x).detach().numpy())
    np.testing.assert_array_equal(cg(m, x).detach().numpy(), g(m, x).detach().numpy())
    assert cf._ember_compiled.entries[0].fn is not None
    assert cg._ember_compiled.entries[0].fn is not None


# ---- ember.compiler -------------------------------------------------------------------------
def _helper(x):
    return x * 3


def test_compiler_disable_allow_in_graph_reset_is_compiling():
    seen = []

    @ember.compiler.disable
    def eager_only(x):
        return x + 1

    def f(x):
        seen.append(ember.compiler.is_compiling())
        return eager_only(x) * 2

    x = ember.ones(2)
    np.testing.assert_array_equal(ember.compile(f)(x).numpy(), [4.0, 4.0])
    # traced (broke); the statement before the break became a graph, eager_only ran eagerly
    assert seen and all(seen)
    assert "marked ember.compiler.disable" in ember._dynamo.explain(f)(x).break_reasons[0].reason
    assert ember.compiler.allow_in_graph(_helper) is _helper
    report = ember._dynamo.explain(lambda t: _helper(t) + 1)(x)
    assert any("_helper" in str(op) for op in report.ops_per_graph[0])
    c = ember.compile(lambda t: t * 2)
    c(x)
    assert len(c._ember_compiled.entries) == 1
    ember.compiler.reset()
    assert c._ember_compiled.entries == []
    compiled = ember.compile(f)
    assert ember.compiler.disable(compiled) is f


def test_docs_snippet_runs():
    text = (Path(__file__).resolve().parents[1] / "docs" / "compile.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/compile.md", "exec"), {})
