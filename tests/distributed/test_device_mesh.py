"""``DeviceMesh`` / ``init_device_mesh`` on 4 real ranks, against torch's DeviceMesh layout.

torch's expected layout comes from its own ``init_device_mesh`` on the single-process "fake"
backend, looped over ranks 0..3 in the test process (no torch in the workers).
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

WORLD = 4


# ---- worker bodies (module level: pickled by reference) ----------------------------------------
def _layout(mesh) -> dict:
    out = {
        "mesh": mesh.mesh.tolist(),
        "coord": mesh.get_coordinate(),
        "shape": mesh.shape,
        "ndim": mesh.ndim,
        "size": mesh.size(),
        "names": mesh.mesh_dim_names,
    }
    for dim in range(mesh.ndim):
        out[f"size{dim}"] = mesh.size(dim)
        out[f"local{dim}"] = mesh.get_local_rank(dim)
    return out


def case_mesh_2d():
    import ember
    import ember.distributed as dist
    from ember.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    rank = dist.get_rank()
    out = {
        "root": _layout(mesh),
        "dp": _layout(mesh["dp"]),
        "tp": _layout(mesh["tp"]),
        "both_is_root": mesh["dp", "tp"] is mesh,
        "local_by_name": (mesh.get_local_rank("dp"), mesh.get_local_rank("tp")),
    }
    # each dimension's group really reduces over the right ranks: sum of 10 ** rank
    for name in ("dp", "tp"):
        pg = mesh.get_group(name)
        out[f"{name}_group_ranks"] = dist.get_process_group_ranks(pg)
        t = ember.tensor([float(10**rank)])
        dist.all_reduce(t, group=pg)
        out[f"{name}_sum"] = t.item()
        # the sliced 1-d mesh hands back the same group, without a mesh_dim
        assert mesh[name].get_group() is pg
    out["all_groups"] = [dist.get_process_group_ranks(g) for g in mesh.get_all_groups()]
    return out


def case_mesh_1d_and_explicit():
    import ember
    import ember.distributed as dist
    from ember.distributed import DeviceMesh, init_device_mesh

    rank = dist.get_rank()
    whole = init_device_mesh("cpu", (WORLD,))
    out = {
        "whole_is_world": whole.get_group() is dist.group.WORLD,
        "whole_coord": whole.get_coordinate(),
    }
    # a transposed explicit layout: rows are [0, 2] and [1, 3]
    mesh = DeviceMesh("cpu", [[0, 2], [1, 3]], mesh_dim_names=("a", "b"))
    out["explicit_coord"] = mesh.get_coordinate()
    t = ember.tensor([float(10**rank)])
    dist.all_reduce(t, group=mesh.get_group("b"))
    out["b_sum"] = t.item()
    # a mesh over 3 of the 4 ranks: rank 3 is outside it
    part = init_device_mesh("cpu", (3,))
    out["part_coord"] = part.get_coordinate()
    if part.get_coordinate() is not None:
        t = ember.tensor([1.0])
        dist.all_reduce(t, group=part.get_group())
        out["part_sum"] = t.item()
    return out


def case_mesh_errors():
    from ember.distributed.device_mesh import init_device_mesh

    errors = {}

    def catch(key, fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - the test compares type and message
            errors[key] = (type(e).__name__, str(e))

    catch("too_big", lambda: init_device_mesh("cpu", (3, 2)))
    mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    catch("unknown_slice", lambda: mesh["pp"])
    catch("unknown_group", lambda: mesh.get_group("pp"))
    catch("unordered", lambda: mesh["tp", "dp"])
    catch("overlap", lambda: mesh["dp", "dp"])
    catch("no_dim", lambda: mesh.get_group())
    catch("bad_index", lambda: mesh.size(2))
    return errors


@pytest.fixture(scope="module")
def pool(pools):
    # "shm" is what "gloo" ("auto") picks on one host; this pool is test_collectives' too
    return pools(WORLD, "shm")


@pytest.fixture(scope="module")
def torch_layouts():
    """torch's init_device_mesh((2, 2), ("dp", "tp")) seen from each of the 4 ranks."""
    torch = pytest.importorskip("torch")
    tdist = torch.distributed
    from torch.distributed.device_mesh import init_device_mesh
    from torch.testing._internal.distributed.fake_pg import FakeStore

    def layout(m):
        out = {
            "mesh": m.mesh.tolist(),
            "coord": m.get_coordinate(),
            "shape": tuple(m.shape),
            "ndim": m.ndim,
            "size": m.size(),
            "names": m.mesh_dim_names,
        }
        for dim in range(m.ndim):
            out[f"size{dim}"] = m.size(dim)
            out[f"local{dim}"] = m.get_local_rank(dim)
        return out

    per_rank = []
    for r in range(WORLD):
        tdist.init_process_group("fake", store=FakeStore(), rank=r, world_size=WORLD)
        try:
            m = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
            per_rank.append(
                {
                    "root": layout(m),
                    "dp": layout(m["dp"]),
                    "tp": layout(m["tp"]),
                    "dp_group_ranks": tdist.get_process_group_ranks(m.get_group("dp")),
                    "tp_group_ranks": tdist.get_process_group_ranks(m.get_group("tp")),
                }
            )
        finally:
            tdist.destroy_process_group()
    return per_rank


