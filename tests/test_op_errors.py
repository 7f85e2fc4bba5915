"""Error messages of the foundation ops: bad input gets PyTorch's exception type and wording.

Each case is written once for both frameworks (``m`` is ember or torch). The expected message
is ember's exact text; where torch is installed, torch must raise the same type with the same
text once "torch." is read as "ember.".
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import ember


def _F(m):
    return m.nn.functional if m.__name__ == "torch" else m


def _ones(m, *shape, **kw):
    return m.ones(*shape, **kw)


def _backward_twice(m):
    y = (m.ones(2, requires_grad=True) * 2).sum()
    y.backward()
    y.backward()


def _setitem(m):
    x = m.ones(2, 3)
    x[0] = m.ones(4)


_BROADCAST = (
    "The size of tensor a ({}) must match the size of tensor b ({}) at non-singleton dimension {}"
)
_DIM = "Dimension out of range (expected to be in range of [{}, {}], but got {})"

CASES = {
    # -- matmul family: both shapes, as PyTorch folds them --
    "matmul": (
        lambda m: m.ones(2, 3) @ m.ones(4, 5),
        RuntimeError,
        "mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)",
    ),
    "mm": (
        lambda m: m.mm(m.ones(2, 3), m.ones(4, 5)),
        RuntimeError,
        "mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)",
    ),
    "matmul_folded": (
        lambda m: m.ones(2, 2, 3) @ m.ones(4, 5),
        RuntimeError,
        "mat1 and mat2 shapes cannot be multiplied (4x3 and 4x5)",
    ),
    "matmul_vector_matrix": (
        lambda m: m.ones(3) @ m.ones(4, 5),
        RuntimeError,
        "mat1 and mat2 shapes cannot be multiplied (1x3 and 4x5)",
    ),
    "matmul_matrix_vector": (
        lambda m: m.ones(2, 3) @ m.ones(4),
        RuntimeError,
        "size mismatch, got input (2), mat (2x3), vec (4)",
    ),
    "matmul_batched": (
        lambda m: m.ones(3, 2, 2, 3) @ m.ones(2, 4, 5),
        RuntimeError,
        "Expected size for first two dimensions of batch2 tensor to be: [6, 3] but got: [6, 4].",
    ),
    "matmul_batch_dims": (
        lambda m: m.ones(2, 3, 3) @ m.ones(4, 3, 5),
        RuntimeError,
        _BROADCAST.format(2, 4, 0),
    ),
    "matmul_0d": (
        lambda m: m.matmul(m.ones(()), m.ones(2, 2)),
        RuntimeError,
        "both arguments to matmul need to be at least 1D, but they are 0D and 2D",
    ),
    "dot_sizes": (
        lambda m: m.dot(m.ones(2), m.ones(3)),
        RuntimeError,
        "inconsistent tensor size, expected tensor [2] and src [3] to have the same "
        "number of elements, but got 2 and 3 elements respectively",
    ),
    "dot_2d": (
        lambda m: m.dot(m.ones(2, 2), m.ones(2)),
        RuntimeError,
        "1D tensors expected, but got 2D and 1D tensors",
    ),
    "mm_vector": (lambda m: m.mm(m.ones(3), m.ones(3, 2)), RuntimeError, "self must be a matrix"),
    "bmm_batch": (
        lambda m: m.bmm(m.ones(2, 2, 3), m.ones(3, 3, 4)),
        RuntimeError,
        "Expected size for first two dimensions of batch2 tensor to be: [2, 3] but got: [3, 3].",
    ),
    "bmm_inner": (
        lambda m: m.bmm(m.ones(2, 2, 3), m.ones(2, 4, 4)),
        RuntimeError,
        "Expected size for first two dimensions of batch2 tensor to be: [2, 3] but got: [2, 4].",
    ),
    "bmm_2d": (
        lambda m: m.bmm(m.ones(2, 3), m.ones(2, 3, 4)),
        RuntimeError,
        "batch1 must be a 3D tensor",
    ),
    "outer_2d": (
        lambda m: m.outer(m.ones(2), m.ones(2, 2)),
        RuntimeError,
        "outer: Expected 1-D argument vec2, but got 2-D",
    ),
    "einsum_operands": (
        lambda m: m.einsum("ij,jk->ik", m.ones(2, 3)),
        RuntimeError,
        "einsum(): fewer operands were provided than specified in the equation",
    ),
    "einsum_dims": (
        lambda m: m.einsum("ij,ijk->i", m.ones(2, 3), m.ones(2, 3)),
        RuntimeError,
        "einsum(): the number of subscripts in the equation (3) does not match the "
        "number of dimensions (2) for operand 1 and no ellipsis was given",
    ),
    # -- broadcasting: the clashing sizes and the (result) dimension, checked from the right --
    "broadcast_add": (
        lambda m: m.ones(2, 3) + m.ones(4, 3),
        RuntimeError,
        _BROADCAST.format(2, 4, 0),
    ),
    "broadcast_rightmost": (
        lambda m: m.ones(2, 3) * m.ones(3, 4, 5),
        RuntimeError,
        _BROADCAST.format(3, 5, 2),
    ),
    "broadcast_sub": (lambda m: m.ones(2) - m.ones(3), RuntimeError, _BROADCAST.format(2, 3, 0)),
    "broadcast_div": (lambda m: m.ones(2) / m.ones(3), RuntimeError, _BROADCAST.format(2, 3, 0)),
    "broadcast_pow": (lambda m: m.ones(2) ** m.ones(3), RuntimeError, _BROADCAST.format(2, 3, 0)),
    "broadcast_maximum": (
        lambda m: m.maximum(m.ones(2), m.ones(3)),
        RuntimeError,
        _BROADCAST.format(2, 3, 0),
    ),
    "broadcast_compare": (
        lambda m: m.ones(2, 3) == m.ones(4, 3),
        RuntimeError,
        _BROADCAST.format(2, 4, 0),
    ),
    "broadcast_where": (
        lambda m: m.where(m.ones(2, 3) > 0, m.ones(4, 3), m.ones(3)),
        RuntimeError,
        _BROADCAST.format(2, 4, 0),
    ),
    "expand": (
        lambda m: m.ones(2, 3).expand(4, 4),
        RuntimeError,
        "The expanded size of the tensor (4) must match the existing size (3) at "
        "non-singleton dimension 1.  Target sizes: [4, 4].  Tensor sizes: [2, 3]",
    ),
    "expand_fewer_sizes": (
        lambda m: m.ones(2, 3).expand(3),
        RuntimeError,
        "expand(ember.FloatTensor{[2, 3]}, size=[3]): the number of sizes "
        "provided (1) must be greater or equal to the number of dimensions "
        "in the tensor (2)",
    ),
    "inplace_broadcast": (
        lambda m: m.ones(3).add_(m.ones(2, 3)),
        RuntimeError,
        "output with shape [3] doesn't match the broadcast shape [2, 3]",
    ),
    "setitem_value_shape": (
        _setitem,
        RuntimeError,
        "The expanded size of the tensor (3) must match the existing size "
        "(4) at non-singleton dimension 0.  Target sizes: [3].  Tensor "
        "sizes: [4]",
    ),
    # -- joins and splits --
    "cat_sizes": (
        lambda m: m.cat([m.ones(2, 3), m.ones(2, 4)]),
        RuntimeError,
        "Sizes of tensors must match except in dimension 0. Expected size 3 but got "
        "size 4 for tensor number 1 in the list.",
    ),
    "cat_dims": (
        lambda m: m.cat([m.ones(2, 3), m.ones(2)]),
        RuntimeError,
        "Tensors must have same number of dimensions: got 2 and 1",
    ),
    "cat_empty": (
        lambda m: m.cat([]),
        ValueError,
        "ember.cat(): expected a non-empty list of Tensors",
    ),
    "stack_sizes": (
        lambda m: m.stack([m.ones(2, 3), m.ones(2, 4)]),
        RuntimeError,
        "stack expects each tensor to be equal size, but got [2, 3] at entry 0 and "
        "[2, 4] at entry 1",
    ),
    "stack_empty": (lambda m: m.stack([]), RuntimeError, "stack expects a non-empty TensorList"),
    "split_sizes": (
        lambda m: m.ones(5).split([2, 2]),
        RuntimeError,
        "split_with_sizes expects split_sizes to sum exactly to 5 (input tensor's "
        "size at dimension 0), but got split_sizes=[2, 2]",
    ),
    "chunk_zero": (
        lambda m: m.ones(4).chunk(0),
        RuntimeError,
        "chunk expects `chunks` to be greater than 0, got: 0",
    ),
    "narrow": (
        lambda m: m.ones(5).narrow(0, 3, 4),
        RuntimeError,
        "start (3) + length (4) exceeds dimension size (5).",
    ),
    # -- views and shapes --
    "view_non_contiguous": (
        lambda m: m.ones(2, 3).t().view(6),
        RuntimeError,
        "view size is not compatible with input tensor's size and stride (at "
        "least one dimension spans across two contiguous subspaces). Use "
        ".reshape(...) instead.",
    ),
    "view_size": (
        lambda m: m.ones(2, 3).view(5),
        RuntimeError,
        "shape '[5]' is invalid for input of size 6",
    ),
    "reshape_size": (
        lambda m: m.ones(2, 3).reshape(4, -1),
        RuntimeError,
        "shape '[4, -1]' is invalid for input of size 6",
    ),
    "reshape_two_inferred": (
        lambda m: m.ones(2, 3).reshape(-1, -1),
        RuntimeError,
        "only one dimension can be inferred",
    ),
    "unflatten_sizes": (
        lambda m: m.ones(2, 6).unflatten(1, (4, 2)),
        RuntimeError,
        "unflatten: Provided sizes [4, 2] don't multiply up to the size of dim "
        "1 (6) in the input tensor",
    ),
    "flatten_order": (
        lambda m: m.ones(2, 3, 4).flatten(2, 1),
        RuntimeError,
        "flatten() has invalid args: start_dim cannot come after end_dim",
    ),
    "permute_length": (
        lambda m: m.ones(2, 3).permute(0),
        RuntimeError,
        "permute(sparse_coo): number of dimensions in the tensor input does not "
        "match the length of the desired ordering of dimensions i.e. input.dim() "
        "= 2 is not equal to len(dims) = 1",
    ),
    "permute_duplicate": (
        lambda m: m.ones(2, 3).permute(0, 0),
        RuntimeError,
        "permute(): duplicate dims are not allowed.",
    ),
    "repeat_fewer": (
        lambda m: m.ones(2, 3).repeat(2),
        RuntimeError,
        "Number of dimensions of repeat dims can not be smaller than number of "
        "dimensions of tensor",
    ),
    "t_3d": (
        lambda m: m.ones(2, 3, 4).t(),
        RuntimeError,
        "t() expects a tensor with <= 2 dimensions, but self is 3D",
    ),
    "pad_odd": (
        lambda m: _F(m).pad(m.ones(2, 3), (1,)),
        RuntimeError,
        "Padding length must be divisible by 2",
    ),
    # -- dim out of range --
    "dim_sum": (lambda m: m.ones(2, 3).sum(3), IndexError, _DIM.format(-2, 1, 3)),
    "dim_sum_negative": (lambda m: m.ones(2, 3).sum(-3), IndexError, _DIM.format(-2, 1, -3)),
    "dim_max": (lambda m: m.ones(2, 3).max(2), IndexError, _DIM.format(-2, 1, 2)),
    "dim_transpose": (lambda m: m.ones(2, 3).transpose(0, 2), IndexError, _DIM.format(-2, 1, 2)),
    "dim_unsqueeze": (lambda m: m.ones(2, 3).unsqueeze(3), IndexError, _DIM.format(-3, 2, 3)),
    "dim_squeeze": (lambda m: m.ones(2, 3).squeeze(2), IndexError, _DIM.format(-2, 1, 2)),
    "dim_cat": (lambda m: m.cat([m.ones(2, 3)], dim=2), IndexError, _DIM.format(-2, 1, 2)),
    "dim_flip": (lambda m: m.ones(2, 3).flip(2), IndexError, _DIM.format(-2, 1, 2)),
    "dim_argmax": (lambda m: m.ones(2, 3).argmax(-3), IndexError, _DIM.format(-2, 1, -3)),
    "dim_cumsum": (lambda m: m.ones(2, 3).cumsum(2), IndexError, _DIM.format(-2, 1, 2)),
    "dim_0d": (lambda m: m.ones(()).sum(1), IndexError, _DIM.format(-1, 0, 1)),
    # -- indices: dtypes, bounds, masks --
    "index_float": (
        lambda m: m.ones(2, 3)[m.tensor([0.5])],
        IndexError,
        "tensors used as indices must be long, int, byte or bool tensors",
    ),
    "index_out_of_bounds": (
        lambda m: m.ones(2, 3)[m.tensor([5])],
        IndexError,
        "index 5 is out of bounds for dimension 0 with size 2",
    ),
    "int_out_of_bounds": (
        lambda m: m.ones(2, 3)[5],
        IndexError,
        "index 5 is out of bounds for dimension 0 with size 2",
    ),
    "mask_shape": (
        lambda m: m.ones(2, 3)[m.tensor([True, False, True])],
        IndexError,
        "The shape of the mask [3] at index 0 does not match the shape of the "
        "indexed tensor [2, 3] at index 0",
    ),
    "gather_index_dtype": (
        lambda m: m.gather(m.ones(2, 3), 1, m.tensor([[0.0]])),
        RuntimeError,
        "gather(): Expected dtype int32/int64 for index",
    ),
    "scatter_index_dtype": (
        lambda m: m.scatter(m.ones(2, 3), 1, m.tensor([[0.0]]), m.ones(1, 1)),
        RuntimeError,
        "scatter(): Expected dtype int32/int64 for index",
    ),
    "scatter_src_dtype": (
        lambda m: m.scatter(m.ones(2, 3), 1, m.tensor([[0]]), m.ones(1, 1, dtype=m.float64)),
        RuntimeError,
        "scatter(): Expected self.dtype to be equal to src.dtype",
    ),
    "index_select_dtype": (
        lambda m: m.index_select(m.ones(2, 3), 1, m.tensor([0.0])),
        RuntimeError,
        "index_select(): Expected dtype int32 or int64 for index",
    ),
    "index_select_2d": (
        lambda m: m.index_select(m.ones(2, 3), 1, m.tensor([[0]])),
        IndexError,
        "index_select(): Index is supposed to be a vector",
    ),
    "index_add_dtype": (
        lambda m: m.index_add(m.ones(2, 3), 1, m.tensor([0.0]), m.ones(2, 1)),
        RuntimeError,
        "index_add_(): Expected dtype int32/int64 for index but got: Float",
    ),
    "take_along_dim_ndim": (
        lambda m: m.take_along_dim(m.ones(2, 3), m.tensor([0]), 1),
        RuntimeError,
        "ember.take_along_dim(): input and indices should have the same "
        "number of dimensions, but got 2 dimensions for input, and 1 "
        "dimensions for indices",
    ),
    "masked_fill_mask_dtype": (
        lambda m: m.ones(2, 3).masked_fill(m.ones(2, 3), 0.0),
        RuntimeError,
        "masked_fill_ only supports boolean masks, but got mask with dtype float",
    ),
    "masked_fill_value_dim": (
        lambda m: m.ones(2).masked_fill(m.ones(2) > 0, m.ones(2)),
        RuntimeError,
        "masked_fill_ only supports a 0-dimensional value "
        "tensor, but got tensor with 1 dimension(s).",
    ),
    "masked_select_mask_dtype": (
        lambda m: m.masked_select(m.ones(2, 3), m.ones(2, 3)),
        RuntimeError,
        "masked_select: expected BoolTensor for mask",
    ),
    "where_condition_dtype": (
        lambda m: m.where(m.ones(2), m.ones(2), m.ones(2)),
        RuntimeError,
        "where expected condition to be a boolean tensor, but got a tensor with dtype Float",
    ),
    # -- dtypes and values --
    "mean_int": (
        lambda m: m.tensor([1, 2]).mean(),
        RuntimeError,
        "mean(): could not infer output dtype. Input dtype must be either a floating "
        "point or complex dtype. Got: Long",
    ),
    "norm_int": (
        lambda m: m.linalg.norm(m.tensor([1, 2])),
        RuntimeError,
        "linalg.vector_norm: Expected a floating point or complex tensor as input. Got Long",
    ),
    "sub_bool": (
        lambda m: m.tensor([True]) - m.tensor([False]),
        RuntimeError,
        "Subtraction, the `-` operator, with two bool tensors is not supported. Use the "
        "`^` or `logical_xor()` operator instead.",
    ),
    "pow_int_negative": (
        lambda m: m.tensor([2]) ** -1,
        RuntimeError,
        "Integers to negative integer powers are not allowed.",
    ),
    "lerp_dtype": (
        lambda m: m.lerp(m.ones(2), m.ones(2, dtype=m.float64), 0.5),
        RuntimeError,
        "expected dtype float for `end` but got dtype double",
    ),
    "clamp_no_bounds": (
        lambda m: m.clamp(m.ones(2)),
        RuntimeError,
        "ember.clamp: At least one of 'min' or 'max' must not be None",
    ),
    "div_rounding_mode": (
        lambda m: m.div(m.ones(2), 2, rounding_mode="round"),
        RuntimeError,
        "div expected rounding_mode to be one of None, 'trunc', or 'floor' but found 'round'",
    ),
    "max_empty": (
        lambda m: m.ones(0).max(),
        RuntimeError,
        "max(): Expected reduction dim to be specified for input.numel() == 0. "
        "Specify the reduction dim with the 'dim' argument.",
    ),
    "argmax_empty": (
        lambda m: m.ones(0).argmax(),
        IndexError,
        "argmax(): Expected reduction dim to be specified for input.numel() == 0.",
    ),
    "item_many": (
        lambda m: m.ones(2).item(),
        RuntimeError,
        "a Tensor with 2 elements cannot be converted to Scalar",
    ),
    "numpy_requires_grad": (
        lambda m: m.ones(2, requires_grad=True).numpy(),
        RuntimeError,
        "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.",
    ),
    # -- autograd --
    "backward_twice": (
        _backward_twice,
        RuntimeError,
        "Trying to backward through the graph a second time (or directly access "
        "saved tensors after they have already been freed). Saved intermediate "
        "values of the graph are freed when you call .backward() or "
        "autograd.grad(). Specify retain_graph=True if you need to backward "
        "through the graph a second time or if you need to access saved tensors "
        "after calling backward.",
    ),
    "grad_not_scalar": (
        lambda m: (m.ones(2, requires_grad=True) * 2).backward(),
        RuntimeError,
        "grad can be implicitly created only for scalar outputs",
    ),
    "inplace_on_leaf": (
        lambda m: m.ones(2, requires_grad=True).add_(1),
        RuntimeError,
        "a leaf Variable that requires grad is being used in an in-place operation.",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_ember_message(name):
    fn, exc, message = CASES[name]
    with pytest.raises(exc, match=f"^{re.escape(message)}$"):
        fn(ember)


@pytest.mark.parametrize("name", list(CASES))
def test_torch_says_the_same(name):
    torch = pytest.importorskip("torch")
    fn, exc, message = CASES[name]
    with pytest.raises(exc) as info:
        fn(torch)
    assert str(info.value).splitlines()[0].replace("torch.", "ember.") == message


class _OtherDevice(np.ndarray):
    """A NumPy array the test pretends lives on cuda:0 (no GPU is needed to see the message)."""


@pytest.fixture
def fake_cuda(monkeypatch):
    from ember.autograd import function

    def device_of(array):
        return ember.device("cuda:0") if type(array) is _OtherDevice else ember.device("cpu")

    monkeypatch.setattr(function, "device_of", device_of)
    return ember.Tensor._wrap(np.ones((3, 3), dtype=np.float32).view(_OtherDevice))


@pytest.mark.parametrize(
    "op",
    [
        lambda a, b: a + b,
        lambda a, b: a * b,
        lambda a, b: a @ b,
        lambda a, b: a == b,
        lambda a, b: ember.cat([a, b]),
    ],
    ids=["add", "mul", "matmul", "eq", "cat"],
)
def test_device_mismatch_message(fake_cuda, op):
    with pytest.raises(
        RuntimeError,
        match=re.escape(
            "Expected all tensors to be on the same device, but found at least two devices, "
            "cpu and cuda:0!"
        ),
    ):
        op(ember.ones(3, 3), fake_cuda)
