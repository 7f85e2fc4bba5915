"""ember.jit.script: the compiled graph equals eager on inputs taking every path, equals
torch.jit.script on the same source, and survives the JSON save/load of ember.fx.serialize."""

import importlib.util
import pathlib
import re

import numpy as np
import pytest

import ember
from ember.fx import GraphModule, graph_from_json, graph_to_json
from ember.jit._script import ScriptCompileError, script

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")

_SRC = pathlib.Path(__file__).with_name("_jit_script_models.py")


def _import(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    text = _SRC.read_text()
    text = text.replace("import torch.nn.functional as F", "import ember.nn.functional as F")
    text = text.replace("import torch.nn as nn", "import ember.nn as nn")
    text = re.sub(r"^import torch$", "import ember as torch", text, flags=re.M)
    path = tmp_path_factory.mktemp("jit") / "_jit_models_ember.py"
    path.write_text(text)
    return _import(path, "_jit_models_ember"), _import(_SRC, "_jit_models_torch")


def _t(a):
    return torch.tensor(np.asarray(a, dtype=np.float32))


def _e(a):
    return ember.tensor(np.asarray(a, dtype=np.float32))


O = np.ones((2, 4))
R = np.random.default_rng(0)
CASES = {  # name: (constructor args, inputs taking each path)
    "IfTensor": ((), [(2 * O,), (-2 * O,)]),
    "EarlyReturn": ((), [(O,), ([[1, -3, -1, -1]],), ([[1, -1, -1, -1]],), (-O,)]),
    "ShapeIf": ((), [(R.normal(size=(4, 3)),), (R.normal(size=(2, 3)),), (R.normal(size=(2, 5)),)]),
    "AttrConst": ((0.5, True), [(R.normal(size=(3, 4)),)]),
    "Loops": ((), [(R.normal(size=(2, 4)),)]),
    "WhileData": ((), [(10 * R.normal(size=(3, 4)),), (0.01 * O,)]),
    "RangeData": ((), [(R.normal(size=(1, 4)),), (R.normal(size=(5, 4)),)]),
    "Containers": ((), [(O,), (O, 2 * O)]),
    "Calls": ((), [(2 * O,), (-2 * O,)]),
    "Breaks": ((), [(3 * O,), (-3 * O,), (0.1 * O,), (0 * O,)]),
    "BoolOps": ((), [(2 * O,), (-O,), ([[2, -2, 0, 0]],), (R.normal(size=(3, 4)),)]),
    "Decorated": ((), [(R.normal(size=(2, 4)),)]),
    "ConvNet": ((), [(R.normal(size=(2, 1, 5, 5)),), (R.normal(size=(1, 1, 4, 4)) + 3,)]),
}


def _pair(models, name):
    em, tm = models
    args = CASES[name][0]
    torch.manual_seed(0)
    t_model = getattr(tm, name)(*args)
    with torch.no_grad():  # near-identity weights: the sign of x decides the branches
        for m in t_model.modules():
            if isinstance(m, torch.nn.Linear) and m.weight.shape == (4, 4):
                m.weight.copy_(torch.eye(4) + 0.05 * torch.randn(4, 4))
                m.bias.zero_()
    e_model = getattr(em, name)(*args)
    e_model.load_state_dict(
        {k: ember.tensor(v.detach().numpy()) for k, v in t_model.state_dict().items()}
    )
    return e_model.eval(), t_model.eval()


def _np(v):
    if isinstance(v, dict):
        return {k: _np(x) for k, x in v.items()}
    if isinstance(v, (tuple, list)):
        return [_np(x) for x in v]
    if hasattr(v, "detach"):
        return v.detach().numpy()
    return v


def _close(a, b):
    a, b = _np(a), _np(b)
    if isinstance(a, dict):
        assert sorted(a) == sorted(b)
        for k in a:
            _close(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _close(x, y)
    else:
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(CASES))
def test_script_matches_eager_and_torch_script(models, name):
    e_model, t_model = _pair(models, name)
    scripted = script(e_model)
    t_scripted = torch.jit.script(t_model)
    for inp in CASES[name][1]:
        out = scripted(*[_e(a) for a in inp])
        _close(out, e_model(*[_e(a) for a in inp]))
        _close(out, t_scripted(*[_t(a) for a in inp]))


@pytest.mark.parametrize("name", [n for n in CASES if n != "Decorated"])
def test_script_graph_survives_json(models, name):
    e_model, _ = _pair(models, name)
    gm = script(e_model)
    text = graph_to_json(gm.graph)
    assert ("ember.cond" in text or "ember.while_loop" in text) == (
        name not in ("AttrConst", "Loops")
    )
    loaded = GraphModule(dict(gm.state_dict()), graph_from_json(text))
    for inp in CASES[name][1]:
        _close(loaded(*[_e(a) for a in inp]), e_model(*[_e(a) for a in inp]))


def test_control_flow_is_kept_not_baked_in(models):
    e_model, _ = _pair(models, "IfTensor")
    gm = script(e_model)
    conds = [n for n in gm.graph.nodes if n.target is ember.cond]
    assert len(conds) == 1
    branches = [gm.get_submodule(a.target) for a in conds[0].args[1:3]]
    assert all(isinstance(b, GraphModule) for b in branches)
    # branches close over nothing: the Linear's output is an operand
    assert [p.op for p in branches[0].graph.nodes][0] == "placeholder"
    assert not [n for b in branches for n in b.graph.nodes if n.op == "get_attr"]
    # AttrConst's flag was decided while compiling (no cond, no tanh when off)
    em, _ = models
    off = script(em.AttrConst(2.0, False))
    assert "tanh" not in off.code and "cond" not in off.code


def test_script_gradients_match_eager(models):
    e_model, _ = _pair(models, "Calls")
    scripted = script(e_model)
    for sign in (1.0, -1.0):
        x = _e(sign * 2 * O)
        x.requires_grad_(True)
        scripted(x).sum().backward()
        g_script = [p.grad.numpy().copy() for p in e_model.parameters()] + [x.grad.numpy()]
        e_model.zero_grad()
        x2 = _e(sign * 2 * O)
        x2.requires_grad_(True)
        e_model(x2).sum().backward()
        g_eager = [p.grad.numpy().copy() for p in e_model.parameters()] + [x2.grad.numpy()]
        e_model.zero_grad()
        for a, b in zip(g_script, g_eager):
            np.testing.assert_allclose(a, b, rtol=1e-6)


def test_decorators(models):
    e_model, _ = _pair(models, "Decorated")
    scripted = script(e_model)
    x = _e(R.normal(size=(2, 4)))
    _close(scripted.double(x), e_model.double(x))  # @export: compiled too
    with pytest.raises(RuntimeError, match="unused"):  # @unused: compiled to a raise
        scripted(_e(1000 * O))
    # @ignore stays a Python call, which a saved graph cannot name
    with pytest.raises(ValueError, match="python_only"):
        graph_from_json(graph_to_json(scripted.graph))


def scripted_fn(x: ember.Tensor, n: int) -> ember.Tensor:
    while n > 0:
        x = x * 2
        n -= 1
    return x


def test_script_function_and_nested_call():
    f = script(scripted_fn)
    x = ember.ones(3)
    assert f(x, 3).tolist() == [8.0, 8.0, 8.0]
    assert f(x, 0).tolist() == [1.0, 1.0, 1.0]

    def caller(x: ember.Tensor, n: int) -> ember.Tensor:
        return f(x, n) + f(x, 1)

    g = script(caller)
    assert g(x, 2).tolist() == [6.0, 6.0, 6.0]
    # f's source was compiled inline: a run-time n keeps the loop, a constant 1 unrolls it
    assert g.code.count("while_loop(") == 1


class _Unsupported(ember.nn.Module):
    def forward(self, x):
        try:
            return x + 1
        except ValueError:
            return x


class _IterTensor(ember.nn.Module):
    def forward(self, x):
        for row in x:
            x = x + row
        return x


@pytest.mark.parametrize(
    "cls, what",
    [
        (_Unsupported, "Try statements are not supported"),
        (_IterTensor, "cannot iterate over a value known"),
    ],
)
def test_errors_name_file_and_line(cls, what):
    with pytest.raises(ScriptCompileError) as info:
        script(cls())
    msg = str(info.value)
    assert what in msg
    assert re.search(r"test_jit_script\.py:\d+, in " + cls.__name__ + r"\.forward", msg)


def test_higher_order_ops_eager():
    x = ember.tensor([1.0, 2.0])
    assert ember.cond(ember.tensor(True), lambda a: a + 1, lambda a: a - 1, (x,)).tolist() == [
        2.0,
        3.0,
    ]
    assert ember.cond(False, lambda a: a + 1, lambda a: a - 1, [x]).tolist() == [0.0, 1.0]
    with pytest.raises(RuntimeError, match="one element"):
        ember.cond(x > 0, lambda a: a, lambda a: a, (x,))
    i, y = ember.while_loop(lambda i, a: i < 3, lambda i, a: (i + 1, a * 2), (0, x))
    assert i == 3 and y.tolist() == [8.0, 16.0]
    with pytest.raises(RuntimeError, match="returned 1 values but the loop carries 2"):
        ember.while_loop(lambda i, a: i < 3, lambda i, a: (i + 1,), (0, x))


@pytest.mark.parametrize("name", ["EarlyReturn", "WhileData", "RangeData", "Containers"])
def test_script_save_load(models, name, tmp_path):
    e_model, _ = _pair(models, name)
    path = tmp_path / "m.pt"
    ember.jit.save(ember.jit.script(e_model), str(path))
    loaded = ember.jit.load(str(path))
    for inp in CASES[name][1]:
        _close(loaded(*[_e(a) for a in inp]), e_model(*[_e(a) for a in inp]))


def test_script_load_in_fresh_process(models, tmp_path):
    import subprocess
    import sys

    e_model, _ = _pair(models, "BoolOps")
    path = tmp_path / "m.pt"
    ember.jit.script(e_model).save(str(path))
    inputs = CASES["BoolOps"][1]
    expected = [e_model(_e(a)).numpy().tolist() for (a,) in inputs]
    code = (
        "import sys, json, numpy as np, ember\n"
        f"m = ember.jit.load({str(path)!r})\n"
        f"xs = {[np.asarray(a, dtype=np.float32).tolist() for (a,) in inputs]!r}\n"
        "print(json.dumps([m(ember.tensor(x)).numpy().tolist() for x in xs]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=str(tmp_path)
    )
    assert out.returncode == 0, out.stderr
    import json

    for got, want in zip(json.loads(out.stdout), expected):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)


def test_docs_snippet_runs(tmp_path):
    import runpy

    text = (pathlib.Path(__file__).parents[1] / "docs" / "export.md").read_text()
    section = text.split("<!-- BEGIN ember.jit.script")[1]
    code = section.split("```python\n")[1].split("```")[0]
    path = tmp_path / "snippet.py"  # script reads source: the snippet must live in a file
    path.write_text(code)
    runpy.run_path(str(path), run_name="docs_export_script")


class _Base(ember.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = ember.nn.Linear(3, 3)

    def forward(self, x):
        return self.fc(x)


class _Child(_Base):
    def forward(self, x, y: ember.Tensor | None = None):
        h = super().forward(x)
        if y is None:  # an Optional input: tested when the graph runs
            return h * 2
        return h + y


def test_super_and_optional_input():
    m = _Child()
    s = script(m)
    x = ember.randn(2, 3)
    assert ember.allclose(s(x), m(x)) and ember.allclose(s(x, x), m(x, x))
    assert s.code.count("ember.cond(") == 1
