"""``__torch_function__`` across the whole public ``ember.*`` namespace (core/_torch_function.py,
``install_namespace_dispatch``): a tensor-like class and a Tensor subclass with a
``__torch_function__`` of its own see each function with the public function as ``func`` and
the call's arguments, as in PyTorch 2.13; ``ember.overrides``' queries agree with torch's."""

from __future__ import annotations

import inspect
import threading

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

from ember import overrides  # noqa: E402


def _recorder(base):
    """A tensor-like class (not a tensor) of library ``base`` that records its calls."""

    class Like:
        calls: list = []

        def __init__(self, t):
            self.t = t

        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            cls.calls.append((func, types, args, kwargs or {}))
            return "handled"

    return Like


def _subclass(lib):
    """A Tensor subclass of ``lib`` whose ``__torch_function__`` records, then defers."""

    class Sub(lib.Tensor):
        calls: list = []

        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            cls.calls.append(func)
            return super().__torch_function__(func, types, args, kwargs)

    return Sub


def _as_sub(lib, t, Sub):
    return t.as_subclass(Sub) if lib is torch else Sub(t)


# name -> builder(lib, x) of (args, kwargs) with the tensor-like/subclass ``x`` in it; the
# other tensors are plain. A sample of ~40 of the functions that did not dispatch before.
def _t(lib, *shape):
    return lib.arange(float(np.prod(shape))).reshape(*shape) / 7 + 0.5


CASES = {
    "reshape": lambda m, x: ((x, (3, 2)), {}),
    "transpose": lambda m, x: ((x, 0, 1), {}),
    "flatten": lambda m, x: ((x,), {}),
    "flatten_dims": lambda m, x: ((x, 1), {}),
    "split": lambda m, x: ((x, 1), {}),
    "chunk": lambda m, x: ((x, 2, 1), {}),
    "squeeze": lambda m, x: ((x,), {}),
    "unsqueeze": lambda m, x: ((x, 0), {}),
    "permute": lambda m, x: ((x, (1, 0)), {}),
    "movedim": lambda m, x: ((x, 0, 1), {}),
    "narrow": lambda m, x: ((x, 1, 0, 2), {}),
    "select": lambda m, x: ((x, 0, 1), {}),
    "flip": lambda m, x: ((x, (0,)), {}),
    "roll": lambda m, x: ((x, 1), {}),
    "rot90": lambda m, x: ((x,), {}),
    "tile": lambda m, x: ((x, (2,)), {}),
    "repeat_interleave": lambda m, x: ((x, 2), {}),
    "clone": lambda m, x: ((x,), {}),
    "t": lambda m, x: ((x,), {}),
    "diagonal": lambda m, x: ((x,), {}),
    "tril": lambda m, x: ((x,), {}),
    "rsqrt_": lambda m, x: ((x,), {}),
    "isnan": lambda m, x: ((x,), {}),
    "isfinite": lambda m, x: ((x,), {}),
    "isclose": lambda m, x: ((x, _t(m, 2, 3)), {}),
    "allclose": lambda m, x: ((_t(m, 2, 3), x), {}),
    "equal": lambda m, x: ((x, _t(m, 2, 3)), {}),
    "masked_fill": lambda m, x: ((x, _t(m, 2, 3) > 1, 0.0), {}),
    "index_select": lambda m, x: ((x, 0, m.tensor([1, 0])), {}),
    "scatter_add": lambda m, x: ((_t(m, 2, 3), 1, m.tensor([[0, 1, 2]] * 2), x), {}),
    "nansum": lambda m, x: ((x,), {}),
    "count_nonzero": lambda m, x: ((x,), {"dim": 1}),
    "cross": lambda m, x: ((x, _t(m, 2, 3)), {"dim": 1}),
    "kron": lambda m, x: ((x, _t(m, 2, 3)), {}),
    "inner": lambda m, x: ((x, _t(m, 2, 3)), {}),
    "trace": lambda m, x: ((x,), {}),
    "broadcast_to": lambda m, x: ((x, (2, 2, 3)), {}),
    "broadcast_tensors": lambda m, x: ((x, _t(m, 1, 3)), {}),
    "block_diag": lambda m, x: ((_t(m, 2, 3), x), {}),
    "atleast_3d": lambda m, x: ((x,), {}),
    "unbind": lambda m, x: ((x,), {}),
    "argwhere": lambda m, x: ((x,), {}),
    "diag_embed": lambda m, x: ((x,), {}),
    "cumulative_trapezoid": lambda m, x: ((x,), {}),
    "tensor_split": lambda m, x: ((x, 2), {"dim": 1}),
}


