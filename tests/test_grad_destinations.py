"""Gradient destinations: a parameter's first gradient of a backward written straight into a
preallocated array (how DDP's buckets avoid a copy), and never where it must not be."""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn as nn
from ember.autograd import engine


@pytest.fixture
def linear():
    ember.manual_seed(0)
    lin = nn.Linear(4, 3)
    dests = {p: np.full(p.shape, np.nan, dtype=np.float32) for p in lin.parameters()}
    for p, d in dests.items():
        p._grad_dest = d
    engine.grad_destination_users += 1
    yield lin, dests
    engine.grad_destination_users -= 1
    for p in lin.parameters():
        p._grad_dest = None


def _expected(lin, x):
    ref = nn.Linear(4, 3)
    ref.load_state_dict(lin.state_dict())
    ref(x).pow(2).sum().backward()
    return {n: p.grad.numpy() for n, p in ref.named_parameters()}


def test_first_gradient_lands_in_the_destination(linear):
    lin, dests = linear
    x = ember.randn(5, 4)
    want = _expected(lin, x)
    lin(x).pow(2).sum().backward()
    for name, p in lin.named_parameters():
        assert p.grad._data is dests[p]  # no copy: the array itself
        np.testing.assert_allclose(p.grad.numpy(), want[name], rtol=1e-6)
    lin(x).pow(2).sum().backward()  # a second backward accumulates into it, as always
    for name, p in lin.named_parameters():
        assert p.grad._data is dests[p]
        np.testing.assert_allclose(p.grad.numpy(), 2 * want[name], rtol=1e-6)


def test_autograd_grad_and_hooks_leave_destinations_alone(linear):
    lin, dests = linear
    x = ember.randn(5, 4)
    loss = lin(x).pow(2).sum()
    gw, gb = ember.autograd.grad(loss, [lin.weight, lin.bias], retain_graph=True)
    assert all(np.isnan(d).all() for d in dests.values())  # nothing written
    assert gw._data is not dests[lin.weight] and lin.weight.grad is None
    lin.weight.register_hook(lambda g: g * 2)  # a tensor hook may replace the gradient
    loss.backward()
    assert lin.weight.grad._data is not dests[lin.weight]
    np.testing.assert_allclose(lin.weight.grad.numpy(), 2 * gw.numpy(), rtol=1e-6)
    assert lin.bias.grad._data is dests[lin.bias]


def test_without_users_the_engine_does_not_look(linear, monkeypatch):
    lin, dests = linear
    monkeypatch.setattr(engine, "grad_destination_users", 0)  # (other tests' DDPs may live)
    lin(ember.randn(5, 4)).sum().backward()
    assert all(p.grad._data is not dests[p] for p in lin.parameters())


def test_a_parameter_used_twice_gets_its_full_gradient(linear):
    # two Linear nodes share the weight: neither may write into the destination alone
    lin, dests = linear
    x1, x2 = ember.randn(5, 4), ember.randn(2, 4)
    ref = nn.Linear(4, 3)
    ref.load_state_dict(lin.state_dict())
    (ref(x1).pow(2).sum() + ref(x2).sum()).backward()
    (lin(x1).pow(2).sum() + lin(x2).sum()).backward()
    for (name, p), (_, q) in zip(lin.named_parameters(), ref.named_parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, err_msg=name)
