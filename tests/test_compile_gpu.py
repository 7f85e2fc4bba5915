"""ember.compile's GPU code paths: generated elementwise kernels and mode="reduce-overhead".

On the CPU: the kernel source for a known chain, the NumPy evaluator of the same expression
tree against eager ember, the graph pass's replay (values and gradients), and reduce-overhead
falling back to the ordinary executor. On a GPU (``@pytest.mark.gpu``): the kernel and the
CUDA graph replay themselves.
"""

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember._compile._cudagraph import CUDAGraphRunner
from ember._compile._executor import build
from ember._compile._gpu_autograd import backward_source, evaluate_backward
from ember._compile._gpu_codegen import (
    FusedElementwise,
    evaluate,
    fuse_elementwise,
    kernel_key,
    kernel_source,
)
from ember.fx import symbolic_trace


def chain(x, w):
    return F.relu(x * w + 1.0).tanh() - ember.sigmoid(x)


def chain2(x, b):
    return (-(x / b).exp() + x).abs() * 0.5


def _fused(fn):
    gm = symbolic_trace(fn)
    assert fuse_elementwise(gm.graph) == 1
    (node,) = [n for n in gm.graph.nodes if n.op == "call_function"]
    assert isinstance(node.target, FusedElementwise)
    return gm, node.target


def test_kernel_source_of_a_known_chain():
    _, fused = _fused(chain)
    assert fused.tree == (
        "sub",
        ("tanh", ("relu", ("add", ("mul", ("in", 0), ("in", 1)), ("const", 1.0)))),
        ("sigmoid", ("in", 0)),
    )
    in_params, out_params, op, name = kernel_source(fused.tree, "float32")
    assert (in_params, out_params) == ("T x0, T x1", "T y")
    assert op.splitlines() == [
        "T t0 = (x0 * x1);",
        "T t1 = (t0 + (T)1.0);",
        "T t2 = ((t1 > (T)0 || isnan(t1)) ? t1 : (T)0);",
        "T t3 = tanh(t2);",
        "T t4 = ((T)1 / ((T)1 + exp(-x0)));",
        "T t5 = (t3 - t4);",
        "y = t5;",
    ]
    assert name == f"ember_fused_{kernel_key(fused.tree, 'float32')}"
    # the cache key: the same expression and dtype share a kernel, another dtype does not
    assert kernel_key(fused.tree, "float32") == kernel_key(_fused(chain)[1].tree, "float32")
    assert kernel_key(fused.tree, "float32") != kernel_key(fused.tree, "float64")


@pytest.mark.parametrize("fn", [chain, chain2])
@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_numpy_evaluator_equals_eager(fn, dtype):
    _, fused = _fused(fn)
    ember.manual_seed(0)
    x, w = ember.randn(64, 5, dtype=dtype), ember.randn(5, dtype=dtype).abs() + 0.5
    with ember.no_grad():
        x[0, 0] = float("nan")  # ReLU keeps NaN in both
    want = fn(x, w).numpy()
    np.testing.assert_array_equal(evaluate(fused.tree, [x.numpy(), w.numpy()]), want)


def test_backward_kernel_source_of_a_known_chain():
    def f(x, w):
        return (x * w).tanh()

    _, fused = _fused(f)
    in_params, out_params, op, name = backward_source(fused.tree, "float32")
    assert (in_params, out_params) == ("T g, T x0, T x1", "T gx0, T gx1")
    assert op.splitlines() == [
        "T t0 = (x0 * x1);",
        "T t1 = tanh(t0);",
        "T a2 = (g * ((T)1.0 - (t1 * t1)));",  # ember's Tanh backward: grad * (1 - out^2)
        "T a3 = (a2 * x1);",
        "T a4 = (a2 * x0);",
        "gx0 = a3;",
        "gx1 = a4;",
    ]
    assert name.startswith("ember_fused_bw_")


