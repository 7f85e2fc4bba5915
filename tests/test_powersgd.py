"""PowerSGD DDP hooks against torch's. Two processes, each one rank of a torch (gloo) group and
then of an ember group (one interpreter start-up per rank for both): the same per-rank
gradients go through both hooks bucket by bucket for several iterations (the reduced buckets,
P, Q and the error-feedback memories are compared), then both DDPs train the same model with
the hook (losses and weights compared)."""

from __future__ import annotations

import os
import pathlib
import re
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "distributed"))
from dist_harness import free_port, run_ranks  # noqa: E402

WORLD, ITERS, DDP_STEPS = 2, 5, 5
DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "distributed.md"
# two buckets: compressible matrices, a conv-shaped tensor, biases and two equal shapes
BUCKETS = [[(24, 16), (24,), (8, 3, 2, 2), (24, 16)], [(40, 24), (40,), (6, 40)]]
CASES = {
    # name: (hook, PowerSGDState kwargs)
    "rank1": ("powerSGD_hook", dict(matrix_approximation_rank=1, start_powerSGD_iter=2)),
    "rank3_qr_batched": (
        "powerSGD_hook",
        dict(
            matrix_approximation_rank=3,
            start_powerSGD_iter=2,
            batch_tensors_with_same_shape=True,
            random_seed=7,
        ),
    ),
    "cold_no_feedback": (
        "powerSGD_hook",
        dict(
            matrix_approximation_rank=2,
            start_powerSGD_iter=1,
            warm_start=False,
            use_error_feedback=False,
            min_compression_rate=1,
        ),
    ),
    "batched": ("batched_powerSGD_hook", dict(matrix_approximation_rank=2, start_powerSGD_iter=2)),
}


def _grads(rank: int, it: int, b: int) -> list:
    rng = np.random.default_rng(1000 * it + 10 * b + rank)
    return [rng.standard_normal(s).astype(np.float32) for s in BUCKETS[b]]


def _record(state, index, arr):
    def get(d):
        v = d.get(index)
        return None if v is None else np.array(v).reshape(-1).copy()

    return {
        "out": np.array(arr).copy(),
        "p": get(state.p_memory_dict),
        "q": get(state.q_memory_dict),
        "err": get(state.error_dict),
    }


def _ember_rank(rank, cases, doc_port):
    import ember.distributed as dist
    from ember.distributed.algorithms import GradBucket
    from ember.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as ps

    dist.init_process_group("gloo")
    out = {}
    for case in cases:
        name, kwargs = CASES[case]
        state, hook, steps = ps.PowerSGDState(None, **kwargs), getattr(ps, name), []
        for it in range(ITERS):
            for b in range(len(BUCKETS)):
                grads = _grads(rank, it, b)
                flat = np.concatenate([g.reshape(-1) for g in grads])
                views, off = [], 0
                for g in grads:
                    views.append(flat[off : off + g.size].reshape(g.shape))
                    off += g.size
                bucket = GradBucket(b, b == len(BUCKETS) - 1, flat, views, [None] * len(grads))
                res = hook(state, bucket).wait()
                assert np.shares_memory(res.numpy(), flat)
                steps.append(_record(state, b, flat))
        out[case] = {"steps": steps, "iter": state.iter, "stats": state.compression_stats()}
    out["ddp"] = _ddp_run(rank, "ember")
    # several buckets: a bucket's collectives must not interleave with the next bucket's
    out["ddp_buckets"] = _ddp_run(rank, "ember", bucket_cap_mb=0.004)
    dist.destroy_process_group()
    # docs/distributed.md's PowerSGD snippet as written, in a group of its own
    os.environ["MASTER_PORT"] = str(doc_port)
    namespace: dict = {}
    exec(compile(_doc_snippet(), str(DOC), "exec"), namespace)
    out["doc_weight"] = namespace["model"].module[0].weight.detach().numpy().copy()
    return out


