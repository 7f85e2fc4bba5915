"""ember.fx: Graph editing, GraphModule, Interpreter/Transformer, passes, rewriting, JSON."""

import copy
import operator
import pickle

import fx_models
import numpy as np
import pytest

import ember
import ember.fx as fx
import ember.nn as nn
import ember.nn.functional as F
from ember.fx.passes.shape_prop import ShapeProp, TensorMetadata

MODELS = fx_models.build(ember)


def _np(t):
    return t.detach().numpy()


def squares(x, y):  # recorded as one call, not traced through
    return x * x + y * y


fx.wrap("squares")


def _traced_mlp():
    ember.manual_seed(0)
    m = MODELS["mlp"][0]()
    m.eval()
    return m, fx.symbolic_trace(m)


# ---- Graph and Node -------------------------------------------------------------------------
def test_build_graph_by_hand_and_edit():
    g = fx.Graph()
    x = g.placeholder("x")
    r = g.call_function(ember.relu, (x,))
    n = g.call_method("neg", (r,))
    g.output(n)
    gm = fx.GraphModule(nn.Module(), g)
    np.testing.assert_allclose(_np(gm(ember.tensor([-1.0, 2.0]))), [0.0, -2.0])
    assert r.users == {n: None} and n.all_input_nodes == [r]
    # insert a node after relu, route relu's users to it, recompile
    with g.inserting_after(r):
        s = g.call_function(operator.mul, (r, 3))
    r.replace_all_uses_with(s, delete_user_cb=lambda u: u is not s)
    assert s.args == (r, 3) and n.args == (s,)
    gm.recompile()
    np.testing.assert_allclose(_np(gm(ember.tensor([-1.0, 2.0]))), [0.0, -6.0])
    assert "mul = relu * 3" in gm.code
    with g.inserting_before(n):
        dead = g.call_function(ember.exp, (x,))
    with pytest.raises(RuntimeError, match="still had 1 users"):
        g.erase_node(r)
    assert g.eliminate_dead_code() and dead not in list(g.nodes)
    g.lint()
    assert [nd.op for nd in g.nodes] == [
        "placeholder",
        "call_function",
        "call_function",
        "call_method",
        "output",
    ]


def test_lint_and_node_errors():
    g = fx.Graph()
    x = g.placeholder("x")
    a = g.call_function(ember.relu, (x,))
    b = g.call_function(ember.exp, (a,))
    g.output(b)
    a.prepend(b)  # b now before its input
    with pytest.raises(RuntimeError, match="used before it has been defined"):
        g.lint()
    with pytest.raises(ValueError, match="unknown opcode"):
        g.create_node("call_something", ember.relu)
    with pytest.raises(ValueError, match="Callable is expected"):
        g.call_function("relu", (x,))


def test_has_side_effect_survives_dce_and_map_arg():
    log = []

    @fx.has_side_effect
    def record(t):
        log.append(t)

    g = fx.Graph()
    x = g.placeholder("x")
    g.call_function(record, (x,))
    g.call_function(ember.exp, (x,))  # unused and pure: removed
    g.output(x)
    g.eliminate_dead_code()
    assert [n.target for n in g.nodes if n.op == "call_function"] == [record]
    assert fx.map_arg((x, [x, 1], {"k": x}), lambda n: n.name) == ("x", ["x", 1], {"k": "x"})


def test_print_tabular_and_str(capsys):
    _, gm = _traced_mlp()
    gm.graph.print_tabular()
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["opcode", "name", "target", "args", "kwargs"]
    assert any(line.split()[:3] == ["call_module", "body_0", "body.0"] for line in out)
    assert "log_softmax" in str(gm.graph) and str(gm.graph).startswith("graph():")