@pytest.mark.parametrize("fn", [chain, chain2])
def test_numpy_backward_evaluator_equals_eager_autograd(fn):
    _, fused = _fused(fn)
    ember.manual_seed(2)
    x = ember.randn(16, 5, dtype=ember.float64, requires_grad=True)
    w = (ember.randn(5, dtype=ember.float64).abs() + 0.5).requires_grad_()
    out = fn(x, w)
    g = ember.randn(*out.shape, dtype=ember.float64)
    want = ember.autograd.grad(out, (x, w), g)
    gx, gw = evaluate_backward(fused.tree, [x.detach().numpy(), w.detach().numpy()], g.numpy())
    np.testing.assert_allclose(gx, want[0].numpy(), rtol=1e-13, atol=1e-13)
    # the kernel's gradients come in the broadcast shape; the engine sums them back
    np.testing.assert_allclose(gw.sum(0), want[1].numpy(), rtol=1e-13, atol=1e-13)


def test_graph_pass_replays_ops_off_the_gpu():
    gm, fused = _fused(chain)
    fn, source, _ = build(gm.graph, gm)
    assert "fused_elementwise" in source
    x = ember.randn(6, 4, dtype=ember.float64, requires_grad=True)
    w = ember.randn(4, dtype=ember.float64, requires_grad=True)
    got, want = fn(x, w), chain(x, w)
    np.testing.assert_array_equal(got.detach().numpy(), want.detach().numpy())
    ga = ember.autograd.grad(got.sum(), (x, w))
    gb = ember.autograd.grad(want.sum(), (x, w))
    for a, b in zip(ga, gb):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_pass_leaves_multi_use_intermediates():
    def f(x):
        y = x.tanh()
        return y * 2.0 + y.exp()  # y has two users: it stays a node of its own

    gm = symbolic_trace(f)
    fuse_elementwise(gm.graph)
    names = [n.name for n in gm.graph.nodes if n.op != "placeholder"]
    assert "tanh" in names and "fused_elementwise" in names
    fn, _, _ = build(gm.graph, gm)
    x = ember.randn(5)
    np.testing.assert_array_equal(fn(x).numpy(), f(x).numpy())


def test_reduce_overhead_falls_back_on_cpu():
    ember.manual_seed(1)
    model = ember.nn.Sequential(ember.nn.Linear(4, 8), ember.nn.Tanh(), ember.nn.Linear(8, 2))
    f = ember.compile(model, mode="reduce-overhead")
    x = ember.randn(3, 4)
    with ember.no_grad():
        for _ in range(4):  # past the warm-up calls: still the ordinary executor
            np.testing.assert_array_equal(f(x).numpy(), model(x).numpy())
    runner = f._compiled.entries[0].fn
    assert isinstance(runner, CUDAGraphRunner) and runner.graph is None and not runner.failed
    f(x).sum().backward()  # autograd on: the same executor, gradients flow
    assert model[0].weight.grad is not None


@pytest.mark.gpu
def test_generated_kernel_on_gpu():  # pragma: no cover - needs a GPU
    cupy = pytest.importorskip("cupy")
    _, fused = _fused(chain)
    x = ember.randn(256, 33, device="cuda")
    w = ember.randn(33, device="cuda")
    with ember.no_grad():
        got = fused(x, w)
    want = evaluate(fused.tree, [cupy.asnumpy(x._data), cupy.asnumpy(w._data)])
    np.testing.assert_allclose(cupy.asnumpy(got._data), want, rtol=1e-6, atol=1e-6)


@pytest.mark.gpu
def test_generated_backward_on_gpu():  # pragma: no cover - needs a GPU
    pytest.importorskip("cupy")
    gm, fused = _fused(chain)
    fn, _, _ = build(gm.graph, gm)
    x = ember.randn(64, 33, device="cuda", requires_grad=True)
    w = ember.randn(33, device="cuda", requires_grad=True)
    out = fn(x, w)
    assert "FusedElementwiseFunction" in type(out.grad_fn).__name__
    got = ember.autograd.grad(out.sum(), (x, w))
    want = ember.autograd.grad(chain(x, w).sum(), (x, w))
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.cpu().numpy(), b.cpu().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
def test_reduce_overhead_replays_a_cuda_graph():  # pragma: no cover - needs a GPU
    model = ember.nn.Sequential(
        ember.nn.Linear(16, 32), ember.nn.ReLU(), ember.nn.Linear(32, 4)
    ).cuda()
    f = ember.compile(model, mode="reduce-overhead")
    with ember.no_grad():
        for _ in range(4):
            x = ember.randn(8, 16, device="cuda")
            np.testing.assert_allclose(
                f(x).cpu().numpy(), model(x).cpu().numpy(), rtol=1e-5, atol=1e-5
            )
    assert f._compiled.entries[0].fn.graph is not None