def _ddp_run(rank: int, lib: str, bucket_cap_mb: float = 25) -> dict:
    """Train an MLP with DDP + powerSGD_hook in ``lib`` (one bucket: the same layout in both
    DDPs, parameters in reverse order); losses and final weights."""
    if lib == "torch":
        import torch
        import torch.nn.functional as F
        from torch import nn
        from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as ps
        from torch.nn.parallel import DistributedDataParallel as DDP
    else:
        import ember as torch
        import ember.nn as nn
        import ember.nn.functional as F
        from ember.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as ps
        from ember.nn.parallel import DistributedDataParallel as DDP
    rng = np.random.default_rng(3)
    model = nn.Sequential(
        nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4)
    )
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.tensor((rng.standard_normal(tuple(p.shape)) * 0.3).astype(np.float32)))
    ddp = DDP(model, bucket_cap_mb=bucket_cap_mb)
    ddp.register_comm_hook(
        ps.PowerSGDState(None, matrix_approximation_rank=1, start_powerSGD_iter=2), ps.powerSGD_hook
    )
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    x = rng.standard_normal((DDP_STEPS, WORLD * 4, 8)).astype(np.float32)
    y = rng.standard_normal((DDP_STEPS, WORLD * 4, 4)).astype(np.float32)
    losses = []
    for s in range(DDP_STEPS):
        opt.zero_grad()
        loss = F.mse_loss(
            ddp(torch.tensor(x[s, rank * 4 : (rank + 1) * 4])),
            torch.tensor(y[s, rank * 4 : (rank + 1) * 4]),
        )
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    return {"losses": losses, "weights": [p.detach().numpy().copy() for p in model.parameters()]}


class _TorchBucket:
    """What torch's hooks read of a bucket (its unit tests build buckets the same way)."""

    def __init__(self, torch, index, is_last, grads):
        self._index, self._is_last = index, is_last
        self._buffer = torch.cat([torch.from_numpy(g).reshape(-1) for g in grads])
        self._views = [
            v.view(g.shape) for v, g in zip(self._buffer.split([g.size for g in grads]), grads)
        ]

    def index(self):
        return self._index

    def is_last(self):
        return self._is_last

    def buffer(self):
        return self._buffer

    def gradients(self):
        return self._views


def _torch_rank(rank, cases):
    import torch
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as ps

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    # torch 2.13's batched hook orthogonalizes 2-D matrices with a function that takes only
    # batches (it raises); run it with the one-matrix batch it means
    orthogonalize = ps._orthogonalize
    ps._orthogonalize = lambda m, epsilon=0: orthogonalize(m if m.dim() == 3 else m[None], epsilon)
    out = {}
    for case in cases:
        name, kwargs = CASES[case]
        state, hook, steps = ps.PowerSGDState(None, **kwargs), getattr(ps, name), []
        for it in range(ITERS):
            for b in range(len(BUCKETS)):
                bucket = _TorchBucket(torch, b, b == len(BUCKETS) - 1, _grads(rank, it, b))
                res = hook(state, bucket).wait()
                res = res[0] if isinstance(res, list) else res
                steps.append(_record(state, b, res.numpy()))
        out[case] = {"steps": steps, "iter": state.iter, "stats": state.compression_stats()}
    out["ddp"] = _ddp_run(rank, "torch")
    dist.destroy_process_group()
    return out


def _doc_snippet() -> str:
    section = DOC.read_text().split("## PowerSGD gradient compression\n", 1)[1]
    code = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    assert len(code) == 1, "the PowerSGD section of docs/distributed.md lost its snippet"
    return code[0]


def _rank(rank, cases, ember_port, doc_port):
    torch_out = _torch_rank(rank, cases)
    os.environ["MASTER_PORT"] = str(ember_port)
    ember_out = _ember_rank(rank, cases, doc_port)
    return {"ember": ember_out, "torch": torch_out}


