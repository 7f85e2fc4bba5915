"""DataLoader with worker processes: order, seeding, errors, dead workers, shutdown, resumption."""

from __future__ import annotations

import glob
import os
import random
import time

import numpy as np
import pytest

import ember
from ember.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

pytestmark = pytest.mark.timeout(120)


# Module-level datasets: spawn-started workers must be able to import them.
class Indexed(Dataset):
    def __init__(self, n=20, shape=(2,)):
        self.n, self.shape = n, shape

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i, np.full(self.shape, i, dtype=np.float32)


class RandomDraws(Dataset):
    """Each sample draws from all three generators a worker seeds."""

    def __len__(self):
        return 12

    def __getitem__(self, i):
        return i, [float(ember.rand(1).item()), float(np.random.rand()), random.random()]


class WhoAmI(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        info = get_worker_info()
        return i, os.getpid(), info.id, info.seed, info.num_workers


class Failing(Dataset):
    def __init__(self, bad, how="raise"):
        self.bad, self.how = bad, how

    def __len__(self):
        return 10

    def __getitem__(self, i):
        if i == self.bad:
            if self.how == "exit":
                os._exit(3)
            if self.how == "keyerror":
                raise KeyError("no such sample")
            raise ValueError(f"sample {i} is broken")
        return i


class Slow(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        time.sleep(2.0 if i == 2 else 0.0)
        return i


class Sharded(IterableDataset):
    def __init__(self, n, shard=True):
        self.n, self.shard = n, shard

    def __iter__(self):
        info = get_worker_info()
        if info is None or not self.shard:
            return iter(range(self.n))
        return iter(range(info.id, self.n, info.num_workers))


class NoisyIndexed(Dataset):
    def __len__(self):
        return 25

    def __getitem__(self, i):
        return i, ember.rand(3)


def _flat(loader):
    return [(i.tolist(), x.tolist()) for i, x in loader]


def test_workers_keep_batch_order_and_match_main_process():
    expected = _flat(DataLoader(Indexed(23), batch_size=4))
    for workers in (1, 3):
        got = _flat(DataLoader(Indexed(23), batch_size=4, num_workers=workers, prefetch_factor=3))
        assert got == expected
    ember.manual_seed(5)
    a = _flat(DataLoader(Indexed(23), batch_size=4, shuffle=True))
    ember.manual_seed(5)
    assert _flat(DataLoader(Indexed(23), batch_size=4, shuffle=True, num_workers=2)) == a


def test_large_batches_through_shared_memory_leave_no_files():
    ds = Indexed(16, shape=(64, 64))  # 16 KiB a sample: batches go through /dev/shm
    out = list(DataLoader(ds, batch_size=8, num_workers=2))
    assert [i.tolist() for i, _ in out] == [list(range(8)), list(range(8, 16))]
    x = out[1][1]
    assert x.shape == (8, 64, 64) and float(x[3, 5, 7].item()) == 11.0
    x._data += 1  # the arrays are ordinary writable memory
    assert not glob.glob(f"/dev/shm/ember-dl-{os.getpid()}-*")


def test_large_batches_through_the_pipe_without_shared_memory(monkeypatch):
    from ember.utils.data import _transport

    monkeypatch.setattr(_transport, "_SHM_DIR", None)  # as on a machine without /dev/shm
    ds = Indexed(8, shape=(32, 64))
    loader = DataLoader(ds, batch_size=4, num_workers=1, multiprocessing_context="fork")
    assert _flat(loader) == _flat(DataLoader(ds, batch_size=4))


def test_worker_seeding_is_deterministic_and_per_batch():
    def draws(workers, seed):
        ember.manual_seed(seed)
        return [
            v
            for _, vals in DataLoader(RandomDraws(), batch_size=3, num_workers=workers)
            for v in np.asarray(vals).T.tolist()
        ]

    a = draws(2, 0)
    assert draws(2, 0) == a
    assert draws(2, 1) != a
    assert draws(1, 0) == a  # a batch's draws depend on its position, not on its worker
    flat = [x for row in a for x in row]
    assert len(set(flat)) == len(flat)  # no two batches repeat a stream


def test_worker_info_and_worker_init_fn():
    ember.manual_seed(3)
    rows = [r for b in DataLoader(WhoAmI(), batch_size=2, num_workers=2) for r in zip(*b)]
    pids = {int(r[1]) for r in rows}
    assert len(pids) == 2 and os.getpid() not in pids
    ids = sorted({int(r[2]) for r in rows})
    seeds = {int(r[2]): int(r[3]) for r in rows}
    assert ids == [0, 1] and seeds[1] == seeds[0] + 1 and {int(r[4]) for r in rows} == {2}
    assert [int(r[2]) for r in rows] == [0, 0, 1, 1, 0, 0, 1, 1]  # round-robin batches


def _init_fn(worker_id):
    np.random.seed(1000 + worker_id)
    if worker_id == 1:
        raise RuntimeError("init failed in worker 1")


def test_worker_init_fn_error_is_reported():
    it = iter(DataLoader(Indexed(8), batch_size=2, num_workers=2, worker_init_fn=_init_fn))
    next(it)
    with pytest.raises(RuntimeError, match="init failed in worker 1"):
        next(it)


def test_worker_exception_reraised_with_worker_traceback():
    it = iter(DataLoader(Failing(5), batch_size=2, num_workers=2))
    assert next(it).tolist() == [0, 1] and next(it).tolist() == [2, 3]
    with pytest.raises(ValueError) as info:
        next(it)
    msg = str(info.value)
    assert "Caught ValueError in DataLoader worker process 0" in msg
    assert "sample 5 is broken" in msg and "__getitem__" in msg and "Traceback" in msg
    assert next(it).tolist() == [6, 7]  # the loader goes on, as torch's does
    with pytest.raises(KeyError, match="no such sample"):
        list(DataLoader(Failing(0, "keyerror"), batch_size=2, num_workers=1))


class Unpicklable(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return (lambda: i) if i == 3 else i


def test_unpicklable_batch_is_reported():
    it = iter(DataLoader(Unpicklable(), batch_size=2, num_workers=1, collate_fn=list))
    assert next(it) == [0, 1]
    with pytest.raises(Exception, match="Caught .* in DataLoader worker process 0") as info:
        next(it)
    assert "pickle" in str(info.value).lower()


def test_dead_worker_is_noticed_not_hung():
    loader = DataLoader(Failing(3, "exit"), batch_size=2, num_workers=2)
    start = time.monotonic()
    with pytest.raises(
        RuntimeError,
        match=r"DataLoader worker \(pid\(s\) \d+\) exited "
        r"unexpectedly: worker 1 \(pid \d+\) exited with "
        r"code 3",
    ):
        list(loader)
    assert time.monotonic() - start < 10


def test_timeout():
    it = iter(DataLoader(Slow(), batch_size=1, num_workers=1, timeout=0.5))
    assert next(it).tolist() == [0] and next(it).tolist() == [1]
    with pytest.raises(RuntimeError, match="DataLoader timed out after 0.5 seconds"):
        next(it)


def _alive(pids):
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        with open(f"/proc/{pid}/stat") as f:  # a zombie awaiting its parent counts as gone
            if f.read().split()[2] != "Z":
                alive.append(pid)
    return alive


def test_workers_shut_down_after_epoch_and_on_break():
    loader = DataLoader(WhoAmI(), batch_size=2, num_workers=2)
    pids = {int(p) for b in loader for p in b[1]}
    assert _alive(pids) == []
    it = iter(loader)
    pids = {int(p) for p in next(it)[1]} | {p.pid for p in it._pool.procs}
    assert _alive(pids)
    del it  # abandoning the iterator shuts its workers down
    deadline = time.monotonic() + 10
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(pids) == []


_EXIT_SCRIPT = """
import os, sys
sys.path.insert(0, {tests!r})
from ember.utils.data import DataLoader
from test_data_workers import WhoAmI, Indexed
loader = DataLoader(WhoAmI(), batch_size=2, num_workers=2, persistent_workers=True)
it = iter(loader)
print(" ".join(str(p.pid) for p in it._pool.procs), flush=True)
big = iter(DataLoader(Indexed(64, shape=(64, 64)), batch_size=8, num_workers=2))
next(big)  # more batches in flight, in shared memory, when the interpreter exits
"""


def test_workers_and_shared_memory_cleaned_up_at_interpreter_exit():
    import subprocess
    import sys

    script = _EXIT_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    pids = [int(p) for p in stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 10
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(pids) == []
    assert glob.glob(f"/dev/shm/ember-dl-{proc.pid}-*") == []


def test_persistent_workers_survive_epochs_and_abandoned_epochs():
    loader = DataLoader(WhoAmI(), batch_size=2, num_workers=2, persistent_workers=True)
    first = {int(p) for b in loader for p in b[1]}
    it = iter(loader)
    next(it)  # abandon this epoch midway: its in-flight results must not leak into the next
    epoch = list(loader)
    assert [int(i) for b in epoch for i in b[0]] == list(range(8))
    assert {int(p) for b in epoch for p in b[1]} == first
    del loader, it, epoch  # the workers go with the loader
    deadline = time.monotonic() + 10
    while _alive(first) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(first) == []


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_iterable_dataset_sharding_matches_torch():
    got = [b.tolist() for b in DataLoader(Sharded(11), batch_size=2, num_workers=3)]
    assert sorted(x for b in got for x in b) == list(range(11))
    dup = [
        x
        for b in DataLoader(Sharded(5, shard=False), batch_size=2, num_workers=2)
        for x in b.tolist()
    ]
    assert sorted(dup) == sorted(list(range(5)) * 2)  # unsharded: every worker yields it all
    torch = pytest.importorskip("torch")

    class TorchSharded(torch.utils.data.IterableDataset):
        def __iter__(self):
            info = torch.utils.data.get_worker_info()
            return iter(range(info.id, 11, info.num_workers))

    theirs = [
        b.tolist()
        for b in torch.utils.data.DataLoader(
            TorchSharded(), batch_size=2, num_workers=3, multiprocessing_context="fork"
        )
    ]
    assert got == theirs


def test_spawn_context():
    loader = DataLoader(Indexed(9), batch_size=4, num_workers=2, multiprocessing_context="spawn")
    assert _flat(loader) == _flat(DataLoader(Indexed(9), batch_size=4))


def _record(loader, epochs, stop_at=None):
    seen = []
    for e in range(epochs):
        for k, (idx, noise) in enumerate(loader):
            seen.append((e, idx.tolist(), np.round(noise.numpy(), 6).tolist()))
            if stop_at == (e, k):
                return seen, loader.state_dict(), ember.get_rng_state()
    return seen, None, None


@pytest.mark.parametrize("persistent", [False, True])
@pytest.mark.parametrize("stop_at", [(0, 1), (1, 4)])
def test_resume_exactly_with_workers(stop_at, persistent):
    def make():
        return DataLoader(
            NoisyIndexed(), batch_size=4, shuffle=True, num_workers=2, persistent_workers=persistent
        )

    ember.manual_seed(0)
    full, _, _ = _record(make(), 2)
    ember.manual_seed(0)
    head, state, rng = _record(make(), 2, stop_at)
    assert head == full[: len(head)]
    ember.manual_seed(777)
    loader = make()
    loader.load_state_dict(state)
    ember.set_rng_state(rng)
    tail = []
    for e in range(stop_at[0], 2):
        tail += [(e, i.tolist(), np.round(n.numpy(), 6).tolist()) for i, n in loader]
    assert head + tail == full


def test_resume_iterable_dataset_with_workers():
    loader = DataLoader(Sharded(13), batch_size=2, num_workers=2)
    full = [b.tolist() for b in loader]
    it = iter(loader)
    head = [next(it).tolist() for _ in range(3)]
    resumed = DataLoader(Sharded(13), batch_size=2, num_workers=2)
    resumed.load_state_dict(loader.state_dict())
    assert head + [b.tolist() for b in resumed] == full