# ---- GraphModule ----------------------------------------------------------------------------
def test_pickle_deepcopy_and_state_dict():
    m, gm = _traced_mlp()
    x = ember.randn(2, 8)
    ref = _np(gm(x))
    for clone in (pickle.loads(pickle.dumps(gm)), copy.deepcopy(gm)):
        np.testing.assert_allclose(_np(clone(x)), ref, rtol=1e-6)
        assert clone.code == gm.code and isinstance(clone, fx.GraphModule)
        with ember.no_grad():
            clone.head.weight.mul_(0)  # a real copy: the original is untouched
        np.testing.assert_allclose(_np(gm(x)), ref, rtol=1e-6)
    assert [k for k, _ in gm.named_parameters()] == [k for k, _ in m.named_parameters()]


def test_to_folder(tmp_path):
    _, gm = _traced_mlp()
    gm.to_folder(str(tmp_path))
    assert "def forward(self, x):" in (tmp_path / "module.py").read_text()
    g = fx.graph_from_json((tmp_path / "graph.json").read_text())
    assert [n.name for n in g.nodes] == [n.name for n in gm.graph.nodes]
    state = ember.load_safetensors(str(tmp_path / "state.safetensors"))
    assert set(state) == set(gm.state_dict())


def test_graph_module_from_dict_root():
    g = fx.Graph()
    x = g.placeholder("x")
    w = g.get_attr("lin.weight")
    g.output(g.call_function(F.linear, (x, w)))
    weight = ember.randn(3, 2)
    gm = fx.GraphModule({"lin.weight": weight}, g)
    np.testing.assert_allclose(_np(gm(ember.ones(1, 2))), _np(weight.sum(1)[None]), rtol=1e-6)
    with pytest.raises(RuntimeError, match="not provided in ``root``"):
        fx.GraphModule({}, g)


# ---- tracer customisation -------------------------------------------------------------------
def _cube(x):  # wrapped only when a Tracer names it in autowrap_functions
    return x * x * x


def test_wrap_and_autowrap_functions():
    def f(x, y):
        return squares(x, y) + _cube(x)

    gm = fx.symbolic_trace(f)
    calls = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert calls[0] is squares and _cube not in calls and calls.count(operator.mul) == 2
    x, y = ember.randn(3), ember.randn(3)
    np.testing.assert_allclose(_np(gm(x, y)), _np(f(x, y)), rtol=1e-6)
    graph = fx.Tracer(autowrap_functions=(_cube,)).trace(f)
    calls = [n.target for n in graph.nodes if n.op == "call_function"]
    assert calls == [squares, _cube, operator.add]
    assert globals()["_cube"] is _cube and globals()["squares"] is squares  # patches undone
    with pytest.raises(NotImplementedError, match="top level"):
        fx.wrap("squares")


class _TraceIntoLinear(fx.Tracer):
    def is_leaf_module(self, m, qualname):
        return not isinstance(m, (nn.Linear, nn.Sequential)) and super().is_leaf_module(m, qualname)


def test_custom_tracer_traces_into_leaves():
    m, _ = _traced_mlp()
    graph = _TraceIntoLinear().trace(m)
    gm = fx.GraphModule(m, graph)
    assert not any(n.op == "call_module" and n.target.startswith("head") for n in graph.nodes)
    assert [n.target for n in graph.nodes if n.op == "get_attr"][:2] == [
        "body.0.weight",
        "body.0.bias",
    ]
    x = ember.randn(2, 8)
    np.testing.assert_allclose(_np(gm(x)), _np(m(x)), rtol=1e-5, atol=1e-6)


def test_param_shapes_constant():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(ember.ones(3, 4))

        def forward(self, x):
            return x.reshape(self.w.shape[0], -1) @ self.w

    ops_default = [n.op for n in fx.Tracer().trace(M()).nodes]
    graph = fx.Tracer(param_shapes_constant=True).trace(M())
    ops_const = [n.op for n in graph.nodes]
    assert ops_default.count("call_function") == 3 and ops_const.count("call_function") == 1
    reshape = [n for n in graph.nodes if n.op == "call_method"][0]
    assert reshape.args[1:] == (3, -1)