@pytest.fixture(scope="module")
def runs():
    pytest.importorskip("torch")
    outcomes = run_ranks(_rank, WORLD, list(CASES), free_port(), free_port(), timeout=240)
    for r in range(WORLD):
        assert outcomes[r] is not None and outcomes[r].ok, outcomes[r] and outcomes[r].traceback
    return {lib: [outcomes[r].value[lib] for r in range(WORLD)] for lib in ("ember", "torch")}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch_hook(runs, case):
    for rank in range(WORLD):
        got, want = runs["ember"][rank][case], runs["torch"][rank][case]
        assert got["iter"] == want["iter"] == ITERS
        np.testing.assert_allclose(got["stats"], want["stats"])
        assert len(got["steps"]) == len(want["steps"]) == ITERS * len(BUCKETS)
        for i, (g, w) in enumerate(zip(got["steps"], want["steps"])):
            for key in ("out", "p", "q", "err"):
                if w[key] is None:
                    assert g[key] is None, (i, key)
                else:
                    # float32 products summed in another order, through a few power steps
                    np.testing.assert_allclose(
                        g[key], w[key], rtol=1e-4, atol=1e-4, err_msg=f"step {i} {key}"
                    )
    # the replicas agree on the reduced gradients
    for a, b in zip(runs["ember"][0][case]["steps"], runs["ember"][1][case]["steps"]):
        np.testing.assert_array_equal(a["out"], b["out"])


def test_ddp_with_powersgd_matches_torch_ddp(runs):
    for rank in range(WORLD):
        got, want = runs["ember"][rank]["ddp"], runs["torch"][rank]["ddp"]
        np.testing.assert_allclose(got["losses"], want["losses"], rtol=1e-4, atol=1e-5)
        for g, w in zip(got["weights"], want["weights"]):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    for run in ("ddp", "ddp_buckets"):
        for a, b in zip(runs["ember"][0][run]["weights"], runs["ember"][1][run]["weights"]):
            np.testing.assert_array_equal(a, b)
    # 4 KiB buckets: each compressed on its own, a different approximation, the same descent
    one, many = runs["ember"][0]["ddp"]["losses"], runs["ember"][0]["ddp_buckets"]["losses"]
    assert one[:2] == many[:2] and one[2:] != many[2:]
    np.testing.assert_allclose(many, one, rtol=0.2)


def test_doc_snippet_runs_on_two_ranks(runs):
    # (run by each ember rank, its asserts included) the replicas end equal
    np.testing.assert_array_equal(runs["ember"][0]["doc_weight"], runs["ember"][1]["doc_weight"])


def test_plain_average_before_start_then_compressed(runs):
    steps = runs["ember"][0]["rank1"]["steps"]
    first = np.mean(
        [np.concatenate([g.reshape(-1) for g in _grads(r, 0, 0)]) for r in range(WORLD)], axis=0
    )
    np.testing.assert_allclose(steps[0]["out"], first, rtol=1e-6)
    assert steps[0]["p"] is None and steps[0]["err"] is None
    late = np.mean(
        [np.concatenate([g.reshape(-1) for g in _grads(r, 3, 0)]) for r in range(WORLD)], axis=0
    )
    # a rank-1 approximation of the compressed matrices: not the exact average
    assert np.abs(steps[3 * len(BUCKETS)]["out"] - late).max() > 1e-2


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(start_powerSGD_iter=1), "start_powerSGD_iter"),
        (dict(matrix_approximation_rank=0), "matrix_approximation_rank"),
    ],
)
def test_bad_state_is_refused(kwargs, match):
    from ember.distributed.algorithms.ddp_comm_hooks.powerSGD_hook import PowerSGDState

    with pytest.raises(ValueError, match=match):
        PowerSGDState(None, **kwargs)


def test_state_pickles_without_its_group():
    import pickle

    from ember.distributed.algorithms.ddp_comm_hooks.powerSGD_hook import PowerSGDState

    state = PowerSGDState(process_group=object(), random_seed=3)
    state.iter = 7
    back = pickle.loads(pickle.dumps(state))
    assert back.process_group is None and back.iter == 7
    assert back.rng.randint(10**9) == np.random.RandomState(3).randint(10**9)


@pytest.mark.parametrize(
    "seed,shape,dtype", [(0, (3,), np.float32), (5, (40, 3), np.float32), (9, (7, 2), np.float64)]
)
def test_generator_draws_torch_randn(seed, shape, dtype):
    torch = pytest.importorskip("torch")
    from ember.distributed.algorithms.ddp_comm_hooks._torch_rng import TorchCPUGenerator

    gen = TorchCPUGenerator(seed)
    torch.manual_seed(seed)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    for _ in range(2):  # the second draw continues the stream (and the cached normal)
        np.testing.assert_allclose(
            gen.randn(shape, dtype), torch.randn(*shape, dtype=tdtype).numpy(), atol=1e-6
        )
