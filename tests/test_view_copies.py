"""The ``*_copy`` twins of the view ops: torch's values, fresh memory, gradients as the view's."""

from __future__ import annotations

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

CASES = [
    ("alias_copy", ()),
    ("as_strided_copy", ((2, 2), (1, 2))),
    ("detach_copy", ()),
    ("diagonal_copy", (0, 0, 1)),
    ("expand_copy", ((2, 3, 4),)),
    ("permute_copy", ((1, 0),)),
    ("select_copy", (1, 2)),
    ("slice_copy", (1, 1, 4, 2)),
    ("split_copy", (2, 1)),
    ("split_with_sizes_copy", ([1, 3], 1)),
    ("squeeze_copy", ()),
    ("t_copy", ()),
    ("transpose_copy", (0, 1)),
    ("unbind_copy", (0,)),
    ("unfold_copy", (1, 2, 1)),
    ("unsqueeze_copy", (1,)),
    ("view_copy", ((4, 3),)),
]


@pytest.mark.parametrize("name,args", CASES, ids=[c[0] for c in CASES])
def test_copy_twins_match_torch(name, args):
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    ex, tx = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    eo, to = getattr(ember, name)(ex, *args), getattr(torch, name)(tx, *args)
    eo = eo if isinstance(eo, (list, tuple)) else [eo]
    to = to if isinstance(to, (list, tuple)) else [to]
    assert len(eo) == len(to)
    for e, t in zip(eo, to):
        np.testing.assert_array_equal(e.detach().numpy(), t.detach().numpy())
        assert not np.shares_memory(e.detach().numpy(), ex.detach().numpy())
    if name != "detach_copy":
        sum(o.sum() for o in eo).backward()
        sum(o.sum() for o in to).backward()
        np.testing.assert_array_equal(ex.grad.numpy(), tx.grad.numpy())


def test_complex_view_copies():
    z = np.array([1 + 2j, 3 - 1j], dtype=np.complex64)
    r = ember.view_as_real_copy(ember.tensor(z))
    np.testing.assert_array_equal(r.numpy(), torch.view_as_real_copy(torch.tensor(z)).numpy())
    back = ember.view_as_complex_copy(r)
    np.testing.assert_array_equal(back.numpy(), z)
