"""``ember.distributed.checkpoint.format_utils`` (DCP <-> ``ember.save`` files) and
``get_state_dict`` / ``set_state_dict`` with no optimizers, as PyTorch 2.13 behaves."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import ember
import ember.distributed.checkpoint as dcp
import ember.nn as nn
from ember.distributed.checkpoint.format_utils import (
    BroadcastingTorchSaveReader,
    DynamicMetaLoadPlanner,
    dcp_to_torch_save,
    torch_save_to_dcp,
)


def _model(seed: int) -> nn.Module:
    ember.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))


def _state(seed: int) -> dict:
    return {
        "model": _model(seed).state_dict(),
        "optim": {"state": {0: {"exp_avg": ember.full((3,), float(seed))}}, "lr": 0.5},
        "buffers": [ember.arange(4.0) + seed, ember.ones(2, dtype=ember.int64)],
        "step": seed,
    }


def _assert_equal(got, want, where="") -> None:
    assert type(got) is type(want) or isinstance(want, dict), where
    if isinstance(want, dict):
        assert list(got) == list(want) or sorted(map(str, got)) == sorted(map(str, want)), where
        for k in want:
            _assert_equal(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_equal(g, w, f"{where}[{i}]")
    elif isinstance(want, ember.Tensor):
        assert got.dtype == want.dtype and got.shape == want.shape, where
        assert np.array_equal(got.numpy(), want.numpy()), where
    else:
        assert got == want, where


def test_round_trip_keeps_nesting_int_keys_lists_and_values(tmp_path):
    want = _state(3)
    dcp.save(want, checkpoint_id=str(tmp_path / "ck"), no_dist=True)
    dcp_to_torch_save(tmp_path / "ck", tmp_path / "full.pt")
    got = ember.load(tmp_path / "full.pt", weights_only=False)
    _assert_equal(got, want)
    assert list(got["optim"]["state"]) == [0]  # a dict's int key stays a dict key
    torch_save_to_dcp(tmp_path / "full.pt", tmp_path / "ck2")
    into = _state(9)
    dcp.load(into, checkpoint_id=str(tmp_path / "ck2"))
    _assert_equal(into, want)


def test_flat_checkpoint_and_metadata_without_paths(tmp_path):
    want = _model(1).state_dict()
    dcp.save(want, checkpoint_id=str(tmp_path / "ck"), no_dist=True)
    meta = json.loads((tmp_path / "ck" / ".metadata").read_text())
    assert "planner_data" not in meta  # a flat state dict records no paths
    dcp_to_torch_save(tmp_path / "ck", tmp_path / "m.pt")
    _assert_equal(ember.load(tmp_path / "m.pt"), dict(want))


def test_broadcasting_reader_in_one_process_and_refusals(tmp_path):
    want = _state(4)
    ember.save(want, tmp_path / "s.pt")
    into = _state(7)
    dcp.load(
        into,
        checkpoint_id=str(tmp_path / "s.pt"),
        storage_reader=BroadcastingTorchSaveReader(),
        planner=DynamicMetaLoadPlanner(),
    )
    _assert_equal(into, want)
    with pytest.raises(NotImplementedError, match="default options"):
        dcp.load(
            into,
            storage_reader=BroadcastingTorchSaveReader(tmp_path / "s.pt"),
            planner=DynamicMetaLoadPlanner(allow_partial_load=True),
        )
    ember.save([ember.ones(1)], tmp_path / "list.pt")
    with pytest.raises(TypeError, match="not a state dict"):
        torch_save_to_dcp(tmp_path / "list.pt", tmp_path / "bad")


def test_command_line(tmp_path):
    dcp.save(_state(2), checkpoint_id=str(tmp_path / "ck"), no_dist=True)
    cmd = [sys.executable, "-m", "ember.distributed.checkpoint.format_utils"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [*cmd, "dcp_to_torch", str(tmp_path / "ck"), str(tmp_path / "m.pt")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert "using method: 'dcp_to_torch'" in r.stdout
    r = subprocess.run(
        [*cmd, "torch_to_dcp", str(tmp_path / "m.pt"), str(tmp_path / "ck2")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    into = _state(5)
    dcp.load(into, checkpoint_id=str(tmp_path / "ck2"))
    _assert_equal(into, _state(2))
    r = subprocess.run(
        [*cmd, "dcp_to_torch", str(tmp_path / "nope"), str(tmp_path / "x.pt")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 1 and "No checkpoint found" in r.stdout


# ---- sharded, with real processes ---------------------------------------------------------
def _save_sharded(path: str) -> list:
    import ember.distributed as dist
    from ember.distributed.device_mesh import init_device_mesh
    from ember.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    full = ember.arange(30.0).reshape(6, 5)
    sd = {"w": distribute_tensor(full, mesh, [Shard(0)]), "b": ember.ones(5), "n": 1}
    dcp.save(sd, checkpoint_id=path)
    return full.tolist()


def _load_broadcast(path: str) -> list:
    import ember.distributed as dist
    from ember.distributed.device_mesh import init_device_mesh
    from ember.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    sd = {"w": distribute_tensor(ember.zeros(6, 5), mesh, [Shard(1)]), "b": ember.zeros(5), "n": 0}
    # only the coordinator reads the file; the others get it broadcast
    reader = BroadcastingTorchSaveReader(path if dist.get_rank() == 0 else "/nonexistent")
    dcp.load(sd, storage_reader=reader, planner=DynamicMetaLoadPlanner())
    return [sd["w"].to_local().tolist(), sd["w"].full_tensor().tolist(), sd["b"].tolist(), sd["n"]]


def test_sharded_checkpoint_to_one_file_and_back_to_other_shards(pools, tmp_path):
    full = pools(2, "gloo").run(_save_sharded, str(tmp_path / "ck"))[0]
    dcp_to_torch_save(tmp_path / "ck", tmp_path / "full.pt")
    got = ember.load(tmp_path / "full.pt")
    assert got["w"].tolist() == full and got["b"].tolist() == [1.0] * 5 and got["n"] == 1
    res = pools(2, "gloo").run(_load_broadcast, str(tmp_path / "full.pt"))
    cols = np.asarray(full)
    for rank, (local, whole, b, n) in enumerate(res):
        assert whole == full and b == [1.0] * 5 and n == 1
        assert local == cols[:, [0, 1, 2] if rank == 0 else [3, 4]].tolist()


# ---- get_state_dict / set_state_dict with no optimizers ------------------------------------
def test_state_dict_helpers_with_no_optimizers():
    from ember.distributed.checkpoint.state_dict import (
        get_optimizer_state_dict,
        get_state_dict,
        set_optimizer_state_dict,
        set_state_dict,
    )

    m = _model(0)
    for optims in ([], ()):
        model_sd, optim_sd = get_state_dict(m, optims)
        assert sorted(model_sd) == ["0.bias", "0.weight", "2.bias", "2.weight"] and optim_sd == {}
    model_sd, optim_sd = get_state_dict(m, optimizers=[])
    assert optim_sd == {}
    # PyTorch 2.13: the optimizer state is ignored when there are no optimizers ...
    keys = set_state_dict(m, [], model_state_dict=model_sd, optim_state_dict={"state": {}})
    assert list(keys.missing_keys) == [] and list(keys.unexpected_keys) == []
    # ... and an optimizer-only call without optimizers is its RuntimeError
    msg = "Optimizers are not passed in but optim_only is set to True."
    with pytest.raises(RuntimeError, match=msg):
        get_optimizer_state_dict(m, [])
    with pytest.raises(RuntimeError, match=msg):
        set_optimizer_state_dict(m, [], {})
    with pytest.raises(RuntimeError, match=msg):
        set_state_dict(m, [], model_state_dict={}, optim_state_dict={})
    with pytest.raises(TypeError, match="optimizers must be an Optimizer"):
        get_state_dict(m, "adam")
