"""Tensor basics: creation, dtypes, devices, conversions, repr, errors, RNG."""

import copy
import pickle

import numpy as np
import pytest

import ember


def test_tensor_infers_pytorch_dtypes():
    assert ember.tensor([1.0, 2.0]).dtype is ember.float32
    assert ember.tensor([1, 2]).dtype is ember.int64
    assert ember.tensor([True]).dtype is ember.bool
    assert ember.tensor(np.zeros(2)).dtype is ember.float64  # numpy dtype kept
    assert ember.tensor([1, 2], dtype=ember.float16).dtype is ember.float16


def test_default_dtype_roundtrip():
    ember.set_default_dtype(ember.float64)
    try:
        assert ember.tensor([1.5]).dtype is ember.float64
        assert ember.zeros(2).dtype is ember.float64
    finally:
        ember.set_default_dtype(ember.float32)
    with pytest.raises(TypeError, match="floating-point"):
        ember.set_default_dtype(ember.int64)


def test_creation_functions():
    assert ember.zeros(2, 3).shape == (2, 3)
    assert ember.ones((2, 3)).sum().item() == 6
    assert ember.full((2,), 7).dtype is ember.int64
    assert ember.full((2,), 7.0).tolist() == [7.0, 7.0]
    assert ember.arange(5).tolist() == [0, 1, 2, 3, 4]
    assert ember.arange(0, 1, 0.25).tolist() == [0.0, 0.25, 0.5, 0.75]
    assert ember.linspace(0, 1, 5).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert ember.eye(3).sum().item() == 3
    assert ember.empty(4).shape == (4,)
    x = ember.randn(3, 4)
    assert ember.zeros_like(x).shape == x.shape and ember.ones_like(x).dtype is ember.float32
    assert sorted(ember.randperm(6).tolist()) == list(range(6))
    r = ember.randint(0, 5, (100,))
    assert r.dtype is ember.int64 and 0 <= r.min().item() and r.max().item() < 5
    assert ember.normal(ember.zeros(3), ember.ones(3)).shape == (3,)
    with pytest.raises(RuntimeError, match="negative dimension"):
        ember.zeros(-1)


def test_manual_seed_reproduces_and_generator_state_roundtrip():
    ember.manual_seed(123)
    a = ember.randn(5)
    ember.manual_seed(123)
    assert ember.equal(a, ember.randn(5))
    state = ember.get_rng_state()
    b = ember.rand(3)
    ember.set_rng_state(state)
    assert ember.equal(b, ember.rand(3))
    g = ember.Generator().manual_seed(7)
    c = ember.randn(4, generator=g)
    g.manual_seed(7)
    assert ember.equal(c, ember.randn(4, generator=g))


def test_numpy_bridge_shares_memory():
    arr = np.zeros(3, dtype=np.float32)
    t = ember.from_numpy(arr)
    t.add_(1)
    assert arr.tolist() == [1.0, 1.0, 1.0]
    t.numpy()[0] = 5
    assert t[0].item() == 5
    with pytest.raises(RuntimeError, match="Can't call numpy\\(\\) on Tensor that requires grad"):
        ember.zeros(2, requires_grad=True).numpy()
    with pytest.raises(TypeError, match="can't convert np.ndarray of type"):
        ember.from_numpy(np.zeros(2, dtype="datetime64[s]"))  # (uint32 converts, as in torch)


def test_item_tolist_and_scalar_conversions():
    assert ember.tensor([[1, 2]]).tolist() == [[1, 2]]
    assert ember.tensor(2.5).item() == 2.5
    assert float(ember.tensor([3.0])) == 3.0
    with pytest.raises(RuntimeError, match="a Tensor with 2 elements cannot be converted"):
        ember.tensor([1.0, 2.0]).item()
    with pytest.raises(RuntimeError, match="Boolean value of Tensor with more than one value"):
        bool(ember.tensor([1, 2]))


def test_to_and_dtype_shortcuts():
    x = ember.tensor([1.7, -2.2], requires_grad=True)
    assert x.double().dtype is ember.float64
    assert x.long().tolist() == [1, -2]
    assert x.to(ember.float16).dtype is ember.float16
    assert x.to("cpu") is x
    assert x.to("cpu", copy=True) is not x
    y = x.double() * 2
    y.sum().backward()
    assert x.grad.dtype is ember.float32 and x.grad.tolist() == [2.0, 2.0]
    assert x.bool().dtype is ember.bool and x.half().dtype is ember.float16


def test_attributes():
    x = ember.zeros(2, 3, 4)
    assert x.size() == (2, 3, 4) and x.size(-1) == 4 and x.dim() == 3 and x.ndim == 3
    assert x.numel() == 24 and x.shape.numel() == 24
    assert x.device == ember.device("cpu") and str(x.device) == "cpu"
    assert x.is_leaf and not x.requires_grad and x.grad is None and x.grad_fn is None
    assert x.T.shape == (4, 3, 2) and x.mT.shape == (2, 4, 3)
    assert x.is_contiguous() and not x.transpose(0, 1).is_contiguous()
    assert x.stride() == (12, 4, 1)
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.size(3)


def test_view_requires_compatible_layout():
    x = ember.arange(6).reshape(2, 3)
    assert x.view(3, 2).shape == (3, 2)
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        x.t().view(6)
    assert x.t().reshape(6).tolist() == [0, 3, 1, 4, 2, 5]
    with pytest.raises(RuntimeError, match="shape '\\[4\\]' is invalid for input of size 6"):
        x.view(4)


