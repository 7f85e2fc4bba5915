"""ember.optim.lr_scheduler against torch.optim.lr_scheduler.

Each scheduler drives an optimizer with two param groups (lr 0.1 and 0.05) for 30 steps in both
frameworks; ``get_last_lr()`` and every group's lr (and momentum / beta1 where a scheduler cycles
it) must match torch's to 1e-12 relative at every step. A state_dict round trip half-way
(into a freshly built optimizer and scheduler) must continue exactly like the original.
"""

from __future__ import annotations

import copy
import math
import warnings

import pytest

import ember
import ember.optim as eoptim
from ember.optim import lr_scheduler as elrs

torch = pytest.importorskip("torch")
tlrs = torch.optim.lr_scheduler

STEPS = 30
METRICS = [
    1.0,
    0.9,
    0.95,
    0.96,
    0.97,
    0.8,
    0.81,
    0.82,
    0.83,
    0.84,
    0.5,
    0.5,
    0.5,
    0.5,
    0.49,
    0.6,
    0.7,
    0.8,
    0.9,
    1.0,
    0.3,
    0.3,
    0.3,
    0.3,
    0.3,
    0.3,
    0.29,
    0.2,
    0.2,
    0.2,
    0.2,
]


class Scale:
    """A callable object: its state is saved by LambdaLR's state_dict (functions are not)."""

    def __init__(self, base):
        self.base = base

    def __call__(self, epoch):
        return self.base**epoch


def _optimizer(lib, opt="SGD"):
    a, b = lib.zeros(2, requires_grad=True), lib.zeros(3, requires_grad=True)
    groups = [{"params": [a]}, {"params": [b], "lr": 0.05}]
    if opt == "SGD":
        return lib.optim.SGD(groups, lr=0.1, momentum=0.9)
    return lib.optim.Adam(groups, lr=0.1)


def _seq(m, o):
    return m.SequentialLR(
        o,
        [
            m.LinearLR(o, start_factor=0.2, total_iters=4),
            m.ExponentialLR(o, gamma=0.9),
            m.CosineAnnealingLR(o, T_max=6),
        ],
        milestones=[5, 12],
    )


def _chain(m, o):
    return m.ChainedScheduler(
        [
            m.ConstantLR(o, factor=0.5, total_iters=4),
            m.ExponentialLR(o, gamma=0.9),
            m.StepLR(o, 7, gamma=0.5),
        ]
    )


SCHEDULERS = {
    "LambdaLR": lambda m, o: m.LambdaLR(o, lambda e: 1.0 / (e + 1)),
    "LambdaLR-per-group": lambda m, o: m.LambdaLR(o, [lambda e: 0.9**e, Scale(0.8)]),
    "MultiplicativeLR": lambda m, o: m.MultiplicativeLR(o, lambda e: 0.95),
    "StepLR": lambda m, o: m.StepLR(o, step_size=4, gamma=0.5),
    "MultiStepLR": lambda m, o: m.MultiStepLR(o, milestones=[3, 8, 8, 20], gamma=0.3),
    "ConstantLR": lambda m, o: m.ConstantLR(o, factor=0.25, total_iters=6),
    "LinearLR": lambda m, o: m.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=10),
    "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=0.9),
    "PolynomialLR": lambda m, o: m.PolynomialLR(o, total_iters=12, power=2.0),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=8, eta_min=0.001),
    "CosineAnnealingWarmRestarts": lambda m, o: m.CosineAnnealingWarmRestarts(
        o, T_0=3, T_mult=2, eta_min=0.01
    ),
    "CyclicLR-triangular": lambda m, o: m.CyclicLR(
        o, base_lr=0.01, max_lr=[0.1, 0.2], step_size_up=4, step_size_down=3
    ),
    "CyclicLR-triangular2": lambda m, o: m.CyclicLR(
        o, 0.01, 0.1, step_size_up=3, mode="triangular2"
    ),
    "CyclicLR-exp_range": lambda m, o: m.CyclicLR(
        o, 0.01, 0.1, step_size_up=5, mode="exp_range", gamma=0.95, cycle_momentum=False
    ),
    "OneCycleLR": lambda m, o: m.OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=STEPS + 1),
    "OneCycleLR-linear-3phase": lambda m, o: m.OneCycleLR(
        o,
        max_lr=0.3,
        epochs=4,
        steps_per_epoch=8,
        anneal_strategy="linear",
        three_phase=True,
        pct_start=0.25,
    ),
    "SequentialLR": _seq,
    "ChainedScheduler": _chain,
    "ReduceLROnPlateau": lambda m, o: m.ReduceLROnPlateau(
        o, patience=2, cooldown=1, factor=0.5, min_lr=[0.0, 0.01]
    ),
    "ReduceLROnPlateau-max-abs": lambda m, o: m.ReduceLROnPlateau(
        o, mode="max", threshold=0.05, threshold_mode="abs", patience=1
    ),
}
ADAM = {"OneCycleLR-adam": ("OneCycleLR", "Adam"), "CyclicLR-adam": ("CyclicLR-triangular", "Adam")}


