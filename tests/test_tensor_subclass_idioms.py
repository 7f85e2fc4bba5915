"""Subclassing ``Tensor`` the ways real PyTorch code does, checked against PyTorch.

The idioms come from programs run with ``import ember as torch``: a ``__new__`` that calls
``super().__new__(cls, *args)`` and a pass-through ``__torch_function__`` (flywhl/lab), a
``BoundedTensor`` built as ``super().__new__(cls, [])`` plus ``.data`` and a
``BoundedParameter`` from ``_make_subclass`` under ``torch._C.DisableTorchFunction``
(auto_LiRPA), ``nn.Parameter`` subclasses with extra ``__new__`` arguments (sglang,
DPParameter-style), the subclass zoo's ``BaseTensor``, and the logging/units tensors of
PyTorch's "Extending torch" notes. Each scenario runs on both libraries; the tests compare
values, result types (by class name) and errors.
"""

from __future__ import annotations

import copy
import io
import pickle

import numpy as np
import pytest
import torch

import ember

LIBS = [torch, ember]


def _names(*objs) -> list[str]:
    return [type(o).__name__ for o in objs]


# ---- Tensor.__new__: the legacy constructor's forms --------------------------------------


@pytest.mark.parametrize(
    "args",
    [(), (2, 3), ("size",), ([1, 2, 3],), ("int_array",), ("tensor",), (np.int64(2), 3)],
    ids=["empty", "sizes", "Size", "list", "int_ndarray", "tensor", "np_int_size"],
)
def test_legacy_new_forms_match_torch(args):
    def run(lib):
        class Sub(lib.Tensor):
            pass

        real = []
        for a in args:
            if a == "size":
                a = lib.Size([2, 4])
            elif a == "int_array":
                a = np.arange(3)
            elif a == "tensor":
                a = lib.tensor([1, 2], dtype=lib.int32)
            real.append(a)
        outs = [lib.Tensor(*real), Sub(*real), lib.Tensor.__new__(Sub, *real)]
        return [(type(o).__name__, tuple(o.shape), str(o.dtype).split(".")[1]) for o in outs]

    assert run(ember) == run(torch)


@pytest.mark.parametrize("bad", [("abc",), (2.5,), (True,), (2, "a")])
def test_legacy_new_rejects_what_torch_rejects(bad):
    for lib in LIBS:
        with pytest.raises(TypeError):
            lib.Tensor(*bad)


def test_new_from_a_tensor_is_an_alias_that_keeps_the_graph():
    for lib in LIBS:

        class Sub(lib.Tensor):
            pass

        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        y = x * 2
        s = Sub(y)
        assert type(s) is Sub and s.requires_grad and s.grad_fn is not None
        (s * s).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), [8.0, 16.0, 24.0])
        src = lib.zeros(3)
        alias = Sub(src)
        src.add_(1)  # the alias sees writes to its source, and their version
        assert alias.tolist() == [1.0, 1.0, 1.0] and alias._version == src._version


def test_lab_style_subclass_keeps_its_type_through_ops():
    def run(lib):
        class T(lib.Tensor):
            def __new__(cls, *args, **kwargs):
                return super().__new__(cls, *args, **kwargs)

            def __init__(self, *args, **kwargs):
                super().__init__()

            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):
                return super().__torch_function__(func, types, args, kwargs or {})

        a = T([1.0, 2.0, 3.0])
        b = T(lib.ones(2, 3))
        outs = [a + 1, 2 * a, a * a, lib.sum(a), a.view(3, 1), a.exp(), b @ b.T, b[0], b.mean(0)]
        return _names(a, b, *outs), [np.asarray(o.tolist()).round(5).tolist() for o in outs]

    assert run(ember) == run(torch)


# ---- _make_subclass and as_subclass ------------------------------------------------------


def test_make_subclass_is_a_detached_alias_leaf():
    for lib in LIBS:

        class Sub(lib.Tensor):
            pass

        x = lib.randn(3, requires_grad=True)
        y = x * 1
        s = lib.Tensor._make_subclass(Sub, y)
        assert type(s) is Sub and not s.requires_grad and s.grad_fn is None and s.is_leaf
        g = lib.Tensor._make_subclass(Sub, y.detach(), True)
        assert g.requires_grad and g.is_leaf
        base = lib.zeros(2)
        alias = lib.Tensor._make_subclass(Sub, base)
        base.add_(1)
        assert alias.tolist() == [1.0, 1.0] and alias._version == base._version
        with pytest.raises(RuntimeError, match="floating point"):
            lib.Tensor._make_subclass(Sub, lib.arange(3), True)