def test_2d_mesh_matches_torch_layout_and_groups_reduce(pool, torch_layouts):
    got = pool.run(case_mesh_2d)
    for rank, (mine, ref) in enumerate(zip(got, torch_layouts)):
        for key in ("root", "dp", "tp", "dp_group_ranks", "tp_group_ranks"):
            assert mine[key] == ref[key], (rank, key, mine[key], ref[key])
        assert mine["both_is_root"]
        assert mine["local_by_name"] == (rank // 2, rank % 2)
        assert mine["all_groups"] == [mine["dp_group_ranks"], mine["tp_group_ranks"]]
        # dp groups are the columns {0, 2} / {1, 3}; tp groups the rows {0, 1} / {2, 3}
        assert mine["dp_sum"] == sum(10.0**r for r in mine["dp_group_ranks"])
        assert mine["tp_sum"] == sum(10.0**r for r in mine["tp_group_ranks"])
    assert {got[r]["dp_sum"] for r in range(WORLD)} == {101.0, 1010.0}
    assert {got[r]["tp_sum"] for r in range(WORLD)} == {11.0, 1100.0}


def test_1d_explicit_and_partial_meshes(pool):
    got = pool.run(case_mesh_1d_and_explicit)
    assert all(g["whole_is_world"] for g in got)
    assert [g["whole_coord"] for g in got] == [(0,), (1,), (2,), (3,)]
    assert [g["explicit_coord"] for g in got] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    # "b" groups are the rows of [[0, 2], [1, 3]]
    assert [g["b_sum"] for g in got] == [101.0, 1010.0, 101.0, 1010.0]
    assert [g["part_coord"] for g in got] == [(0,), (1,), (2,), None]
    assert [g.get("part_sum") for g in got] == [3.0, 3.0, 3.0, None]


def test_mesh_errors_name_the_sizes_and_names(pool):
    errs = pool.run(case_mesh_errors)[0]
    assert errs["too_big"][0] == "RuntimeError" and "world size 4" in errs["too_big"][1]
    assert "6 ranks" in errs["too_big"][1]
    assert errs["unknown_slice"][0] == "KeyError" and "pp" in errs["unknown_slice"][1]
    assert "'dp', 'tp'" in errs["unknown_slice"][1]
    assert errs["unknown_group"][0] == "KeyError" and "'pp'" in errs["unknown_group"][1]
    assert errs["unordered"][0] == "KeyError" and "ascending" in errs["unordered"][1]
    assert errs["overlap"][0] == "RuntimeError" and "overlapping" in errs["overlap"][1]
    assert errs["no_dim"][0] == "RuntimeError" and "mesh_dim" in errs["no_dim"][1]
    assert errs["bad_index"][0] == "IndexError" and "(2, 2)" in errs["bad_index"][1]


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        ({"mesh_shape": (2, 2), "mesh_dim_names": ("dp", "dp")}, RuntimeError, ["unique", "'dp'"]),
        ({"mesh_shape": (2, 2), "mesh_dim_names": ("dp",)}, RuntimeError, ["same length", "1"]),
        ({"mesh_shape": (2, 0)}, ValueError, ["positive", "(2, 0)"]),
        ({"mesh_shape": (2,), "device_type": "cuda:0"}, RuntimeError, ["cuda:0"]),
    ],
)
def test_init_device_mesh_rejects_bad_arguments_before_any_group(kwargs, exc, words):
    # these checks run before init_process_group, so no process group is needed
    from ember.distributed.device_mesh import init_device_mesh

    kwargs = {"device_type": "cpu", **kwargs}
    with pytest.raises(exc) as info:
        init_device_mesh(kwargs.pop("device_type"), kwargs.pop("mesh_shape"), **kwargs)
    for w in words:
        assert w in str(info.value)


def test_explicit_mesh_rejects_repeated_ranks():
    from ember.distributed import DeviceMesh

    with pytest.raises(ValueError, match=r"ranks \[1\] appear more than once"):
        DeviceMesh("cpu", [[0, 1], [1, 2]], _init_backend=False)


@pytest.mark.full  # four fresh interpreters: ~10 s on an idle machine, outside CI's budget
def test_docs_device_mesh_example_runs(tmp_path):
    import pathlib
    import re
    import subprocess

    doc = pathlib.Path(__file__).resolve().parents[2] / "docs" / "distributed.md"
    section = doc.read_text().split("## Device meshes", 1)[1]
    block = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    script = tmp_path / "mesh_example.py"
    script.write_text(block)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