def _fn(lib, case):
    return getattr(lib, case.split("_dims")[0])


def _norm(v, like):
    """Arguments in a comparable form: the recorded object as a marker, tensors by value."""
    if isinstance(v, like):
        return "X"
    if isinstance(v, (list, tuple)):
        return [_norm(i, like) for i in v]
    if hasattr(v, "detach"):
        a = np.asarray(v.detach().numpy())
        return ("tensor", (a.round(5) if a.dtype.kind == "f" else a).tolist())
    return v


def _bound(case, args, kwargs, like) -> dict:
    """The call bound to ember's signature, defaults applied: PyTorch passes what was given
    by keyword as kwargs (and its Python-level functions add some defaults), ember what the
    signature takes positionally as args; the call is the same."""
    b = inspect.signature(_fn(ember, case)).bind(*args, **kwargs)
    b.apply_defaults()
    return {k: _norm(v, like) for k, v in b.arguments.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_tensor_like_sees_the_public_function_and_the_call(case):
    seen = []
    for lib in (torch, ember):
        Like = _recorder(lib)
        x = Like(_t(lib, 2, 3))
        args, kwargs = CASES[case](lib, x)
        assert _fn(lib, case)(*args, **kwargs) == "handled", (lib.__name__, case)
        assert len(Like.calls) == 1, (lib.__name__, case)
        func, types, a, k = Like.calls[0]
        # (torch's Python-level functions list the plain torch.Tensor among the types too)
        assert func is _fn(lib, case) and tuple(t for t in types if t is not lib.Tensor) == (Like,)
        seen.append(_bound(case, a, k, Like))
    assert seen[1] == seen[0], case


@pytest.mark.parametrize("case", list(CASES))
def test_tensor_subclass_sees_the_function_and_keeps_its_type(case):
    results = []
    for lib in (torch, ember):
        Sub = _subclass(lib)
        x = _as_sub(lib, _t(lib, 2, 3), Sub)
        args, kwargs = CASES[case](lib, x)
        out = _fn(lib, case)(*args, **kwargs)
        assert Sub.calls and Sub.calls[0] is _fn(lib, case), (lib.__name__, case)
        first = out[0] if isinstance(out, (tuple, list)) else out
        if isinstance(first, lib.Tensor):
            assert isinstance(first, Sub), (lib.__name__, case)  # (the default converts)
        results.append(_norm(out, ()))
    assert results[1] == results[0], case


def test_defaults_given_positionally_and_keywords():
    Like = _recorder(ember)
    x = Like(ember.ones(2))
    ember.flatten(x, 1, end_dim=2)
    ember.masked_fill(ember.ones(2), x, value=0.5)
    ember.flatten(x)
    (f1, _, a1, k1), (f2, _, a2, k2), (_, _, a3, _) = Like.calls
    # what the signature takes positionally is passed positionally; trailing defaults are left
    # out, as when the call did not give them
    assert f1 is ember.flatten and a1 == (x, 1, 2) and k1 == {}
    assert f2 is ember.masked_fill and a2[1] is x and a2[2] == 0.5 and k2 == {}
    assert a3 == (x,)
    # a tensor-like given by keyword (``input=``) and in a list (``*tensors``) is seen too
    Like.calls.clear()
    ember.reshape(x, 2)
    ember.block_diag(ember.ones(1), x)
    ember.meshgrid([ember.ones(2), x], indexing="ij")
    assert [c[0] for c in Like.calls] == [ember.reshape, ember.block_diag, ember.meshgrid]


def test_plain_tensors_signatures_and_factories():
    t = ember.arange(6.0)
    out = ember.reshape(t, 2, 3)
    assert type(out) is ember.Tensor and tuple(out.shape) == (2, 3)
    assert list(inspect.signature(ember.flatten).parameters) == ["input", "start_dim", "end_dim"]
    assert ember.flatten.__name__ == "flatten" and ember.flatten.__doc__
    import pickle

    assert pickle.loads(pickle.dumps(ember.reshape)) is ember.reshape  # (as torch.reshape)
    # factories and state functions are not dispatched on their arguments (as PyTorch)
    for name in ("tensor", "as_tensor", "manual_seed", "set_default_dtype", "is_tensor", "cond"):
        assert not getattr(getattr(ember, name), "__ember_torch_function__", False), name


def test_overridable_functions_and_queries_match_torch():
    listed = set(overrides.get_overridable_functions()[ember])
    torch_listed = {f.__name__ for f in torch.overrides.get_overridable_functions()[torch]}
    ignored = {
        f.__name__
        for f in torch.overrides.get_ignored_functions()
        if getattr(torch, getattr(f, "__name__", ""), None) is f
    }
    for case in CASES:
        assert _fn(ember, case) in listed, case
    for name, fn in vars(ember).items():
        if name.startswith("_") or not callable(fn) or isinstance(fn, type):
            continue
        if name in ignored:
            assert fn not in listed, name
        elif name in torch_listed and name not in ("einsum",):
            assert fn in listed or not hasattr(fn, "__code__"), name
    for lib in (torch, ember):
        Like, Sub = _recorder(lib), _subclass(lib)
        plain = _t(lib, 2)
        sub = _as_sub(lib, plain, Sub)
        param = lib.nn.Parameter(_t(lib, 2))
        o = lib.overrides
        got = (
            o.has_torch_function([plain, 1, None]),
            o.has_torch_function([plain, Like(plain)]),
            o.has_torch_function([sub]),
            o.has_torch_function_unary(param),
            o.has_torch_function_variadic(plain, sub),
            o.is_tensor_like(Like(plain)),
            o.is_tensor_like(param),
        )
        assert got == (False, True, True, False, True, True, True), lib.__name__
        # handle_torch_function: the first type that does not decline answers
        assert o.handle_torch_function(lib.reshape, (Like(plain),), Like(plain), (2,)) == "handled"
        func, types, args, _ = Like.calls[-1]
        assert func is lib.reshape and types == (Like,) and args[1] == (2,)


def test_run_as_written_switch_is_per_thread():
    Like = _recorder(ember)
    x = Like(ember.ones(2))
    entered, release, seen = threading.Event(), threading.Event(), []

    def hold():
        with overrides._no_tensor_like_dispatch():
            entered.set()
            release.wait(10)

    th = threading.Thread(target=hold)
    th.start()
    try:
        assert entered.wait(10)
        # another thread holds the switch: this one still dispatches
        seen.append(ember.transpose(x, 0, 1))
    finally:
        release.set()
        th.join()
    assert seen == ["handled"] and Like.calls[0][0] is ember.transpose
    with overrides._no_tensor_like_dispatch():  # in this thread: run as written
        with pytest.raises(AttributeError):
            ember.transpose(x, 0, 1)


def test_legacy_constructor_is_float32_whoever_calls_it():
    # Tensor(ndarray) no longer looks at its caller's module: float32 from any module (as
    # torch.Tensor); ember's own code wraps other dtypes with Tensor._wrap
    g = {"__name__": "ember.some_module", "ember": ember, "np": np}
    exec("out = ember.Tensor(np.array([1, 0], np.int64))", g)
    assert g["out"].dtype == ember.float32
    assert ember.Tensor(np.array([True])).dtype == ember.float32
    assert torch.Tensor(np.array([True])).dtype == torch.float32
    import copy

    idx = ember.tensor([3, 1])
    assert copy.deepcopy(idx).dtype == ember.int64
    q = ember.quantize_per_tensor(ember.tensor([0.5, 1.0]), 0.1, 2, ember.quint8)
    assert q.int_repr().dtype == ember.uint8 and q.int_repr().tolist() == [7, 12]


def test_plain_method_handler_and_nested_subclass_calls():
    # a __torch_function__ written as a plain method (seen in the wild) is a class method,
    # with torch's deprecation warning (a UserWarning); the default it defers to runs cat's
    # own calls without dispatching back to the subclass
    for lib in (torch, ember):

        class Debug(lib.Tensor):
            seen: list = []

            def __torch_function__(cls, func, types, args=(), kwargs=None):
                cls.seen.append(func.__name__)
                return super().__torch_function__(func, types, args, kwargs or {})

        d = _as_sub(lib, lib.ones(1, 2), Debug)
        with pytest.warns(UserWarning, match="plain method"):
            out = lib.cat([d, d])
        assert type(out) is Debug and Debug.seen == ["cat"], lib.__name__
