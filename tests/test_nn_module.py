"""nn.Module mechanics checked against PyTorch's behaviour: registration, traversal order,
state_dict / load_state_dict, modes, conversions, hooks, repr, pickling, containers."""

from __future__ import annotations

import copy
import pickle
from collections import OrderedDict

import numpy as np
import pytest

import ember
import ember.nn as nn

torch = pytest.importorskip("torch")
tnn = torch.nn


def _classes(lib):
    """The same small model in ember or torch (shared submodule, buffer, nested containers)."""
    m = lib.nn if lib is not ember else nn

    class Block(m.Module):
        def __init__(self):
            super().__init__()
            self.fc = m.Linear(3, 4)
            self.register_buffer("steps", lib.zeros(1))
            self.register_buffer("scratch", lib.ones(2), persistent=False)
            self.scale = m.Parameter(lib.ones(4))

        def forward(self, x):
            return self.fc(x) * self.scale

    class Net(m.Module):
        def __init__(self):
            super().__init__()
            self.a = Block()
            self.shared = m.Linear(4, 4)
            self.seq = m.Sequential(self.shared, m.ReLU(), self.shared)
            self.heads = m.ModuleList([m.Linear(4, 2), m.Linear(4, 2)])
            self.extra = m.ModuleDict({"z": m.Linear(2, 1), "b": m.Identity()})
            self.none_param = None
            self.register_parameter("maybe", None)

        def forward(self, x):
            h = self.seq(self.a(x))
            return self.extra["z"](self.heads[0](h) + self.heads[1](h))

    return Block, Net


# module-level names so that pickle can find the ember classes
EmberBlock, EmberNet = _classes(ember)
EmberBlock.__qualname__, EmberNet.__qualname__ = "EmberBlock", "EmberNet"
_TorchNet = _classes(torch)[1]


def _build(lib):
    return EmberNet() if lib is ember else _TorchNet()


@pytest.fixture
def pair():
    return _build(ember), _build(torch)


