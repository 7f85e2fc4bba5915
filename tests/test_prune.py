"""``ember.nn.utils.prune`` against ``torch.nn.utils.prune``: the same weights give the same
masks, parameters, buffers, state_dict keys and gradients; random methods prune exactly the
requested count, reproducibly, and only what is still unpruned."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ember
from ember.nn.utils import prune

torch = pytest.importorskip("torch")
tprune = pytest.importorskip("torch.nn.utils.prune")


def _pair(kind="linear", seed=0):
    rng = np.random.default_rng(seed)
    if kind == "linear":
        e, t = ember.nn.Linear(6, 4), torch.nn.Linear(6, 4)
    else:
        e, t = ember.nn.Conv2d(3, 5, 3), torch.nn.Conv2d(3, 5, 3)
    for name, p in t.named_parameters():
        w = rng.standard_normal(tuple(p.shape)).astype(np.float32)
        p.data = torch.tensor(w)
        getattr(e, name).data = ember.tensor(w)
    return e, t


def _same_state(e, t):
    es, ts = e.state_dict(), t.state_dict()
    assert list(es) == list(ts)
    for k in ts:
        np.testing.assert_array_equal(es[k].numpy(), ts[k].numpy(), err_msg=k)
    np.testing.assert_array_equal(e.weight.detach().numpy(), t.weight.detach().numpy())


@pytest.mark.parametrize(
    "kind, steps",
    [
        ("linear", [("l1", {"amount": 0.3})]),
        ("linear", [("l1", {"amount": 7})]),
        ("conv", [("ln", {"amount": 2, "n": 2, "dim": 0})]),
        ("conv", [("ln", {"amount": 0.4, "n": 1, "dim": 1})]),
        ("linear", [("ln", {"amount": 1, "n": math.inf, "dim": -1})]),
        # chained: a PruningContainer; the second method only sees what the first left
        ("conv", [("l1", {"amount": 0.5}), ("ln", {"amount": 1, "n": 2, "dim": 0})]),
        ("linear", [("ln", {"amount": 1, "n": 2, "dim": 0}), ("l1", {"amount": 0.25})]),
        ("linear", [("identity", {}), ("l1", {"amount": 3})]),
    ],
)
def test_masks_and_reparametrization_match_torch(kind, steps):
    e, t = _pair(kind)
    fns = {
        "l1": (prune.l1_unstructured, tprune.l1_unstructured),
        "ln": (prune.ln_structured, tprune.ln_structured),
        "identity": (prune.identity, tprune.identity),
    }
    for fn, kwargs in steps:
        fns[fn][0](e, "weight", **kwargs)
        fns[fn][1](t, "weight", **kwargs)
    _same_state(e, t)
    assert sorted(n for n, _ in e.named_parameters()) == sorted(n for n, _ in t.named_parameters())
    x = np.random.default_rng(1).standard_normal((2, 6) if kind == "linear" else (2, 3, 6, 6))
    ey, ty = e(ember.tensor(x.astype(np.float32))), t(torch.tensor(x.astype(np.float32)))
    np.testing.assert_allclose(ey.detach().numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    ey.sum().backward()
    ty.sum().backward()
    np.testing.assert_allclose(
        e.weight_orig.grad.numpy(), t.weight_orig.grad.numpy(), rtol=1e-5, atol=1e-6
    )
    assert (e.weight_orig.grad.numpy()[e.weight_mask.numpy() == 0] == 0).all()
    assert prune.is_pruned(e)
    prune.remove(e, "weight")
    tprune.remove(t, "weight")
    _same_state(e, t)
    assert not prune.is_pruned(e) and isinstance(e.weight, ember.nn.Parameter)


def test_global_unstructured_and_custom_mask_match_torch():
    (e1, t1), (e2, t2) = _pair("linear", 0), _pair("conv", 1)
    prune.custom_from_mask(e1, "bias", ember.tensor([1.0, 0.0, 1.0, 0.0]))
    tprune.custom_from_mask(t1, "bias", torch.tensor([1.0, 0.0, 1.0, 0.0]))
    params_e = [(e1, "weight"), (e1, "bias"), (e2, "weight")]
    params_t = [(t1, "weight"), (t1, "bias"), (t2, "weight")]
    prune.global_unstructured(params_e, prune.L1Unstructured, amount=0.4)
    tprune.global_unstructured(params_t, tprune.L1Unstructured, amount=0.4)
    _same_state(e1, t1)
    _same_state(e2, t2)


@pytest.mark.parametrize(
    "method, kwargs", [("random_unstructured", {}), ("random_structured", {"dim": 0})]
)
def test_random_methods_prune_the_count_reproducibly(method, kwargs):
    def run():
        ember.manual_seed(5)
        e, _ = _pair("conv")
        getattr(prune, method)(e, "weight", amount=2, **kwargs)
        return e.weight_mask.numpy()

    a, b = run(), run()
    np.testing.assert_array_equal(a, b)
    if method == "random_unstructured":
        assert (a == 0).sum() == 2
    else:  # two whole output channels
        assert [bool((a[c] == 0).all()) for c in range(5)].count(True) == 2
        assert all((a[c] == 0).all() or (a[c] == 1).all() for c in range(5))


def test_chained_random_pruning_only_takes_unpruned_entries():
    ember.manual_seed(0)
    e, _ = _pair("linear")
    prune.l1_unstructured(e, "weight", amount=10)
    first = e.weight_mask.numpy().copy()
    prune.random_unstructured(e, "weight", amount=5)
    second = e.weight_mask.numpy()
    assert (second[first == 0] == 0).all() and (second == 0).sum() == 15
    assert isinstance(next(iter(e._forward_pre_hooks.values())), prune.PruningContainer)


def test_bad_input_names_the_problem_and_leaves_the_module_alone():
    e, _ = _pair("linear")
    with pytest.raises(ValueError, match="amount=25 should be smaller than the number"):
        prune.l1_unstructured(e, "weight", amount=25)
    assert [n for n, _ in e.named_parameters()] == ["weight", "bias"]
    with pytest.raises(ValueError, match="float in the range"):
        prune.l1_unstructured(e, "weight", amount=1.5)
    with pytest.raises(TypeError, match="Must be int or float"):
        prune.l1_unstructured(e, "weight", amount="half")
    with pytest.raises(ValueError, match="multidimensional"):
        prune.ln_structured(e, "bias", amount=1, n=2, dim=0)
    with pytest.raises(ValueError, match="has to be pruned before"):
        prune.remove(e, "weight")
    with pytest.raises(AttributeError, match="'nope'"):
        prune.l1_unstructured(e, "nope", amount=1)
    with pytest.raises(TypeError, match='only "unstructured"'):
        prune.global_unstructured([(e, "weight")], prune.LnStructured, amount=1, n=2, dim=0)


def test_a_failed_second_pruning_keeps_the_first():
    e, _ = _pair("linear")
    prune.l1_unstructured(e, "weight", amount=4)
    mask = e.weight_mask.numpy().copy()
    with pytest.raises(ValueError, match="amount=30"):
        prune.l1_unstructured(e, "weight", amount=30)
    np.testing.assert_array_equal(e.weight_mask.numpy(), mask)
    hooks = list(e._forward_pre_hooks.values())
    assert len(hooks) == 1 and isinstance(hooks[0], prune.L1Unstructured)
    out = e(ember.ones(1, 6))  # still pruned in forward
    assert out.shape == (1, 4) and (e.weight.detach().numpy()[mask == 0] == 0).all()
