"""``CommDebugMode`` and ``visualize_sharding`` (``ember.distributed.tensor.debug``), with real
processes where collectives run.

The counts PyTorch 2.13 gives on CPU (gloo, 2 processes) for the same programs are written
next to the assertions: a tensor-parallel MLP's forward issues one
``c10d_functional.all_reduce`` in its second linear; a ``Shard -> Replicate`` redistribution one
``all_gather_into_tensor``; a direct ``dist.all_reduce`` one ``c10d.allreduce_``.
"""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest

import ember
import ember.nn as nn

_ANSI = re.compile(r"\x1B\[[0-?]*[ -/]*[@-~]")


class MLPModule(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        ember.manual_seed(5)
        self.net1 = nn.Linear(10, 16)
        self.relu = nn.ReLU()
        self.net2 = nn.Linear(16, 10)

    def forward(self, x):
        return self.net2(self.relu(self.net1(x)))


def _tp_mlp(tmp: str) -> dict:
    import ember.distributed as dist
    from ember.distributed.device_mesh import init_device_mesh
    from ember.distributed.tensor.debug import CommDebugMode
    from ember.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    plan = {"net1": ColwiseParallel(), "net2": RowwiseParallel()}
    model = parallelize_module(MLPModule(), mesh, plan)
    comm_mode = CommDebugMode()
    with comm_mode:
        out = model(ember.rand(4, 10))
    forward_counts = dict(comm_mode.get_comm_counts())
    table0 = _ANSI.sub("", comm_mode.generate_comm_debug_tracing_table(noise_level=0))
    with comm_mode:  # entering again starts from zero
        model(ember.rand(4, 10)).sum().backward()
    rank = dist.get_rank()
    comm_mode.log_comm_debug_tracing_table_to_file(f"{tmp}/log{rank}.txt", noise_level=1)
    comm_mode.generate_json_dump(f"{tmp}/dump{rank}.json", noise_level=2)
    funcol = ember.ops.c10d_functional
    return {
        "out": tuple(out.shape),
        "forward": {str(k): v for k, v in forward_counts.items()},
        "forward_key": forward_counts.get(funcol.all_reduce),
        "total": comm_mode.get_total_counts(),
        "table0": table0,
        "table1": comm_mode.generate_comm_debug_tracing_table(noise_level=1),
        "sharding": {k: str(v) for k, v in comm_mode.get_sharding_info().items()},
        "params": {k: sorted(v) for k, v in comm_mode.get_parameter_info().items()},
        "repr": repr(comm_mode),
    }


def _collectives_and_redistribute() -> dict:
    import ember.distributed as dist
    from ember.distributed.device_mesh import init_device_mesh
    from ember.distributed.tensor import Partial, Replicate, Shard, distribute_tensor
    from ember.distributed.tensor.debug import CommDebugMode, visualize_sharding

    ws = dist.get_world_size()
    mesh = init_device_mesh("cpu", (ws,))
    x = ember.arange(32.0).reshape(8, 4)
    out = {}
    with CommDebugMode() as cm:
        t = ember.ones(3)
        dist.all_reduce(t)
        dist.all_gather_into_tensor(ember.zeros(3 * ws), t)
        dist.reduce_scatter_tensor(ember.zeros(3), ember.ones(3 * ws))
        dist.broadcast(t, src=0)
        dist.barrier()  # not a counted collective (nor in PyTorch's mode)
    out["c10d"] = {str(k): v for k, v in cm.get_comm_counts().items()}
    d = distribute_tensor(x, mesh, [Shard(0)])
    with CommDebugMode() as cm:
        d.full_tensor()
        p = ember.distributed.tensor.DTensor.from_local(ember.ones(8, 4), mesh, [Partial()])
        p.redistribute(mesh, [Shard(0)])
        p.redistribute(mesh, [Replicate()])
    out["dtensor"] = {str(k): v for k, v in cm.get_comm_counts().items()}
    t = ember.ones(2)
    dist.all_reduce(t)  # outside any mode: not counted anywhere
    out["after"] = cm.get_total_counts()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        visualize_sharding(d)
        visualize_sharding(distribute_tensor(x, mesh, [Shard(1)]), header="cols")
        visualize_sharding(distribute_tensor(ember.arange(6.0), mesh, [Replicate()]))
    out["viz"] = buf.getvalue()
    return out


def test_tensor_parallel_mlp_counts_tables_and_dumps(pools, tmp_path):
    got = pools(2, "gloo").run(_tp_mlp, str(tmp_path))
    for r in got:
        assert r["out"] == (4, 10)
        # the recipe's output (and PyTorch 2.13): one all_reduce, in net2's forward
        assert r["forward"] == {"c10d_functional.all_reduce": 1} and r["forward_key"] == 1
        # forward + backward: ember sums net2's replicated bias gradient in backward (one
        # more all_reduce; PyTorch leaves that gradient Partial, total 1)
        assert r["total"] == 2 and r["repr"] == "CommDebugMode(get_total_counts()=2)"
    table0 = got[0]["table0"].splitlines()
    assert table0 == [
        "Global",
        "  FORWARD PASS",
        "    *c10d_functional.all_reduce: 1",
        "    MLPModule",
        "      FORWARD PASS",
        "        *c10d_functional.all_reduce: 1",
        "        MLPModule.net1",
        "        MLPModule.relu",
        "        MLPModule.net2",
        "          FORWARD PASS",
        "            *c10d_functional.all_reduce: 1",
    ]
    r = got[0]
    assert r["sharding"] == {
        "MLPModule.net1.weight": "(Shard(dim=0),)",
        "MLPModule.net1.bias": "(Shard(dim=0),)",
        "MLPModule.net2.weight": "(Shard(dim=1),)",
        "MLPModule.net2.bias": "(Replicate(),)",
    }
    assert r["params"] == {
        "MLPModule.net1": ["bias", "weight"],
        "MLPModule.net2": ["bias", "weight"],
    }
    assert "*module type: class 'ember.nn.modules.linear.Linear'" in r["table1"]
    assert "\033[1;33m" in r["table1"]  # colored on screen ...
    log = (tmp_path / "log0.txt").read_text()
    assert "\033" not in log and " *weight: (Shard(dim=1),)" in log  # ... plain in the file
    assert "BACKWARD PASS" in log
    dump = json.loads((tmp_path / "dump0.json").read_text())
    assert dump["fqn"] == "Global" and [c["fqn"] for c in dump["children"]] == ["MLPModule"]
    net2 = dump["children"][0]["children"][2]
    assert net2["fqn"] == "MLPModule.net2"
    assert net2["collectives_forward"] == [["c10d_functional.all_reduce", 1]]
    assert ["weight", "(Shard(dim=1),)"] in net2["parameters"]
    assert any(op["name"] == "c10d_functional.all_reduce" for op in net2["operations_forward"])


def test_collective_keys_redistribution_and_visualize_sharding(pools):
    got = pools(2, "gloo").run(_collectives_and_redistribute)
    for r in got:
        assert r["c10d"] == {
            "c10d.allreduce_": 1,
            "c10d._allgather_base_": 1,
            "c10d._reduce_scatter_base_": 1,
            "c10d.broadcast_": 1,
        }
        # Shard -> Replicate: all_gather_into_tensor (PyTorch 2.13 counts the same);
        # Partial -> Shard: reduce_scatter_tensor; Partial -> Replicate: all_reduce
        assert r["dtensor"] == {
            "c10d_functional.all_gather_into_tensor": 1,
            "c10d_functional.reduce_scatter_tensor": 1,
            "c10d_functional.all_reduce": 1,
        }
        assert r["after"] == 3
    assert got[1]["viz"] == ""  # printed once, on the mesh's first rank
    lines = got[0]["viz"].splitlines()
    assert lines[:4] == ["         Col 0-3", "-------  -------", "Row 0-3  cpu:0", "Row 4-7  cpu:1"]
    assert lines[4:8] == [
        "cols",
        "         Col 0-1  Col 2-3",
        "-------  -------  -------",
        "Row 0-7  cpu:0    cpu:1",
    ]
    assert lines[-1] == "Row 0-5  cpu:0,1"


def test_keys_are_reachable_and_print_like_pytorch():
    from ember.distributed.tensor.debug import CommDebugMode

    funcol = ember.ops.c10d_functional
    assert str(funcol.all_reduce) == "c10d_functional.all_reduce"
    assert repr(funcol.all_gather_into_tensor) == (
        "<OpOverloadPacket(op='c10d_functional.all_gather_into_tensor')>"
    )
    assert str(ember.ops.c10d.allreduce_) == "c10d.allreduce_"
    assert funcol.all_reduce is ember.ops.c10d_functional.all_reduce
    cm = CommDebugMode()
    with cm:  # no process group: nothing to count, tables still build
        nn.Linear(2, 2)(ember.ones(1, 2))
    assert cm.get_total_counts() == 0 and cm.get_comm_counts() == {}
    assert cm.generate_comm_debug_tracing_table(0).splitlines() == ["Global", "    Linear"]
    with pytest.raises(ValueError, match="noise_level"):
        cm.generate_comm_debug_tracing_table(noise_level=-1)
    with pytest.raises(NotImplementedError, match="key for CommDebugMode"):
        funcol.all_reduce(ember.ones(1))
