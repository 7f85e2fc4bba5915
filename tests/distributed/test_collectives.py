"""Every collective on real processes: 1-4 ranks, shm and grpc backends, dtypes, layouts.

Each ``case_*`` function runs on every rank of a pool (``conftest.pools``), computes what every
rank should hold from the ranks' deterministic inputs, and asserts. Large sizes go through the
ring algorithms (above ``SMALL_BYTES``), small ones through the direct ones; integer and bool
results must be exact, float results close and bitwise identical on every rank.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

BACKENDS = ["shm", "grpc"]
WORLD_SIZES = [1, 2, 3, 4]
DTYPES = ["float32", "float16", "float64", "int64", "bool"]
# () and (0,) are the 0-d and empty cases; 70001 elements exceed the direct-path threshold.
SHAPES = [(), (0,), (3, 5), (70001,)]


def data(rank: int, shape, dtype: str, positive: bool = False) -> np.ndarray:
    rng = np.random.default_rng(1000 + rank)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype.startswith("int"):
        return rng.integers(1 if positive else -50, 4 if positive else 50, shape).astype(dtype)
    if positive:
        return rng.uniform(0.9, 1.1, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    if got.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want, err_msg=what)
    else:
        tol = 2e-2 if got.dtype == np.float16 else 1e-5
        np.testing.assert_allclose(
            got.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol, err_msg=what
        )


def digest(arr: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(arr).tobytes()).hexdigest()


def _reference(op: str, arrays: list) -> np.ndarray:
    fn = {
        "SUM": np.add,
        "AVG": np.add,
        "PRODUCT": np.multiply,
        "MIN": np.minimum,
        "MAX": np.maximum,
    }[op]
    acc = arrays[0].copy()
    for a in arrays[1:]:
        acc = fn(acc, a)
    if op == "AVG":
        acc = acc / len(arrays)
    return acc.astype(arrays[0].dtype)


def _tensor(arr: np.ndarray):
    import ember

    return ember.from_numpy(np.array(arr, copy=True))


# ---- cases run on every rank --------------------------------------------------------------------
def case_all_reduce():
    import ember.distributed as dist

    rank, n = dist.get_rank(), dist.get_world_size()
    digests = []
    for dtype in DTYPES:
        ops = ["SUM", "MIN", "MAX"] + ([] if dtype == "bool" else ["PRODUCT"])
        ops += ["AVG"] if dtype.startswith("float") else []
        for shape in SHAPES:
            for op in ops:
                pos = op == "PRODUCT"
                t = _tensor(data(rank, shape, dtype, pos))
                dist.all_reduce(t, op=getattr(dist.ReduceOp, op))
                want = _reference(op, [data(r, shape, dtype, pos) for r in range(n)])
                assert t.shape == tuple(shape) and t._data.dtype == np.dtype(dtype)
                close(t._data, want, f"all_reduce {op} {dtype} {shape}")
                digests.append(digest(t._data))
    return digests


def case_all_reduce_non_contiguous():
    import ember
    import ember.distributed as dist

    rank, n = dist.get_rank(), dist.get_world_size()
    for shape in [(4, 6), (300, 301)]:
        base = ember.from_numpy(data(rank, shape, "float32"))
        view = base.t()  # non-contiguous view: the result must land in ``base``
        assert not view.is_contiguous()
        dist.all_reduce(view)
        want = sum(data(r, shape, "float32") for r in range(n))
        close(base._data, want, f"transposed all_reduce {shape}")
        strided = ember.from_numpy(data(rank, (10, 8), "int64"))
        dist.all_reduce(strided[:, ::2], op=dist.ReduceOp.MAX)
        full = np.maximum.reduce([data(r, (10, 8), "int64") for r in range(n)])
        mine = data(rank, (10, 8), "int64")
        np.testing.assert_array_equal(strided._data[:, ::2], full[:, ::2])
        np.testing.assert_array_equal(strided._data[:, 1::2], mine[:, 1::2])
    return True


def case_broadcast():
    import ember.distributed as dist

    rank, n = dist.get_rank(), dist.get_world_size()
    for src in range(n):
        for dtype in DTYPES:
            for shape in SHAPES:
                t = _tensor(data(rank, shape, dtype))
                dist.broadcast(t, src=src)
                np.testing.assert_array_equal(t._data, data(src, shape, dtype))
    base = _tensor(data(rank, (6, 7), "float64"))
    dist.broadcast(base.t(), src=n - 1)
    np.testing.assert_array_equal(base._data, data(n - 1, (6, 7), "float64"))
    return True


def case_reduce():
    import ember.distributed as dist

    rank, n = dist.get_rank(), dist.get_world_size()
    for dst in range(n):
        for dtype in ["float32", "int64"]:
            for shape in SHAPES:
                t = _tensor(data(rank, shape, dtype))
                dist.reduce(t, dst=dst)
                if rank == dst:
                    close(
                        t._data,
                        _reference("SUM", [data(r, shape, dtype) for r in range(n)]),
                        f"reduce {dtype} {shape} to {dst}",
                    )
                else:  # non-destination tensors are left as they were
                    np.testing.assert_array_equal(t._data, data(rank, shape, dtype))
    return True


def case_all_gather():
    import ember
    import ember.distributed as dist

    rank, n = dist.get_rank(), dist.get_world_size()
    for dtype in DTYPES:
        for shape in SHAPES:
            outs = [ember.from_numpy(np.zeros(shape, dtype=dtype)) for _ in range(n)]
            dist.all_gather(outs, _tensor(data(rank, shape, dtype)))
            for r in range(n):
                np.testing.assert_array_equal(outs[r]._data, data(r, shape, dtype))
    # uneven sizes: rank r contributes r + 1 elements
    outs = [ember.zeros(r + 1) for r in range(n)]
    dist.all_gather(outs, ember.full((rank + 1,), float(rank)))
    for r in range(n):
        np.testing.assert_array_equal(outs[r]._data, np.full(r + 1, r, np.float32))
    return True


def case_all_gather_into_tensor():
    import ember
    import ember.distributed as dist

    rank, n = dist.get_rank(), dist.get_world_size()
    for dtype in DTYPES:
        for shape in [(0,), (3, 5), (70001,)]:
            out = ember.from_numpy(np.zeros((n * shape[0],) + shape[1:], dtype=dtype))
            dist.all_gather_into_tensor(out, _tensor(data(rank, shape, dtype)))
            want = np.concatenate([data(r, shape, dtype) for r in range(n)])
            np.testing.assert_array_equal(out._data, want)
    # a 0-d input gathers into a vector; a non-contiguous output is written through
    out = ember.zeros(n)
    dist.all_gather_into_tensor(out, ember.tensor(float(rank)))
    np.testing.assert_array_equal(out._data, np.arange(n, dtype=np.float32))
    base = ember.zeros(4, n)
    dist.all_gather_into_tensor(base.t(), ember.full((4,), float(rank)))
    np.testing.assert_array_equal(base._data.T, np.repeat(np.arange(n), 4).reshape(n, 4))
    return True


def case_reduce_scatter():
    import ember
    import ember.distributed as dist

    rank, n = dist.get_rank(), dist.get_world_size()
    for dtype in ["float32", "float16", "int64", "bool"]:
        for shape in [(), (0,), (3, 5), (40001,)]:
            ins = [_tensor(data(rank * n + i, shape, dtype)) for i in range(n)]
            out = ember.from_numpy(np.zeros(shape, dtype=dtype))
            dist.reduce_scatter(out, ins)
            want = _reference("SUM", [data(r * n + rank, shape, dtype) for r in range(n)])
            close(out._data, want, f"reduce_scatter {dtype} {shape}")
    return True


def case_reduce_scatter_tensor():
    import ember
    import ember.distributed as dist

    rank, n = dist.get_rank(), dist.get_world_size()
    for dtype in ["float32", "float64", "int64"]:
        for per in [0, 7, 50001]:
            src = data(rank, (n * per,), dtype)
            inp = _tensor(src)
            out = ember.from_numpy(np.zeros(per, dtype=dtype))
            for op in ["SUM", "MAX"]:
                dist.reduce_scatter_tensor(out, inp, op=getattr(dist.ReduceOp, op))
                allin = [data(r, (n * per,), dtype) for r in range(n)]
                want = _reference(op, [a[rank * per : (rank + 1) * per] for a in allin])
                close(out._data, want, f"reduce_scatter_tensor {op} {dtype} {per}")
            np.testing.assert_array_equal(inp._data, src)  # the input is left alone
    out = ember.zeros(3)
    dist.reduce_scatter_tensor(out, ember.ones(3 * n), op=dist.ReduceOp.AVG)
    np.testing.assert_array_equal(out._data, np.ones(3, np.float32))
    return True


def case_gather_scatter():
    import ember
    import ember.distributed as dist

    rank, n = dist.get_rank(), dist.get_world_size()
    for root in range(n):
        for shape in [(), (0,), (2, 3), (30000,)]:
            lst = [ember.from_numpy(np.zeros(shape, np.int64)) for _ in range(n)]
            dist.gather(
                _tensor(data(rank, shape, "int64")), lst if rank == root else None, dst=root
            )
            if rank == root:
                for r in range(n):
                    np.testing.assert_array_equal(lst[r]._data, data(r, shape, "int64"))
            out = ember.from_numpy(np.zeros(shape, np.float32))
            parts = [_tensor(data(100 + i, shape, "float32")) for i in range(n)]
            dist.scatter(out, parts if rank == root else None, src=root)
            np.testing.assert_array_equal(out._data, data(100 + rank, shape, "float32"))
    return True


def case_all_to_all():
    import ember
    import ember.distributed as dist

    rank, n = dist.get_rank(), dist.get_world_size()
    # rank i sends (i + j + 1) elements of value 10*i + j to rank j
    ins = [ember.full((rank + j + 1,), 10.0 * rank + j) for j in range(n)]
    outs = [ember.zeros(i + rank + 1) for i in range(n)]
    dist.all_to_all(outs, ins)
    for i in range(n):
        np.testing.assert_array_equal(outs[i]._data, np.full(i + rank + 1, 10.0 * i + rank))
    inp = ember.arange(2 * n, dtype=ember.int64) + 100 * rank
    out = ember.zeros(2 * n, dtype=ember.int64)
    dist.all_to_all_single(out, inp)
    want = np.concatenate([np.arange(2 * rank, 2 * rank + 2) + 100 * i for i in range(n)])
    np.testing.assert_array_equal(out._data, want)
    return True


def case_barrier_and_async():
    import ember
    import ember.distributed as dist

    rank, n = dist.get_rank(), dist.get_world_size()
    dist.barrier()
    works, tensors = [], []
    for k in range(5):  # several in flight at once, completed in issue order
        t = ember.full((1000 * k + 1,), float(rank + k))
        tensors.append(t)
        works.append(dist.all_reduce(t, async_op=True))
    big = ember.full((100000,), float(rank))
    wb = dist.broadcast(big, src=0, async_op=True)
    bw = dist.barrier(async_op=True)
    for k, (w, t) in enumerate(zip(works, tensors)):
        assert w.wait() is True and w.is_completed() and w.is_success()
        np.testing.assert_array_equal(t._data, np.full(t.numel(), sum(r + k for r in range(n))))
    fut = wb.get_future()
    assert fut.wait()[0] is big
    np.testing.assert_array_equal(big._data, np.zeros(100000, np.float32))
    bw.wait()
    return True


def case_p2p():
    import ember
    import ember.distributed as dist

    rank, n = dist.get_rank(), dist.get_world_size()
    if n == 1:
        return True
    nxt, prv = (rank + 1) % n, (rank - 1) % n
    for shape in [(), (0,), (5,), (300000,)]:
        out = ember.from_numpy(data(rank, shape, "float32"))
        got = ember.from_numpy(np.zeros(shape, np.float32))
        reqs = [dist.isend(out, nxt), dist.irecv(got, prv)]
        for r in reqs:
            r.wait()
        np.testing.assert_array_equal(got._data, data(prv, shape, "float32"))
    # blocking send/recv with tags, received out of order, then from any source
    if rank == 0:
        for src in range(1, n):
            t = ember.zeros(2)
            assert dist.recv(t, src=src, tag=7) == src
            np.testing.assert_array_equal(t._data, [src, 7])
        seen = set()
        for _ in range(1, n):
            t = ember.zeros(1)
            seen.add(dist.recv(t, tag=9))
            assert t.item() == 100
        assert seen == set(range(1, n))
    else:
        dist.send(ember.tensor([float(rank), 7.0]), dst=0, tag=7)
        dist.send(ember.tensor([100.0]), dst=0, tag=9)
    ops = [
        dist.P2POp(dist.isend, ember.full((3,), float(rank)), nxt),
        dist.P2POp(dist.irecv, ember.zeros(3), prv),
    ]
    for w in dist.batch_isend_irecv(ops):
        w.wait()
    np.testing.assert_array_equal(ops[1].tensor._data, np.full(3, prv, np.float32))
    return True


def case_objects():
    import ember
    import ember.distributed as dist

    rank, n = dist.get_rank(), dist.get_world_size()
    objs = [{"rank": rank, "x": [rank] * rank}, "s" * rank, None]
    dist.broadcast_object_list(objs, src=n - 1)
    assert objs == [{"rank": n - 1, "x": [n - 1] * (n - 1)}, "s" * (n - 1), None]
    gathered = [None] * n
    dist.all_gather_object(gathered, ("r", rank, b"\x00" * rank))
    assert gathered == [("r", r, b"\x00" * r) for r in range(n)]
    out = [None]
    dist.scatter_object_list(out, [f"for {r}" for r in range(n)] if rank == 0 else None, src=0)
    assert out == [f"for {rank}"]
    # point to point: rank 0 -> rank 1 (received from any rank), and back from a named rank
    if rank == 0 and n > 1:
        dist.send_object_list([{"a": 1}, "two", (3,)], dst=1)
        back = [None]
        assert dist.recv_object_list(back, src=1) == 1 and back == [[rank + 1] * 3]
    elif rank == 1:
        got = [None, None, None]
        assert dist.recv_object_list(got) == 0 and got == [{"a": 1}, "two", (3,)]
        dist.send_object_list([[rank] * 3], dst=0)
    # subgroups of equal size (pairs where the world is even, else singletons)
    size = 2 if n % 2 == 0 else 1
    mine, groups = dist.new_subgroups(group_size=size)
    assert len(groups) == n // size and dist.get_world_size(mine) == size
    t = ember.tensor([float(rank)])
    dist.all_reduce(t, group=mine)
    assert t.item() == sum(range(rank - rank % size, rank - rank % size + size))
    return True


def case_new_group():
    import ember
    import ember.distributed as dist

    rank, n = dist.get_rank(), dist.get_world_size()
    evens = dist.new_group([r for r in range(n) if r % 2 == 0])
    last = dist.new_group([n - 1])
    if rank % 2 == 0:
        t = ember.tensor([float(rank)])
        dist.all_reduce(t, group=evens)
        assert t.item() == sum(r for r in range(n) if r % 2 == 0)
        assert dist.get_rank(evens) == rank // 2
        assert dist.get_world_size(evens) == len(range(0, n, 2))
        big = ember.full((100000,), float(rank))
        dist.broadcast(big, src=0, group=evens)
        assert float(big[-1]) == 0.0
    else:
        assert evens is dist.GroupMember.NON_GROUP_MEMBER
        assert dist.get_rank(evens) == -1
        assert dist.all_reduce(ember.ones(1), group=evens) is None
    if rank == n - 1:
        t = ember.tensor([5.0])
        dist.all_reduce(t, group=last)
        assert t.item() == 5.0
    t = ember.tensor([1.0])
    dist.all_reduce(t)  # the default group is unaffected
    assert t.item() == n
    return True


# ---- the tests ----------------------------------------------------------------------------------
CASES = [
    case_all_reduce,
    case_all_reduce_non_contiguous,
    case_broadcast,
    case_reduce,
    case_all_gather,
    case_all_gather_into_tensor,
    case_reduce_scatter,
    case_reduce_scatter_tensor,
    case_gather_scatter,
    case_all_to_all,
    case_barrier_and_async,
    case_p2p,
    case_objects,
    case_new_group,
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world_size", WORLD_SIZES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__[5:])
def test_collective(pools, case, world_size, backend):
    results = pools(world_size, backend).run(case)
    assert all(r is not None for r in results)
    # floating-point results must be bitwise identical on every rank
    assert all(r == results[0] for r in results), "ranks disagree on the reduced values"


@pytest.mark.parametrize("hosts", [("a", "a", "b", "b"), ("a", "b", "b", "b")], ids=["2+2", "1+3"])
def test_hierarchical_all_reduce(pools, hosts):
    # "auto" with faked host identities: shared memory within a host, sockets across, and the
    # hierarchical allreduce (within host -> host leaders -> within host).
    pool = pools(4, "auto", hosts)
    results = pool.run(case_all_reduce)
    assert all(r == results[0] for r in results)
    pool.run(case_barrier_and_async)
    pool.run(case_broadcast)


@pytest.mark.parametrize("world_size", [2, 3])
def test_grpc_stream_data_plane(pools, world_size):
    # bulk data through gRPC streams instead of raw sockets (EMBER_DATA_PLANE=grpc)
    pool = pools(world_size, "grpc", env=(("EMBER_DATA_PLANE", "grpc"),))
    for case in (
        case_all_reduce,
        case_broadcast,
        case_reduce_scatter_tensor,
        case_p2p,
        case_all_to_all,
    ):
        results = pool.run(case)
        assert all(r == results[0] for r in results)


def case_endpoints_refuse_bad_tokens():
    import socket

    import grpc

    import ember
    import ember.distributed as dist
    from ember.distributed._runtime import _auth, _state
    from ember.distributed._runtime._transport import client_handshake
    from ember.protos import peer_pb2, peer_pb2_grpc

    rank = dist.get_rank()
    world = _state.world
    if rank == 0:
        host, port = world.infos[1]["tcp"]
        with socket.create_connection((host, port)) as sock:
            try:
                client_handshake(sock, "wrong-token", 0, 1, 5.0)
            except dist.DistBackendError as e:
                assert "refused" in str(e)
            else:
                raise AssertionError("the data listener accepted a wrong token")
        channel = grpc.insecure_channel(world.infos[1]["peer"], options=_auth.CHANNEL_OPTIONS)
        try:
            peer_pb2_grpc.PeerStub(channel).Abort(
                peer_pb2.AbortRequest(rank=0, message="forged"),
                metadata=_auth.metadata("wrong-token"),
                timeout=5,
            )
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAUTHENTICATED
        else:
            raise AssertionError("the peer service accepted a wrong token")
        channel.close()
    dist.barrier()
    t = ember.ones(1)
    dist.all_reduce(t)  # no forged abort got through: the group still works
    assert t.item() == 2
    return True


def test_endpoints_refuse_bad_tokens(pools):
    pools(2, "grpc").run(case_endpoints_refuse_bad_tokens)