# ---- Interpreter / Transformer --------------------------------------------------------------
class _CountingInterpreter(fx.Interpreter):
    def __init__(self, gm):
        super().__init__(gm)
        self.seen = []

    def call_module(self, target, args, kwargs):
        self.seen.append(target)
        return super().call_module(target, args, kwargs)


class _ReluToSigmoid(fx.Transformer):
    def call_function(self, target, args, kwargs):
        if target is F.relu:
            return super().call_function(ember.sigmoid, args, kwargs)
        return super().call_function(target, args, kwargs)


def test_interpreter_and_transformer():
    m, gm = _traced_mlp()
    x = ember.randn(2, 8)
    interp = _CountingInterpreter(gm)
    np.testing.assert_allclose(_np(interp.run(x)), _np(gm(x)), rtol=1e-6)
    assert interp.seen == ["body.0", "body.1", "body.2", "drop", "head"]
    new = _ReluToSigmoid(gm).transform()
    assert ember.sigmoid in [n.target for n in new.graph.nodes]
    h = ember.sigmoid(m.body(x))
    np.testing.assert_allclose(_np(new(x)), _np(F.log_softmax(m.head(h), dim=-1)), rtol=1e-5)
    with pytest.raises(RuntimeError, match="Expected positional argument"):
        fx.Interpreter(gm).run()


def test_interpreter_names_failing_node():
    g = fx.Graph()
    x = g.placeholder("x")
    g.output(g.call_method("view", (x, 5)))
    with pytest.raises(RuntimeError, match="While executing %view"):
        fx.Interpreter(fx.GraphModule(nn.Module(), g)).run(ember.ones(4))


# ---- ShapeProp and replace_pattern (against torch.fx) ---------------------------------------
@pytest.mark.parametrize("name", ["cnn", "transformer_block"])
def test_shape_prop_matches_torch(name):
    torch = pytest.importorskip("torch")
    from torch.fx.passes.shape_prop import ShapeProp as TShapeProp

    ember.manual_seed(0)
    egm = fx.symbolic_trace(MODELS[name][0]())
    tgm = torch.fx.symbolic_trace(fx_models.build(torch)[name][0]())
    ShapeProp(egm).propagate(*MODELS[name][1]())
    TShapeProp(tgm).propagate(*fx_models.build(torch)[name][1]())
    for en, tn in zip(egm.graph.nodes, tgm.graph.nodes):
        tm, em = tn.meta.get("tensor_meta"), en.meta.get("tensor_meta")
        if isinstance(tm, torch.fx.passes.shape_prop.TensorMetadata):
            assert isinstance(em, TensorMetadata), en.name
            assert tuple(em.shape) == tuple(tm.shape), en.name
            assert repr(em.dtype).split(".")[-1] == repr(tm.dtype).split(".")[-1]
            assert em.requires_grad == tm.requires_grad


def _pattern(x, w):
    return ember.relu(ember.matmul(x, w))


def _replacement(x, w):
    return ember.clamp(x @ w, min=0.0)


def test_replace_pattern():
    torch = pytest.importorskip("torch")

    def model(T):
        def f(x, w1, w2):
            h = T.relu(T.matmul(x, w1))
            h = T.relu(T.matmul(h, w2)) + h.sum()
            return T.relu(T.matmul(h, w2)), T.matmul(h, w1)

        return f

    gm = fx.symbolic_trace(model(ember))
    tgm = torch.fx.symbolic_trace(model(torch))
    args = [ember.randn(4, 4) for _ in range(3)]
    ref = gm(*args)
    matches = fx.replace_pattern(gm, _pattern, _replacement)
    tmatches = torch.fx.subgraph_rewriter.replace_pattern(
        tgm, lambda x, w: torch.relu(torch.matmul(x, w)), lambda x, w: torch.clamp(x @ w, min=0.0)
    )
    assert len(matches) == len(tmatches) == 3
    # the same nodes under the same names (torch places the replacements in another valid order)
    assert sorted((n.op, n.name) for n in gm.graph.nodes) == sorted(
        (n.op, n.name) for n in tgm.graph.nodes
    )
    assert ember.relu not in [n.target for n in gm.graph.nodes]
    gm.graph.lint()
    for a, b in zip(gm(*args), ref):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-6)
    assert fx.replace_pattern(gm, _pattern, _replacement) == []


