"""Pipeline parallelism on real processes: every schedule's loss, output and parameter
gradients equal one process's (float64), the split API, training steps, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

D, B = 6, 8  # width and batch of the test MLP


def _model(n_layers: int):
    import ember

    ember.manual_seed(0)
    return ember.nn.Sequential(
        *[
            ember.nn.Sequential(ember.nn.Linear(D, D, dtype=ember.float64), ember.nn.Tanh())
            for _ in range(n_layers)
        ]
    )


def _data():
    rng = np.random.default_rng(1)
    return rng.standard_normal((B, D)), rng.standard_normal((B, D))


def _reference(n_layers: int, steps: int = 1, lr: float = 0.0):
    """One process: loss, output and gradients of the whole batch (after ``steps`` SGD steps)."""
    import ember

    model = _model(n_layers)
    opt = ember.optim.SGD(model.parameters(), lr=lr) if steps > 1 else None
    x, y = (ember.from_numpy(a) for a in _data())
    for _ in range(steps):
        model.zero_grad()
        out = model(x)
        loss = ember.nn.functional.mse_loss(out, y)
        loss.backward()
        if opt is not None:
            opt.step()
    grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
    return loss.item(), out.detach().numpy(), grads


def case_schedule(name: str, n_mb: int, per_rank: int, steps: int = 1, lr: float = 0.0):
    import ember
    import ember.distributed as dist
    from ember.distributed import pipelining as P

    rank, p = dist.get_rank(), dist.get_world_size()
    n_stages = p * per_rank
    model = _model(n_stages)
    mine = list(range(rank, n_stages, p))
    if name in ("ScheduleZBVZeroBubble", "ScheduleDualPipeV"):  # the V: r and 2p - 1 - r
        mine = [rank, 2 * p - 1 - rank]
    stages = [P.PipelineStage(model[s], s, n_stages, "cpu") for s in mine]
    loss_fn = ember.nn.functional.mse_loss
    if name in (
        "ScheduleInterleaved1F1B",
        "ScheduleLoopedBFS",
        "ScheduleInterleavedZeroBubble",
        "ScheduleZBVZeroBubble",
        "ScheduleDualPipeV",
    ):
        sched = getattr(P, name)(stages, n_mb, loss_fn=loss_fn)
    else:
        sched = getattr(P, name)(stages[0], n_mb, loss_fn=loss_fn)
    opt = ember.optim.SGD(model.parameters(), lr=lr)
    x, y = (ember.from_numpy(a) for a in _data())
    for _ in range(steps):
        opt.zero_grad()
        losses = []
        # as in PyTorch, stage 0 takes the batch and the last stage the target
        out = sched.step(*((x,) if 0 in mine else ()), target=y, losses=losses)
        opt.step()
    grads = {
        f"{s}.{n}": q.grad.numpy().copy() for s in mine for n, q in model[s].named_parameters()
    }
    # the ranks ran exactly the schedule's actions, in its order
    ran = [(s, k, mb) for s, k, mb, *_ in sched.timeline if k in "FBIW"]
    assert sorted(ran) == sorted(tuple(a) for a in sched.pipeline_order[rank])
    return (
        [float(v.item()) for v in losses],
        None if out is None else out.detach().numpy(),
        grads,
        [s.peak_microbatches_alive for s in stages],
    )


def _check(results, ref_loss, ref_out, ref_grads, n_mb):
    outs = [r[1] for r in results if r[1] is not None]
    assert len(outs) == 1
    np.testing.assert_allclose(outs[0], ref_out, rtol=1e-12, atol=1e-12)
    losses = [r[0] for r in results if r[0]]
    assert len(losses) == 1 and len(losses[0]) == n_mb
    assert np.mean(losses[0]) == pytest.approx(ref_loss, rel=1e-12)
    got = {k: g for r in results for k, g in r[2].items()}
    assert set(got) == set(ref_grads)
    for k, g in got.items():
        np.testing.assert_allclose(g, ref_grads[k], rtol=1e-10, atol=1e-13, err_msg=k)


@pytest.mark.parametrize("name", ["ScheduleGPipe", "Schedule1F1B", "ScheduleInterleaved1F1B"])
def test_four_stages_on_four_ranks_match_one_process(pools, name):
    results = pools(4, "shm").run(case_schedule, name, 4, 1)
    _check(results, *_reference(4), 4)
    # activations kept at once, per rank: GPipe all 4 micro-batches, 1F1B p - rank,
    # interleaved (one stage per rank here) its warm-up + 1, capped at m
    peaks = [r[3][0] for r in results]
    assert (
        peaks
        == {
            "ScheduleGPipe": [4, 4, 4, 4],
            "Schedule1F1B": [4, 3, 2, 1],
            "ScheduleInterleaved1F1B": [4, 4, 3, 1],
        }[name]
    )


@pytest.mark.parametrize(
    "name,n_mb",
    [
        ("ScheduleInterleaved1F1B", 2),
        ("ScheduleLoopedBFS", 2),
        pytest.param("ScheduleInterleaved1F1B", 8, marks=pytest.mark.full),
    ],
)
def test_two_stages_per_rank_on_two_ranks(pools, name, n_mb):
    _check(pools(2, "shm").run(case_schedule, name, n_mb, 2), *_reference(4), n_mb)


@pytest.mark.parametrize(
    "name,n_mb",
    [("Schedule1F1B", 2), pytest.param("ScheduleGPipe", 8, marks=pytest.mark.full)],
)
def test_training_steps_match_one_process(pools, name, n_mb):
    # three SGD steps: parameters move, so later steps check more than the first gradients
    results = pools(4, "shm").run(case_schedule, name, n_mb, 1, 3, 0.5)
    _check(results, *_reference(4, steps=3, lr=0.5), n_mb)


@pytest.mark.parametrize(
    "name,per_rank,n_mb,steps",
    [
        ("ScheduleInterleavedZeroBubble", 1, 4, 1),  # split backwards, W deferred
        ("ScheduleZBVZeroBubble", 2, 4, 2),  # the V: loss on rank 0; two SGD steps
        pytest.param("ScheduleInterleavedZeroBubble", 2, 8, 1, marks=pytest.mark.full),
    ],
)
def test_zero_bubble_schedules_match_one_process(pools, name, per_rank, n_mb, steps):
    p = 4 // per_rank
    results = pools(p, "shm").run(case_schedule, name, n_mb, per_rank, steps, 0.5)
    _check(results, *_reference(4, steps=steps, lr=0.5), n_mb)


def test_stages_of_one_rank_hand_over_in_memory(pools):
    # one rank holding all 4 stages: no messages, the same numbers
    _check(pools(1, "shm").run(case_schedule, "ScheduleInterleaved1F1B", 2, 4), *_reference(4), 2)


def case_two_pipelines_in_subgroups():
    import ember
    import ember.distributed as dist
    from ember.distributed import pipelining as P

    # ranks {0, 1} and {2, 3} each run their own 2-stage pipeline (the PP part of PP x DP)
    rank = dist.get_rank()
    groups = [dist.new_group([0, 1]), dist.new_group([2, 3])]
    group = groups[rank // 2]
    model = _model(2)
    local = dist.get_rank(group)
    stage = P.PipelineStage(model[local], local, 2, "cpu", group=group)
    sched = P.Schedule1F1B(stage, 4, loss_fn=ember.nn.functional.mse_loss)
    x, y = (ember.from_numpy(a) for a in _data())
    losses = []
    out = sched.step(x, target=y, losses=losses)
    grads = {f"{local}.{n}": q.grad.numpy().copy() for n, q in model[local].named_parameters()}
    return [float(v.item()) for v in losses], None if out is None else out.detach().numpy(), grads


def test_pipelines_in_subgroups(pools):
    results = pools(4, "shm").run(case_two_pipelines_in_subgroups)
    for pair in (results[:2], results[2:]):
        _check(pair, *_reference(2), 4)


def case_input_args_mismatch():
    import ember
    from ember.distributed import pipelining as P

    model = _model(2)
    wrong = ember.zeros(B // 2, D + 1, dtype=ember.float64)
    stages = [
        P.PipelineStage(model[0], 0, 2, "cpu"),
        P.PipelineStage(model[1], 1, 2, "cpu", input_args=wrong),
    ]
    sched = P.ScheduleInterleaved1F1B(stages, 2, loss_fn=ember.nn.functional.mse_loss)
    x, y = (ember.from_numpy(a) for a in _data())
    try:
        sched.step(x, target=y)
    except ValueError as e:
        return str(e)


def test_input_args_are_checked_against_what_arrives(pools):
    msg = pools(1, "shm").run(case_input_args_mismatch)[0]
    assert msg == (
        "stage 1 received inputs [((4, 6), 'float64')] from stage 0 but input_args describe "
        "[((4, 7), 'float64')]"
    )


def case_pipeline_split(n_mb: int):
    import ember
    import ember.distributed as dist
    from ember.distributed.pipelining import Schedule1F1B, SplitPoint, pipeline

    rank, p = dist.get_rank(), dist.get_world_size()
    model = _model(4)
    x, y = (ember.from_numpy(a) for a in _data())
    spec = {f"{i}": SplitPoint.BEGINNING for i in range(1, p)}
    pipe = pipeline(model, mb_args=(x[: B // n_mb],), split_spec=spec)
    assert pipe.num_stages == p
    stage = pipe.build_stage(rank, "cpu")
    sched = Schedule1F1B(stage, n_mb, loss_fn=ember.nn.functional.mse_loss)
    losses = []
    out = sched.step(x, target=y, losses=losses)
    # parameters keep the original model's names (and objects)
    grads = {n: q.grad.numpy().copy() for n, q in model.named_parameters() if q.grad is not None}
    return [float(v.item()) for v in losses], None if out is None else out.detach().numpy(), grads


def test_pipeline_split_spec_matches_one_process(pools):
    _check(pools(4, "shm").run(case_pipeline_split, 2), *_reference(4), 2)


def _residual_net():
    import ember
    from ember.distributed.pipelining import pipe_split

    class Net(ember.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = (ember.nn.Linear(D, D, dtype=ember.float64) for _ in range(3))
            self.scale = ember.nn.Parameter(ember.full((D,), 0.5, dtype=ember.float64))

        def forward(self, x):
            h = ember.tanh(self.a(x))
            pipe_split()
            h = self.b(h) * self.scale
            pipe_split()
            return self.c(h) + x  # x skips stage 1: two tensors cross each cut

    ember.manual_seed(0)
    return Net()


def case_pipe_split_residual():
    import ember
    import ember.distributed as dist
    from ember.distributed.pipelining import ScheduleGPipe, pipeline

    model = _residual_net()
    x, y = (ember.from_numpy(a) for a in _data())
    pipe = pipeline(model, mb_args=(x[:2],))
    sched = ScheduleGPipe(pipe.build_stage(dist.get_rank(), "cpu"), 4, ember.nn.functional.mse_loss)
    losses = []
    out = sched.step(x, target=y, losses=losses)
    grads = {n: q.grad.numpy().copy() for n, q in model.named_parameters() if q.grad is not None}
    return [float(v.item()) for v in losses], None if out is None else out.detach().numpy(), grads


def test_pipe_split_with_a_residual_across_three_ranks(pools):
    import ember

    model = _residual_net()
    x, y = (ember.from_numpy(a) for a in _data())
    out = model(x)
    loss = ember.nn.functional.mse_loss(out, y)
    loss.backward()
    ref = {n: q.grad.numpy().copy() for n, q in model.named_parameters()}
    results = pools(3, "shm").run(case_pipe_split_residual)
    _check(results, loss.item(), out.detach().numpy(), ref, 4)


def case_bad_input():
    import ember
    import ember.distributed as dist
    from ember.distributed import pipelining as P

    rank, p = dist.get_rank(), dist.get_world_size()
    model = _model(p)
    msgs = []
    stage = P.PipelineStage(model[rank], rank, p, "cpu")
    sched = P.ScheduleGPipe(stage, 3, loss_fn=ember.nn.functional.mse_loss)
    x, y = (ember.from_numpy(a) for a in _data())
    try:  # every rank splits what it is given before any message moves
        sched.step(x, target=y)
    except ValueError as e:
        msgs.append(str(e))
    try:
        P.Schedule1F1B(P.PipelineStage(model[0], 0, p + 1, "cpu"), 4)
    except ValueError as e:
        msgs.append(str(e))
    try:
        P.ScheduleInterleaved1F1B([P.PipelineStage(model[0], rank, 3 * p, "cpu")], 4)
    except ValueError as e:
        msgs.append(str(e))
    try:
        P.PipelineStage(model[0], p, p, "cpu")
    except ValueError as e:
        msgs.append(str(e))
    return msgs


def test_bad_input_names_sizes(pools):
    msgs = pools(4, "shm").run(case_bad_input)[0]
    assert len(msgs) == 4, msgs
    assert "n_microbatches (3) must divide the batch" in msgs[0] and "size 8" in msgs[0]
    assert "num_stages (5) must equal the group size (4)" in msgs[1]
    assert "num_stages (12) must equal the group size (4) times the stages per rank (1)" in msgs[2]
    assert "stage_index 4 is out of range for num_stages 4" in msgs[3]


@pytest.mark.full  # two fresh processes importing ember: seconds, so outside CI's subset
def test_docs_pipeline_example_runs(tmp_path):
    import pathlib
    import re
    import subprocess
    import sys

    doc = pathlib.Path(__file__).resolve().parents[2] / "docs" / "distributed.md"
    section = doc.read_text().split("## Pipeline parallelism", 1)[1]
    script = tmp_path / "pipeline_example.py"
    script.write_text(re.search(r"```python\n(.*?)```", section, flags=re.S).group(1))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