def test_traversal_names_match_torch(pair):
    e, t = pair
    assert [n for n, _ in e.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert [n for n, _ in e.named_buffers()] == [n for n, _ in t.named_buffers()]
    assert [n for n, _ in e.named_modules()] == [n for n, _ in t.named_modules()]
    assert [n for n, _ in e.named_children()] == [n for n, _ in t.named_children()]
    assert list(e.state_dict().keys()) == list(t.state_dict().keys())
    assert len(list(e.parameters())) == len(list(t.parameters()))
    # remove_duplicate=False shows the shared Linear twice, prefix and recurse work
    assert [n for n, _ in e.named_parameters(remove_duplicate=False)] == [
        n for n, _ in t.named_parameters(remove_duplicate=False)
    ]
    assert [n for n, _ in e.named_modules(prefix="root", remove_duplicate=False)] == [
        n for n, _ in t.named_modules(prefix="root", remove_duplicate=False)
    ]
    assert [n for n, _ in e.a.named_parameters(prefix="p", recurse=False)] == ["p.scale"]
    assert [n for n, _ in e.named_buffers(recurse=False)] == []


def test_state_dict_roundtrip_with_torch(pair):
    e, t = pair
    res = e.load_state_dict(t.state_dict())
    assert repr(res) == "<All keys matched successfully>"
    assert res.missing_keys == [] and res.unexpected_keys == []
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(
        e(ember.tensor(x)).detach().numpy(),
        t(torch.tensor(x)).detach().numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    # and back: torch loads ember's state_dict (as arrays)
    t2 = _build(torch)
    t2.load_state_dict({k: torch.tensor(v.numpy()) for k, v in e.state_dict().items()})
    np.testing.assert_allclose(
        t2(torch.tensor(x)).detach().numpy(), t(torch.tensor(x)).detach().numpy(), rtol=1e-6
    )


def test_state_dict_shares_storage_and_keep_vars():
    lin = nn.Linear(2, 2)
    sd = lin.state_dict()
    assert not sd["weight"].requires_grad and not isinstance(sd["weight"], nn.Parameter)
    assert np.shares_memory(sd["weight"].numpy(), lin.weight.detach().numpy())
    assert lin.state_dict(keep_vars=True)["weight"] is lin.weight
    assert sd._metadata[""] == {"version": 1}


def test_load_state_dict_errors_match_torch():
    e, t = nn.Linear(2, 3), tnn.Linear(2, 3)
    bad = {"weight": torch.ones(4, 2), "bias": torch.ones(3)}
    with pytest.raises(RuntimeError) as ee:
        e.load_state_dict(bad)
    with pytest.raises(RuntimeError) as te:
        t.load_state_dict(bad)
    assert str(ee.value).replace("ember.", "torch.") == str(te.value)

    partial = {"weight": torch.ones(3, 2), "extra": torch.ones(1)}
    with pytest.raises(RuntimeError) as ee:
        e.load_state_dict(partial)
    with pytest.raises(RuntimeError) as te:
        t.load_state_dict(partial)
    assert str(ee.value) == str(te.value)
    res_e = e.load_state_dict(partial, strict=False)
    res_t = t.load_state_dict(partial, strict=False)
    assert res_e.missing_keys == res_t.missing_keys == ["bias"]
    assert res_e.unexpected_keys == res_t.unexpected_keys == ["extra"]
    assert repr(res_e) == repr(res_t)
    with pytest.raises(TypeError, match="Expected state_dict to be dict-like"):
        e.load_state_dict([1, 2])


def test_load_state_dict_assign_keeps_requires_grad():
    lin = nn.Linear(2, 2)
    new_w = ember.full((2, 2), 3.0)
    lin.load_state_dict({"weight": new_w, "bias": ember.zeros(2)}, assign=True)
    assert isinstance(lin.weight, nn.Parameter) and lin.weight.requires_grad
    assert np.shares_memory(lin.weight.detach().numpy(), new_w.numpy())
    # without assign the parameter object is kept and the values copied
    w_before = lin.weight
    lin.load_state_dict({"weight": ember.ones(2, 2), "bias": ember.zeros(2)})
    assert lin.weight is w_before and float(lin.weight.sum()) == 4.0


def test_registration_rules_and_errors():
    m = nn.Module()
    m.w = nn.Parameter(ember.ones(2))
    assert "w" in m._parameters
    with pytest.raises(TypeError, match=r"cannot assign 'ember.FloatTensor' as parameter 'w'"):
        m.w = ember.ones(2)
    m.w = None
    assert m._parameters["w"] is None and m.w is None
    m.register_buffer("b", ember.zeros(3))
    m.b = ember.ones(3)  # plain tensors may replace buffers
    assert float(m.b.sum()) == 3.0
    with pytest.raises(TypeError, match="cannot assign 'int' as buffer 'b'"):
        m.b = 3
    with pytest.raises(KeyError, match="attribute 'w' already exists"):
        m.register_buffer("w", ember.ones(1))
    with pytest.raises(KeyError, match="t contain"):
        m.register_parameter("a.b", None)
    with pytest.raises(TypeError, match="is not a Module subclass"):
        m.add_module("x", 3)
    with pytest.raises(ValueError, match="Cannot assign non-leaf Tensor"):
        m.register_parameter("q", _non_leaf_param())
    m.sub = nn.Linear(1, 1)
    m.sub = None
    assert "sub" in m._modules and m.sub is None
    del m.b
    assert "b" not in m._buffers
    with pytest.raises(AttributeError, match="'Module' object has no attribute 'nope'"):
        _ = m.nope

    class Early(nn.Module):
        def __init__(self):
            self.p = nn.Parameter(ember.ones(1))

    with pytest.raises(AttributeError, match="cannot assign parameters before Module.__init__"):
        Early()


def _non_leaf_param():
    p = nn.Parameter(ember.ones(2))
    p.grad_fn = object()  # what a computed tensor looks like to register_parameter
    return p


def test_buffer_class_and_persistence():
    m = nn.Module()
    m.stats = nn.Buffer(ember.zeros(2), persistent=False)
    assert "stats" in m._buffers and type(m.stats) is ember.Tensor
    assert "stats" not in m.state_dict()
    m.kept = nn.Buffer(ember.ones(2))
    assert list(m.state_dict()) == ["kept"]


def test_parameter_basics():
    p = nn.Parameter(ember.tensor([1.0, 2.0]))
    tp = tnn.Parameter(torch.tensor([1.0, 2.0]))
    assert repr(p) == repr(tp)
    assert p.requires_grad and p.is_leaf
    assert type(p * 2) is ember.Tensor
    q = nn.Parameter(ember.ones(2), requires_grad=False)
    assert not q.requires_grad
    with pytest.raises(RuntimeError, match="floating point"):
        nn.Parameter(ember.tensor([1, 2]))
    r = pickle.loads(pickle.dumps(p))
    assert isinstance(r, nn.Parameter) and r.requires_grad and r.tolist() == [1.0, 2.0]
    d = copy.deepcopy(p)
    assert isinstance(d, nn.Parameter) and not np.shares_memory(
        d.detach().numpy(), p.detach().numpy()
    )


def test_train_eval_requires_grad_zero_grad():
    e = _build(ember)
    assert e.training and all(m.training for m in e.modules())
    e.eval()
    assert not any(m.training for m in e.modules())
    e.train()
    assert all(m.training for m in e.modules())
    with pytest.raises(ValueError, match="training mode is expected to be boolean"):
        e.train("yes")
    out = e(ember.randn(2, 3)).sum()
    out.backward()
    assert all(p.grad is not None for p in e.parameters())
    e.zero_grad(set_to_none=False)
    assert all(float(p.grad.abs().sum()) == 0 for p in e.parameters())
    e.zero_grad()
    assert all(p.grad is None for p in e.parameters())
    e.requires_grad_(False)
    assert not any(p.requires_grad for p in e.parameters())


def test_to_float_double_and_apply():
    e = _build(ember)
    ids = [id(p) for p in e.parameters()]
    e.double()
    assert all(p.dtype == ember.float64 for p in e.parameters())
    assert all(b.dtype == ember.float64 for b in e.buffers())
    assert [id(p) for p in e.parameters()] == ids  # parameters keep their identity
    e.to(ember.float32)
    assert all(p.dtype == ember.float32 for p in e.parameters())
    e.to("cpu", dtype=ember.float64)
    assert e.a.fc.weight.dtype == ember.float64
    e.float()
    with pytest.raises(TypeError, match="only accepts floating point or complex dtypes"):
        e.to(ember.int64)
    bn = nn.BatchNorm1d(3).double()
    assert bn.num_batches_tracked.dtype == ember.int64  # integer buffers are not cast
    names = []
    e.apply(lambda m: names.append(type(m).__name__))
    assert names[-1] == "Net" and names[0] == "Linear"
    assert e.half().a.fc.weight.dtype == ember.float16


def test_get_submodule_parameter_buffer():
    e = _build(ember)
    assert e.get_submodule("a.fc") is e.a.fc
    assert e.get_parameter("a.fc.weight") is e.a.fc.weight
    assert e.get_buffer("a.steps") is e.a.steps
    with pytest.raises(AttributeError, match="has no attribute `nope`"):
        e.get_submodule("a.nope")
    with pytest.raises(AttributeError, match="`scale` is not an nn.Module"):
        e.get_submodule("a.scale")
    with pytest.raises(AttributeError, match="`steps` is not an nn.Parameter"):
        e.get_parameter("a.steps")


def test_repr_matches_torch(pair):
    e, t = pair
    assert repr(e) == repr(t)
    layers_e = nn.ModuleList([nn.Linear(2, 2)] * 3 + [nn.ReLU()])
    layers_t = tnn.ModuleList([tnn.Linear(2, 2)] * 3 + [tnn.ReLU()])
    assert repr(layers_e) == repr(layers_t)
    assert repr(nn.ModuleList()) == repr(tnn.ModuleList())
    pl_e = nn.ParameterList([nn.Parameter(ember.ones(2)), nn.Parameter(ember.ones(2, 3))])
    pl_t = tnn.ParameterList([tnn.Parameter(torch.ones(2)), tnn.Parameter(torch.ones(2, 3))])
    assert repr(pl_e).replace("ember.", "torch.") == repr(pl_t)
    pd_e = nn.ParameterDict({"a": nn.Parameter(ember.ones(2))})
    pd_t = tnn.ParameterDict({"a": tnn.Parameter(torch.ones(2))})
    assert repr(pd_e).replace("ember.", "torch.") == repr(pd_t)


def test_pickle_and_deepcopy_keep_sharing():
    e = _build(ember)
    x = ember.randn(2, 3)
    ref = e(x).detach().numpy()
    for clone in (pickle.loads(pickle.dumps(e)), copy.deepcopy(e)):
        np.testing.assert_allclose(clone(x).detach().numpy(), ref, rtol=1e-6)
        assert clone.seq[0] is clone.seq[2] is clone.shared
        assert not np.shares_memory(
            clone.shared.weight.detach().numpy(), e.shared.weight.detach().numpy()
        )
        assert [n for n, _ in clone.named_parameters()] == [n for n, _ in e.named_parameters()]
        assert "scratch" in clone.a._non_persistent_buffers_set


def test_dir_lists_members():
    e = _build(ember)
    d = dir(e)
    for name in ("a", "seq", "maybe", "forward", "training"):
        assert name in d
    assert "0" not in dir(e.seq)


def test_forward_pre_and_forward_hooks():
    lin = nn.Linear(2, 2)
    calls = []

    def pre(mod, args):
        calls.append("pre")
        return (args[0] * 0,)

    def post(mod, args, out):
        calls.append("post")
        return out + 1

    h1 = lin.register_forward_pre_hook(pre)
    h2 = lin.register_forward_hook(post)
    out = lin(ember.ones(1, 2))
    np.testing.assert_allclose(out.detach().numpy(), lin.bias.detach().numpy()[None] + 1, rtol=1e-6)
    assert calls == ["pre", "post"]
    h1.remove()
    h2.remove()
    assert not lin._forward_hooks and not lin._forward_pre_hooks

    def pre_kw(mod, args, kwargs):
        return args, {"input2": kwargs["input2"] * 2}

    bil = nn.Bilinear(2, 2, 1)
    x = ember.ones(1, 2)
    expected = bil(x, x * 2).detach().numpy()
    seen = {}
    bil.register_forward_pre_hook(pre_kw, with_kwargs=True)
    bil.register_forward_hook(lambda m, a, k, o: seen.update(k), with_kwargs=True)
    out = bil(x, input2=x)
    assert float(seen["input2"].sum()) == 4.0
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-6)

    order = []
    lin.register_forward_hook(lambda *a: order.append(1))
    lin.register_forward_hook(lambda *a: order.append(0), prepend=True)
    lin(ember.ones(1, 2))
    assert order == [0, 1]


def test_forward_hook_always_call_on_error():
    class Boom(nn.Module):
        def forward(self, x):
            raise ValueError("boom")

    m = Boom()
    seen = []
    m.register_forward_hook(lambda mod, args, out: seen.append(out), always_call=True)
    with pytest.raises(ValueError, match="boom"):
        m(ember.ones(1))
    assert seen == [None]


def _run_backward_hooks(lib, pre_scale):
    m = lib.nn if lib is not ember else nn
    lin = m.Linear(3, 2)
    with torch.no_grad() if lib is torch else ember.no_grad():
        lin.weight.copy_(lib.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]]))
        lin.bias.copy_(lib.tensor([0.1, -0.2]))
    record = {}

    def hook(mod, grad_input, grad_output):
        record["gin"] = [None if g is None else g.detach().numpy().copy() for g in grad_input]
        record["gout"] = [g.detach().numpy().copy() for g in grad_output]
        return (grad_input[0] * 10,)

    def pre_hook(mod, grad_output):
        return (grad_output[0] * pre_scale,)

    lin.register_full_backward_pre_hook(pre_hook)
    lin.register_full_backward_hook(hook)
    x = lib.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 1.0]], requires_grad=True)
    (lin(x) * lib.tensor([[1.0, 2.0]])).sum().backward()
    return record, x.grad.numpy(), lin.weight.grad.numpy()


