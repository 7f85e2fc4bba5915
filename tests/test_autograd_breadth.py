"""ember.autograd breadth against torch: forward-mode AD (jvp values), anomaly detection,
Variable, the graph utilities (saved-tensor hooks, multi-grad hooks, gradient edges, version
bumps, mutation of saved tensors) and set_multithreading_enabled."""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.autograd.forward_ad as fwAD
from ember.autograd import graph as egraph

torch = pytest.importorskip("torch")
tAD = torch.autograd.forward_ad

X = np.array([[0.5, 1.0, -2.0], [0.3, -0.7, 1.5]])
V = np.array([[1.0, -2.0, 0.5], [0.25, 0.0, -1.0]])
W = np.array([[0.2, -0.1], [0.4, 0.3], [-0.5, 0.6]])

FUNCS = {
    "elementwise": lambda lib, x: (x.sin() * x).exp() + x**2,
    "matmul_tanh": lambda lib, x: lib.tanh(x @ lib.tensor(W)),
    "softmax_sum": lambda lib, x: (x.softmax(-1) * x).sum(0),
    "reduce_broadcast": lambda lib, x: x / x.norm() + x.mean(1, keepdim=True),
}


@pytest.mark.parametrize("name", list(FUNCS))
def test_jvp_matches_torch(name):
    f = FUNCS[name]
    with fwAD.dual_level():
        d = fwAD.make_dual(ember.tensor(X), ember.tensor(V))
        primal, tangent = fwAD.unpack_dual(f(ember, d))
    with tAD.dual_level():
        td = tAD.make_dual(torch.tensor(X), torch.tensor(V))
        tp, tt = tAD.unpack_dual(f(torch, td))
    np.testing.assert_allclose(primal.detach().numpy(), tp.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(tangent.numpy(), tt.numpy(), rtol=1e-10, atol=1e-12)


def test_forward_ad_levels_and_errors():
    with pytest.raises(RuntimeError, match="no level exists"):
        fwAD.make_dual(ember.ones(2), ember.ones(2))
    with fwAD.dual_level() as level:
        assert level == 0
        with pytest.raises(RuntimeError, match="Nested forward mode AD"):
            fwAD.enter_dual_level()
        with pytest.raises(RuntimeError, match="different size"):
            fwAD.make_dual(ember.ones(2), ember.ones(3))
        with pytest.raises(ValueError, match="floating point"):
            fwAD.make_dual(ember.ones(2, dtype=ember.int64), ember.ones(2))
        d = fwAD.make_dual(ember.ones(2), ember.full((2,), 3.0))
        out = fwAD.unpack_dual(d)
        assert isinstance(out, fwAD.UnpackedDualTensor)
        np.testing.assert_array_equal(out.tangent.numpy(), [3.0, 3.0])
        assert fwAD.unpack_dual(ember.ones(2)).tangent is None
        two = d * 2  # two dual inputs: tangents add
        d2 = fwAD.make_dual(ember.ones(2), ember.ones(2))
        np.testing.assert_array_equal(fwAD.unpack_dual(two + d2).tangent.numpy(), [7.0, 7.0])
    assert fwAD.unpack_dual(d).tangent is None  # the level's tangents are gone


# ---- anomaly mode ------------------------------------------------------------------------
def test_detect_anomaly_names_the_backward_and_the_forward_stack():
    x = ember.tensor([0.0, 1.0], requires_grad=True)
    with pytest.warns(UserWarning, match="Anomaly Detection has been enabled"):
        ctx = ember.autograd.detect_anomaly()
    with ctx:
        y = x.sqrt()  # d sqrt / dx at 0 is inf; times the zero below gives nan
        with pytest.warns(UserWarning, match="Traceback of forward call"):
            with pytest.raises(
                RuntimeError,
                match=r"Function 'SqrtBackward0' returned nan "
                r"values in its 0th output\.",
            ):
                (y * ember.tensor([0.0, 1.0])).sum().backward()
    x.grad = None
    (x.sqrt() * ember.tensor([0.0, 1.0])).sum().backward()  # off again: nan passes
    assert np.isnan(x.grad.numpy()[0])
    with ember.autograd.set_detect_anomaly(True, check_nan=False):
        (x.sqrt() * ember.tensor([0.0, 1.0])).sum().backward()
    from ember.autograd import anomaly_mode

    assert not anomaly_mode.is_anomaly_enabled()


def test_detect_anomaly_matches_torch_error():
    tx = torch.tensor([0.0, 1.0], requires_grad=True)
    with pytest.warns(UserWarning):
        with torch.autograd.detect_anomaly():
            with pytest.raises(RuntimeError) as te:
                (tx.sqrt() * torch.tensor([0.0, 1.0])).sum().backward()
    assert "returned nan values in its 0th output." in str(te.value)


# ---- Variable, multithreading flag -------------------------------------------------------
def test_variable_is_the_tensor():
    from ember.autograd import Variable

    x = ember.ones(2)
    v = Variable(x, requires_grad=True)
    assert isinstance(x, Variable) and isinstance(v, ember.Tensor)
    assert v.requires_grad and not x.requires_grad and v is not x
    assert v.data_ptr() == x.data_ptr()
    assert tuple(Variable().shape) == tuple(torch.autograd.Variable().shape)
    with ember.autograd.set_multithreading_enabled(False):
        assert not ember.autograd.is_multithreading_enabled()
    assert ember.autograd.is_multithreading_enabled()


# ---- graph -------------------------------------------------------------------------------
def test_saved_tensors_hooks_pack_and_unpack():
    packed, unpacked = [], []

    def pack(t):
        packed.append(tuple(t.shape))
        return t.numpy().copy()

    def unpack(a):
        unpacked.append(a.shape)
        return ember.tensor(a)

    x = ember.tensor([1.0, 2.0, 3.0], requires_grad=True)
    with egraph.saved_tensors_hooks(pack, unpack):
        y = (x * x).exp().sum()
    assert packed and not unpacked
    y.backward()
    assert len(unpacked) == len(packed)
    np.testing.assert_allclose(x.grad.numpy(), 2 * X_ref() * np.exp(X_ref() ** 2), rtol=1e-6)
    with egraph.save_on_cpu():
        z = (x.sin() * x).sum()
    x.grad = None
    z.backward()
    np.testing.assert_allclose(
        x.grad.numpy(), np.cos(X_ref()) * X_ref() + np.sin(X_ref()), rtol=1e-6
    )
    with egraph.disable_saved_tensors_hooks("no hooks here"):
        with pytest.raises(RuntimeError, match="no hooks here"):
            with egraph.saved_tensors_hooks(pack, unpack):
                pass


def X_ref():
    return np.array([1.0, 2.0, 3.0])


def test_allow_mutation_on_saved_tensors():
    x = ember.tensor([1.0, 2.0, 3.0], requires_grad=True)
    with egraph.allow_mutation_on_saved_tensors():
        a = x.clone()
        y = (a * a).sum()
        with ember.no_grad():
            a.mul_(10)
        y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * X_ref())
    b = x.clone()
    y = (b * b).sum()
    with ember.no_grad():
        b.mul_(10)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


