"""make_fx, and custom operators as one node of fx / export / compile graphs (docs/custom_ops.md).

The ops are this file's own (NumPy kernels in the idiom of PyTorch's custom-op tutorial);
make_fx's results are compared with eager execution, and its graph's nodes with torch's
make_fx on the same functions where the names map.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

import ember
from ember import library
from ember.func import grad
from ember.fx.experimental.proxy_tensor import make_fx


@library.custom_op("embg::np_sin", mutates_args=())
def np_sin(x: ember.Tensor) -> ember.Tensor:
    return ember.from_numpy(np.sin(x.numpy()))


np_sin.register_fake(lambda x: ember.empty_like(x))
np_sin.register_autograd(
    lambda ctx, g: g * ctx.x.cos(),
    setup_context=lambda ctx, inputs, out: setattr(ctx, "x", inputs[0]),
)


@library.custom_op("embg::np_sin_out", mutates_args={"out"}, device_types="cpu")
def np_sin_out(x: ember.Tensor, out: ember.Tensor) -> None:
    np.sin(x.numpy(), out=out.numpy())


@library.custom_op("embg::window", mutates_args=())
def window(img: ember.Tensor, box: Sequence[int]) -> ember.Tensor:
    x0, y0, x1, y1 = box
    return ember.from_numpy(img.numpy()[:, y0:y1, x0:x1].copy())


@window.register_fake
def _(img, box):
    x0, y0, x1, y1 = box
    return img.new_empty(img.shape[0], y1 - y0, x1 - x0)


# ---- graphs: fx, export, compile, make_fx ------------------------------------------------
class _Net(ember.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = ember.nn.Linear(4, 4)

    def forward(self, x):
        return ember.ops.embg.np_sin(self.lin(x)).relu()


def test_fx_export_compile_keep_one_node():
    net, x = _Net(), ember.randn(2, 4)
    gm = ember.fx.symbolic_trace(net)
    assert "ember.ops.embg.np_sin.default(" in gm.code
    ep = ember.export.export(net, (x,))
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert "embg.np_sin.default" in targets
    assert ember.allclose(ep.module()(x), net(x))
    from ember.fx import graph_from_json, graph_to_json

    again = graph_from_json(graph_to_json(ep.graph))
    assert any(n.target is np_sin._opoverload for n in again.nodes)

    @ember.compile(fullgraph=True)
    def f(x):
        out = ember.empty(4)
        np_sin_out(x, out)  # returns nothing: the node must survive dead-code elimination
        return out + window(x.view(1, 2, 2), (0, 0, 1, 2)).sum()

    x4 = ember.randn(4)
    want = x4.sin() + x4.view(1, 2, 2)[:, :2, :1].sum()
    assert ember.allclose(f(x4), want)


def test_make_fx_modes_and_grad():
    def f(x, y):
        return ember.relu(np_sin(x) @ y).sum(0)

    x, y = ember.randn(3, 4), ember.randn(4, 5)
    for mode in ("real", "fake", "symbolic"):
        gm = make_fx(f, tracing_mode=mode)(x, y)
        assert "ember.ops.embg.np_sin.default(arg0_1)" in gm.code
        assert ember.allclose(gm(x, y), f(x, y))

    def g(x):
        return ember.autograd.grad(np_sin(x).sum(), [x])[0]

    xg = ember.randn(3, requires_grad=True)
    gm = make_fx(g)(xg)  # the custom op's registered backward is in the graph, as in torch
    assert "ember.autograd.grad" not in gm.code and "cos = arg0_1.cos()" in gm.code
    x2 = ember.randn(3)  # a new input, without requires_grad: no autograd runs
    assert ember.allclose(gm(x2), x2.cos())
    with pytest.raises(ValueError, match="tracing_mode"):
        make_fx(f, tracing_mode="bogus")


def test_make_fx_decomposition_table():
    def f(x):
        return ember.relu(x) * 2

    table = {ember.ops.aten.relu.default: lambda x: ember.clamp(x, min=0)}
    x = ember.randn(6)
    gm = make_fx(f, decomposition_table=table)(x)
    assert "ember.clamp" in gm.code and "relu" not in gm.code
    assert ember.allclose(gm(x), f(x))


def test_export_saved_and_loaded_keeps_the_op(tmp_path):
    net, x = _Net(), ember.randn(2, 4)
    ep = ember.export.export(net, (x,))
    ember.export.save(ep, str(tmp_path / "net.pt2"))
    again = ember.export.load(str(tmp_path / "net.pt2"))
    assert ember.allclose(again.module()(x), net(x))
    traced = ember.jit.trace(net, (x,))
    assert ember.allclose(traced(x), net(x))


@pytest.mark.full  # torch's make_fx imports its compiler stack (~13 s)
def test_make_fx_nodes_match_torch():
    torch = pytest.importorskip("torch")
    from torch.fx.experimental.proxy_tensor import make_fx as torch_make_fx

    def f(lib):
        return lambda x, y: lib.relu(lib.mm(x, y)).sum(0)

    x, y = np.random.default_rng(0).standard_normal((2, 3, 3)).astype(np.float32)
    tg = torch_make_fx(f(torch))(torch.tensor(x), torch.tensor(y))
    eg = make_fx(f(ember))(ember.tensor(x), ember.tensor(y))
    t_ops = [str(n.target).split(".")[1] for n in tg.graph.nodes if n.op == "call_function"]
    e_ops = [
        str(getattr(n.target, "__name__", n.target))
        for n in eg.graph.nodes
        if n.op in ("call_function", "call_method")
    ]
    assert t_ops == e_ops == ["mm", "relu", "sum"]
    np.testing.assert_allclose(
        tg(torch.tensor(x), torch.tensor(y)).numpy(),
        eg(ember.tensor(x), ember.tensor(y)).numpy(),
        rtol=1e-6,
    )


def test_make_fx_records_vmap_as_one_node():
    def h(x):
        return ember.vmap(lambda r: np_sin(r).sum())(x).exp()

    x2 = ember.randn(3, 2)
    gm = make_fx(h)(x2)
    assert "vmap" in gm.code and ember.allclose(gm(x2), h(x2))
    assert ember.func.grad.__module__.startswith("ember.func")  # the patches are undone
    assert ember.autograd.grad.__module__.startswith("ember.autograd")


# ---- backward ops in the graph (torch's make_fx traces through autograd.grad / func.grad) ----
def _ops_of(gm) -> list[str]:
    """The graph's ops by kind: ember.sin, x.sin() and aten.sin.default all read ``sin``."""
    names = []
    for n in gm.graph.nodes:
        if n.op == "call_method":
            names.append(n.target)
        elif n.op == "call_function":
            t = n.target
            name = getattr(t, "__name__", str(t))
            names.append(str(t).split(".")[-2] if str(t).startswith("aten.") else name)
    return names