def test_replace_pattern_skips_matches_with_outside_users():
    def f(x, w):
        m = ember.matmul(x, w)
        return ember.relu(m), m  # the matmul is read outside the pattern

    gm = fx.symbolic_trace(f)
    assert fx.replace_pattern(gm, _pattern, _replacement) == []
    with pytest.raises(ValueError, match="takes 2 inputs but the replacement takes 1"):
        fx.replace_pattern(gm, _pattern, lambda x: x)


# ---- JSON form ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["resnet", "transformer_block", "consts"])
def test_json_round_trip_runs(name):
    ember.manual_seed(0)
    m = MODELS[name][0]()
    m.eval()
    gm = fx.symbolic_trace(m)
    x = MODELS[name][1]()
    ShapeProp(gm).propagate(*x)
    text = fx.graph_to_json(gm.graph)
    assert "<" not in text  # no reprs of Python objects, only names and values
    g2 = fx.graph_from_json(text)
    assert [(n.op, n.name, n.target) for n in g2.nodes] == [
        (n.op, n.name, n.target) for n in gm.graph.nodes
    ]
    out = [n for n in g2.nodes if n.op == "call_module"]
    assert all(n.meta["tensor_meta"].shape for n in out)
    gm2 = fx.GraphModule(gm, g2)
    a, b = gm(*x), gm2(*x)
    for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        np.testing.assert_allclose(_np(u), _np(v), rtol=1e-6)
    assert fx.graph_to_json(g2) == text


def test_json_rejects_unsafe_or_unknown_targets():
    import json

    g = fx.Graph()
    x = g.placeholder("x")
    g.output(g.call_function(ember.relu, (x,)))
    doc = json.loads(fx.graph_to_json(g))
    for bad in (
        "os.system",
        "ember.np.load",
        "builtins.eval",
        "operator.attrgetter.x",
        "ember.__builtins__",
    ):
        doc["nodes"][1]["target"] = bad
        with pytest.raises(ValueError, match="cannot resolve call_function target"):
            fx.graph_from_json(doc)
    doc["nodes"][1]["target"] = "mylib.op"
    g2 = fx.graph_from_json(doc, extra_targets={"mylib.op": ember.exp})
    assert list(g2.nodes)[1].target is ember.exp
    doc["version"] = 99
    with pytest.raises(ValueError, match="version 99"):
        fx.graph_from_json(doc)
    g.call_function(ember.relu, (object(),))
    with pytest.raises(TypeError, match="cannot serialize an argument of type object"):
        fx.graph_to_json(g)


def test_submodule_surgery_and_stack_traces():
    m, _ = _traced_mlp()
    tracer = fx.Tracer()
    tracer.record_stack_traces = True
    gm = fx.GraphModule(m, tracer.trace(m))
    head = [n for n in gm.graph.nodes if n.target == "head"][0]
    assert "fx_models.py" in head.stack_trace and "self.head(" in head.stack_trace
    # swap head for a new Linear under another name, then drop what is unused
    assert gm.add_submodule("new.head", nn.Linear(16, 4))
    head.target = "new.head"
    gm.recompile()
    gm.delete_all_unused_submodules()
    names = {n for n, _ in gm.named_modules()}
    assert "head" not in names and {"new", "new.head", "body", "body.0"} <= names
    assert gm(ember.randn(2, 8)).shape == (2, 4)
    assert not gm.delete_submodule("nope.x")
    gm.graph.lint()
