"""ASGD, Rprop, Adafactor, Muon, SparseAdam and swa_utils against torch: trajectories over a
few steps, state-dict layouts, errors, and the averaging utilities."""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn as enn
import ember.optim as eoptim
from ember.optim import swa_utils as eswa

torch = pytest.importorskip("torch")

SHAPES = [(4, 5), (5,), (5, 3)]


def _weights():
    rng = np.random.default_rng(0)
    ws = [(rng.standard_normal(s) * 0.5).astype(np.float32) for s in SHAPES]
    return ws, rng.standard_normal((16, 4)).astype(np.float32)


def _loss(lib, params, x):
    w1, b1, w2 = params
    return ((lib.tanh(x @ w1 + b1) @ w2 - lib.sin(x[:, :3])) ** 2).mean()


def _run(name, kwargs, steps=10, only2d=False):
    ws, x = _weights()
    if only2d:  # Muon takes matrices only
        ws = [ws[0], ws[2]]
    e = [ember.tensor(w.copy(), requires_grad=True) for w in ws]
    t = [torch.tensor(w.copy(), requires_grad=True) for w in ws]
    eo, to = getattr(eoptim, name)(e, **kwargs), getattr(torch.optim, name)(t, **kwargs)
    ex, tx = ember.tensor(x), torch.tensor(x)
    for _ in range(steps):
        for lib, opt, params, xx in ((ember, eo, e, ex), (torch, to, t, tx)):
            opt.zero_grad()
            full = params if not only2d else [params[0], lib.zeros(5), params[1]]
            _loss(lib, full, xx).backward()
            opt.step()
    return e, t, eo, to


CONFIGS = [
    ("ASGD", dict(lr=0.05)),
    ("ASGD", dict(lr=0.05, t0=3, lambd=0.01, weight_decay=0.1, maximize=False)),
    ("Rprop", dict(lr=0.01)),
    ("Rprop", dict(lr=0.02, etas=(0.3, 1.5), step_sizes=(1e-4, 0.05), maximize=True)),
    ("Adafactor", dict(lr=0.01)),
    ("Adafactor", dict(lr=0.02, weight_decay=0.1, eps=(1e-30, 1e-3), d=1.5)),
]


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=[f"{n}-{k}" for n, k in CONFIGS])
def test_trajectory_and_state_dict_match_torch(name, kwargs):
    e, t, eo, to = _run(name, kwargs)
    for a, b in zip(e, t):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=2e-5, rtol=1e-4)
    es, ts = eo.state_dict(), to.state_dict()
    assert es["param_groups"] == [dict(g) for g in ts["param_groups"]]
    assert list(es["state"]) == list(ts["state"])
    for k in ts["state"]:
        assert list(es["state"][k]) == list(ts["state"][k])
        for key, tv in ts["state"][k].items():
            ev = es["state"][k][key]
            tv = tv.numpy() if isinstance(tv, torch.Tensor) else tv
            ev = ev.numpy() if isinstance(ev, ember.Tensor) else ev
            np.testing.assert_allclose(ev, tv, atol=2e-5, rtol=1e-4, err_msg=key)


@pytest.mark.parametrize(
    "kwargs", [dict(lr=0.02), dict(lr=0.02, nesterov=False, adjust_lr_fn="match_rms_adamw")]
)
def test_muon_matches_torch(kwargs):
    # Newton-Schulz runs in bfloat16 in both; a few steps stay within bf16's resolution
    e, t, eo, to = _run("Muon", kwargs, steps=3, only2d=True)
    for a, b in zip(e, t):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=3e-3)
    assert list(eo.state_dict()["state"][0]) == ["momentum_buffer"]
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        eoptim.Muon([ember.zeros(3, requires_grad=True)])


def test_optimizer_argument_errors_match_torch():
    p = [ember.zeros(2, 2, requires_grad=True)]
    tp = [torch.zeros(2, 2, requires_grad=True)]
    cases = [
        ("Rprop", dict(etas=(1.5, 1.2))),
        ("Adafactor", dict(beta2_decay=0.5)),
        ("Adafactor", dict(d=0.5)),
        ("ASGD", dict(lr=-1.0)),
        ("Muon", dict(adjust_lr_fn="nope")),
        ("SparseAdam", dict(betas=(1.0, 0.9))),
    ]
    for name, kw in cases:
        with pytest.raises(ValueError) as te:
            getattr(torch.optim, name)(tp, **kw)
        with pytest.raises(ValueError, match=str(te.value).replace("(", r"\(").replace(")", r"\)")):
            getattr(eoptim, name)(p, **kw)


def test_sparse_adam_refuses_dense_gradients_as_torch():
    p = ember.zeros(3, requires_grad=True)
    opt = eoptim.SparseAdam([p])
    (p * 2).sum().backward()
    with pytest.raises(RuntimeError, match="SparseAdam does not support dense gradients"):
        opt.step()