def _tanh_mlp(lib):
    def f(x, w):
        y = lib.tanh(x @ w)
        return lib.autograd.grad((y * y).mean(), [x, w])

    return f


def _sin_sq(lib):
    return lambda x: lib.func.grad(lambda t: (t.sin() ** 2).sum())(x)


def _hessian_diag(lib):
    def f(x):
        (g,) = lib.autograd.grad((x**3).sum(), x, create_graph=True)
        return lib.autograd.grad(g.sum(), x)[0]

    return f


def _nested(lib):
    return lambda x: lib.func.grad(lib.func.grad(lambda t: t.sin()))(x)


# (function, example shapes, requires_grad, ember's ops by kind: torch's as of 2.13, with
# ember's spellings: its expand of the seed gradient goes through a reshape, mm is matmul,
# t() a transpose, tanh_backward and pow backward written out as mul/sub)
_CASES = {
    "autograd_grad": (
        _tanh_mlp,
        [(2, 3), (3, 4)],
        True,
        "matmul tanh mul mean ones_like reshape truediv expand mul mul add mul sub mul "
        "transpose matmul transpose matmul",
    ),
    "func_grad": (
        _sin_sq,
        [(3,)],
        False,
        "detach sin pow sum ones_like reshape expand mul pow mul cos mul",
    ),
    "double_backward": (
        _hessian_diag,
        [(3,)],
        True,
        "pow sum ones_like reshape expand mul pow mul sum ones_like reshape expand mul mul pow mul",
    ),
    "nested_func_grad": (
        _nested,
        [()],
        False,
        "detach view_as sin ones_like cos mul ones_like mul neg sin mul reshape",
    ),
}