def test_full_backward_hooks_match_torch():
    rec_e, gx_e, gw_e = _run_backward_hooks(ember, 3.0)
    rec_t, gx_t, gw_t = _run_backward_hooks(torch, 3.0)
    np.testing.assert_allclose(rec_e["gout"][0], rec_t["gout"][0], rtol=1e-6)
    np.testing.assert_allclose(rec_e["gin"][0], rec_t["gin"][0], rtol=1e-6)
    np.testing.assert_allclose(gx_e, gx_t, rtol=1e-6)  # the hook's x10 reached the input
    np.testing.assert_allclose(gw_e, gw_t, rtol=1e-6)  # the pre-hook's x3 reached the weight


def test_full_backward_hook_without_input_grad():
    lin = nn.Linear(2, 2)
    got = []
    lin.register_full_backward_hook(lambda m, gi, go: got.append((gi, go)))
    lin(ember.ones(1, 2)).sum().backward()
    assert len(got) == 1 and got[0][0] == (None,)
    assert got[0][1][0].shape == (1, 2)


def test_state_dict_and_load_hooks():
    lin = nn.Linear(2, 2)

    def drop_bias(m, sd, prefix, meta):
        del sd[prefix + "bias"]

    lin.register_state_dict_post_hook(drop_bias)
    assert list(lin.state_dict()) == ["weight"]
    lin.register_state_dict_post_hook(lambda m, sd, prefix, meta: sd)
    with pytest.raises(RuntimeError, match="state_dict post-hook must return None"):
        lin.state_dict()
    seen = []
    lin.register_load_state_dict_post_hook(lambda m, keys: seen.append(list(keys.missing_keys)))
    lin.load_state_dict({"weight": ember.ones(2, 2)}, strict=False)
    assert seen == [["bias"]]


