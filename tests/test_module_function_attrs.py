"""A function of the library as a class attribute of a module subclass is called, not bound:
``class Block(nn.Module): act = torch.tanh`` then ``self.act(x)`` is ``tanh(x)`` in torch
(its functions are builtins) and in ember."""

from __future__ import annotations

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _block(lib):
    nn, F = lib.nn, lib.nn.functional

    class Block(nn.Module):
        act = F.gelu
        squash = lib.tanh
        join = lib.cat
        norm = lib.linalg.norm

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            h = self.squash(self.act(self.fc(x)))
            return self.join([h, h], dim=1) / self.norm(h)

    return Block


def test_functions_as_class_attributes_are_not_bound():
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    tb, eb = _block(torch)(), _block(ember)()
    eb.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in tb.state_dict().items()})
    out, ref = eb(ember.tensor(x)), tb(torch.tensor(x))
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert type(eb).act is ember.nn.functional.gelu  # read from the class: the function itself


def test_methods_and_other_classes_keep_pythons_rule():
    def scale(self, x):  # a function written as a method still binds
        return x * self.k

    class M(ember.nn.Module):
        k = 2.0
        double = scale

    assert M().double(ember.ones(1)).item() == 2.0

    class Plain:  # not a module: ember's functions bind here (torch's builtins would not)
        act = ember.tanh

    with pytest.raises(TypeError):
        Plain().act(ember.ones(1))