def test_as_subclass_stays_in_the_graph_and_checks_the_class():
    for lib in LIBS:

        class Sub(lib.Tensor):
            pass

        x = lib.tensor([1.0, -2.0], requires_grad=True)
        s = x.as_subclass(Sub)
        assert type(s) is Sub and s.requires_grad and not s.is_leaf
        (s * 3).sum().backward()
        assert x.grad.tolist() == [3.0, 3.0]
        with pytest.raises(TypeError, match="does not inherit from Tensor"):
            x.as_subclass(int)


def test_subclass_without_a_handler_gets_torch_default_results_and_repr():
    def run(lib):
        class Plain(lib.Tensor):
            pass

        q = Plain([1.0, 2.0])
        r = lib.ones(2, 2).as_subclass(Plain)
        outs = [q + 1, lib.exp(q), q.sum(), q.detach(), q.data, r @ r, r.T, q.clone(), q[0]]
        return _names(*outs), repr(q).replace("torch.", "").replace("ember.", "")

    assert run(ember) == run(torch)


# ---- handlers: metadata through ops, the _C switches ------------------------------------


def _units(lib):
    class Units(lib.Tensor):
        @staticmethod
        def __new__(cls, elem, unit="m", *, requires_grad=None):
            if requires_grad is None:
                t = super().__new__(cls, elem)
            else:
                t = cls._make_subclass(cls, elem, requires_grad)
            t.unit = unit
            return t

        def __init__(self, elem, unit="m", **kwargs):
            pass

        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            units = {a.unit for a in args if isinstance(a, Units) and hasattr(a, "unit")}
            if len(units) > 1:
                raise ValueError(f"mixed units {sorted(units)}")
            with lib._C.DisableTorchFunctionSubclass():
                ret = func(*args, **(kwargs or {}))
            if isinstance(ret, lib.Tensor) and not isinstance(ret, Units):
                ret = ret.as_subclass(Units)
            if isinstance(ret, Units) and units:
                ret.unit = next(iter(units))
            return ret

    return Units


def _module_level(cls, qualname: str):
    """``cls`` findable by pickle as this module's ``qualname`` (``__name__`` unchanged)."""
    cls.__qualname__ = qualname
    globals()[qualname] = cls
    return cls


UNITS = {torch: _module_level(_units(torch), "TorchUnits"), ember: None}
UNITS[ember] = _module_level(_units(ember), "EmberUnits")


def test_metadata_subclass_through_ops_pickle_and_save():
    def run(lib):
        Units = UNITS[lib]
        a = Units(lib.tensor([1.0, 2.0, 3.0]), "m", requires_grad=False)
        b = Units(lib.ones(3), "m")
        outs = [a + b, lib.sum(a), a.view(3, 1), a[0:2], a.mean(), 1 + a]
        mixed = None
        try:
            a + Units(lib.ones(3), "s")
        except ValueError as e:
            mixed = str(e)
        p = pickle.loads(pickle.dumps(b))
        buf = io.BytesIO()
        lib.save({"u": b}, buf)
        buf.seek(0)
        loaded = lib.load(buf, weights_only=False)["u"]
        return (
            [(type(o).__name__, o.unit) for o in outs],
            mixed,
            (type(p).__name__, p.unit, p.tolist()),
            (type(loaded).__name__, loaded.unit, loaded.tolist()),
        )

    assert run(ember) == run(torch)


def test_deepcopy_keeps_the_class_and_its_attributes():
    Units = UNITS[ember]
    b = Units(ember.ones(2), "kg")
    b.note = {"k": [1]}
    c = copy.deepcopy(b)
    assert type(c) is Units and c.unit == "kg" and c.note == {"k": [1]}
    assert c.note is not b.note and c.tolist() == [1.0, 1.0]
    c.add_(1)
    assert b.tolist() == [1.0, 1.0]  # a copy, not an alias


