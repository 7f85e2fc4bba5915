"""``ember launch --nnodes MIN:MAX``: a torchrun-style script on a real Ray cluster whose
"hosts" (extra raylets, ``_elastic_nodes.py``) join and leave while it runs."""

from __future__ import annotations

import argparse
import os
import textwrap

import pytest
from _elastic_nodes import Host, SlotNodes  # tests/train is on sys.path (rootdir conftest)

from ember.distributed.train.config import ScalingConfig
from ember.launcher import launch

# Each attempt logs "restart_count world_size rank all_reduce(1)"; the first group (1 node)
# waits for a second host to join; on 2 nodes rank 1 asks for its host to be taken away.
SCRIPT = """
import os, sys, time
import ember
import ember.distributed as dist

marks = sys.argv[1]
world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
restart = os.environ["TORCHELASTIC_RESTART_COUNT"]
dist.init_process_group()
total = ember.ones(1)
dist.all_reduce(total)
with open(os.path.join(marks, "log"), "a") as f:
    f.write(f"{restart} {world} {rank} {int(total.item())}\\n")
if world == 1 and not os.path.exists(os.path.join(marks, "grow_request")):
    open(os.path.join(marks, "grow_request"), "w").close()
    time.sleep(600)  # stopped when the group grows
if world == 2 and rank == 1 and not os.path.exists(os.path.join(marks, "lose_request")):
    open(os.path.join(marks, "lose_request"), "w").close()
    time.sleep(600)  # this host is taken away
if world == 2:
    time.sleep(600)  # rank 0 waits to be stopped with its peer
dist.destroy_process_group()
"""


@pytest.mark.slow
@pytest.mark.full
def test_launch_grows_when_a_node_joins_and_shrinks_when_one_is_lost(tmp_path, ray_session, capsys):
    import ray

    nodes = SlotNodes(f"ember_elastic_launch_{os.getpid()}")
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(SCRIPT))
    marks = tmp_path / "marks"
    marks.mkdir()
    args = argparse.Namespace(
        module=False,
        script_args=[str(marks)],
        working_dir=None,
        max_restarts=1,
        nnodes=(1, 2),
        nproc_per_node=1,
        workers=None,
        placement=None,
    )
    n, strategy = launch._plan(args)
    assert (args.min_nnodes, args.nnodes, n, strategy) == (1, 2, 2, "STRICT_SPREAD")
    # the job's workers land only on the test's hosts: one unit of their resource each
    scaling = ScalingConfig(
        num_workers=n,
        resources_per_worker={"CPU": 0, nodes.resource: 1},
        placement_strategy=strategy,
    )
    try:
        nodes.add()
        with Host(nodes, str(marks)) as host:
            code = launch._run_started(ray, args, scaling, str(script), True, {}, strategy)
        assert host.error is None, host.error
    finally:
        nodes.remove_all()
    err = capsys.readouterr().err
    assert code == 0, err
    lines = sorted((marks / "log").read_text().split("\n"))[1:]
    # 1 node; grown to 2 (not a restart); a host lost: restart 1 goes on with 1 node
    assert lines == ["0 1 0 1", "0 2 0 2", "0 2 1 2", "1 1 0 1"], err
    assert "1 more node(s) have room; restarting the workers on more nodes" in err
    assert "elastic job on 2 node(s) of 1..2: WORLD_SIZE=2" in err
    assert "restarting (1/1)" in err


@pytest.mark.parametrize(
    "value, message",
    [
        ("3:2", "MIN:MAX needs MIN <= MAX, got 3 > 2"),
        ("0:2", "must be >= 1, got 0:2"),
        ("1:x", "expected N or MIN:MAX, got '1:x'"),
    ],
)
def test_bad_nnodes_range_names_the_values(value, message, capsys):
    parser = argparse.ArgumentParser(prog="ember")
    launch.add_parser(parser.add_subparsers())
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["launch", "--nnodes", value, "x.py"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and f"argument --nnodes: {message}" in err, err


def test_nnodes_parses_a_count_or_a_range():
    assert launch._nnodes("2") == (2, 2)
    assert launch._nnodes("1:4") == (1, 4)
    args = argparse.Namespace(nnodes=(2, 2), nproc_per_node=2, workers=None, placement=None)
    assert launch._plan(args) == (4, "SPREAD") and launch._elastic_range(args) is None
    args = argparse.Namespace(nnodes=(1, 3), nproc_per_node=2, workers=None, placement=None)
    assert launch._plan(args) == (6, "SPREAD") and launch._elastic_range(args) == (1, 3, 2)