def test_repr_like_pytorch():
    assert (
        repr(ember.tensor([[1.0, 2.0]], requires_grad=True))
        == "tensor([[1., 2.]], requires_grad=True)"
    )
    assert repr(ember.tensor([1.5, 2.0])) == "tensor([1.5000, 2.0000])"
    assert repr(ember.tensor([1, 2])) == "tensor([1, 2])"
    assert repr(ember.tensor(3.0)) == "tensor(3.)"
    assert repr(ember.tensor([1.0], dtype=ember.float64)) == "tensor([1.], dtype=ember.float64)"
    assert repr(ember.tensor([True, False])) == "tensor([ True, False])"
    x = ember.ones(2, requires_grad=True)
    assert repr(x * 2) == "tensor([2., 2.], grad_fn=<MulBackward0>)"


def test_len_iter_index():
    x = ember.arange(6).reshape(3, 2)
    assert len(x) == 3
    assert [r.tolist() for r in x] == [[0, 1], [2, 3], [4, 5]]
    assert [10, 20, 30][ember.tensor(1)] == 20
    with pytest.raises(TypeError, match="len\\(\\) of a 0-d tensor"):
        len(ember.tensor(1.0))


def test_pickle_and_deepcopy():
    x = ember.randn(3, requires_grad=True)
    y = pickle.loads(pickle.dumps(x))
    assert ember.equal(x.detach(), y.detach()) and y.requires_grad
    z = copy.deepcopy(x)
    assert z is not x and ember.equal(z.detach(), x.detach())
    with pytest.raises(RuntimeError, match="graph leaves"):
        copy.deepcopy(x * 2)


def test_devices():
    assert ember.device("cuda:1").index == 1 and ember.device("cuda", 0).type == "cuda"
    assert str(ember.device("cpu")) == "cpu" and ember.device("cpu") == "cpu"
    with pytest.raises(RuntimeError, match="Expected one of cpu, cuda"):
        ember.device("tpu")
    if not ember.cuda.is_available():
        assert ember.cuda.device_count() == 0
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            ember.zeros(2, device="cuda")


def test_bfloat16_if_available():
    if ember.bfloat16 is None:
        pytest.skip("ml_dtypes not installed")
    x = ember.tensor([1.0, 2.5], dtype=ember.bfloat16)
    assert x.dtype is ember.bfloat16 and (x * 2).float().tolist() == [2.0, 5.0]


def test_scalar_type_promotion():
    i32 = ember.tensor([1, 2], dtype=ember.int32)
    assert (i32 + 2.5).dtype is ember.float32
    assert (i32 + 2).dtype is ember.int32
    assert (i32 + ember.tensor([1])).dtype is ember.int64
    assert (
        ember.ones(2, dtype=ember.float16) + ember.tensor(1.0, dtype=ember.float64)
    ).dtype is ember.float16
    assert (ember.tensor([True]) + 1).dtype is ember.int64
    assert (ember.tensor([1, 2]) / 2).dtype is ember.float32


def test_set_num_threads():
    before = ember.get_num_threads()
    ember.set_num_threads(1)
    assert ember.get_num_threads() == 1
    ember.set_num_threads(before)
    assert ember.get_num_threads() == before
    with pytest.raises(ValueError, match="positive integer"):
        ember.set_num_threads(0)


@pytest.mark.parametrize("threads", [1, 2])
def test_parallel_apply_runs_in_cache_sized_pieces_bitwise_equal(threads):
    import numpy as np

    from ember.backend import threads as th

    calls = []

    def update(a, b):
        calls.append(a.size)
        a *= 0.9
        a += b * 0.1

    rng = np.random.default_rng(0)
    a = rng.standard_normal(200_003).astype(np.float32)
    b = rng.standard_normal(200_003).astype(np.float32)
    want = a.copy()
    update(want, b)
    calls.clear()
    before = ember.get_num_threads()
    ember.set_num_threads(threads)
    try:
        th.parallel_apply(update, a, b)
    finally:
        ember.set_num_threads(before)
    np.testing.assert_array_equal(a, want)
    piece = th._PIECE_BYTES // 4
    assert sum(calls) == a.size and max(calls) == piece  # every element once, in pieces
    slices = (a.size,) if threads == 1 else (100_001, 100_002)  # one slice per thread
    assert len(calls) == sum(-(-n // piece) for n in slices)
    # small, strided or mixed-size operands are updated whole
    calls.clear()
    th.parallel_apply(update, a[::2].copy()[:1000], b[:1000])
    th.parallel_apply(update, a[::2], b[::2])
    assert calls == [1000, a[::2].size]


def test_numpy_operands_defer_to_tensors():
    t = ember.ones(2, requires_grad=True)
    r = np.float32(2) * t  # as in PyTorch: a tensor, still in the graph
    assert isinstance(r, ember.Tensor) and r.requires_grad and r.tolist() == [2.0, 2.0]
    # PyTorch 2.13 raises for ndarray + tensor; ember promotes the array as a tensor
    assert (np.array([1.0, 2.0]) + t).dtype is ember.float64
    assert (np.array([1.0, 2.0], dtype=np.float32) + t).dtype is ember.float32
