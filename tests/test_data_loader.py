"""DataLoader in the main process: batching, arguments, errors, exact resumption."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    SequentialSampler,
    TensorDataset,
    get_worker_info,
)


class Squares(Dataset):
    def __init__(self, n=10):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": np.array([i, i * i], dtype=np.float32), "i": i}


class Noisy(Dataset):
    """Samples with random augmentation drawn from ember's default generator."""

    def __init__(self, n=23):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i, ember.rand(2)


class Stream(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(range(self.n))

    def __len__(self):
        return self.n


def test_batches_and_len():
    dl = DataLoader(Squares(10), batch_size=4)
    batches = list(dl)
    assert len(dl) == 3 and len(batches) == 3
    assert batches[0]["x"].shape == (4, 2) and batches[0]["i"].tolist() == [0, 1, 2, 3]
    assert batches[2]["i"].tolist() == [8, 9]
    assert len(DataLoader(Squares(10), batch_size=4, drop_last=True)) == 2
    assert [b["i"].tolist() for b in DataLoader(Squares(10), batch_size=4, drop_last=True)] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
    ]


def test_tensor_dataset_loader():
    x, y = ember.randn(10, 3), ember.arange(10)
    xb, yb = next(iter(DataLoader(TensorDataset(x, y), batch_size=4)))
    assert np.array_equal(xb.numpy(), x.numpy()[:4]) and yb.tolist() == [0, 1, 2, 3]


def test_no_auto_batching_uses_default_convert():
    out = list(DataLoader(Squares(3), batch_size=None))
    assert len(out) == 3 and isinstance(out[1]["x"], ember.Tensor) and out[1]["i"] == 1


def test_batch_sampler_and_custom_collate():
    bs = BatchSampler(SequentialSampler(range(7)), batch_size=3, drop_last=False)
    dl = DataLoader(Squares(7), batch_sampler=bs, collate_fn=lambda b: [s["i"] for s in b])
    assert list(dl) == [[0, 1, 2], [3, 4, 5], [6]] and len(dl) == 3


def test_shuffle_is_reproducible_with_manual_seed_and_generator():
    def order(**kw):
        return [b["i"].tolist() for b in DataLoader(Squares(12), batch_size=5, shuffle=True, **kw)]

    ember.manual_seed(0)
    a = order()
    ember.manual_seed(0)
    assert order() == a and sorted(sum(a, [])) == list(range(12))
    assert order(generator=ember.Generator().manual_seed(1)) == order(
        generator=ember.Generator().manual_seed(1)
    )


def test_iterable_dataset_in_main_process():
    assert [b.tolist() for b in DataLoader(Stream(7), batch_size=3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b.tolist() for b in DataLoader(Stream(7), batch_size=3, drop_last=True)] == [
        [0, 1, 2],
        [3, 4, 5],
    ]
    assert len(DataLoader(Stream(7), batch_size=3)) == 3
    assert get_worker_info() is None


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(num_workers=-1), "num_workers option should be non-negative"),
        (dict(timeout=-1), "timeout option should be non-negative"),
        (
            dict(prefetch_factor=2),
            "prefetch_factor option could only be specified in multiprocessing",
        ),
        (dict(persistent_workers=True), "persistent_workers option needs num_workers > 0"),
        (dict(sampler=[0, 1], shuffle=True), "sampler option is mutually exclusive with shuffle"),
        (dict(batch_sampler=[[0]], batch_size=2), "batch_sampler option is mutually exclusive"),
        (dict(batch_sampler=[[0]], drop_last=True), "batch_sampler option is mutually exclusive"),
        (dict(batch_size=None, drop_last=True), "batch_size=None option disables auto-batching"),
        (dict(num_workers=1, multiprocessing_context="nope"), "valid start method"),
    ],
)
def test_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        list(DataLoader(Squares(4), **kwargs))


def test_iterable_dataset_argument_errors():
    with pytest.raises(
        ValueError, match="expected unspecified shuffle option, but got shuffle=True"
    ):
        DataLoader(Stream(3), shuffle=True)
    with pytest.raises(ValueError, match="expected unspecified sampler option"):
        DataLoader(Stream(3), sampler=[0])
    with pytest.raises(ValueError, match="expected unspecified batch_sampler option"):
        DataLoader(Stream(3), batch_sampler=[[0]])


def test_attributes_are_frozen_after_init():
    dl = DataLoader(Squares(4))
    with pytest.raises(
        ValueError, match="batch_size attribute should not be set after DataLoader is initialized"
    ):
        dl.batch_size = 3
    dl.num_workers = 0  # allowed, as in torch


def test_pin_memory_without_cuda_warns_and_passes_through():
    if ember.cuda.is_available():
        pytest.skip("CUDA present: pinning really happens")
    with pytest.warns(UserWarning, match="no accelerator is found"):
        dl = DataLoader(Squares(4), batch_size=2, pin_memory=True)
    assert [b["i"].tolist() for b in dl] == [[0, 1], [2, 3]]