# ---- swa_utils ---------------------------------------------------------------------------
def _models():
    torch.manual_seed(0)
    t = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    e = enn.Sequential(enn.Linear(3, 4), enn.BatchNorm1d(4))
    e.load_state_dict({k: ember.tensor(v.numpy().copy()) for k, v in t.state_dict().items()})
    return e, t


@pytest.mark.parametrize("mode", ["swa", "ema_multi", "ema_avg", "swa_avg_buffers"])
def test_averaged_model_matches_torch(mode):
    e, t = _models()
    kw_e, kw_t = {}, {}
    if mode == "ema_multi":
        kw_e["multi_avg_fn"], kw_t["multi_avg_fn"] = (
            eswa.get_ema_multi_avg_fn(0.9),
            torch.optim.swa_utils.get_ema_multi_avg_fn(0.9),
        )
    elif mode == "ema_avg":
        kw_e["avg_fn"], kw_t["avg_fn"] = (
            eswa.get_ema_avg_fn(0.8),
            torch.optim.swa_utils.get_ema_avg_fn(0.8),
        )
    elif mode == "swa_avg_buffers":
        kw_e["avg_fn"] = eswa.get_swa_avg_fn()
        kw_t["avg_fn"] = torch.optim.swa_utils.get_swa_avg_fn()
        kw_e["use_buffers"] = kw_t["use_buffers"] = True
    ea, ta = eswa.AveragedModel(e, **kw_e), torch.optim.swa_utils.AveragedModel(t, **kw_t)
    x = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    for i in range(3):
        with torch.no_grad():
            for p in t.parameters():
                p.mul_(0.5).add_(0.1 * (i + 1))
        with ember.no_grad():
            for p in e.parameters():
                p.mul_(0.5).add_(0.1 * (i + 1))
        e(ember.tensor(x))
        t(torch.tensor(x))
        ea.update_parameters(e)
        ta.update_parameters(t)
    assert list(ea.state_dict()) == list(ta.state_dict())
    for k, v in ta.state_dict().items():
        np.testing.assert_allclose(ea.state_dict()[k].numpy(), v.numpy(), atol=1e-6, err_msg=k)


def test_update_bn_and_swalr_match_torch():
    e, t = _models()
    rng = np.random.default_rng(2)
    data = [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(3)]
    eswa.update_bn([(ember.tensor(d), 0) for d in data], e)
    torch.optim.swa_utils.update_bn([(torch.tensor(d), 0) for d in data], t)
    np.testing.assert_allclose(e[1].running_mean.numpy(), t[1].running_mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(e[1].running_var.numpy(), t[1].running_var.numpy(), atol=1e-5)
    assert e[1].momentum == t[1].momentum
    for strategy, epochs in (("cos", 3), ("linear", 2), ("cos", 0)):
        eo = eoptim.SGD(e.parameters(), lr=0.5)
        to = torch.optim.SGD(t.parameters(), lr=0.5)
        es = eswa.SWALR(eo, swa_lr=0.05, anneal_epochs=epochs, anneal_strategy=strategy)
        ts = torch.optim.swa_utils.SWALR(
            to, swa_lr=0.05, anneal_epochs=epochs, anneal_strategy=strategy
        )
        for _ in range(5):
            eo.step()
            to.step()
            es.step()
            ts.step()
            assert es.get_last_lr() == pytest.approx(ts.get_last_lr())
        assert set(es.state_dict()) == set(ts.state_dict())
    with pytest.raises(ValueError, match="anneal_strategy must be one of"):
        eswa.SWALR(eo, swa_lr=0.1, anneal_strategy="exp")


def test_swap_in_optimizer_params_and_state_matches_torch():
    def run(lib, mod):
        p = lib.tensor([1.0, 2.0], requires_grad=True)
        opt = mod.Adam([p], lr=0.1)
        p.grad = lib.tensor([0.5, -0.5])
        opt.step()
        other = lib.tensor([10.0, 20.0], requires_grad=True)
        other.grad = lib.tensor([1.0, 1.0])
        sd = opt.state_dict()
        sd = {
            "state": {0: {k: v.clone() for k, v in sd["state"][0].items()}},
            "param_groups": [dict(sd["param_groups"][0], lr=0.5)],
        }
        with mod.swap_in_optimizer_params_and_state(opt, {"p": other}, sd):
            assert opt.param_groups[0]["lr"] == 0.5
            opt.step()
        assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["params"][0] is p
        return other.detach().numpy().copy(), float(sd["state"][0]["step"])

    (eo, es), (to, ts) = run(ember, eoptim), run(torch, torch.optim)
    np.testing.assert_allclose(eo, to, rtol=1e-6)
    assert es == ts == 2.0
    with pytest.raises(RuntimeError, match="requires initialized optimizer state"):
        with eoptim.swap_in_optimizer_params_and_state(
            eoptim.SGD([ember.zeros(1, requires_grad=True)]), {}, {}
        ):
            pass
