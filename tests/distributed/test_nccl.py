"""The NCCL transport: pure helpers everywhere, real collectives where a GPU is present."""

from __future__ import annotations

import pytest

from ember.distributed import ReduceOp
from ember.distributed._runtime import _nccl


def test_dtype_and_op_tables_follow_nccl_h():
    assert _nccl.nccl_dtype("float32") == 7 and _nccl.nccl_dtype("bfloat16") == 9
    assert _nccl.nccl_dtype("int64") == 4 and _nccl.nccl_dtype("float16") == 6
    assert _nccl.nccl_op(ReduceOp.SUM, "float32") == 0
    assert _nccl.nccl_op(ReduceOp.AVG, "float32") == 4
    assert _nccl.nccl_op(ReduceOp.SUM, "bool") == 2  # OR over 0/1 bytes is MAX
    assert _nccl.nccl_op(ReduceOp.PRODUCT, "bool") == 3  # AND is MIN
    with pytest.raises(TypeError, match="complex64"):
        _nccl.nccl_dtype("complex64")
    with pytest.raises(ValueError, match="BXOR"):
        _nccl.nccl_op(ReduceOp.BXOR, "int32")


def test_unique_id_round_trips_through_store_bytes():
    raw = bytes(range(128))
    assert _nccl.decode_unique_id(_nccl.encode_unique_id(raw)) == raw
    old = tuple(range(-64, 64))  # older CuPy returns a tuple of ints
    assert _nccl.decode_unique_id(_nccl.encode_unique_id(old)) == old


@pytest.mark.gpu
def test_nccl_collectives_world_size_one():
    import cupy
    import numpy as np

    import ember
    import ember.distributed as dist

    if not dist.is_nccl_available():
        pytest.skip("CuPy without NCCL")
    dist.init_process_group("nccl", init_method="tcp://127.0.0.1:0?rank=0&world_size=1")
    try:
        t = ember.arange(6, dtype=ember.float32).to("cuda")
        dist.all_reduce(t)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        np.testing.assert_array_equal(cupy.asnumpy(t._data), np.arange(6))
        tt = ember.arange(12, dtype=ember.float32).reshape(3, 4).to("cuda").t()
        dist.all_reduce(tt, op=dist.ReduceOp.AVG)  # non-contiguous: staged and written back
        np.testing.assert_array_equal(cupy.asnumpy(tt._data), np.arange(12).reshape(3, 4).T)
        dist.broadcast(t, src=0)
        out = ember.zeros(6, device="cuda")
        dist.all_gather_into_tensor(out, t)
        np.testing.assert_array_equal(cupy.asnumpy(out._data), np.arange(6))
        rs = ember.zeros(6, device="cuda")
        dist.reduce_scatter_tensor(rs, t)
        np.testing.assert_array_equal(cupy.asnumpy(rs._data), np.arange(6))
        w = dist.all_reduce(t, async_op=True)
        w.wait()
        host = ember.ones(3)  # CPU tensors still work in an nccl job
        dist.all_reduce(host)
        assert host.tolist() == [1.0, 1.0, 1.0]
    finally:
        dist.destroy_process_group()