@pytest.mark.parametrize("case", sorted(_CASES))
def test_make_fx_expands_backward(case):
    make, shapes, rg, ops = _CASES[case]
    f = make(ember)
    rng = np.random.default_rng(0)
    args = [ember.tensor(rng.standard_normal(s).astype(np.float32)) for s in shapes]
    gm = make_fx(f)(*[a.clone().requires_grad_(rg) for a in args])
    assert _ops_of(gm) == ops.split()
    assert "grad" not in gm.code  # no autograd call left: the gradient is the graph's ops
    fake = make_fx(f, tracing_mode="fake")(*[a.clone().requires_grad_(rg) for a in args])
    assert _ops_of(fake) == ops.split()  # on meta values (shapes only) the same graph
    # run again on new inputs, without autograd: the gradient autograd gives
    new = [ember.tensor(rng.standard_normal(s).astype(np.float32)) for s in shapes]
    got = gm(*new)
    want = f(*[a.clone().requires_grad_(rg) for a in new])
    got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_make_fx_expands_func_grad_imported_by_name():
    def f(x):  # ``from ember.func import grad`` in the traced function's module
        return grad(lambda t: (t * t).sum())(x) + 1

    x = ember.randn(4)
    gm = make_fx(f)(x)
    assert "grad" not in gm.code and "ones_like" in gm.code
    x2 = ember.randn(4)
    assert ember.allclose(gm(x2), 2 * x2 + 1)


def test_make_fx_backward_it_cannot_replay_is_one_node():
    import ember.nn.functional as F

    # cross_entropy's fused backward reads the probabilities its forward computed inside the
    # op: values the graph does not hold, so the call stays one node (run by autograd)
    y = ember.tensor([0, 2, 1])

    def f(x):
        return ember.autograd.grad(F.cross_entropy(x, y), x)[0]

    x = ember.randn(3, 4, requires_grad=True)
    gm = make_fx(f)(x)
    assert "ember.autograd.grad(" in gm.code
    x2 = ember.randn(3, 4, requires_grad=True)
    assert ember.allclose(gm(x2), f(x2))

    # func.grad falls back the same way (one node, the transformed function)
    def h(t):
        return ember.func.grad(lambda u: F.cross_entropy(u, y))(t) * 2

    gm = make_fx(h)(x.detach())
    assert [n.name for n in gm.graph.nodes if n.op == "call_function"][0] == "grad"
    assert ember.allclose(gm(x2.detach()), h(x2.detach()))


@pytest.mark.full  # torch's make_fx imports its compiler stack (~13 s)
def test_make_fx_backward_matches_torch():
    torch = pytest.importorskip("torch")
    from torch.fx.experimental.proxy_tensor import make_fx as torch_make_fx

    rng = np.random.default_rng(1)
    for case, (make, shapes, rg, _) in sorted(_CASES.items()):
        arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        tg = torch_make_fx(make(torch))(*[torch.tensor(a, requires_grad=rg) for a in arrays])
        eg = make_fx(make(ember))(*[ember.tensor(a).requires_grad_(rg) for a in arrays])
        t_ops, e_ops = _ops_of(tg), _ops_of(eg)
        # the gradient ops torch records that ember's graph holds too, by kind
        for kind in ("sin", "cos", "tanh", "mean", "pow", "ones_like", "expand"):
            assert (kind in t_ops) == (kind in e_ops), (case, kind, t_ops, e_ops)
        new = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        t_out = tg(*[torch.tensor(a) for a in new])
        e_out = eg(*[ember.tensor(a) for a in new])
        t_out, e_out = (t_out, e_out) if isinstance(t_out, tuple) else ((t_out,), (e_out,))
        for a, b in zip(t_out, e_out):
            np.testing.assert_allclose(a.detach().numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
