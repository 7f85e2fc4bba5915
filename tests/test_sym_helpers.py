"""``torch.sym_*``, ``nonzero_static`` and ``OutOfMemoryError`` against torch's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ember


@pytest.mark.parametrize(
    "name, args",
    [
        ("sym_int", (2.7,)),
        ("sym_int", (-2.7,)),
        ("sym_int", (7,)),
        ("sym_float", (3,)),
        ("sym_max", (2, 5.0)),
        ("sym_min", (2, 5)),
        ("sym_not", (True,)),
        ("sym_sqrt", (4,)),
        ("sym_ite", (False, 1, 2)),
        ("sym_sum", ([1, 2, 3],)),
    ],
)
def test_sym_helpers_on_numbers_match_torch(name, args):
    ours, theirs = getattr(ember, name)(*args), getattr(torch, name)(*args)
    assert ours == theirs and type(ours) is type(theirs)


def test_sym_max_of_sizes_stays_symbolic_in_a_compiled_function():
    @ember.compile(dynamic=True, fullgraph=True)
    def pad_to(x):
        return x.new_zeros(ember.sym_max(x.size(0), 4), x.size(1))

    for n in (2, 6, 9):
        assert tuple(pad_to(ember.ones(n, 3)).shape) == (max(n, 4), 3)


@pytest.mark.parametrize("size, fill", [(4, -1), (1, 9), (0, -1), (6, 0)])
def test_nonzero_static_matches_torch(size, fill):
    data = np.array([[0, 1, 0], [2, 0, 3]])
    for arr in (data, data.ravel(), np.array(5), np.zeros((2, 2))):
        ours = ember.nonzero_static(ember.tensor(arr), size=size, fill_value=fill)
        theirs = torch.nonzero_static(torch.tensor(arr), size=size, fill_value=fill)
        assert ours.dtype == ember.int64 and ours.tolist() == theirs.tolist()
        assert tuple(ours.shape) == tuple(theirs.shape)
    assert ember.tensor(data).nonzero_static(size=2).tolist() == [[0, 1], [1, 0]]
    with pytest.raises(RuntimeError, match="non-negative int"):
        ember.nonzero_static(ember.tensor(data), size=-1)


def test_out_of_memory_error_is_one_runtime_error_class():
    assert ember.cuda.OutOfMemoryError is ember.OutOfMemoryError
    assert issubclass(ember.OutOfMemoryError, RuntimeError)
    try:  # the idiom: fall back to a smaller batch when the device runs out of memory
        raise ember.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    except ember.OutOfMemoryError as err:
        assert "Tried to allocate" in str(err)
