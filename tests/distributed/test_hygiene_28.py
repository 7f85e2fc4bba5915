"""Issue #28 items 3 and 4: ``destroy_process_group()`` gives back everything it took (shared
memory, descriptors, threads), SIGKILLed ranks leak no ``/dev/shm`` segment, and rendezvous
notices a dead or rejected rank within seconds. Real processes, no mocks.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from dist_harness import run_ranks


def _usage() -> dict:
    """This process's open descriptors, its mappings of ember's shared memory, the shared
    memory it holds (kB) and its threads."""
    maps = [line for line in open("/proc/self/maps") if "/dev/shm/ember-" in line]
    shmem = next(line for line in open("/proc/self/status") if line.startswith("RssShmem"))
    return {
        "fds": len(os.listdir("/proc/self/fd")),
        "shm_maps": len(maps),
        "shm_kb": int(shmem.split()[1]),
        "threads": threading.active_count(),
    }


def _own_segments(pids) -> list[str]:
    return [
        n
        for n in os.listdir("/dev/shm")
        if n.startswith("ember-") and any(f"-{p}-" in n for p in pids)
    ]


def scenario_cycles(rank, cycles):
    """``cycles`` init / DDP step / destroy rounds; every other DDP wrapper is kept alive (as a
    notebook or a sweep keeps its models), the others are dropped."""
    import ember
    import ember.distributed as dist
    from ember.nn.parallel import DistributedDataParallel as DDP

    kept, usage = [], []
    for i in range(cycles):
        dist.init_process_group("auto", timeout=60)
        model = DDP(ember.nn.Sequential(ember.nn.Linear(32, 64), ember.nn.Linear(64, 8)))
        opt = ember.optim.SGD(model.parameters(), lr=0.1)
        model(ember.ones(4, 32)).sum().backward()
        opt.step()
        during = _usage()
        dist.destroy_process_group()
        if i % 2:
            kept.append((model, opt))
        del model, opt
        usage.append(_usage())
        if i == 0:
            first_during = during
    # the gradients kept by the live wrappers are private copies, and still right
    grads = [float(m.module[1].bias.grad.sum().item()) for m, _ in kept[-1:]]
    return {"first": usage[0], "last": usage[-1], "peak": first_during, "grads": grads}


@pytest.mark.parametrize(
    "cycles",
    [50, pytest.param(200, marks=pytest.mark.full)],
)
def test_destroy_releases_shm_fds_and_threads(cycles):
    res = run_ranks(scenario_cycles, 2, cycles, timeout=30 + cycles)
    for rank, out in res.items():
        assert out is not None and out.ok, f"rank {rank}: {out and out.traceback}"
        first, last, peak = out.value["first"], out.value["last"], out.value["peak"]
        assert peak["shm_maps"] > 0  # the DDP did run in shared memory
        # nothing of ember's shared memory stays mapped, or held, after destroy
        assert last["shm_maps"] == 0 and first["shm_maps"] == 0, out.value
        assert last["shm_kb"] <= first["shm_kb"], out.value
        # descriptors and threads back to the level after the first cycle (gRPC's event
        # engine, made at the first use in a process, stays: 2 descriptors); 2 of slack for
        # a descriptor of gRPC's that is still closing
        assert last["fds"] <= first["fds"] + 2, out.value
        assert last["threads"] <= first["threads"], out.value
        # the last kept wrapper's gradients: d(sum(out))/d(bias) = batch size per output
        assert out.value["grads"] == [4.0 * 8]


# ---- SIGKILL and refusal during the rendezvous ------------------------------------------------
def _kill_self_after_segment(rank):
    """Rank 1 dies (SIGKILL) while the rendezvous runs, its shared memory just created."""
    if rank == 1:
        from ember.distributed._runtime import _shm

        def die(self, peers, deadline):
            os.kill(os.getpid(), signal.SIGKILL)

        _shm.ShmTransport.connect = die  # fault injection: die instead of connecting
    return _timed_join(rank)


def _timed_join(rank):
    """Join (rendezvous timeout 60 s); ``(error type, message, seconds in init)``."""
    import ember.distributed as dist

    t0 = time.monotonic()
    try:
        dist.init_process_group("auto", timeout=60)
    except Exception as e:
        return type(e).__name__, str(e), time.monotonic() - t0
    dist.destroy_process_group()
    return None, None, time.monotonic() - t0


def test_rank_killed_during_rendezvous_fails_fast_and_leaks_nothing():
    from ember.distributed._runtime import _shm

    res = run_ranks(_kill_self_after_segment, 2, timeout=60)
    assert res[1] is None  # killed, no answer
    kind, message, seconds = res[0].value
    assert kind == "DistributedError", message
    assert "rank 1" in message and "exited or was killed during the rendezvous" in message
    assert seconds < 10  # rendezvous timeout 60 s: found by the watch, not the timeout
    # rank 1's segment and arena are left (it never reached the barrier that unlinks them);
    # the next shared-memory transport on this host removes them (their process is gone)
    pid = int(message.split("(pid ")[1].split(",")[0])
    tp = _shm.ShmTransport(0, "t", [0, 1])
    tp.close()
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"ember-{pid}-")]
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"ember-arena-{pid}-")]


def test_reclaim_removes_only_files_of_dead_processes(tmp_path):
    import subprocess
    import sys

    from ember.distributed._runtime import _shm_reclaim

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    ns = _shm_reclaim.namespace_tag()
    names = {
        "dead": f"ember-{gone.pid}-{ns}-0123456789ab",
        "dead arena": f"ember-arena-{gone.pid}-{ns}-0123456789ab",
        "alive": f"ember-{os.getpid()}-{ns}-0123456789ab",
        "other namespace": f"ember-{gone.pid}-{ns}0-0123456789ab",
        "old format": f"ember-{gone.pid}-1-0123456789ab",
        "data loader": f"ember-dl-{gone.pid}-0",
    }
    for n in names.values():
        (tmp_path / n).write_bytes(b"x")
    removed = _shm_reclaim.reclaim(str(tmp_path))
    assert sorted(removed) == sorted([names["dead"], names["dead arena"]])
    assert sorted(os.listdir(tmp_path)) == sorted(
        v for k, v in names.items() if not k.startswith("dead")
    )


def _dead(name: str) -> bool:
    from ember._tempfiles import pid_alive
    from ember.distributed._runtime import _shm_reclaim

    m = _shm_reclaim._NAME_RE.match(name)
    return (
        m is not None
        and m.group(2) == _shm_reclaim.namespace_tag()
        and not pid_alive(int(m.group(1)))
    )


def test_rank_with_wrong_token_fails_every_rank_fast():
    res = run_ranks(
        _timed_join, 2, env=lambda r: {"EMBER_TOKEN": "other-token"} if r == 1 else {}, timeout=60
    )
    assert "refused this process's job token" in res[1].value[1], res[1]
    kind, message, seconds = res[0].value
    assert kind == "DistributedError", message
    assert "rank 1 was turned away by the store" in message and "EMBER_TOKEN" in message
    assert seconds < 10  # not the 60 s rendezvous timeout


def _die_after_rendezvous(rank):
    import ember
    import ember.distributed as dist

    dist.init_process_group("auto", timeout=60)
    if rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    dist.all_reduce(ember.ones(4))


@pytest.mark.full  # (held before issue #28 too; the CI budget goes to the new behaviour)
def test_sigkill_after_rendezvous_leaks_no_segment():
    res = run_ranks(_die_after_rendezvous, 2, timeout=60)
    assert res[1] is None
    assert res[0] is not None and not res[0].ok  # the all_reduce fails: its peer is gone
    # both ranks' names were unlinked once everyone had mapped them (after the barrier)
    assert not [n for n in os.listdir("/dev/shm") if n.startswith("ember-") and _dead(n)]


def test_docs_reclaim_snippet_runs():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "failure_modes.md")
    section = open(path).read().split("## Shared memory after SIGKILL", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/failure_modes.md", "exec"), {})