def _momenta(opt):
    return [g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups]


def _step(opt, sched, i):
    opt.step()
    if isinstance(sched, (elrs.ReduceLROnPlateau, tlrs.ReduceLROnPlateau)):
        sched.step(METRICS[i])
    else:
        sched.step()


def _assert_same(eopt, esched, topt, tsched, where):
    assert esched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-12), where
    assert [g["lr"] for g in eopt.param_groups] == pytest.approx(
        [g["lr"] for g in topt.param_groups], rel=1e-12
    ), where
    assert _momenta(eopt) == pytest.approx(_momenta(topt), rel=1e-12), where


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # call-order and deprecation warnings, both libraries
        yield


CASES = {**{k: (k, "SGD") for k in SCHEDULERS}, **ADAM}


@pytest.mark.parametrize("case", list(CASES))
def test_learning_rates_match_torch(case):
    name, opt_name = CASES[case]
    eopt, topt = _optimizer(ember, opt_name), _optimizer(torch, opt_name)
    esched, tsched = SCHEDULERS[name](elrs, eopt), SCHEDULERS[name](tlrs, topt)
    _assert_same(eopt, esched, topt, tsched, "after construction")
    for i in range(STEPS):
        _step(eopt, esched, i)
        _step(topt, tsched, i)
        _assert_same(eopt, esched, topt, tsched, f"step {i + 1}")


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_state_dict_round_trip_mid_way(name):
    eopt, topt = _optimizer(ember), _optimizer(torch)
    esched, tsched = SCHEDULERS[name](elrs, eopt), SCHEDULERS[name](tlrs, topt)
    half = STEPS // 2
    for i in range(half):
        _step(eopt, esched, i)
        _step(topt, tsched, i)
    esd = copy.deepcopy(esched.state_dict())
    eosd = copy.deepcopy(eopt.state_dict())
    assert "optimizer" not in esd
    assert set(esd) == set(tsched.state_dict())

    opt2 = _optimizer(ember)
    sched2 = SCHEDULERS[name](elrs, opt2)
    sched2.load_state_dict(esd)
    opt2.load_state_dict(eosd)  # after the scheduler, as PyTorch documents
    for i in range(half, STEPS):
        for o, s in ((eopt, esched), (opt2, sched2), (topt, tsched)):
            _step(o, s, i)
        _assert_same(opt2, sched2, topt, tsched, f"resumed, step {i + 1}")
        assert sched2.get_last_lr() == esched.get_last_lr()


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("StepLR", dict(step_size=3, gamma=0.5)),
        ("MultiStepLR", dict(milestones=[2, 5])),
        ("ExponentialLR", dict(gamma=0.8)),
        ("CosineAnnealingLR", dict(T_max=5)),
        ("LinearLR", dict(total_iters=4)),
        ("ConstantLR", dict(total_iters=4)),
        ("PolynomialLR", dict(total_iters=6)),
        ("CosineAnnealingWarmRestarts", dict(T_0=3, T_mult=2)),
    ],
)
def test_explicit_epoch_uses_closed_form_like_torch(name, kwargs):
    eopt, topt = _optimizer(ember), _optimizer(torch)
    esched = getattr(elrs, name)(eopt, **kwargs)
    tsched = getattr(tlrs, name)(topt, **kwargs)
    for epoch in (
        [3, 1, 7, 4, 4, 10, 2.5] if name == "CosineAnnealingWarmRestarts" else [3, 1, 7, 4, 4, 10]
    ):
        esched.step(epoch)
        tsched.step(epoch)
        _assert_same(eopt, esched, topt, tsched, f"epoch {epoch}")


def test_initial_lr_recorded_and_resume_needs_it():
    opt = _optimizer(ember)
    elrs.StepLR(opt, 2)
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.05]
    with pytest.raises(
        KeyError,
        match=r"param 'initial_lr' is not specified in "
        r"param_groups\[0\]",
    ):
        elrs.StepLR(_optimizer(ember), 2, last_epoch=3)
    resumed = elrs.ExponentialLR(opt, 0.5, last_epoch=3)  # initial_lr now present
    assert resumed.last_epoch == 4


