"""Distributed checkpoints (``ember.distributed.checkpoint``) with real processes: saved under
one parallelism and world size, loaded under another, bitwise equal."""

from __future__ import annotations

import dcp_cases as cases
import numpy as np
from dist_harness import run_ranks


def assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for k in want:
        if isinstance(want[k], np.ndarray):
            assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), k
        else:
            assert got[k] == want[k], k


def test_fsdp4_to_ddp2_and_one_process(pools, tmp_path):
    path = str(tmp_path / "ck")
    saved = pools(4, "shm").run(cases.train_and_save, "fsdp", path)
    for s in saved[1:]:
        assert_same(s, saved[0])
    assert any(k.endswith("exp_avg") for k in saved[0])
    want = {**saved[0], "step": 2}
    for got in pools(2, "shm").run(cases.load_into, "ddp", path):
        assert_same(got, want)
    assert_same(cases.load_alone(path), want)


def test_fsdp2_to_one_one_to_fsdp2_and_ddp2_to_fsdp4(pools, tmp_path):
    a, b, c = str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c")
    saved = pools(2, "shm").run(cases.train_and_save, "fsdp", a)
    assert_same(cases.load_alone(a), {**saved[0], "step": 2})
    alone = cases.save_alone(b)
    for got in pools(2, "shm").run(cases.load_into, "fsdp", b):
        assert_same(got, {**alone, "step": 2})
    saved = pools(2, "shm").run(cases.train_and_save, "ddp", c)
    for got in pools(4, "shm").run(cases.load_into, "fsdp", c):
        assert_same(got, {**saved[0], "step": 2})


def test_rank_killed_mid_save_keeps_previous_checkpoint(tmp_path):
    path = str(tmp_path / "ck")
    out = run_ranks(cases.killed_mid_save, 2, path, timeout=40.0)
    assert out[1] is None  # rank 1 died
    assert out[0] is not None and not out[0].ok  # rank 0's save failed instead of hanging
    got = cases.load_alone(path)
    assert got["step"] == 1
    assert not np.array_equal(got["model.0.weight"], cases.make_model(7)[0].weight.detach().numpy())
    # the next save replaces the dead save's staging directory and the checkpoint
    cases.save_alone(path, steps=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_dtensor_2x2_to_two_ranks_and_one_process(pools, tmp_path):
    import ember
    import ember.distributed.checkpoint as dcp

    path = str(tmp_path / "dt")
    pools(4, "shm").run(cases.save_dtensors, path)
    assert pools(2, "shm").run(cases.load_dtensors, path) == [[True, True]] * 2
    sd = {"w": ember.zeros(7, 5), "b": ember.zeros(5)}
    dcp.load(sd, checkpoint_id=path)
    assert np.array_equal(sd["w"].numpy(), cases._global((7, 5), 1))
    files = {
        c.file for c in dcp.FileSystemReader(path).read_metadata().state_dict_metadata["b"].chunks
    }
    assert len(files) == 2  # the replicated bias shards were written once each, by two ranks


def test_async_save_and_own_directories_merged_like_trainer_checkpoints(pools, tmp_path):
    """async_save on two ranks. Without a shared directory each rank installs its own file;
    the Trainer's merge of the ranks' directories is a complete checkpoint, which loads on
    another world."""
    from ember.distributed.train.checkpoint import unpack_into

    saved = pools(2, "shm").run(cases.async_save_fsdp, str(tmp_path / "async"))
    assert_same(cases.load_alone(str(tmp_path / "async")), {**saved[0], "step": 2})
    out = pools(2, "shm").run(cases.save_own_dirs, str(tmp_path))
    assert out[0][1] == [".metadata", "__0_0.distcp"] and out[1][1] == ["__1_0.distcp"]
    merged = unpack_into([blob for blob, _, _ in out], str(tmp_path / "merged"))
    assert_same(cases.load_alone(merged.path), {**out[0][2], "step": 2})
