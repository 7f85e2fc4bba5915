"""The broad ``__torch_function__`` set (``core/_torch_function.py``): every public
``ember.nn.functional`` function and the ``ember.*`` functions with an ``out=`` or autocast
wrapper hand a tensor-like (non-Tensor) first argument to its type, with the public function
as ``func`` (the out=/autocast-wrapped ones any argument, as torch); plain tensors take the
unchanged path."""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember import overrides


class Wrapped:
    """A tensor-like object (not a Tensor): unwraps, runs ``func``, wraps the result."""

    calls: list = []

    def __init__(self, t):
        self.t = t

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.calls.append(func)
        args = [a.t if isinstance(a, Wrapped) else a for a in args]
        return Wrapped(func(*args, **(kwargs or {})))


x4 = ember.randn(2, 3, 6, 6)
x2 = ember.randn(4, 6)
w = ember.randn(5, 6)
target = ember.tensor([0, 1, 4, 2])

# (public function, its arguments with the first one wrapped): plain, autocast-wrapped and
# inline-tested functions of F, and out=- / autocast-wrapped ember.* functions
CASES = {
    "F.relu": (F.relu, (x2,)),
    "F.tanh": (F.tanh, (x2,)),
    "F.leaky_relu": (F.leaky_relu, (x2, 0.2)),
    "F.hardswish": (F.hardswish, (x2,)),
    "F.mish": (F.mish, (x2,)),
    "F.elu": (F.elu, (x2,)),
    "F.linear": (F.linear, (x2, w)),
    "F.layer_norm": (F.layer_norm, (x2, (6,))),
    "F.rms_norm": (F.rms_norm, (x2, (6,))),
    "F.batch_norm": (F.batch_norm, (x2, None, None, None, None, True)),
    "F.cross_entropy": (F.cross_entropy, (ember.randn(4, 5), target)),
    "F.mse_loss": (F.mse_loss, (x2, x2 * 2)),
    "F.conv2d": (F.conv2d, (x4, ember.randn(4, 3, 3, 3))),
    "F.max_pool2d": (F.max_pool2d, (x4, 2)),
    "F.avg_pool2d": (F.avg_pool2d, (x4, 2)),
    "F.adaptive_avg_pool2d": (F.adaptive_avg_pool2d, (x4, 1)),
    "F.pad": (F.pad, (x2, (1, 1))),
    "F.interpolate": (F.interpolate, (x4,), {"scale_factor": 2}),
    "F.normalize": (F.normalize, (x2,)),
    "F.log_softmax": (F.log_softmax, (x2, 1)),
    "ember.add": (ember.add, (x2, x2)),
    "ember.mul": (ember.mul, (x2, 3.0)),
    "ember.sum": (ember.sum, (x2, 1)),
    "ember.exp": (ember.exp, (x2,)),
    "ember.clamp": (ember.clamp, (x2, -0.5, 0.5)),
    "ember.mm": (ember.mm, (x2, w.t())),
    "ember.where": (ember.where, (x2 > 0, x2, 0.0)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_tensor_like_first_argument_is_handed_over(name):
    fn, args, *kw = CASES[name]
    kwargs = kw[0] if kw else {}
    Wrapped.calls.clear()
    ember.manual_seed(0)
    got = fn(Wrapped(args[0]), *args[1:], **kwargs)
    assert isinstance(got, Wrapped), name
    assert len(Wrapped.calls) == 1 and Wrapped.calls[0].__name__ == fn.__name__
    ember.manual_seed(0)
    want = fn(*args, **kwargs)
    np.testing.assert_allclose(got.t.detach().numpy(), want.detach().numpy(), rtol=1e-6)
    assert getattr(fn, "__ember_torch_function__", False)  # listed as overridable


def test_embedding_weight_is_relevant_too():
    Wrapped.calls.clear()
    weight = ember.randn(10, 3)
    idx = ember.tensor([[1, 2], [9, 0]])
    got = F.embedding(idx, Wrapped(weight), padding_idx=0)
    assert isinstance(got, Wrapped) and Wrapped.calls == [F.embedding]
    np.testing.assert_array_equal(got.t.numpy(), F.embedding(idx, weight, 0).numpy())


def test_every_public_functional_participates():
    fns = set(overrides.get_overridable_functions()[F])
    missing = [
        n
        for n in dir(F)
        if not n.startswith("_")
        and callable(getattr(F, n))
        and not isinstance(getattr(F, n), type)
        and getattr(F, n) not in fns
    ]
    assert not missing


def test_plain_tensors_and_declining_types():
    assert type(F.relu(x2)) is ember.Tensor and type(ember.add(x2, 1)) is ember.Tensor

    class Declines:
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            return NotImplemented

    with pytest.raises(TypeError, match=r"layer_norm.*\['Declines'\]"):
        F.layer_norm(Declines(), (6,))
    # factories are not dispatched on their size argument; out= still works
    out = ember.empty(0)
    assert ember.add(x2, 1, out=out) is out
    assert tuple(ember.zeros(2, 3).shape) == (2, 3)


class Probe:
    """A tensor-like that reports the call it received: (name, #args, keyword names)."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return func.__name__, len(args), sorted(kwargs or {})


# out=- and autocast-wrapped functions dispatch on any argument, as torch does (torch 2.13)
ANY_ARG = {
    "add(t, p)": lambda fw, t, p: fw.add(t, p),
    "add(t, other=p)": lambda fw, t, p: fw.add(t, other=p),
    "mul(t, p)": lambda fw, t, p: fw.mul(t, p),
    "mm(t, p)": lambda fw, t, p: fw.mm(t, p),
    "where(c, t, p)": lambda fw, t, p: fw.where(t > 0, t, p),
    "add(t, t, out=p)": lambda fw, t, p: fw.add(t, t, out=p),
    "clamp(t, min=p)": lambda fw, t, p: fw.clamp(t, min=p),
    "pow(2, p)": lambda fw, t, p: fw.pow(2, p),
    "lerp(t, t, p)": lambda fw, t, p: fw.lerp(t, t, p),
}


@pytest.mark.parametrize("name", list(ANY_ARG))
def test_tensor_like_in_any_argument_is_handed_over(name):
    torch = pytest.importorskip("torch")
    call = ANY_ARG[name]
    assert call(ember, ember.ones(2, 2), Probe()) == call(torch, torch.ones(2, 2), Probe())