def test_lirpa_style_bounded_tensor_under_disable_torch_function():
    def run(lib):
        class Bounded(lib.Tensor):
            @staticmethod
            def __new__(cls, x, ptb):
                t = super().__new__(cls, [])
                t.data = x.data
                t.requires_grad = x.requires_grad
                return t

            def __init__(self, x, ptb):
                self.ptb = ptb

            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):
                if not all(issubclass(cls, t) for t in types):
                    return NotImplemented
                with lib._C.DisableTorchFunction():
                    return func(*args, **(kwargs or {}))

        class BoundedParameter(lib.nn.Parameter):
            def __new__(cls, data, ptb, requires_grad=True):
                return Bounded._make_subclass(cls, data, requires_grad)

            def __init__(self, data, ptb, requires_grad=True):
                self.ptb = ptb

        bt = Bounded(lib.tensor([[1.0, -2.0, 3.0]]), 0.1)
        lin = lib.nn.Linear(3, 2)
        lin.weight = BoundedParameter(lib.ones(2, 3), 0.5)
        out = lin(bt)
        out.sum().backward()
        return (
            _names(bt, bt * 2, out, lin.weight),
            bt.ptb,
            lin.weight.ptb,
            lin.weight.grad.tolist(),
            sorted(n for n, _ in lin.named_parameters()),
        )

    assert run(ember) == run(torch)


def test_disabled_torch_function_impl_returns_plain_tensors():
    def run(lib):
        class Quiet(lib.Tensor):
            __torch_function__ = lib._C._disabled_torch_function_impl

        q = lib.Tensor._make_subclass(Quiet, lib.ones(2))
        return _names(q, q + 1, lib.exp(q))

    assert run(ember) == run(torch)


# ---- nn.Parameter subclasses -------------------------------------------------------------


def _params(lib):
    nn = lib.nn

    class WithLoader(nn.Parameter):  # extra __new__ argument, attribute set in __new__
        def __new__(cls, data, weight_loader=None):
            p = super().__new__(cls, data)
            p.weight_loader = weight_loader or "default"
            return p

    class DP(nn.Parameter):  # keyword arguments Parameter.__init__ must ignore
        def __new__(cls, data=None, requires_grad=True, requires_dp=True):
            t = nn.Parameter.__new__(cls, data, requires_grad)
            t.requires_dp = requires_dp
            return t

    class Made(nn.Parameter):
        def __new__(cls, data):
            return lib.Tensor._make_subclass(cls, data)

    class Hyper(nn.Parameter):  # FloatTensor data and an explicit Parameter.__init__
        def __new__(cls, data=None, name=""):
            return nn.Parameter.__new__(cls, lib.FloatTensor([data]), False)

        def __init__(self, data=None, name=""):
            nn.Parameter.__init__(self)
            self.param_name = name

    return WithLoader, DP, Made, Hyper


def test_parameter_subclasses_construct_register_and_train():
    def run(lib):
        WithLoader, DP, Made, Hyper = _params(lib)
        w = WithLoader(lib.zeros(2, 3))
        d = DP(lib.ones(2), requires_dp=False)
        m = Made(lib.ones(2))
        h = Hyper(0.5, "lr")
        lin = lib.nn.Linear(3, 2)
        lin.weight = w
        lin.extra = d
        (lin(lib.ones(4, 3)).sum() + lin.extra.sum()).backward()
        with lib.no_grad():  # an SGD step in place (the subclass instance stays registered)
            for p in lin.parameters():
                p.sub_(0.5 * p.grad)
        return (
            _names(w, d, m, h, w * 2, w.detach(), lin.weight),
            (w.weight_loader, d.requires_dp, d.requires_grad, m.requires_grad),
            (h.param_name, h.tolist(), h.requires_grad, str(h.dtype).split(".")[1]),
            sorted(n for n, _ in lin.named_parameters()),
            np.round(lin.weight.detach().numpy(), 5).tolist(),
            _names(*lin.state_dict().values()),
        )

    assert run(ember) == run(torch)


def test_parameter_subclass_deepcopy_and_pickle_keep_class_and_attributes():
    # PyTorch 2.13 rebuilds a pickled Parameter subclass as a plain Parameter; ember keeps
    # the class (and both keep the attributes)
    DP = _module_level(_params(ember)[1], "EmberDP")
    d = DP(ember.ones(3), requires_dp=False)
    lin = ember.nn.Linear(2, 2)
    lin.extra = d
    c = copy.deepcopy(lin).extra
    p = pickle.loads(pickle.dumps(d))
    for out in (c, p):
        assert type(out) is DP and out.requires_dp is False and out.requires_grad
        assert out.tolist() == [1.0, 1.0, 1.0]
