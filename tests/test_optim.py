"""ember.optim against torch.optim: trajectories, state dicts, hooks and errors.

The "model" is three leaf tensors (W1, b1, W2) plus one that never gets a gradient, with
loss = mean((tanh(x @ W1 + b1) @ W2 - sin(x[:, :3])) ** 2), built identically in both
frameworks from the same float32 weights. After 20 steps every parameter must agree to
atol 1e-5 / rtol 1e-4 (float32: each framework computes its own gradients, so the last bits
differ); LBFGS is compared over its first 20-35 iterations (see below) at the same tolerance.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import ember
import ember.optim as eoptim

torch = pytest.importorskip("torch")

ATOL, RTOL = 1e-5, 1e-4
SHAPES = [(4, 5), (5,), (5, 3), (3,)]  # the last one is unused by the loss: grad stays None


def _init():
    rng = np.random.default_rng(0)
    weights = [(rng.standard_normal(s) * 0.5).astype(np.float32) for s in SHAPES]
    x = rng.standard_normal((32, 4)).astype(np.float32)
    return weights, x


def _loss(lib, params, x):
    # The target is a fixed function of x, so the problem is over-determined: its minimum is
    # isolated and trajectories cannot drift apart along a flat valley.
    w1, b1, w2, _ = params
    return ((lib.tanh(x @ w1 + b1) @ w2 - lib.sin(x[:, :3])) ** 2).mean()


class Pair:
    """The same model and optimizer in ember and in torch."""

    def __init__(self, name, kwargs, groups=False):
        weights, x = _init()
        self.e = [ember.tensor(w.copy(), requires_grad=True) for w in weights]
        self.t = [torch.tensor(w.copy(), requires_grad=True) for w in weights]
        self.ex, self.tx = ember.tensor(x), torch.tensor(x)
        if groups:  # two groups, the second with its own lr
            e_params = [{"params": self.e[:2]}, {"params": self.e[2:], "lr": 0.003}]
            t_params = [{"params": self.t[:2]}, {"params": self.t[2:], "lr": 0.003}]
        else:
            e_params, t_params = self.e, self.t
        self.eopt = getattr(eoptim, name)(e_params, **kwargs)
        self.topt = getattr(torch.optim, name)(t_params, **kwargs)

    def closure(self, lib):
        opt, params, x = (
            (self.eopt, self.e, self.ex) if lib is ember else (self.topt, self.t, self.tx)
        )

        def closure():
            opt.zero_grad()
            loss = _loss(lib, params, x)
            loss.backward()
            return loss

        return closure

    def step(self, n=1):
        for _ in range(n):
            el = self.eopt.step(self.closure(ember))
            tl = self.topt.step(self.closure(torch))
        return float(el), float(tl)

    def assert_close(self):
        for i, (e, t) in enumerate(zip(self.e, self.t)):
            np.testing.assert_allclose(
                e.detach().numpy(), t.detach().numpy(), atol=ATOL, rtol=RTOL, err_msg=f"param {i}"
            )
        for eg, tg in zip(self.eopt.param_groups, self.topt.param_groups):
            assert eg["lr"] == pytest.approx(tg["lr"])


CONFIGS = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.5, dampening=0.3, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, maximize=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, betas=(0.8, 0.99))),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, weight_decay=0.01)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5, maximize=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1)),
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, weight_decay=0.01, maximize=True)),
    ("Adamax", dict()),
    ("Adamax", dict(lr=0.01, weight_decay=0.1)),
    ("NAdam", dict()),
    ("NAdam", dict(lr=0.01, weight_decay=0.1)),
    ("NAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("RAdam", dict(lr=0.01)),
    ("RAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
]


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=[f"{n}-{k}" for n, k in CONFIGS])
def test_updates_in_cache_sized_pieces_are_bitwise_those_of_whole_arrays(name, kwargs, monkeypatch):
    # large parameters are updated piece by piece (parallel_apply); elementwise math must not
    # see the difference, over steps that take RAdam from its warm-up to rectified updates
    from ember.backend import threads

    def run():
        rng = np.random.default_rng(0)
        params = [
            ember.tensor(rng.standard_normal(n).astype(np.float32), requires_grad=True)
            for n in (100_003, 7)
        ]
        opt = getattr(ember.optim, name)(params, **kwargs)
        for _ in range(8):
            for p in params:
                p.grad = ember.tensor(rng.standard_normal(p.shape[0]).astype(np.float32))
            opt.step()
        return [p.detach().numpy().copy() for p in params]

    pieces = run()
    monkeypatch.setattr(threads, "_PIECE_BYTES", 1 << 40)
    whole = run()
    for a, b in zip(pieces, whole):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=[f"{n}-{k}" for n, k in CONFIGS])
def test_twenty_steps_match_torch(name, kwargs):
    pair = Pair(name, kwargs)
    for _ in range(20):
        el, tl = pair.step()
        assert el == pytest.approx(tl, rel=1e-4, abs=1e-5)
    pair.assert_close()
    unused_e, unused_t = pair.e[3], pair.t[3]
    assert unused_e.grad is None and len(pair.eopt.state[unused_e]) == len(
        pair.topt.state[unused_t]
    )


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("SGD", dict(lr=0.05, momentum=0.9)),
        ("Adam", dict(lr=0.01, amsgrad=True)),
        ("RMSprop", dict(centered=True, momentum=0.5)),
    ],
)
def test_param_groups_match_torch(name, kwargs):
    pair = Pair(name, kwargs, groups=True)
    pair.step(20)
    pair.assert_close()


# L-BFGS amplifies float32 rounding once it crawls along the loss valley (after ~20
# iterations here; how soon depends on the BLAS kernels of the machine), so the comparison
# covers the iterations before that.
@pytest.mark.parametrize(
    "kwargs,steps",
    [
        (dict(), 1),
        (dict(line_search_fn="strong_wolfe"), 1),
        (dict(max_iter=5), 5),
        (dict(max_iter=5, line_search_fn="strong_wolfe"), 5),
        (dict(lr=0.5, history_size=3, max_iter=7), 2),
    ],
)
def test_lbfgs_matches_torch(kwargs, steps):
    pair = Pair("LBFGS", kwargs)
    for _ in range(steps):
        el, tl = pair.step()
        assert el == pytest.approx(tl, rel=1e-4, abs=1e-5)
    pair.assert_close()
    es = pair.eopt.state[pair.e[0]]
    ts = pair.topt.state[pair.t[0]]
    assert es["n_iter"] == ts["n_iter"] and es["func_evals"] == ts["func_evals"]


# ---- state dicts ------------------------------------------------------------------------
def _arr(v):
    return v.detach().numpy() if isinstance(v, (ember.Tensor, torch.Tensor)) else np.asarray(v)


@pytest.mark.parametrize("name,kwargs", [c for c in CONFIGS if "maximize" not in c[1]][::2])
def test_state_dict_layout_matches_torch(name, kwargs):
    pair = Pair(name, kwargs)
    pair.step(3)
    esd, tsd = pair.eopt.state_dict(), pair.topt.state_dict()
    assert [g.keys() for g in esd["param_groups"]] == [g.keys() for g in tsd["param_groups"]]
    assert [g["params"] for g in esd["param_groups"]] == [g["params"] for g in tsd["param_groups"]]
    assert esd["state"].keys() == tsd["state"].keys()
    for pid, tstate in tsd["state"].items():
        estate = esd["state"][pid]
        assert estate.keys() == tstate.keys()
        for key, tv in tstate.items():
            ev = estate[key]
            assert isinstance(ev, ember.Tensor)
            assert ev.shape == tuple(tv.shape) and str(ev.dtype) == str(tv.dtype).replace(
                "torch", "ember"
            )
            np.testing.assert_allclose(_arr(ev), _arr(tv), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("SGD", dict(lr=0.05, momentum=0.9)),
        ("Adam", dict(lr=0.01, amsgrad=True)),
        ("AdamW", dict()),
        ("RMSprop", dict(centered=True, momentum=0.5)),
        ("Adagrad", dict()),
        ("Adadelta", dict()),
        ("Adamax", dict()),
        ("NAdam", dict()),
        ("RAdam", dict()),
        ("LBFGS", dict(history_size=3, max_iter=3)),
    ],
)
def test_state_dict_round_trip_continues_identically(name, kwargs):
    pair = Pair(name, kwargs, groups=name != "LBFGS")
    pair.step(5)
    saved_params = [p.detach().numpy().copy() for p in pair.e]
    saved = copy.deepcopy(pair.eopt.state_dict())
    pair.step(5)
    pair.assert_close()  # the reference run, still in step with torch

    weights = [ember.tensor(a, requires_grad=True) for a in saved_params]
    params = (
        weights
        if name == "LBFGS"
        else [{"params": weights[:2]}, {"params": weights[2:], "lr": 0.003}]
    )
    opt = getattr(eoptim, name)(params, **kwargs)
    opt.load_state_dict(saved)
    for _ in range(5):

        def closure():
            opt.zero_grad()
            loss = _loss(ember, weights, pair.ex)
            loss.backward()
            return loss

        opt.step(closure)
    for a, b in zip(weights, pair.e):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_load_state_dict_copies_and_casts():
    p = ember.randn(3, requires_grad=True)
    p.grad = ember.ones(3)
    opt = eoptim.Adam([p])
    opt.step()
    q = ember.randn(3, dtype=ember.float64, requires_grad=True)
    opt2 = eoptim.Adam([q], lr=0.5)
    opt2.load_state_dict(opt.state_dict())
    s1, s2 = opt.state[p], opt2.state[q]
    assert s2["exp_avg"].dtype == ember.float64 and s2["step"].dtype == ember.float32
    assert (
        s2["exp_avg"]._data is not s1["exp_avg"]._data and s2["step"]._data is not s1["step"]._data
    )
    assert opt2.param_groups[0]["lr"] == 1e-3 and opt2.param_groups[0]["params"][0] is q


def test_load_torch_state_dict_continues_like_torch():
    pair = Pair("Adam", dict(lr=0.01), groups=True)
    pair.step(5)
    tsd = pair.topt.state_dict()
    converted = {
        "state": {
            k: {n: ember.tensor(v.numpy().copy()) for n, v in s.items()}
            for k, s in tsd["state"].items()
        },
        "param_groups": tsd["param_groups"],
    }
    for e, t in zip(pair.e, pair.t):
        e.detach().numpy()[...] = t.detach().numpy()
    pair.eopt.load_state_dict(converted)
    pair.step(5)
    pair.assert_close()


def test_load_state_dict_errors():
    a, b = ember.zeros(2, requires_grad=True), ember.zeros(3, requires_grad=True)
    opt = eoptim.SGD([a, b], lr=0.1)
    two_groups = eoptim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1).state_dict()
    with pytest.raises(ValueError, match="different number of parameter groups"):
        opt.load_state_dict(two_groups)
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        opt.load_state_dict(eoptim.SGD([a], lr=0.1).state_dict())


# ---- behaviour ---------------------------------------------------------------------------
def test_step_updates_in_place_and_bumps_version():
    p = ember.ones(3, requires_grad=True)
    data, version = p._data, p._version
    p.grad = ember.ones(3)
    eoptim.SGD([p], lr=0.5).step()
    assert p._data is data and p._version == version + 1
    np.testing.assert_allclose(p.detach().numpy(), 0.5)
    assert p.grad_fn is None and p.requires_grad


def test_step_records_no_graph_and_returns_closure_loss():
    p = ember.ones(2, requires_grad=True)
    opt = eoptim.Adam([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert float(loss) == 2.0 and p.grad_fn is None
    assert opt.state[p]["step"].shape == () and float(opt.state[p]["step"]) == 1.0


def test_zero_grad():
    p = ember.ones(2, requires_grad=True)
    p.grad = ember.ones(2)
    opt = eoptim.SGD([p], lr=0.1)
    opt.zero_grad(set_to_none=False)
    assert p.grad is not None and not p.grad.numpy().any()
    opt.zero_grad()
    assert p.grad is None


def test_add_param_group_and_defaults():
    a, b = ember.ones(2, requires_grad=True), ember.ones(2, requires_grad=True)
    opt = eoptim.SGD([a], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": b, "lr": 0.01})
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["lr"] == 0.01
    assert opt.param_groups[1]["params"] == [b] or opt.param_groups[1]["params"][0] is b
    named = eoptim.SGD([("w", a)], lr=0.1)
    assert named.param_groups[0]["param_names"] == ["w"]
    assert named.state_dict()["param_groups"][0]["param_names"] == ["w"]


@pytest.mark.parametrize("name", ["Adagrad", "Adam", "NAdam", "RMSprop"])
def test_param_group_added_later_gets_state_like_torch(name):
    # Adagrad makes its state at construction; a group added afterwards gets it at its first
    # step, and (as in PyTorch) from the optimizer's default initial_accumulator_value, not the
    # group's. The lazily stated optimizers start the new group's state at its first step too.
    out = {}
    for lib, optim in ((ember, eoptim), (torch, torch.optim)):
        a = lib.ones(3, requires_grad=True)
        b = lib.full((2,), 2.0, requires_grad=True)
        kwargs = {"initial_accumulator_value": 0.5} if name == "Adagrad" else {}
        opt = getattr(optim, name)([a], lr=0.1, **kwargs)
        opt.add_param_group(
            {"params": [b], **({"initial_accumulator_value": 2.0} if name == "Adagrad" else {})}
        )
        for _ in range(3):
            opt.zero_grad()
            (a.sum() + (b * b).sum()).backward()
            opt.step()
        out[lib.__name__] = (
            [float(v) for v in b.detach().numpy()],
            {k: np.asarray(v.detach().numpy()) for k, v in opt.state[b].items()},
        )
    (eb, es), (tb, ts) = out["ember"], out["torch"]
    np.testing.assert_allclose(eb, tb, rtol=RTOL, atol=ATOL)
    assert list(es) == list(ts)
    for k in ts:
        np.testing.assert_allclose(es[k], ts[k], rtol=RTOL, atol=ATOL)


def test_step_hooks():
    p = ember.ones(2, requires_grad=True)
    p.grad = ember.ones(2)
    opt = eoptim.SGD([p], lr=0.1)
    calls = []
    pre = opt.register_step_pre_hook(lambda o, args, kwargs: calls.append("pre"))
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append("post"))
    opt.step()
    pre.remove()
    opt.step()
    assert calls == ["pre", "post", "post"]


def test_repr_lists_groups():
    opt = eoptim.Adam([ember.ones(1, requires_grad=True)], lr=0.5)
    text = repr(opt)
    assert text.startswith("Adam (") and "Parameter Group 0" in text and "lr: 0.5" in text


def test_pickle_round_trip():
    import pickle

    pair = Pair("LBFGS", dict(max_iter=3))
    pair.step()
    clone = pickle.loads(pickle.dumps(pair.eopt))
    assert isinstance(clone, eoptim.LBFGS) and clone.param_groups[0]["lr"] == 1
    params = clone.param_groups[0]["params"]

    def closure():
        clone.zero_grad()
        loss = _loss(ember, params, pair.ex)
        loss.backward()
        return loss

    clone.step(closure)  # the unpickled optimizer steps its own (unpickled) parameters
    pair.step()
    for a, b in zip(params, pair.e):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


@pytest.mark.gpu
@pytest.mark.parametrize(
    "name,kwargs",
    [c for c in CONFIGS if c[0] in ("SGD", "Adam", "RAdam")]
    + [
        ("RMSprop", dict(centered=True, momentum=0.5)),
        ("NAdam", dict()),
        ("Adamax", dict()),
        ("Adadelta", dict()),
        ("Adagrad", dict()),
    ],
)
def test_cuda_matches_cpu(name, kwargs):
    weights, _ = _init()
    rng = np.random.default_rng(1)
    grads = [[rng.standard_normal(w.shape).astype(np.float32) for w in weights] for _ in range(5)]
    results = []
    for device in ("cpu", "cuda"):
        params = [ember.tensor(w, device=device, requires_grad=True) for w in weights]
        opt = getattr(eoptim, name)(params, **kwargs)
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad = ember.tensor(g, device=device)
            opt.step()
        assert all(p.device.type == device for p in params)
        assert all(
            v.device.type == device
            for s in opt.state.values()
            for k, v in s.items()
            if k not in ("step", "mu_product")
        )
        results.append([p.detach().cpu().numpy() for p in params])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)


# ---- errors match PyTorch's ---------------------------------------------------------------
def _leaf(lib):
    return lib.ones(2, requires_grad=True)


ERROR_CASES = [
    ("negative lr", lambda lib: lib.optim.SGD([_leaf(lib)], lr=-0.1)),
    ("negative momentum", lambda lib: lib.optim.SGD([_leaf(lib)], lr=0.1, momentum=-1)),
    ("nesterov without momentum", lambda lib: lib.optim.SGD([_leaf(lib)], lr=0.1, nesterov=True)),
    ("beta0 out of range", lambda lib: lib.optim.Adam([_leaf(lib)], betas=(1.0, 0.999))),
    ("beta1 out of range", lambda lib: lib.optim.AdamW([_leaf(lib)], betas=(0.9, -0.1))),
    ("negative eps", lambda lib: lib.optim.Adam([_leaf(lib)], eps=-1.0)),
    ("negative weight decay", lambda lib: lib.optim.RMSprop([_leaf(lib)], weight_decay=-1)),
    ("rho out of range", lambda lib: lib.optim.Adadelta([_leaf(lib)], rho=1.5)),
    ("negative lr_decay", lambda lib: lib.optim.Adagrad([_leaf(lib)], lr_decay=-1)),
    ("negative momentum_decay", lambda lib: lib.optim.NAdam([_leaf(lib)], momentum_decay=-1)),
    ("empty parameter list", lambda lib: lib.optim.Adam([])),
    ("a tensor instead of an iterable", lambda lib: lib.optim.Adam(_leaf(lib))),
    ("a set of parameters", lambda lib: lib.optim.SGD([{"params": {_leaf(lib)}}], lr=0.1)),
    ("a non-tensor parameter", lambda lib: lib.optim.SGD([1.0], lr=0.1)),
    ("a non-leaf tensor", lambda lib: lib.optim.SGD([_leaf(lib) * 2], lr=0.1)),
    (
        "a parameter in two groups",
        lambda lib: (lambda p: lib.optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1))(
            _leaf(lib)
        ),
    ),
    (
        "LBFGS with groups",
        lambda lib: lib.optim.LBFGS(
            [{"params": [_leaf(lib)]}, {"params": [_leaf(lib)], "lr": 0.1}]
        ),
    ),
]


@pytest.mark.parametrize("what,make", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_errors_match_torch(what, make):
    with pytest.raises(Exception) as t_err:  # noqa: B017 - the type is torch's, checked below
        make(torch)
    with pytest.raises(type(t_err.value)) as e_err:
        make(ember)
    t_msg = str(t_err.value).replace("torch.", "ember.")
    if what == "a tensor instead of an iterable":
        t_msg = t_msg.replace("ember.FloatTensor", "ember.Tensor")
    assert str(e_err.value) == t_msg