def test_increment_version_and_gradient_edge():
    x = ember.ones(2, requires_grad=True)
    y = x * 2
    z = (y * y).sum()
    egraph.increment_version(y)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.backward()
    edge = egraph.get_gradient_edge(y)
    assert isinstance(edge, egraph.GradientEdge) and edge.output_nr == 0
    assert edge.node is y.grad_fn and isinstance(y.grad_fn, egraph.Node)
    assert egraph.get_gradient_edge(x).node.name() == "AccumulateGrad"
    with pytest.raises(RuntimeError, match="does not require gradients"):
        egraph.get_gradient_edge(ember.ones(1))


@pytest.mark.parametrize("mode", ["all", "any"])
def test_register_multi_grad_hook_matches_torch(mode):
    def run(lib):
        a = lib.tensor([1.0, 2.0], requires_grad=True)
        b = lib.tensor([3.0], requires_grad=True)
        c = lib.tensor([5.0], requires_grad=True)  # not reached by this backward
        seen = []
        mod = egraph if lib is ember else torch.autograd.graph
        h = mod.register_multi_grad_hook([a, b, c], lambda g: seen.append(g), mode=mode)
        ((a * 2).sum() + (b * b).sum()).backward()
        h.remove()
        ((a * 2).sum()).backward()
        return seen

    e, t = run(ember), run(torch)
    assert len(e) == len(t) == 1
    if mode == "all":
        for eg, tg in zip(e[0], t[0]):
            assert (eg is None) == (tg is None)
            if eg is not None:
                np.testing.assert_allclose(eg.numpy(), tg.numpy())
    else:
        assert e[0].shape == t[0].shape