def test_extra_state_roundtrip():
    class WithExtra(nn.Module):
        def __init__(self):
            super().__init__()
            self.value = 1

        def get_extra_state(self):
            return {"value": self.value}

        def set_extra_state(self, state):
            self.value = state["value"]

    a, b = WithExtra(), WithExtra()
    a.value = 7
    sd = a.state_dict()
    assert sd["_extra_state"] == {"value": 7}
    b.load_state_dict(sd)
    assert b.value == 7


def test_sequential_api_matches_torch():
    layers = [nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 3)]
    s = nn.Sequential(*layers)
    assert len(s) == 3 and s[0] is layers[0] and s[-1] is layers[2]
    assert isinstance(s[1:], nn.Sequential) and len(s[1:]) == 2
    assert list(s[1:]._modules) == ["1", "2"]  # slices keep the original names, like torch
    with pytest.raises(IndexError, match="index 3 is out of range"):
        s[3]
    s.append(nn.Tanh())
    s.insert(0, nn.Identity())
    assert [type(m).__name__ for m in s] == ["Identity", "Linear", "ReLU", "Linear", "Tanh"]
    del s[0]
    assert list(s._modules) == ["0", "1", "2", "3"]
    s.extend([nn.Sigmoid()])
    assert type(s.pop(-1)).__name__ == "Sigmoid"
    s[3] = nn.ReLU()
    assert isinstance(s[3], nn.ReLU)
    named = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert list(named.state_dict()) == ["fc.weight", "fc.bias"]
    assert len(named + named) == 4
    out = s(ember.randn(4, 2))
    assert out.shape == (4, 3)


