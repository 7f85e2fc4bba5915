"""Idioms of e3nn (0.6.0) and zuko (1.6.0) that stopped them on ember, as small programs of our
own run in ember and in PyTorch (docs/porting_examples.md, "e3nn and zuko"). Neither library
is imported here.

- e3nn builds its tensor-product code as an fx graph by hand: ``fx.Proxy(graph.placeholder())``
  passed to ``torch.broadcast_tensors``, ``torch._assert`` and ``torch.einsum(eq, [list])``
  (opt_einsum's torch backend), outside any symbolic trace;
- its ``Extract`` writes into views of ``x.new_zeros(...)`` with ``narrow(...).copy_(x)``: the
  base must join the graph;
- ``e3nn.util.jit.compile`` scripts ``TensorProduct``, whose ``_get_weights(self, weight)``
  reads ``self.weight`` beside an argument ``weight``, and whose exported ``right`` asserts on
  a False attribute (a run-time error in TorchScript, not a compile error);
- zuko's CNF takes the trace of a Jacobian with ``einsum("i...i", J)`` and integrates with a
  ``NestedTensor`` (a tuple subclass with ``__rmul__``): ``dt * nested``.
"""

from __future__ import annotations

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _np(t):
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


# ---- an fx graph built by hand, as e3nn's codegen does -------------------------------------
def _hand_built_graph(T):
    fx = T.fx
    graph = fx.Graph()
    tracer = fx.proxy.GraphAppendingTracer(graph)
    x = fx.Proxy(graph.placeholder("x", T.Tensor), tracer=tracer)
    w = fx.Proxy(graph.placeholder("w", T.Tensor), tracer=tracer)
    T._assert(x.shape[-1] == 4, "invalid input shape")
    shape = T.broadcast_tensors(x[..., :1], w[..., :1])[0].shape[:-1]
    xs = x.expand(shape + (-1,)).reshape(-1, 2, 2)
    ws = w.expand(shape + (-1,)).reshape(-1, 2)
    y = T.einsum("zij,zj->zi", [xs, ws])  # the list form, as opt_einsum's torch backend
    out = x.new_zeros(shape + (3,))
    out.narrow(-1, 0, 2).copy_(y.reshape(shape + (2,)))
    out.narrow(-1, 2, 1).copy_(x.narrow(-1, 0, 1))
    graph.output(out.node)
    return fx.GraphModule(T.nn.Module(), graph, "hand_built")


def test_hand_built_fx_graph_runs_and_differentiates_like_torch():
    rng = np.random.default_rng(0)
    xa = rng.standard_normal((3, 4)).astype(np.float32)
    wa = rng.standard_normal((1, 2)).astype(np.float32)
    res = {}
    for T in (torch, ember):
        gm = _hand_built_graph(T)
        x = T.tensor(xa, requires_grad=True)
        w = T.tensor(wa, requires_grad=True)
        out = gm(x, w)
        (out * T.arange(1.0, 4.0)).sum().backward()
        res[T.__name__] = (_np(out), _np(x.grad), _np(w.grad))
        gm.recompile()  # the generated code compiles again from the graph
        np.testing.assert_allclose(_np(gm(x, w)), res[T.__name__][0], rtol=1e-6)
    for a, b in zip(res["torch"], res["ember"]):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    gm = _hand_built_graph(ember)
    assert any(n.target is ember.einsum for n in gm.graph.nodes)
    with pytest.raises(AssertionError, match="invalid input shape"):
        gm(ember.zeros(3, 5), ember.zeros(1, 2))


def test_copy_into_view_of_a_fresh_zeros_tensor_joins_the_graph():
    xa = np.arange(10, dtype=np.float32).reshape(2, 5) / 7
    grads = {}
    for T in (torch, ember):
        x = T.tensor(xa, requires_grad=True)
        out = x.new_zeros(2, 3)
        out.narrow(-1, 0, 2).copy_(x.narrow(-1, 1, 2))
        out[:, 2:].add_(x[:, :1] * 2)
        out.diagonal().mul_(3.0)
        assert out.requires_grad and out.grad_fn is not None
        (out * T.tensor([[1.0, 2.0, 3.0]])).pow(2).sum().backward()
        grads[T.__name__] = (_np(out), _np(x.grad))
    for a, b in zip(grads["torch"], grads["ember"]):
        np.testing.assert_allclose(b, a, rtol=1e-6)