def test_docs_gpu_snippet_runs():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "compile.md").read_text()
    section = text.split("## GPU code generation", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/compile.md", "exec"), {})


def _graphed_runner(compiled):
    fns = [e.fn for e in compiled._compiled.entries if e.fn is not None]
    return fns[-1]


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["mlp", "cnn", "lstm", "transformer"])
def test_reduce_overhead_training_matches_eager_on_gpu(name):  # pragma: no cover - needs a GPU
    """The benchmark workloads' training step, replayed as forward and backward CUDA graphs,
    against eager ember on the GPU (the transformer's dropout draws the same numbers)."""
    import copy

    pytest.importorskip("cupy")
    from ember.distributed.experiment.workloads import build

    ember.manual_seed(0)
    model, x, y, loss_fn = build(ember, name, 8)
    model.cuda().train()
    twin = copy.deepcopy(model)
    x, y = x.cuda(), y.cuda()
    compiled = ember.compile(twin, mode="reduce-overhead")
    runs = []
    for m in (model, compiled):
        opt = ember.optim.Adam(m.parameters(), lr=1e-3)
        ember.manual_seed(1)
        losses = []
        for _ in range(6):
            opt.zero_grad()
            loss = loss_fn(m(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        runs.append(losses)
    runner = _graphed_runner(compiled)
    assert runner.graph is not None, runner.reason
    np.testing.assert_allclose(runs[1], runs[0], rtol=2e-4, atol=1e-5)
    for p, q in zip(twin.parameters(), model.parameters()):
        np.testing.assert_allclose(p.detach().cpu().numpy(), q.detach().cpu().numpy(), atol=2e-4)


@pytest.mark.gpu
def test_reduce_overhead_training_guards_on_gpu():  # pragma: no cover - needs a GPU
    """Fresh outputs and gradients, accumulation, two forwards before one backward, and the
    error for a backward whose replay was overwritten, on real CUDA graphs."""
    pytest.importorskip("cupy")
    import copy

    ember.manual_seed(0)
    model = ember.nn.Sequential(
        ember.nn.Linear(16, 32), ember.nn.ReLU(), ember.nn.Linear(32, 4)
    ).cuda()
    twin = copy.deepcopy(model)
    f = ember.compile(twin, mode="reduce-overhead")
    xs = [ember.randn(8, 16, device="cuda") for _ in range(6)]
    outs = []
    for x in xs[:4]:  # no zero_grad: gradients accumulate
        out = f(x)
        out.pow(2).sum().backward()
        model(x).pow(2).sum().backward()
        outs.append(out)
    assert _graphed_runner(f).graph is not None
    for x, o in zip(xs, outs):  # earlier outputs survive later replays
        np.testing.assert_allclose(
            o.detach().cpu().numpy(), model(x).detach().cpu().numpy(), rtol=1e-5, atol=1e-5
        )
    (f(xs[4]).sum() + f(xs[5]).sum()).backward()  # the second call runs without a replay
    (model(xs[4]).sum() + model(xs[5]).sum()).backward()
    for p, q in zip(twin.parameters(), model.parameters()):
        np.testing.assert_allclose(p.grad.cpu().numpy(), q.grad.cpu().numpy(), rtol=1e-4, atol=1e-4)
    first = f(xs[0]).sum()
    first.backward(retain_graph=True)
    f(xs[1]).sum().backward()
    with pytest.raises(RuntimeError, match="overwritten by a later call"):
        first.backward()
