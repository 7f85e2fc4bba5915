"""Rank ordering of the worker group (pure logic; the Ray paths are covered elsewhere)."""

from ember.distributed.train._internal.worker_group import WorkerInfo, order_ranks


def _w(node, gpus=()):
    return WorkerInfo(node_id=node, node_ip=f"ip-{node}", hostname=node, pid=1, gpu_ids=list(gpus))


def test_ranks_by_node_then_gpu_with_the_drivers_node_first():
    infos = [_w("B", ["1"]), _w("A", ["3"]), _w("B", ["0"]), _w("A", ["2"])]
    ordered = order_ranks(infos, first_node="A")
    assert [(w.node_id, w.gpu_ids[0]) for w in ordered] == [
        ("A", "2"),
        ("A", "3"),
        ("B", "0"),
        ("B", "1"),
    ]
    assert [w.rank for w in ordered] == [0, 1, 2, 3]
    assert [w.local_rank for w in ordered] == [0, 1, 0, 1]
    assert [w.node_rank for w in ordered] == [0, 0, 1, 1]
    assert all(w.local_world_size == 2 for w in ordered)


def test_without_the_driver_node_spawn_order_decides():
    ordered = order_ranks([_w("B"), _w("A"), _w("B")], first_node="Z")
    assert [w.node_id for w in ordered] == ["B", "B", "A"]
    assert [w.local_rank for w in ordered] == [0, 1, 0]


def test_worker_envs_give_each_worker_its_gpu():
    from ember.distributed.train._internal.worker_group import worker_envs

    ordered = order_ranks([_w("A", ["1"]), _w("A", ["0"]), _w("B", ["0"]), _w("C")])
    envs = worker_envs(ordered, "10.0.0.1", 29500, "tok")
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs[:3]] == ["0,1", "0,1", "0"]
    assert [e["EMBER_DEVICE_INDEX"] for e in envs[:3]] == [0, 1, 0]
    assert "CUDA_VISIBLE_DEVICES" not in envs[3] and "EMBER_DEVICE_INDEX" not in envs[3]
    assert [e["RANK"] for e in envs] == [0, 1, 2, 3]
    assert all(e["WORLD_SIZE"] == 4 and e["MASTER_PORT"] == 29500 for e in envs)


def test_worker_envs_with_workers_sharing_a_gpu():
    """Fractional GPUs (resources_per_worker={"GPU": 0.5}): both workers report GPU 0; it is
    listed once, and both train on it."""
    from ember.distributed.train._internal.worker_group import worker_envs

    ordered = order_ranks([_w("A", ["0"]), _w("A", ["0"]), _w("A", ["1"])])
    envs = worker_envs(ordered, "h", 1, "t")
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0,1"] * 3
    assert [e["EMBER_DEVICE_INDEX"] for e in envs] == [0, 0, 1]
    assert [e["LOCAL_RANK"] for e in envs] == [0, 1, 2]