@pytest.mark.parametrize(
    "eq,shapes",
    [
        ("ii->i", [(3, 3)]),
        ("ii", [(4, 4)]),
        ("i...i", [(3, 5, 3)]),  # zuko's exact trace of a Jacobian
        ("bii,bj->bj", [(2, 3, 3), (2, 4)]),
        ("iij->j", [(3, 3, 2)]),
        ("ijij->ij", [(2, 3, 2, 3)]),
    ],
)
def test_einsum_gradient_through_a_diagonal_matches_torch(eq, shapes):
    rng = np.random.default_rng(1)
    arrs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    res = {}
    for T in (torch, ember):
        ts = [T.tensor(a, requires_grad=True) for a in arrs]
        out = T.einsum(eq, *ts)
        weight = T.tensor(np.linspace(-1, 1, out.numel(), dtype=np.float32).reshape(out.shape))
        (out * weight).sum().backward()
        res[T.__name__] = [_np(out)] + [_np(t.grad) for t in ts]
    for a, b in zip(res["torch"], res["ember"]):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


# ---- scripting e3nn-style modules ----------------------------------------------------------
class _WeightedProduct(ember.nn.Module):
    def __init__(self, internal: bool = True):
        super().__init__()
        self.weight = ember.nn.Parameter(ember.tensor([0.5, -1.0, 2.0]))
        self.internal = internal
        self.did_compile_right = False

    def _get_weights(self, weight: ember.Tensor | None) -> ember.Tensor:
        if weight is None:
            return self.weight
        ember._assert(weight.shape[-1] == 3, "Invalid weight shape")
        return weight

    @ember.jit.export
    def right(self, y):
        ember._assert(self.did_compile_right, "`right` is not compiled")
        return y * self.weight

    def forward(self, x, weight: ember.Tensor | None = None):
        return x * self._get_weights(weight)


def test_script_lifts_an_attribute_beside_an_argument_of_its_name():
    m = _WeightedProduct()
    s = ember.jit.script(m)
    x = ember.tensor([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(_np(s(x)), _np(m(x)))
    w = ember.tensor([[2.0, 2.0, 2.0]])
    np.testing.assert_allclose(_np(s(x, w)), [[2.0, 4.0, 6.0]])
    # an assertion that fails while compiling fails when the method runs, as in TorchScript
    with pytest.raises(AssertionError, match="is not compiled"):
        s.right(x)


# ---- zuko's NestedTensor: a tuple subclass with __rmul__ -----------------------------------
class _Nested(tuple):
    def __add__(self, other):
        return _Nested(a + b for a, b in zip(self, other, strict=True))

    def __rmul__(self, other):
        return _Nested(other * a for a in self)


def _euler_steps(T):
    x = _Nested((T.ones(2, 2), T.arange(3.0)))  # two shapes: NumPy cannot stack them
    y = _Nested((T.ones(3), T.ones(3)))  # equal shapes: NumPy would stack them silently
    dt = T.tensor(0.25)
    for _ in range(3):
        x = x + dt * _Nested(2 * a for a in x)
    assert isinstance(dt * y, _Nested)
    return [_np(a) for a in x] + [_np(a) for a in dt * y]


def test_tensor_times_tuple_subclass_defers_to_its_rmul():
    got, want = _euler_steps(ember), _euler_steps(torch)
    assert len(got) == len(want) == 4
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, rtol=1e-6)
    assert isinstance(ember.tensor(2.0) * _Nested((ember.ones(1),)), _Nested)
    # plain lists and tuples stay operands
    np.testing.assert_allclose(_np(ember.ones(2) * [1.0, 2.0]), [1.0, 2.0])


# ---- a Transform subclass with a log-abs-det, as zuko's -------------------------------------
def _affine_flow(T):
    D = T.distributions

    class Scale(D.Transform):
        domain = D.constraints.real
        codomain = D.constraints.real
        bijective = True

        def __init__(self, log_scale):
            super().__init__()
            self.log_scale = log_scale

        def _call(self, x):
            return x * self.log_scale.exp()

        def _inverse(self, y):
            return y * (-self.log_scale).exp()

        def log_abs_det_jacobian(self, x, y):
            return self.log_scale.expand_as(x)

    log_scale = T.tensor([0.3, -0.2], requires_grad=True)
    base = D.Independent(D.Normal(T.zeros(2), T.ones(2)), 1)
    flow = D.TransformedDistribution(base, [D.IndependentTransform(Scale(log_scale), 1)])
    x = T.tensor([[0.5, -1.0], [2.0, 0.1]])
    lp = flow.log_prob(x)
    lp.sum().backward()
    return _np(lp), _np(log_scale.grad)


def test_transform_subclass_log_prob_and_gradient_match_torch():
    for a, b in zip(_affine_flow(torch), _affine_flow(ember)):
        np.testing.assert_allclose(b, a, rtol=1e-6)


def test_grad_with_no_inputs_says_so_first():
    for T in (torch, ember):
        with pytest.raises(RuntimeError, match="cannot be empty"):
            T.autograd.grad(T.ones(2).sum(), [])
