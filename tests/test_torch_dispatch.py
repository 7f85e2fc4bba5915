"""``__torch_dispatch__``: dispatch modes and wrapper subclasses (docs/torch_dispatch.md),
each program run on ember and on torch 2.13 and compared."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.autograd.function import Function

torch = pytest.importorskip("torch")


def _classes(lib, tree_map):
    """A logging wrapper and a scaled-int8 weight, written the same way for both frameworks."""
    aten = lib.ops.aten

    class LoggingTensor(lib.Tensor):
        __torch_function__ = lib._C._disabled_torch_function_impl
        log: list = []

        @staticmethod
        def __new__(cls, elem, requires_grad=False):
            r = lib.Tensor._make_wrapper_subclass(
                cls,
                elem.size(),
                strides=elem.stride(),
                dtype=elem.dtype,
                device=elem.device,
                requires_grad=requires_grad,
            )
            r.elem = elem
            return r

        def __tensor_flatten__(self):
            return ["elem"], None

        @staticmethod
        def __tensor_unflatten__(inner, meta, size, stride):
            return LoggingTensor(inner["elem"])

        @classmethod
        def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
            cls.log.append(func.__name__)

            def unwrap(t):
                return t.elem if isinstance(t, LoggingTensor) else t

            def wrap(t):
                plain = isinstance(t, lib.Tensor) and not isinstance(t, LoggingTensor)
                return LoggingTensor(t) if plain else t

            out = func(*tree_map(unwrap, args), **tree_map(unwrap, kwargs or {}))
            return tree_map(wrap, out)

    class Int8Weight(lib.Tensor):
        __torch_function__ = lib._C._disabled_torch_function_impl
        keeps = (aten.t.default, aten.detach.default, aten.clone.default, aten.view.default)
        gemms = (aten.mm.default, aten.addmm.default, aten.linear.default, aten.matmul.default)

        @staticmethod
        def __new__(cls, qdata, scale):
            r = lib.Tensor._make_wrapper_subclass(cls, qdata.shape, dtype=scale.dtype)
            r.qdata, r.scale = qdata, scale
            return r

        @classmethod
        def quantize(cls, w):
            scale = w.abs().amax() / 127
            return cls(lib.round(w / scale).to(lib.int8), scale)

        def dequantize(self):
            return self.qdata.to(self.scale.dtype) * self.scale

        def __tensor_flatten__(self):
            return ["qdata", "scale"], None

        @staticmethod
        def __tensor_unflatten__(inner, meta, size, stride):
            return Int8Weight(inner["qdata"], inner["scale"])

        @classmethod
        def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in cls.keeps:  # layout ops keep the type
                return Int8Weight(func(args[0].qdata, *args[1:], **kwargs), args[0].scale)
            if func in cls.gemms:
                deq = lambda t: t.dequantize() if isinstance(t, Int8Weight) else t  # noqa: E731
                return func(*tree_map(deq, args), **tree_map(deq, kwargs))
            raise NotImplementedError(f"Int8Weight: {func}")

    return LoggingTensor, Int8Weight


@pytest.fixture(scope="module")
def both():
    from torch.utils._pytree import tree_map as t_map

    from ember.utils._pytree import tree_map as e_map

    return {"ember": (ember, *_classes(ember, e_map)), "torch": (torch, *_classes(torch, t_map))}


def _mode(lib):
    if lib is torch:
        from torch.utils._python_dispatch import TorchDispatchMode
    else:
        from ember.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    return Record


def _mlp(lib):
    lib.manual_seed(0)
    net = lib.nn.Sequential(lib.nn.Linear(4, 8), lib.nn.ReLU(), lib.nn.Linear(8, 3))
    x = lib.rand(5, 4)
    y = lib.tensor([0, 1, 2, 0, 1])
    return net, x, y


def _grouped(ops, table):
    out = []
    for op in ops:
        name = table.get(op.split(".")[1], "?" + op)
        if name and (not out or out[-1] != name):
            out.append(name)
    return out


# torch's aten ops -> the ember op that does their work ("" : no ember op: autograd's own)
_TORCH_FORWARD = {
    "t": "linear",
    "addmm": "linear",
    "relu": "relu",
    "_log_softmax": "ce",
    "nll_loss_forward": "ce",
    "detach": "",
}
_TORCH_BACKWARD = {
    "ones_like": "",
    "detach": "",
    "nll_loss_backward": "ce_bw",
    "_log_softmax_backward_data": "ce_bw",
    "t": "linear_bw",
    "mm": "linear_bw",
    "sum": "linear_bw",
    "view": "linear_bw",
    "threshold_backward": "relu_bw",
}
_EMBER = {
    "t": "linear",  # ember's Linear runs as torch's decomposition under a mode
    "addmm": "linear",
    "addmm_backward": "linear_bw",
    "permute_backward": "linear_bw",
    "relu": "relu",
    "cross_entropy_indices": "ce",
    "linear_backward": "linear_bw",
    "relu_backward": "relu_bw",
    "cross_entropy_indices_backward": "ce_bw",
}


def test_mode_sees_mlp_forward_and_backward_ops_like_torch():
    seen, grads = {}, {}
    for name, lib in (("ember", ember), ("torch", torch)):
        net, x, y = _mlp(lib)
        with _mode(lib)() as m:
            loss = lib.nn.functional.cross_entropy(net(x), y)
            n = len(m.ops)
            loss.backward()
        seen[name] = (m.ops[:n], m.ops[n:])
        grads[name] = [p.grad.numpy() for p in net.parameters()]
    e_fw, e_bw = seen["ember"]
    t_fw, t_bw = seen["torch"]
    assert e_fw == [
        "aten.t.default",
        "aten.addmm.default",
        "aten.relu.default",
        "aten.t.default",
        "aten.addmm.default",
        "aten.cross_entropy_indices.default",
    ]
    assert [op for op in t_fw if op != "aten.detach.default"][:5] == e_fw[:5]
    assert (
        _grouped(t_fw, _TORCH_FORWARD)
        == _grouped(e_fw, _EMBER)
        == ["linear", "relu", "linear", "ce"]
    )
    assert _grouped(t_bw, _TORCH_BACKWARD) == _grouped(e_bw, _EMBER)
    assert _grouped(e_bw, _EMBER) == ["ce_bw", "linear_bw", "relu_bw", "linear_bw"]
    for a, b in zip(grads["ember"], grads["torch"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_mode_leaves_results_alone_and_uninstalls():
    from ember.utils._python_dispatch import _get_current_dispatch_mode

    original = Function.__dict__["apply"]
    net, x, y = _mlp(ember)
    ember.nn.functional.cross_entropy(net(x), y).backward()
    ref = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    with _mode(ember)():
        assert Function.__dict__["apply"] is not original
        ember.nn.functional.cross_entropy(net(x), y).backward()
    assert Function.__dict__["apply"] is original and _get_current_dispatch_mode() is None
    for a, p in zip(ref, net.parameters(), strict=True):
        assert ember.equal(a, p.grad)


def test_func_object_names_schema_equality_and_call():
    from ember.utils._python_dispatch import TorchDispatchMode

    got = {}

    class Grab(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            got[func.__name__] = func
            return func(*args, **(kwargs or {}))

    a, b = ember.rand(2, 3), ember.rand(3, 4)
    with Grab():
        out = a @ b
        a.t()
        a.view(6)
        a.sum()
        a.sum(1)
        a.double()
    np.testing.assert_allclose(out.numpy(), a.numpy() @ b.numpy(), rtol=1e-6)
    aten = ember.ops.aten
    assert set(got) >= {"mm.default", "t.default", "view.default", "sum.default"}
    assert {"sum.dim_IntList", "_to_copy.default"} <= set(got)
    mm = got["mm.default"]
    assert mm == aten.mm.default and aten.mm.default == mm and mm != aten.bmm.default
    assert {aten.mm.default: 1}[mm] == 1 and mm in (aten.addmm.default, aten.mm.default)
    assert mm.overloadpacket is aten.mm and str(mm) == "aten.mm.default"
    assert mm._schema.name == "aten::mm" and mm.name() == "aten::mm"
    assert [x.name for x in mm._schema.arguments] == ["self", "mat2"]
    assert got["sum.dim_IntList"].name() == "aten::sum.dim_IntList"
    # calling it outside any mode runs the op below autograd
    x = ember.rand(2, 2, requires_grad=True)
    r = mm(x, x)
    assert not r.requires_grad and ember.allclose(r, x.detach() @ x.detach())
    assert got["t.default"](ember.ones(2, 3)).shape == (3, 2)


def test_nested_modes_and_pop_mode_temporarily():
    from ember.utils._python_dispatch import (
        TorchDispatchMode,
        _get_current_dispatch_mode,
        _get_current_dispatch_mode_stack,
        _pop_mode_temporarily,
    )

    log = []

    class Tag(TorchDispatchMode):
        def __init__(self, tag):
            super().__init__()
            self.tag = tag

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            inner = _get_current_dispatch_mode()
            log.append((self.tag, func.__name__, inner.tag if inner else None))
            return func(*args, **(kwargs or {}))

    with Tag("outer") as outer, Tag("inner") as inner:
        assert _get_current_dispatch_mode_stack() == [outer, inner]
        ember.ones(2).relu()
        with _pop_mode_temporarily() as m:
            assert m is inner and _get_current_dispatch_mode() is outer
            ember.ones(2).neg()
    assert log == [
        ("inner", "relu.default", "outer"),
        ("outer", "relu.default", None),
        ("outer", "neg.default", None),
    ]


def test_logging_tensor_matches_torch(both):
    res = {}
    for name, (lib, LoggingTensor, _) in both.items():
        LoggingTensor.log = []
        lib.manual_seed(0)
        x = lib.rand(4, 3, requires_grad=True)
        w = LoggingTensor(lib.rand(3, 2))
        y = x @ w
        assert type(y) is LoggingTensor
        y.sum().backward()  # the plain input's gradient flows back through the subclass
        a = LoggingTensor(lib.tensor([1.0, 2.0, 3.0]), requires_grad=True)
        (a * a).sum().backward()
        mask = a > 1.5
        assert type(mask) is LoggingTensor and mask.elem.tolist() == [False, True, True]

        # torch's gradients are LoggingTensors, ember's plain (docs/torch_dispatch.md)
        def plain(t, cls=LoggingTensor):
            return t.elem if isinstance(t, cls) else t

        res[name] = (plain(x.grad).numpy(), plain(a.grad).numpy(), list(LoggingTensor.log))
    np.testing.assert_allclose(res["ember"][0], res["torch"][0], rtol=1e-6)
    np.testing.assert_allclose(res["ember"][1], [2.0, 4.0, 6.0])
    np.testing.assert_allclose(res["torch"][1], [2.0, 4.0, 6.0])
    for ops in (res["ember"][2], res["torch"][2]):
        assert ops[0] == "mm.default" and "mul.Tensor" in ops and "sum.default" in ops
        assert ops[-1] == "gt.Scalar"


def test_int8_weight_linear_trains_like_torch(both):
    res = {}
    for name, (lib, _, Int8Weight) in both.items():
        lib.manual_seed(0)
        lin = lib.nn.Linear(3, 2)
        q = Int8Weight.quantize(lin.weight.detach().clone())
        assert type(q.t()) is Int8Weight and type(q.detach()) is Int8Weight
        assert type(q.clone()) is Int8Weight and q.view(6).shape == (6,)
        lin.weight = lib.nn.Parameter(q, requires_grad=False)
        assert type(lin.weight) is Int8Weight
        assert [n for n, _ in lin.named_parameters()] == ["weight", "bias"]
        opt = lib.optim.SGD([lin.bias], lr=0.1)
        x = lib.rand(5, 3, requires_grad=True)
        out = lin(x)
        assert type(out) is lib.Tensor
        out.pow(2).sum().backward()
        opt.step()
        res[name] = (out.detach().numpy(), x.grad.numpy(), lin.bias.detach().numpy())
    for a, b in zip(res["ember"], res["torch"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_unsupported_corners_name_the_op_and_subclass(both):
    _, LoggingTensor, Int8Weight = both["ember"]
    q = Int8Weight.quantize(ember.rand(3, 2))
    with pytest.raises(NotImplementedError, match="Int8Weight: aten.exp.default"):
        q.exp()
    with pytest.raises(NotImplementedError, match="Int8Weight: aten.gt.Scalar"):
        q > 0  # noqa: B015 - comparisons reach the handler too
    with pytest.raises(NotImplementedError, match="wrapper subclass"):
        ember.index_select(ember.ones(3), 0, LoggingTensor(ember.tensor([0, 1])))
    logits = LoggingTensor(ember.rand(2, 3), requires_grad=True)
    loss = ember.nn.functional.cross_entropy(logits, ember.tensor([0, 1]))
    with pytest.raises(NotImplementedError, match="CrossEntropyIndices with LoggingTensor"):
        loss.backward()


def test_helpers_and_observers():
    from ember.utils._python_dispatch import (
        is_traceable_wrapper_subclass,
        return_and_correct_aliasing,
    )
    from ember.utils._pytree import tree_map
    from ember.utils.flop_counter import FlopCounterMode

    LoggingTensor, _ = _classes(ember, tree_map)
    t = LoggingTensor(ember.ones(2))
    assert is_traceable_wrapper_subclass(t) and not is_traceable_wrapper_subclass(ember.ones(2))
    assert return_and_correct_aliasing(ember.ops.aten.add_.Tensor, (t, 1), {}, None) is t
    net, x, _ = _mlp(ember)
    with FlopCounterMode(display=False) as plain:
        net(x).sum().backward()
    with FlopCounterMode(display=False) as under_mode, _mode(ember)():
        net(x).sum().backward()
    assert under_mode.get_total_flops() == plain.get_total_flops() > 0


def _index_classes(lib):
    """PyTorch Geometric's EdgeIndex idioms: the inner tensor in an attribute named ``_data``,
    rules in a class table keyed by aten ops, and a custom autograd.Function that takes the
    subclass itself (saved for backward)."""
    aten = lib.ops.aten
    handled = {}

    def implements(op):
        def register(fn):
            handled[op] = fn
            return fn

        return register

    class Pairs(lib.Tensor):
        _data: lib.Tensor  # the same attribute name as PyG's
        __torch_function__ = lib._C._disabled_torch_function_impl

        def __new__(cls, data, num_nodes):
            out = lib.Tensor._make_wrapper_subclass(
                cls, data.size(), strides=data.stride(), dtype=data.dtype, device=data.device
            )
            out._data, out.num_nodes = data, num_nodes
            return out

        def __tensor_flatten__(self):
            return ["_data"], (self.num_nodes,)

        @classmethod
        def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
            if func not in handled:
                raise NotImplementedError(f"Pairs: {func}")
            return handled[func](*args, **(kwargs or {}))

        def dense(self):
            a = lib.zeros(self.num_nodes, self.num_nodes)
            a[self._data[0], self._data[1]] = 1.0
            return a

    @implements(aten._to_copy.default)
    def _to_copy(p, *, dtype=None, **kwargs):
        return Pairs(aten._to_copy.default(p._data, dtype=dtype), p.num_nodes)

    @implements(aten.index_select.default)
    def _index_select(p, dim, index):
        out = aten.index_select.default(p._data, dim, index)
        return Pairs(out, p.num_nodes) if dim in (1, -1) else out

    @implements(aten.clone.default)
    def _clone(p):
        return Pairs(p._data.clone(), p.num_nodes)

    class Propagate(lib.autograd.Function):
        @staticmethod
        def forward(ctx, pairs, x):
            if x.requires_grad:
                ctx.save_for_backward(pairs)
            return pairs.dense() @ x

        @staticmethod
        def backward(ctx, grad):
            (pairs,) = ctx.saved_tensors
            return None, pairs.dense().t() @ grad

    return Pairs, Propagate


def test_pyg_style_index_subclass_matches_torch():
    res = {}
    for lib in (ember, torch):
        Pairs, Propagate = _index_classes(lib)
        p = Pairs(lib.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), 3)
        assert type(p.clone()) is Pairs and p.clone().num_nodes == 3
        q = p.to(lib.int32)
        sel = p.index_select(1, lib.tensor([0, 2]))
        x = lib.arange(6.0).view(3, 2).requires_grad_()
        out = Propagate.apply(p, x)
        out.pow(2).sum().backward()
        res[lib.__name__] = (
            str(q._data.dtype).split(".")[1],
            type(sel).__name__,
            sel._data.tolist(),
            p.index_select(0, lib.tensor([1])).tolist(),  # a plain tensor: its own _data
            out.detach().numpy(),
            x.grad.numpy(),
        )
    e, t = res["ember"], res["torch"]
    assert e[:4] == t[:4] == ("int32", "Pairs", [[0, 1], [1, 2]], [[1, 0, 2, 1]])
    np.testing.assert_allclose(e[4], t[4])
    np.testing.assert_allclose(e[5], t[5])


def test_mode_sees_custom_ops_and_the_ops_of_user_functions():
    from ember.utils._python_dispatch import TorchDispatchMode

    lib = ember.library.Library("h8dispatch", "FRAGMENT")
    try:

        @ember.library.custom_op("h8dispatch::twice", mutates_args=())
        def twice(x: ember.Tensor) -> ember.Tensor:
            return x * 2

        twice.register_autograd(lambda ctx, g: g * 2)

        class Square(ember.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * x

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                return 2 * x * g

        class Names(TorchDispatchMode):
            def __init__(self):
                super().__init__()
                self.ops = []

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                self.ops.append(str(func))
                return func(*args, **(kwargs or {}))

        x = ember.ones(2, requires_grad=True)
        with Names() as m:
            twice(Square.apply(x)).sum().backward()
        # the user Function is above dispatch (its ops are seen); the custom op is one op
        assert m.ops[:3] == ["aten.mul.Tensor", "h8dispatch.twice.default", "aten.sum.default"]
        assert x.grad.tolist() == [4.0, 4.0]
    finally:
        ember.ops.h8dispatch.__dict__.pop("twice", None)
        ember.library._custom_op.OPS.pop("h8dispatch::twice", None)
        lib._destroy()


def test_torch_dispatch_doc_runs():
    import pathlib
    import re

    doc = pathlib.Path(__file__).resolve().parents[1] / "docs" / "torch_dispatch.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    assert len(blocks) == 2, "docs/torch_dispatch.md lost an example"
    for block in blocks:
        exec(compile(block, str(doc), "exec"), {})