def test_module_list_and_dict():
    ml = nn.ModuleList([nn.Linear(1, 1)])
    ml += [nn.ReLU()]
    ml.insert(0, nn.Tanh())
    assert [type(m).__name__ for m in ml] == ["Tanh", "Linear", "ReLU"]
    assert isinstance(ml[1:], nn.ModuleList) and len(ml[1:]) == 2
    del ml[0]
    assert list(ml._modules) == ["0", "1"]
    with pytest.raises(TypeError, match="ModuleList.extend should be called with an iterable"):
        ml.extend(3)
    md = nn.ModuleDict([("b", nn.ReLU()), ("a", nn.Tanh())])
    assert list(md.keys()) == ["b", "a"] and "a" in md and len(md) == 2
    md["c"] = nn.Identity()
    assert type(md.pop("b")).__name__ == "ReLU" and list(md) == ["a", "c"]
    with pytest.raises(ValueError, match="has length 1; 2 is required"):
        md.update([("x",)])


def test_parameter_list_and_dict():
    pl = nn.ParameterList([ember.ones(2), nn.Parameter(ember.zeros(3))])
    assert all(isinstance(p, nn.Parameter) for p in pl) and len(pl) == 2
    pl.append(ember.ones(1))
    assert [n for n, _ in pl.named_parameters()] == ["0", "1", "2"]
    assert len(pl[1:]) == 2
    pd = nn.ParameterDict({"b": ember.ones(1), "a": ember.ones(2)})
    assert list(pd.keys()) == ["a", "b"]  # plain dicts are sorted, as in torch
    pd["c"] = ember.zeros(1)
    assert isinstance(pd["c"], nn.Parameter) and "c" in pd
    assert [n for n, _ in pd.named_parameters()] == ["a", "b", "c"]
    assert pd.pop("a").shape == (2,) and len(pd) == 2
    with pytest.raises(TypeError, match="cannot be used as a key"):
        pd[1] = ember.ones(1)


def test_lazy_linear_initialises_on_first_call():
    lazy = nn.LazyLinear(3)
    assert lazy.has_uninitialized_params()
    out = lazy(ember.randn(2, 5))
    assert out.shape == (2, 3)
    assert type(lazy) is nn.Linear and lazy.in_features == 5
    assert lazy.weight.shape == (3, 5) and isinstance(lazy.weight, nn.Parameter)
    bound = 1 / np.sqrt(5)
    assert float(lazy.weight.abs().max()) <= bound
    # loading a state_dict materialises the shapes too
    lazy2 = nn.LazyLinear(3)
    lazy2.load_state_dict(nn.Linear(4, 3).state_dict())
    assert lazy2.weight.shape == (3, 4)


def test_forward_not_implemented_message():
    with pytest.raises(
        NotImplementedError,
        match=r"Module \[Module\] is missing the required "
        r'"forward" function',
    ):
        nn.Module()(ember.ones(1))


def test_global_forward_hook():
    from ember.nn.module import register_module_forward_hook

    seen = []
    h = register_module_forward_hook(lambda m, a, o: seen.append(type(m).__name__))
    try:
        nn.Sequential(nn.ReLU())(ember.ones(1))
    finally:
        h.remove()
    assert seen == ["ReLU", "Sequential"]
