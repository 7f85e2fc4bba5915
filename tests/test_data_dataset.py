"""ember.utils.data datasets, random_split and collation (checked against torch)."""

from __future__ import annotations

import collections

import numpy as np
import pytest

import ember
from ember.utils.data import (
    ChainDataset,
    ConcatDataset,
    Dataset,
    IterableDataset,
    StackDataset,
    Subset,
    TensorDataset,
    default_collate,
    default_convert,
    random_split,
)


class Range(Dataset):
    def __init__(self, n, offset=0):
        self.n, self.offset = n, offset

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.offset + i


class Stream(IterableDataset):
    def __init__(self, values):
        self.values = values

    def __iter__(self):
        return iter(self.values)

    def __len__(self):
        return len(self.values)


def test_tensor_dataset_rows_and_errors():
    x, y = ember.arange(12).reshape(4, 3), ember.tensor([0, 1, 0, 1])
    ds = TensorDataset(x, y)
    assert len(ds) == 4
    a, b = ds[2]
    assert a.tolist() == [6, 7, 8] and b.item() == 0
    assert ds[-1][0].tolist() == [9, 10, 11]
    with pytest.raises(AssertionError, match="Size mismatch between tensors"):
        TensorDataset(x, ember.zeros(3))
    with pytest.raises(TypeError, match="expects tensors"):
        TensorDataset(x, [1, 2, 3, 4])


def test_tensor_dataset_keeps_graph_for_tensors_requiring_grad():
    w = ember.ones(3, 2, requires_grad=True)
    (row,) = TensorDataset(w)[1]
    row.sum().backward()
    assert w.grad.tolist() == [[0, 0], [1, 1], [0, 0]]


def test_concat_dataset_and_add():
    ds = Range(3) + Range(4, offset=100)
    assert isinstance(ds, ConcatDataset) and len(ds) == 7
    assert [ds[i] for i in range(7)] == [0, 1, 2, 100, 101, 102, 103]
    assert ds[-1] == 103 and ds[-7] == 0
    with pytest.raises(ValueError, match="absolute value of index"):
        ds[-8]
    with pytest.raises(IndexError):
        ds[7]
    with pytest.raises(AssertionError, match="empty iterable"):
        ConcatDataset([])
    with pytest.raises(AssertionError, match="does not support IterableDataset"):
        ConcatDataset([Range(2), Stream([1])])


def test_chain_dataset():
    ds = Stream([1, 2]) + Stream([3])
    assert isinstance(ds, ChainDataset)
    assert list(ds) == [1, 2, 3] and len(ds) == 3
    with pytest.raises(AssertionError, match="only supports IterableDataset"):
        list(ChainDataset([Range(2)]))


def test_subset_and_getitems():
    ds = Subset(Range(10), [9, 0, 5])
    assert len(ds) == 3 and [ds[i] for i in range(3)] == [9, 0, 5]
    assert ds.__getitems__([2, 0]) == [5, 9]


def test_stack_dataset_tuple_and_dict():
    a, b = Range(3), Range(3, offset=10)
    assert StackDataset(a, b)[1] == (1, 11)
    assert StackDataset(x=a, y=b)[2] == {"x": 2, "y": 12}
    assert StackDataset(x=a, y=Subset(b, [2, 1, 0])).__getitems__([0, 2]) == [
        {"x": 0, "y": 12},
        {"x": 2, "y": 10},
    ]
    assert StackDataset(a, b).__getitems__([0, 2]) == [(0, 10), (2, 12)]
    with pytest.raises(ValueError, match="Size mismatch"):
        StackDataset(a, Range(4))
    with pytest.raises(ValueError, match="both types are given"):
        StackDataset(a, y=b)
    with pytest.raises(ValueError, match="At least one dataset"):
        StackDataset()


def test_random_split_lengths_and_fractions_are_reproducible():
    ds = Range(10)
    g = ember.Generator().manual_seed(3)
    parts = random_split(ds, [3, 7], generator=g)
    assert [len(p) for p in parts] == [3, 7]
    values = sorted(v for p in parts for v in (p[i] for i in range(len(p))))
    assert values == list(range(10))
    again = random_split(ds, [3, 7], generator=ember.Generator().manual_seed(3))
    assert parts[0].indices == again[0].indices
    # Fractions: floor, then the remainder round-robin (PyTorch's rule): 10 * [.33, .33, .34].
    assert [len(p) for p in random_split(Range(10), [0.33, 0.33, 0.34])] == [4, 3, 3]
    ember.manual_seed(0)
    a = random_split(ds, [0.5, 0.5])[0].indices
    ember.manual_seed(0)
    assert random_split(ds, [0.5, 0.5])[0].indices == a
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(ds, [3, 3])
    with pytest.warns(UserWarning, match="Length of split at index 1 is 0"):
        random_split(Range(2), [1.0, 0.0])


