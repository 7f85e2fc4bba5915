"""Idioms of tensordict (0.15.3) that stopped it on ``torch`` resolved to ember, each a small
program of our own with the same idiom, compared with torch (tensordict itself is not
imported): the private paths it imports (``torch._C._functorch``, ``torch._functorch.vmap``'s
stages, ``torch.utils._contextlib``, ``torch.nn.utils._named_member_accessor``, the global
registration hooks, ``_generate_state``, ``is_structseq_instance``, ``torch._guards``), a
container with ``__torch_function__`` handed ``torch.stack``/``torch.cat`` themselves, a
container that batches itself under ``vmap`` (tensordict replaces vmap's stages), and
``torch.from_file`` (``MemoryMappedTensor``)."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _np(t):
    return t.detach().cpu().numpy()


# ---- a container of tensors with __torch_function__ (TensorDict's dispatch) -----------------
def _make_container(T):
    handled = {}

    class Box:
        """A dict of tensors sharing a leading batch dim; ``T.stack``/``T.cat`` of boxes
        dispatch to the handlers registered under those very functions."""

        def __init__(self, **items):
            self.items = items

        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            if func not in handled:
                return NotImplemented
            return handled[func](*args, **(kwargs or {}))

    def _joined(fn):
        def run(boxes, dim=0):
            return Box(**{k: fn([b.items[k] for b in boxes], dim) for k in boxes[0].items})

        return run

    handled[T.stack] = _joined(T.stack)
    handled[T.cat] = _joined(T.cat)
    return Box


def test_torch_function_container_gets_stack_and_cat_themselves():
    out = {}
    for T in (ember, torch):
        Box = _make_container(T)
        a = Box(x=T.arange(6.0).reshape(2, 3), y=T.ones(2, dtype=T.int64))
        b = Box(x=T.zeros(2, 3), y=T.zeros(2, dtype=T.int64))
        s, c = T.stack([a, b], 0), T.cat([a, b], 0)
        out[T] = (_np(s.items["x"]), _np(s.items["y"]), _np(c.items["x"]))
    for e, t in zip(out[ember], out[torch]):
        np.testing.assert_array_equal(e, t)
    assert out[ember][0].shape == (2, 2, 3)


# ---- a container that batches itself under vmap (tensordict's vmap stages) -----------------
def _vmap_with_own_container(T, vmap_src):
    """Replace vmap's stages as tensordict does: ``Pair`` is a leaf that adds and removes the
    batch dim itself (with ``_add_batch_dim``/``_maybe_remove_batch_dim``)."""

    class Pair:
        def __init__(self, a, b):
            self.a, self.b = a, b

    saved = (
        vmap_src._process_batched_inputs,
        vmap_src._create_batched_inputs,
        vmap_src._unwrap_batched,
    )
    leaf = lambda x: isinstance(x, Pair)  # noqa: E731

    def process(in_dims, args, func):
        flat, spec = vmap_src.tree_flatten(args, is_leaf=leaf)
        dims = vmap_src._broadcast_to_and_flatten(in_dims, spec)
        size = next((x.a if leaf(x) else x).shape[d] for x, d in zip(flat, dims) if d is not None)
        return size, dims, flat, spec

    def create(dims, flat, level, spec):
        out = []
        for x, d in zip(flat, dims):
            if d is None:
                out.append(x)
            elif leaf(x):
                add = vmap_src._add_batch_dim
                out.append(Pair(add(x.a, d, level), add(x.b, d, level)))
            else:
                out.append(vmap_src._add_batch_dim(x, d, level))
        return vmap_src.tree_unflatten(out, spec)

    def unwrap(outs, out_dims, level, size, func):
        name = vmap_src._get_name(func)
        rm = vmap_src._maybe_remove_batch_dim
        if leaf(outs):
            return Pair(rm(name, outs.a, level, size, 0), rm(name, outs.b, level, size, 0))
        return rm(name, outs, level, size, out_dims)

    vmap_src._process_batched_inputs = process
    vmap_src._create_batched_inputs = create
    vmap_src._unwrap_batched = unwrap
    try:
        seen = []

        def f(p, w):
            seen.append((p.a.shape, type(p).__name__))
            return Pair(p.a * w, (p.b * w).sum(-1))

        p = Pair(T.arange(12.0).reshape(4, 3), T.ones(4, 3))
        r = T.vmap(f, (0, None))(p, T.tensor([1.0, 2.0, 3.0]))
        plain = T.vmap(lambda x: x.sum())(T.arange(4.0))  # a plain tensor through the stages
        return _np(r.a), _np(r.b), _np(plain), seen[0][0], seen[0][1]
    finally:
        (
            vmap_src._process_batched_inputs,
            vmap_src._create_batched_inputs,
            vmap_src._unwrap_batched,
        ) = saved


def test_vmap_stages_replaced_by_a_library():
    import torch._functorch.vmap as tvmap

    import ember._functorch.vmap as evmap

    e = _vmap_with_own_container(ember, evmap)
    t = _vmap_with_own_container(torch, tvmap)
    for a, b in zip(e[:3], t[:3]):
        np.testing.assert_allclose(a, b)
    assert tuple(e[3]) == tuple(t[3]) == (3,) and e[4] == t[4] == "Pair"
    # the stages are back: vmap of a tuple works as before
    x = ember.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(_np(ember.vmap(lambda a, b: a + b)(x, x)), 2 * _np(x))


def test_functorch_batched_tensor_primitives():
    from ember._C._functorch import _add_batch_dim, _remove_batch_dim, is_batchedtensor

    flags = []

    def f(x):
        flags.append(is_batchedtensor(x))
        return x * 2

    ember.vmap(f)(ember.ones(3, 2))
    assert flags == [True] and not is_batchedtensor(ember.ones(2))
    assert not ember._C._functorch.is_batchedtensor(ember.ones(1))
    assert callable(_add_batch_dim) and callable(_remove_batch_dim)


def test_make_functional_with_buffers_and_ensembles():
    from ember._functorch.make_functional import (
        combine_state_for_ensemble,
        make_functional,
        make_functional_with_buffers,
    )

    ember.manual_seed(0)
    net = ember.nn.Sequential(ember.nn.Linear(3, 4), ember.nn.BatchNorm1d(4)).eval()
    fmodel, params, buffers = make_functional_with_buffers(net)
    x = ember.rand(5, 3)
    np.testing.assert_allclose(_np(fmodel(params, buffers, x)), _np(net(x)), rtol=1e-6)
    zeros = tuple(ember.zeros_like(p) for p in params)
    assert float(fmodel(zeros, buffers, x).abs().sum()) == 0.0  # bias of BN is a param: 0
    lin = ember.nn.Linear(3, 2)
    f2, p2 = make_functional(lin)
    np.testing.assert_allclose(_np(f2(p2, x)), _np(lin(x)), rtol=1e-6)
    with pytest.raises(RuntimeError, match="make_functional_with_buffers"):
        make_functional(net)
    models = [ember.nn.Linear(3, 2) for _ in range(3)]
    fm, ps, bs = combine_state_for_ensemble(models)
    out = ember.vmap(fm, (0, 0, None))(ps, bs, x)
    for k, m in enumerate(models):
        np.testing.assert_allclose(_np(out[k]), _np(m(x)), rtol=1e-5, atol=1e-6)


# ---- private paths tensordict imports -------------------------------------------------------
def test_decorator_context_manager_subclass():
    from torch.utils._contextlib import _DecoratorContextManager as TDec

    from ember.utils._contextlib import _DecoratorContextManager as EDec

    def run(Base):
        log = []

        class mode(Base):  # noqa: N801 -- a library's lowercase context manager
            def __init__(self, tag="m"):
                self.tag = tag

            def clone(self):
                return type(self)(self.tag)

            def __enter__(self):
                log.append(("in", self.tag))

            def __exit__(self, *exc):
                log.append(("out", self.tag))

        @mode("f")
        def f(x):
            log.append(("body", x))
            return x + 1

        @mode("g")
        def g(n):
            for i in range(n):
                log.append(("yield", i))
                yield i

        r = f(1)
        items = list(g(2))
        with mode("w"):
            log.append("inside")
        return r, items, log, f.__name__

    assert run(EDec) == run(TDec)


def test_named_member_accessor_and_swap_tensor():
    from torch.nn.utils._named_member_accessor import NamedMemberAccessor as TAcc
    from torch.nn.utils._named_member_accessor import swap_tensor as tswap

    from ember.nn.utils._named_member_accessor import NamedMemberAccessor as EAcc
    from ember.nn.utils._named_member_accessor import swap_tensor as eswap

    def run(T, Acc, swap):
        net = T.nn.Sequential(T.nn.Linear(2, 2), T.nn.BatchNorm1d(2))
        orig = swap(net[0], "weight", T.zeros(2, 2))
        got = [type(orig).__name__, type(net[0]._parameters["weight"]).__name__]
        acc = Acc(net)
        old = acc.swap_tensor("1.running_mean", T.ones(2))
        got += [_np(old).tolist(), _np(acc.get_tensor("1.running_mean")).tolist()]
        got.append(acc.check_keys(["0.weight", "0.bias", "extra"]))
        with pytest.raises(KeyError):
            swap(net[0], "a.b", T.ones(1))
        with pytest.raises(AttributeError):
            acc.swap_tensor("0.nothing", T.ones(1))
        return got

    assert run(ember, EAcc, eswap) == run(torch, TAcc, tswap)


def test_global_parameter_registration_hooks():
    def run(T):
        mod = T.nn.modules.module
        seen, made = [], []

        def on_param(module, name, p):
            seen.append(("p", type(module).__name__, name))
            if name == "weight":
                made.append(T.nn.Parameter(p.detach().clone()))
                return made[-1]
            return None

        handles = [
            mod.register_module_parameter_registration_hook(on_param),
            mod.register_module_buffer_registration_hook(
                lambda m, n, b: seen.append(("b", type(m).__name__, n))
            ),
            mod.register_module_module_registration_hook(
                lambda m, n, s: seen.append(("m", type(m).__name__, n))
            ),
        ]
        try:
            n_hooks = len(mod._global_parameter_registration_hooks)
            net = T.nn.Sequential(T.nn.Linear(2, 2), T.nn.BatchNorm1d(2))
        finally:
            for h in handles:
                h.remove()
        # the module keeps what the hook returned
        return (
            seen,
            n_hooks,
            net[0].weight is made[0],
            len(mod._global_parameter_registration_hooks),
        )

    assert run(ember) == run(torch)


def test_worker_generate_state_matches_torch():
    from torch.utils.data._utils.worker import _generate_state as tgen

    from ember.utils.data._utils.worker import _generate_state as egen

    for seed, wid in [(0, 0), (1, 3), (2**63 - 1, 7), (123456789012345, 2)]:
        assert egen(seed, wid) == tgen(seed, wid)


def test_pytree_structseq_context_and_misc_names():
    import time

    import torch.utils._pytree as tp

    import ember.utils._pytree as ep

    for obj in [time.gmtime(0), (1, 2), os.stat_result(range(10))]:
        assert ep.is_structseq_instance(obj) == tp.is_structseq_instance(obj)
        assert ep.is_structseq(type(obj)) == tp.is_structseq(type(obj))
    assert ep.Context is not None
    from ember._utils import _get_available_device_type, _get_device_module
    from ember.compiler import assume_constant_result
    from ember.nn.modules.module import _EXTRA_STATE_KEY_SUFFIX
    from ember.nn.parameter import UninitializedParameter, UninitializedTensorMixin

    assert _EXTRA_STATE_KEY_SUFFIX == "_extra_state"
    assert isinstance(UninitializedParameter(), UninitializedTensorMixin)
    assert _get_available_device_type() in (None, "cuda")
    assert _get_device_module("cpu") is ember.cpu
    with pytest.raises(RuntimeError, match="does not have a corresponding module"):
        _get_device_module("nodevice")

    def f():
        return 3

    assert assume_constant_result(f) is f
    assert ember._guards.active_fake_mode() is None
    assert isinstance(ember.UntypedStorage.from_file, object)
    assert issubclass(ember.UntypedStorage, ember.StorageBase)


# ---- torch.from_file (tensordict's MemoryMappedTensor) --------------------------------------
def test_from_file_shared_and_private(tmp_path):
    def run(T, d):
        f = str(d / "a.bin")
        t = T.from_file(f, shared=True, size=4, dtype=T.float32)  # created, grown to fit
        t[1] = 3
        got = [_np(t).tolist(), os.path.getsize(f)]
        p = T.from_file(f, shared=False, size=4, dtype=T.float32)
        p[0] = 9  # private: the file keeps its bytes
        got.append(_np(T.from_file(f, shared=True, size=4, dtype=T.float32)).tolist())
        got.append(_np(T.from_file(f, shared=True, size=6, dtype=T.float32)).tolist())
        got.append(os.path.getsize(f))
        got.append(_np(T.from_file(f, size=3, dtype=T.int16)).tolist())
        got.append(T.from_file(f, size=0).numel())
        for kw in ({"size": 100}, {"size": 1, "name": "missing"}):
            name = kw.pop("name", "a.bin")
            with pytest.raises(RuntimeError):
                T.from_file(str(d / name), shared=False, **kw)
        return got

    (tmp_path / "e").mkdir()
    (tmp_path / "t").mkdir()
    assert run(ember, tmp_path / "e") == run(torch, tmp_path / "t")
    # a subclass over the mapping, written through (MemoryMappedTensor's construction)

    class Mapped(ember.Tensor):
        pass

    f = str(tmp_path / "m.bin")
    m = Mapped(ember.from_file(f, shared=True, size=6, dtype=ember.float32).view(2, 3))
    m[1] = 5
    assert _np(ember.from_file(f, shared=False, size=6)).tolist() == [0, 0, 0, 5, 5, 5]


# ---- smaller behaviours tensordict relies on -------------------------------------------------
def test_unbind_of_an_empty_dim_is_empty():
    for T in (ember, torch):
        assert T.zeros(0, 3).unbind(0) == ()
        assert len(T.zeros(2, 0).unbind(1)) == 0
        assert [tuple(t.shape) for t in T.zeros(0, 3).unbind(1)] == [(0,)] * 3
        assert len(T.zeros(0, 3).split(1)) == 1  # split keeps one empty chunk


def test_return_types_built_from_one_sequence():
    def run(T):
        v, i = T.tensor([3.0, 4.0]), T.tensor([0, 1])
        m = T.return_types.max([v, i])  # a struct sequence's constructor (tensordict's max)
        s = T.return_types.sort((v, i))
        with pytest.raises(TypeError):
            T.return_types.max([v])
        return _np(m.values).tolist(), _np(m.indices).tolist(), _np(s[1]).tolist()

    assert run(ember) == run(torch)
    # ember's own construction from the fields keeps working
    r = ember.max(ember.tensor([[1.0, 5.0]]), 1)
    assert r.indices.tolist() == [1] and ember.return_types.max(r.values, r.indices) == r


def test_assert_close_compares_a_mapping_by_its_keys():
    import collections.abc

    class Batched(collections.abc.Mapping):
        """A mapping whose iteration yields rows, not keys (as a TensorDict's does)."""

        def __init__(self, **d):
            self.d = d

        def __getitem__(self, k):
            return self.d[k]

        def __len__(self):
            return len(self.d)

        def __iter__(self):
            return iter(range(3))

        def keys(self):
            return self.d.keys()

    for T in (ember, torch):
        a = Batched(x=T.ones(3), y=T.zeros(3))
        T.testing.assert_close(a, Batched(x=T.ones(3), y=T.zeros(3)))
        with pytest.raises(AssertionError):
            T.testing.assert_close(a, Batched(x=T.ones(3), y=T.ones(3)))


def test_is_alias_of_and_function_mode_probe():
    for T in (ember, torch):
        a = T.arange(6.0)
        assert T._C._is_alias_of(a, a.view(2, 3)[1]) and not T._C._is_alias_of(a, a.clone())
        assert not T._C._is_torch_function_mode_enabled()
        with T.overrides.TorchFunctionMode():
            assert T._C._is_torch_function_mode_enabled()


def test_export_keyword_call_leaves_defaulted_positional_out():
    # tensordict's modules: forward(tensordict=None, *args, **kwargs), exported with keywords
    # only; the leading parameter must keep its default, not receive None positionally
    def run(T):
        class M(T.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = T.nn.Linear(3, 2)

            def forward(self, tensordict=None, *args, **kwargs):
                if tensordict is not None or args:
                    raise RuntimeError("given positionally")
                return self.lin(kwargs["x"]) * 2

        T.manual_seed(0)
        m, x = M(), T.ones(1, 3)
        ep = T.export.export(m, args=(), kwargs={"x": x})
        return _np(ep.module()(x=x)), _np(m(x=x))

    (e, e_ref), (t, _) = run(ember), run(torch)
    np.testing.assert_allclose(e, e_ref)
    np.testing.assert_allclose(e, t, rtol=1e-6)


def test_strided_nested_values_and_sizes():
    def run(T):
        nt = T.nested.as_nested_tensor(
            [T.arange(6.0).reshape(2, 3), T.ones(1, 3)], layout=T.strided
        )
        return [
            _np(x).tolist()
            for x in (
                nt.values(),
                nt._nested_tensor_size(),
                nt._nested_tensor_strides(),
                nt._nested_tensor_storage_offsets(),
            )
        ]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: strided nested tensors are a prototype
        assert run(ember) == run(torch)


def test_tensordict_doc_snippet_runs(capsys):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "porting_examples.md"), encoding="utf-8") as f:
        section = f.read().split("## tensordict", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(snippet, "docs/porting_examples.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "(2, 2, 3) [[0, 1], [0, 1]]"