def test_cosine_annealing_resumed_with_last_epoch_matches_torch():
    eopt, topt = _optimizer(ember), _optimizer(torch)
    for o in (eopt, topt):
        for g in o.param_groups:
            g["initial_lr"] = g["lr"]
    esched = elrs.CosineAnnealingLR(eopt, T_max=10, last_epoch=4)
    tsched = tlrs.CosineAnnealingLR(topt, T_max=10, last_epoch=4)
    for i in range(8):
        _assert_same(eopt, esched, topt, tsched, f"step {i}")
        _step(eopt, esched, i)
        _step(topt, tsched, i)


def test_lambda_state_saves_callable_objects_only():
    opt = _optimizer(ember)
    scale = Scale(0.5)
    sched = elrs.LambdaLR(opt, [lambda e: 1.0, scale])
    sd = sched.state_dict()
    assert sd["lr_lambdas"] == [None, {"base": 0.5}]
    scale.base = 0.1
    sched.load_state_dict(sd)
    assert scale.base == 0.5 and "lr_lambdas" in sd


def test_get_lr_outside_step_warns():
    sched = elrs.StepLR(_optimizer(ember), 2)
    with pytest.warns(UserWarning, match="please use `get_last_lr\\(\\)`"):
        sched.get_lr()


def test_scheduler_before_optimizer_warns():
    opt = eoptim.SGD([ember.zeros(1, requires_grad=True)], lr=0.1)
    sched = elrs.StepLR(opt, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sched.step()
    assert any("before `optimizer.step()`" in str(w.message) for w in caught)


def test_tensor_lr_is_updated_in_place():
    lr = ember.tensor(0.1)
    opt = eoptim.SGD([ember.zeros(1, requires_grad=True)], lr=lr)
    sched = elrs.ExponentialLR(opt, gamma=0.5)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(0.05)
    assert math.isclose(float(sched.get_last_lr()[0]), 0.05, rel_tol=1e-6)


ERROR_CASES = [
    ("not an optimizer", lambda m, o: m.StepLR(object(), 2)),
    ("constant factor", lambda m, o: m.ConstantLR(o, factor=2.0)),
    ("linear start factor", lambda m, o: m.LinearLR(o, start_factor=0)),
    ("linear end factor", lambda m, o: m.LinearLR(o, end_factor=1.5)),
    ("plateau factor", lambda m, o: m.ReduceLROnPlateau(o, factor=1.0)),
    ("plateau mode", lambda m, o: m.ReduceLROnPlateau(o, mode="avg")),
    ("plateau min_lr length", lambda m, o: m.ReduceLROnPlateau(o, min_lr=[0.1])),
    ("lambda count", lambda m, o: m.LambdaLR(o, [lambda e: 1.0])),
    ("warm restarts T_0", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=0)),
    ("warm restarts T_mult", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=0)),
    ("one-cycle total steps", lambda m, o: m.OneCycleLR(o, max_lr=0.1)),
    ("one-cycle pct_start", lambda m, o: m.OneCycleLR(o, 0.1, total_steps=10, pct_start=2.0)),
    (
        "one-cycle overrun",
        lambda m, o: (lambda s: [s.step() for _ in range(3)])(m.OneCycleLR(o, 0.1, total_steps=2)),
    ),
    ("cyclic max_lr length", lambda m, o: m.CyclicLR(o, 0.01, [0.1, 0.2, 0.3])),
    ("cyclic mode", lambda m, o: m.CyclicLR(o, 0.01, 0.1, mode="square")),
    (
        "sequential milestones",
        lambda m, o: m.SequentialLR(o, [m.StepLR(o, 2), m.StepLR(o, 3)], milestones=[]),
    ),
    (
        "sequential with plateau",
        lambda m, o: m.SequentialLR(o, [m.StepLR(o, 2), m.ReduceLROnPlateau(o)], milestones=[2]),
    ),
    ("chained with no scheduler", lambda m, o: m.ChainedScheduler([])),
]


@pytest.mark.parametrize("what,make", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_errors_match_torch(what, make):
    with pytest.raises(Exception) as t_err:  # noqa: B017 - the type is torch's, checked below
        make(tlrs, _optimizer(torch))
    with pytest.raises(type(t_err.value)) as e_err:
        make(elrs, _optimizer(ember))
    assert str(e_err.value) == str(t_err.value)