def test_random_split_matches_torch_lengths():
    torch = pytest.importorskip("torch")
    for n, fracs in [(10, [0.33, 0.33, 0.34]), (7, [0.5, 0.5]), (101, [0.8, 0.1, 0.1])]:
        ours = [len(p) for p in random_split(Range(n), fracs)]
        theirs = [len(p) for p in torch.utils.data.random_split(range(n), fracs)]
        assert ours == theirs


Point = collections.namedtuple("Point", ["x", "y"])


def _to_py(obj):
    """Nested structure with ember/torch tensors replaced by (dtype name, list)."""
    if hasattr(obj, "tolist") and hasattr(obj, "dtype"):
        return (str(obj.dtype).split(".")[-1], obj.tolist())
    if isinstance(obj, dict):
        return {k: _to_py(v) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return (type(obj).__name__, [_to_py(v) for v in obj])
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, [_to_py(v) for v in obj])
    return obj


def _batches(make_tensor):
    return [
        [make_tensor([1.0, 2.0]), make_tensor([3.0, 4.0])],
        [np.array([1, 2], dtype=np.int32), np.array([3, 4], dtype=np.int32)],
        [np.float32(1.5), np.float32(2.5)],
        [np.int32(1), np.int32(7)],
        [np.bool_(True), np.bool_(False)],
        [1.5, 2.5],
        [1, 2],
        [True, False],
        ["a", "b"],
        [b"x", b"y"],
        [{"a": 1, "b": [1.0, 2.0]}, {"a": 2, "b": [3.0, 4.0]}],
        [(1, "x"), (2, "y")],
        [[1, 2.0], [3, 4.0]],
        [Point(1, 2.0), Point(3, 4.0)],
        [(np.zeros((2, 2), dtype=np.uint8), {"k": (1, 2)})] * 3,
    ]


def test_default_collate_matches_torch():
    torch = pytest.importorskip("torch")
    from torch.utils.data import default_collate as torch_collate

    ours_in = _batches(lambda v: ember.tensor(v))
    theirs_in = _batches(lambda v: torch.tensor(v))
    for a, b in zip(ours_in, theirs_in):
        assert _to_py(default_collate(a)) == _to_py(torch_collate(b)), a


def test_default_convert_matches_torch():
    pytest.importorskip("torch")
    from torch.utils.data import default_convert as torch_convert

    samples = [
        np.arange(3),
        np.float64(2.0),
        {"a": np.ones(2, dtype=np.float32), "b": "s"},
        (np.int32(3), [np.zeros(1)]),
        Point(np.ones(1), 2),
        "text",
        3,
        np.array(["a", "b"]),
    ]
    for s in samples:
        ours, theirs = default_convert(s), torch_convert(s)
        if isinstance(s, np.ndarray) and s.dtype.kind == "U":
            assert ours is s and theirs is s
            continue
        assert _to_py(ours) == _to_py(theirs), s


def test_default_collate_errors():
    with pytest.raises(RuntimeError, match="each element in list of batch should be of equal"):
        default_collate([[1, 2], [3]])
    with pytest.raises(
        RuntimeError,
        match=r"stack expects each tensor to be equal size, but got "
        r"\[2\] at entry 0 and \[3\] at entry 1",
    ):
        default_collate([ember.zeros(2), ember.zeros(3)])
    with pytest.raises(TypeError, match="default_collate: batch must contain tensors"):
        default_collate([object(), object()])
    with pytest.raises(TypeError, match="found <U1"):
        default_collate([np.array(["a"]), np.array(["b"])])


def test_default_collate_keeps_mapping_type():
    batch = default_collate([collections.OrderedDict(a=1), collections.OrderedDict(a=2)])
    assert isinstance(batch, collections.OrderedDict) and batch["a"].tolist() == [1, 2]
