"""The communicator's backend choice (``_runtime/_communicator.py``), without processes.

No GPU here: a NumPy subclass stands in for a CuPy array (the communicator tells devices apart
by the array's type) and a recording object for the group's NCCL communicator, so the NCCL
plumbing (which op, which arguments, in place, ``done``, ``Work``, no ``OpContext``) is checked
on every machine. The host paths are covered by the collectives' multi-process tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from ember.distributed import ReduceOp
from ember.distributed._runtime import _communicator, _nccl
from ember.distributed.reduce_op import Reduction


class _DeviceArray(np.ndarray):
    """Looks like a device array to the communicator (its type is not ``np.ndarray``)."""


def _dev(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).view(_DeviceArray)


class _FakeNccl:
    """A one-rank NCCL communicator that records its calls and does what NCCL would."""

    def __init__(self, pg) -> None:
        self.calls = []

    def all_reduce(self, arr, op):
        self.calls.append(("all_reduce", arr.shape, op))

    def reduce(self, arr, op, root):
        self.calls.append(("reduce", arr.shape, op, root))

    def broadcast(self, arr, root):
        self.calls.append(("broadcast", arr.shape, root))
        arr[...] = 7.0  # the root's data arrives

    def all_gather(self, src, dst):
        self.calls.append(("all_gather", src.shape, dst.shape))
        dst[...] = np.tile(src, dst.size // src.size)

    def reduce_scatter(self, src, dst, op):
        self.calls.append(("reduce_scatter", src.shape, dst.shape, op))
        dst[...] = src[: dst.size]


class _World:
    def __init__(self) -> None:
        self.nccl = []


class _Group:
    def __init__(self, backend: str) -> None:
        self.world, self.backend = _World(), backend
        self.comm = self.p2p = None
        self.hierarchical, self.hosts = False, []
        self.ops = []

    def rank(self) -> int:
        return 0

    def size(self) -> int:
        return 1

    def next_op(self, name, desc):  # the host path; the device path must not number calls
        self.ops.append(name)
        raise AssertionError(f"{name} took the host path")


@pytest.fixture
def fake_nccl(monkeypatch):
    monkeypatch.setattr(_nccl, "available", lambda: True)
    monkeypatch.setattr(_nccl, "NcclComm", _FakeNccl)


def _call(name, async_op=False):
    done = []
    return _communicator.Call(name, "()", async_op, [], lambda: done.append(name)), done


def test_device_arrays_go_to_the_groups_nccl_communicator(fake_nccl):
    pg = _Group("nccl")
    comm = _communicator.Communicator(pg)
    red = Reduction(ReduceOp.AVG, np.float32)
    a = _dev(np.arange(6).reshape(2, 3))
    call, done = _call("all_reduce")
    assert comm.all_reduce(call, a, red) is None and done == ["all_reduce"]
    call, done = _call("reduce", async_op=True)
    work = comm.reduce(call, a, red, 0)
    assert work.wait() and done == ["reduce"]
    # a non-contiguous array runs on a contiguous copy, written back
    t = _dev(np.zeros((3, 2))).T
    comm.broadcast(_call("broadcast")[0], t, 0)
    np.testing.assert_array_equal(t, np.full((2, 3), 7.0))
    out = _dev(np.zeros(6))
    comm.all_gather_into_tensor(_call("agit")[0], out, _dev(np.arange(6)))
    np.testing.assert_array_equal(out, np.arange(6))
    rs = _dev(np.zeros(3))
    comm.reduce_scatter_tensor(_call("rst")[0], rs, _dev([4, 5, 6]), red)
    np.testing.assert_array_equal(rs, [4, 5, 6])
    nc = comm.nccl
    assert nc.calls == [
        ("all_reduce", (6,), ReduceOp.AVG),
        ("reduce", (6,), ReduceOp.AVG, 0),
        ("broadcast", (6,), 0),
        ("all_gather", (6,), (6,)),
        ("reduce_scatter", (3,), (3,), ReduceOp.AVG),
    ]
    assert pg.world.nccl == [nc] and pg.ops == []  # one per group, closed with the world


def test_mixed_devices_raise_and_host_arrays_skip_nccl(fake_nccl):
    comm = _communicator.Communicator(_Group("nccl"))
    with pytest.raises(ValueError, match="same device type"):
        comm.all_gather_into_tensor(_call("agit")[0], _dev(np.zeros(2)), np.zeros(2, np.float32))
    assert comm.nccl is None
    assert comm._device(np.zeros(2)) is None  # NumPy arrays: the host algorithms
    # a device array in a group whose backend has no NCCL is staged through host memory
    assert _communicator.Communicator(_Group("shm"))._device(_dev([1.0])) is None


def _imports(path) -> set[str]:
    """Modules a file imports, relative ones as written (``._runtime._state``)."""
    import ast

    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = "." * node.level + (node.module or "")
            out |= {f"{mod}.{a.name}" if not node.module else mod for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def test_collectives_talk_only_to_the_communicator():
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2] / "distributed"
    for name in ("collectives.py", "p2p.py"):
        runtime = {m for m in _imports(root / name) if "_runtime" in m}
        assert runtime <= {"._runtime._communicator", "._runtime._state"}, (name, runtime)
    # the generic algorithms know no transport, arena or device backend
    algs = _imports(root / "_runtime" / "_algorithms.py")
    assert not {m for m in algs if "_shm" in m or "_nccl" in m or "_socket" in m}, algs
