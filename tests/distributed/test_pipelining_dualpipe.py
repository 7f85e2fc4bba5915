"""``ScheduleDualPipeV``: its order is torch's, it validates (every F before its backward,
I before W, every send received), its ideal bubble, and on two ranks x two stages its loss,
output and gradients equal one process's (float64)."""

from __future__ import annotations

import pytest

from ember.distributed.pipelining import _orders as O

SIZES = [(1, 2), (2, 4), (2, 5), (3, 7), (4, 8), (4, 11)]


def _v(p: int) -> dict[int, int]:
    return {s: s if s < p else 2 * p - 1 - s for s in range(2 * p)}


@pytest.mark.parametrize("p,m", SIZES)
def test_order_matches_torch(p, m):
    import types

    schedules = pytest.importorskip("torch.distributed.pipelining.schedules")
    cls = getattr(schedules, "ScheduleDualPipeV", None)
    if cls is None:
        pytest.skip("this torch has no ScheduleDualPipeV")
    kind = {"FORWARD": "F", "FULL_BACKWARD": "B", "BACKWARD_INPUT": "I", "BACKWARD_WEIGHT": "W"}
    for r in range(p):
        # torch's order needs only the group size and micro-batch count; an overlapped
        # forward + backward pair is its two sub-actions in sequence
        fake = types.SimpleNamespace(pp_group_size=p, _n_microbatches=m)
        want = [
            (x.stage_index, kind[x.computation_type.name], x.microbatch_index)
            for a in cls._calculate_single_rank_operations(fake, r)
            for x in (a.sub_actions or (a,))
        ]
        assert [tuple(a) for a in O.dual_pipe_v_order(r, p, m)] == want


@pytest.mark.parametrize("p,m", SIZES)
def test_order_validates_and_has_the_v_bubble(p, m):
    place = _v(p)
    orders = {r: O.dual_pipe_v_order(r, p, m) for r in range(p)}
    for r, order in orders.items():
        pos = {tuple(a): i for i, a in enumerate(order)}
        assert len(pos) == len(order)  # no action twice
        for s in (r, 2 * p - 1 - r):
            for mb in range(m):  # one forward and one backward (B, or I + W) per micro-batch
                f, b, i, w = ((s, k, mb) for k in "FBIW")
                assert f in pos and (b in pos) != (i in pos) and (i in pos) == (w in pos)
                assert pos[f] < pos.get(b, pos.get(i))
                if w in pos:
                    assert pos[i] < pos[w]
        # sends are paired: a forward's output is received by the next stage's forward on
        # its rank, an input gradient by the previous stage's backward
        for a in order:
            if a.kind == "F" and a.stage < 2 * p - 1:
                dst = orders[place[a.stage + 1]]
                assert O.Action(a.stage + 1, "F", a.mb) in dst
            if a.kind in "BI" and a.stage > 0:
                dst = orders[place[a.stage - 1]]
                assert sum(O.Action(a.stage - 1, k, a.mb) in dst for k in "BI") == 1
    # deadlock-free, and idle for p - 1 forward times per rank (F = 1, B = 2, I = W = 1)
    bubble = O.theoretical_bubble(orders, 2 * p)
    assert bubble == pytest.approx(dict.fromkeys(range(p), (p - 1) / (6 * m + p - 1)))
    if p > 1 and m % p == 0:  # interleaved 1F1B's own constraint
        inter = O.theoretical_bubble({r: O.interleaved_order(r, p, 2, m) for r in range(p)}, 2 * p)
        assert max(bubble.values()) < max(inter.values())


def test_too_few_microbatches_name_the_sizes():
    with pytest.raises(ValueError, match=r"n_microbatches \(7\) and num_stages \(8\)"):
        O.dual_pipe_v_order(0, 4, 7)


def case_bad_schedule():
    import ember.distributed as dist
    from ember.distributed import pipelining as P

    rank, p = dist.get_rank(), dist.get_world_size()
    lin = __import__("ember").nn.Linear(2, 2)
    msgs = []
    attempts = [
        ([rank, 2 * p - 1 - rank], 2 * p, 3),  # fewer micro-batches than stages
        ([rank], 2 * p, 4),  # one stage per rank
        ([rank, 3 * p - 1 - rank], 3 * p, 6),  # three stages' worth of num_stages
    ]
    for mine, n_stages, n_mb in attempts:
        stages = [P.PipelineStage(lin, s, n_stages, "cpu") for s in mine]
        try:
            P.ScheduleDualPipeV(stages, n_mb)
        except ValueError as e:
            msgs.append(str(e))
    return msgs


def test_bad_layouts_name_the_sizes(pools):
    msgs = pools(2, "shm").run(case_bad_schedule)[0]
    assert len(msgs) == 3, msgs
    assert "n_microbatches (3) and num_stages (4)" in msgs[0]
    assert "ScheduleDualPipeV needs exactly two stages per rank, got 1" in msgs[1]
    assert "num_stages (6) must be twice the group size (2)" in msgs[2]


@pytest.mark.parametrize("n_mb,steps", [(4, 2), pytest.param(8, 3, marks=pytest.mark.full)])
def test_two_ranks_two_stages_match_one_process(pools, n_mb, steps):
    from test_pipelining import _check, _reference, case_schedule

    results = pools(2, "shm").run(case_schedule, "ScheduleDualPipeV", n_mb, 2, steps, 0.5)
    _check(results, *_reference(4, steps=steps, lr=0.5), n_mb)
    # the V: the loss and the merged output are on rank 0, where the batch enters
    assert results[0][1] is not None and results[1][1] is None


def test_docs_snippet_runs():
    import pathlib
    import re

    doc = pathlib.Path(__file__).resolve().parents[2] / "docs" / "pipelining.md"
    code = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    snippet = next(c for c in code if "dual_pipe_v_order" in c)
    exec(compile(snippet, "docs/pipelining.md", "exec"), {"__name__": "docs_example"})