def test_exception_in_dataset_propagates_unchanged():
    class Bad(Squares):
        def __getitem__(self, i):
            if i == 2:
                raise KeyError("missing sample 2")
            return super().__getitem__(i)

    it = iter(DataLoader(Bad(4), batch_size=2))
    next(it)
    with pytest.raises(KeyError, match="missing sample 2"):
        next(it)


# ---- exact resumption ------------------------------------------------------------------------
def _run(loader, epochs, stop_at=None):
    """Record (epoch, batch) pairs; with stop_at=(e, k), return the loader state and RNG state
    right after batch k of epoch e was consumed (what a checkpoint would save)."""
    seen = []
    for e in range(epochs):
        for k, (idx, noise) in enumerate(loader):
            seen.append((e, idx.tolist(), np.round(noise.numpy(), 6).tolist()))
            if stop_at == (e, k):
                return seen, loader.state_dict(), ember.get_rng_state()
    return seen, None, None


@pytest.mark.parametrize("stop_at", [(0, 0), (0, 2), (0, 4), (1, 3)])
def test_resume_exactly_in_main_process(stop_at):
    def make():
        return DataLoader(Noisy(23), batch_size=5, shuffle=True)

    ember.manual_seed(0)
    full, _, _ = _run(make(), 3)
    ember.manual_seed(0)
    head, state, rng = _run(make(), 3, stop_at)
    assert head == full[: len(head)]

    ember.manual_seed(12345)  # a fresh process: only the checkpoint is shared
    loader = make()
    loader.load_state_dict(state)
    ember.set_rng_state(rng)
    assert loader.state_dict()["batches_served"] == stop_at[1] + 1
    tail = []
    for e in range(stop_at[0], 3):
        tail += [(e, i.tolist(), np.round(n.numpy(), 6).tolist()) for i, n in loader]
    assert head + tail == full


def test_state_between_epochs_and_user_generator():
    g = ember.Generator().manual_seed(4)
    loader = DataLoader(Noisy(10), batch_size=3, shuffle=True, generator=g)
    list(loader)
    state = loader.state_dict()
    assert state["epoch"] == 1 and state["batches_served"] == 0
    expected = [i.tolist() for i, _ in loader]
    resumed = DataLoader(
        Noisy(10), batch_size=3, shuffle=True, generator=ember.Generator().manual_seed(0)
    )
    resumed.load_state_dict(state)
    assert [i.tolist() for i, _ in resumed] == expected


def test_resume_iterable_dataset_replays():
    loader = DataLoader(Stream(10), batch_size=3)
    it = iter(loader)
    next(it), next(it)
    resumed = DataLoader(Stream(10), batch_size=3)
    resumed.load_state_dict(loader.state_dict())
    assert [b.tolist() for b in resumed] == [[6, 7, 8], [9]]


def test_load_state_dict_checks_keys():
    with pytest.raises(KeyError, match=r"missing keys \['sampler', 'base_seed'\]"):
        DataLoader(Squares(3)).load_state_dict({"epoch": 0, "batches_served": 1})
    with pytest.raises(ValueError, match="batches_served must be >= 0"):
        DataLoader(Squares(3)).load_state_dict(
            {"epoch": 0, "batches_served": -1, "sampler": {}, "base_seed": None}
        )


def test_state_dict_survives_ember_save(tmp_path):
    try:
        save = ember.save
    except (AttributeError, ImportError):
        pytest.skip("ember.save is not available yet")
    loader = DataLoader(Noisy(10), batch_size=3, shuffle=True)
    it = iter(loader)
    next(it)
    path = tmp_path / "loader.pt"
    save({"loader": loader.state_dict()}, path)
    state = ember.load(path)["loader"]
    resumed = DataLoader(Noisy(10), batch_size=3, shuffle=True)
    resumed.load_state_dict(state)
    assert [i.tolist() for i, _ in resumed] == [i.tolist() for i, _ in it]


def test_pin_memory_walks_batches(monkeypatch):
    import collections

    from ember.utils.data import _pin_memory

    monkeypatch.setattr(_pin_memory, "_pin_tensor", lambda t: ("pinned", t.tolist()))
    Pair = collections.namedtuple("Pair", "a b")
    batch = {"x": ember.tensor([1]), "rest": [Pair(ember.tensor([2]), "s"), (3, ember.tensor([4]))]}
    assert _pin_memory.pin_memory(batch) == {
        "x": ("pinned", [1]),
        "rest": [Pair(("pinned", [2]), "s"), (3, ("pinned", [4]))],
    }


@pytest.mark.gpu
def test_pin_memory_with_cuda():
    dl = DataLoader(Squares(4), batch_size=2, pin_memory=True, num_workers=1)
    batch = next(iter(dl))
    x = batch["x"]
    assert x.device.type == "cpu" and x.tolist() == [[0.0, 0.0], [1.0, 1.0]]
    import cupy

    ptr = cupy.cuda.runtime.pointerGetAttributes(x.data_ptr())
    assert ptr.type == cupy.cuda.runtime.memoryTypeHost  # page-locked host memory
    assert x.to("cuda").cpu().tolist() == x.tolist()
