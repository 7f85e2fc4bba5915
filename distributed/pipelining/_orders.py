"""Per-rank action orders of the pipeline schedules, and a simulator that checks an order set
is free of deadlock and gives its ideal timeline (the theoretical bubble).

An action is ``(stage_index, kind, microbatch)`` with kind ``"F"`` (forward), ``"B"`` (full
backward), or the two halves of a split backward: ``"I"`` (input gradients, sent on at once)
and ``"W"`` (weight gradients, free to run later). A rank runs its actions in order; a forward
needs the previous stage's forward of the same micro-batch, a backward (or ``I``) the next
stage's input gradients, a ``W`` its own ``I``. Sends never block (``isend``), receives do, so
an order set that the simulator completes also runs without deadlock.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "Action",
    "dual_pipe_v_order",
    "gpipe_order",
    "interleaved_order",
    "looped_bfs_order",
    "one_f_one_b_order",
    "simulate",
    "theoretical_bubble",
    "zero_bubble_orders",
]


class Action(NamedTuple):
    stage: int
    kind: str  # "F", "B", or a split backward's "I" and "W"
    mb: int

    def __repr__(self) -> str:
        return f"{self.stage}{self.kind}{self.mb}"


def gpipe_order(rank: int, num_ranks: int, n_mb: int) -> list[Action]:
    """All forwards, then all backwards (one stage per rank)."""
    return [Action(rank, "F", i) for i in range(n_mb)] + [Action(rank, "B", i) for i in range(n_mb)]


def one_f_one_b_order(rank: int, num_ranks: int, n_mb: int) -> list[Action]:
    """``num_ranks - rank - 1`` warm-up forwards, then one forward / one backward, then the
    remaining backwards: at most ``num_ranks - rank`` micro-batches' activations live at once."""
    warmup = min(num_ranks - rank - 1, n_mb)
    out = [Action(rank, "F", i) for i in range(warmup)]
    for i in range(n_mb - warmup):
        out += [Action(rank, "F", warmup + i), Action(rank, "B", i)]
    out += [Action(rank, "B", i) for i in range(n_mb - warmup, n_mb)]
    return out


def looped_bfs_order(rank: int, num_ranks: int, n_local: int, n_mb: int) -> list[Action]:
    """Looped BFS (Lamy-Poirier 2022): every micro-batch through local stage 0, then through
    local stage 1, ...; then the backwards, last local stage first."""
    stages = [rank + k * num_ranks for k in range(n_local)]
    fwd = [Action(s, "F", i) for s in stages for i in range(n_mb)]
    return fwd + [Action(s, "B", i) for s in reversed(stages) for i in range(n_mb)]


def interleaved_order(rank: int, num_ranks: int, n_local: int, n_mb: int) -> list[Action]:
    """Interleaved 1F1B (Narayanan et al. 2021): rank ``r`` holds stages ``r, r + p, ...``.

    Forwards go round by round: a round of micro-batches through local stage 0, then the same
    round through local stage 1, ...; backwards mirror it from the last local stage. The
    warm-up is ``(n_local - 1) * round + 2 * (p - 1 - r)`` forwards, capped at all of them.
    """
    rounds = max(1, n_mb // num_ranks)
    if n_mb % rounds != 0:
        raise ValueError(
            f"ScheduleInterleaved1F1B needs n_microbatches ({n_mb}) to be a multiple of the "
            f"number of rounds ({rounds} = n_microbatches // {num_ranks} ranks)"
        )
    per_round = n_mb // rounds
    total = n_mb * n_local

    def fwd(k: int) -> Action:
        local = (k // per_round) % n_local
        mb = (k // (per_round * n_local)) * per_round + k % per_round
        return Action(rank + local * num_ranks, "F", mb)

    def bwd(k: int) -> Action:
        local = n_local - 1 - (k // per_round) % n_local
        mb = (k // (per_round * n_local)) * per_round + k % per_round
        return Action(rank + local * num_ranks, "B", mb)

    warmup = min((n_local - 1) * per_round + 2 * (num_ranks - 1 - rank), total)
    out = [fwd(k) for k in range(warmup)]
    for k in range(total - warmup):
        out += [fwd(warmup + k), bwd(k)]
    out += [bwd(k) for k in range(total - warmup, total)]
    return out


def dual_pipe_v_order(rank: int, num_ranks: int, n_mb: int) -> list[Action]:
    """DualPipeV (DeepSeek-V3's DualPipe cut in half, as torch's ``ScheduleDualPipeV``): rank
    ``r`` holds stage ``r`` (its "first" stage, on the way down the V) and ``2p - 1 - r`` (its
    "second", on the way back up). Eight phases: warm-up forwards of the first stage; paired
    forwards of both; ``I``/``W``/``F`` on the second stage (zero bubble); the steady state,
    where each forward of one stage is paired with a full backward of the other (the two that
    DualPipe overlaps on a GPU, run here one after the other); the drain of backwards, whose
    second half is split into ``I`` and deferred ``W``; the remaining ``W``s last.

    Needs ``n_mb >= 2 * num_ranks`` (torch's constraint: the steady state must be reached).
    Micro-batch indices are counted per (stage, kind) in the order actions are emitted.
    """
    p, m = num_ranks, n_mb
    if m < 2 * p:
        raise ValueError(
            f"ScheduleDualPipeV requires at least as many micro-batches as stages, but got "
            f"n_microbatches ({m}) and num_stages ({2 * p})"
        )
    first, second = rank, 2 * p - 1 - rank
    out: list[Action] = []
    n_f = dict.fromkeys((first, second), 0)  # next forward per stage
    n_b = dict.fromkeys((first, second), 0)  # next backward (B or I) per stage
    w_queue: list[Action] = []  # W halves owed, oldest first

    def f(stage: int) -> None:
        out.append(Action(stage, "F", n_f[stage]))
        n_f[stage] += 1

    def b(stage: int, split: bool = False) -> None:
        out.append(Action(stage, "I" if split else "B", n_b[stage]))
        if split:
            w_queue.append(Action(stage, "W", n_b[stage]))
        n_b[stage] += 1

    def w() -> None:
        if w_queue:
            out.append(w_queue.pop(0))

    for _ in range(2 * (p - rank - 1)):  # 1: forwards of the first stage
        f(first)
    for _ in range(rank + 1):  # 2: both stages' forwards
        f(first)
        f(second)
    for _ in range(p - rank - 1):  # 3: zero bubble on the second stage
        b(second, split=True)
        w()
        f(second)
    for _ in range(m - 2 * p + rank + 1):  # 4: steady state, F of one stage + B of the other
        f(first)  # (the last rank runs its first pair unpaired in torch: same order here)
        b(second)
        f(second)
        b(first)
    for _ in range(p - rank - 1):  # 5: the second stage's forwards run out
        b(second)
        f(second)
        b(first)
    split = False  # 6: both stages' backwards, the later half split into I + deferred W
    for i in range(rank + 1):
        if i == (rank + 1) // 2 and rank % 2 == 1:
            split = True
        b(second, split)
        if i == (rank + 1) // 2 and rank % 2 == 0:
            split = True
        b(first, split)
    for _ in range(p - rank - 1):  # 7: the first stage's last backwards, W in between
        w()
        b(first, split)
    for _ in range(rank + 1):  # 8: the deferred W's
        w()
    return out


def _deps(a: Action, num_stages: int) -> list[tuple]:
    if a.kind == "F":
        return [(a.stage - 1, "F", a.mb)] if a.stage > 0 else []
    if a.kind == "W":
        return [(a.stage, "I", a.mb)]
    deps = [(a.stage, "F", a.mb)]
    if a.stage < num_stages - 1:
        deps.append((a.stage + 1, "B", a.mb))  # B or I: the next stage's input gradients
    return deps


def _cost(kind: str, t_fwd: float, t_bwd: float) -> float:
    return {"F": t_fwd, "B": t_bwd}.get(kind, t_bwd / 2)  # I and W: half a backward each


def zero_bubble_orders(
    stage_ranks: dict[int, int], n_mb: int, max_alive: int | None = None
) -> dict[int, list[Action]]:
    """Orders of a zero-bubble schedule, built by list scheduling on the ideal machine with
    F = I = W = 1: a free rank runs a ready ``I`` first (it unblocks the previous stage), else
    its next ready ``F`` while fewer than ``max_alive`` micro-batches hold activations on it
    (default: one more than the number of ranks times its stages; with fewer the forwards
    stall behind deferred ``W``s), else a deferred ``W``, else it waits.
    Forwards of a stage go in micro-batch order. Every rank computes every rank's order, so
    they agree; the simulator then proves them deadlock-free.

    ``stage_ranks`` maps stage index -> rank: ``s % p`` for the interleaved placement, the
    V shape (``r`` and ``2p - 1 - r``) for ZBV."""
    ranks = sorted(set(stage_ranks.values()))
    n_stages = len(stage_ranks)
    local = {r: sorted(s for s, q in stage_ranks.items() if q == r) for r in ranks}
    cap = {r: max_alive or len(ranks) * len(local[r]) + 1 for r in ranks}
    done: dict[tuple, float] = {}
    next_f = dict.fromkeys(stage_ranks, 0)
    ready_i: dict[int, list] = {r: [] for r in ranks}  # forwards done, backward not yet
    pending_w: dict[int, list] = {r: [] for r in ranks}
    alive = dict.fromkeys(ranks, 0)
    free = dict.fromkeys(ranks, 0.0)
    orders: dict[int, list[Action]] = {r: [] for r in ranks}
    total = 3 * n_mb * n_stages
    t = 0.0
    while sum(len(o) for o in orders.values()) < total:
        for r in ranks:
            if free[r] > t:
                continue
            a = _pick(r, t, local[r], n_stages, n_mb, next_f, ready_i, pending_w, done,
                      alive[r] < cap[r])  # fmt: skip
            if a is None:
                continue
            orders[r].append(a)
            free[r] = done[tuple(a)] = t + 1.0
            if a.kind == "F":
                next_f[a.stage] += 1
                alive[r] += 1
                ready_i[r].append(a)
            elif a.kind == "I":
                done[(a.stage, "B", a.mb)] = t + 1.0
                pending_w[r].append(Action(a.stage, "W", a.mb))
            else:
                alive[r] -= 1
        t = min([f for f in free.values() if f > t], default=t + 1.0)
    return orders


def _pick(r, t, stages, n_stages, n_mb, next_f, ready_i, pending_w, done, may_forward):
    def ok(a):
        return all(d in done and done[d] <= t for d in _deps(a, n_stages))

    # input gradients first: the latest stage's, then the oldest micro-batch's
    for f in sorted(ready_i[r], key=lambda f: (-f.stage, f.mb)):
        a = Action(f.stage, "I", f.mb)
        if ok(a):
            ready_i[r].remove(f)
            return a
    if may_forward:  # the micro-batch furthest along the pipeline first
        cands = [Action(s, "F", next_f[s]) for s in stages if next_f[s] < n_mb]
        for a in sorted(cands, key=lambda a: (a.mb, -a.stage)):
            if ok(a):
                return a
    if pending_w[r]:
        return pending_w[r].pop(0)
    return None


def simulate(
    orders: dict[int, list[Action]],
    num_stages: int,
    t_fwd: float = 1.0,
    t_bwd: float = 2.0,
    costs: dict[Action, float] | None = None,
) -> dict[int, list[tuple[Action, float, float]]]:
    """Run the orders on an ideal machine (no communication cost; each action takes
    ``costs[action]``, else ``t_fwd``/``t_bwd``): per rank, each action's (start, end).
    Raises ``RuntimeError`` naming the blocked actions if the orders deadlock."""
    done: dict[tuple, float] = {}
    pos = dict.fromkeys(orders, 0)
    free = dict.fromkeys(orders, 0.0)
    timeline: dict[int, list] = {r: [] for r in orders}
    remaining = sum(len(o) for o in orders.values())
    while remaining:
        progressed = False
        for r, order in orders.items():
            while pos[r] < len(order):
                a = order[pos[r]]
                deps = _deps(a, num_stages)
                if any(d not in done for d in deps):
                    break
                start = max([free[r]] + [done[d] for d in deps])
                if costs is not None and a in costs:
                    end = start + costs[a]
                else:
                    end = start + _cost(a.kind, t_fwd, t_bwd)
                done[tuple(a)] = free[r] = end
                if a.kind == "I":  # input gradients: what the previous stage waits for
                    done[(a.stage, "B", a.mb)] = end
                timeline[r].append((a, start, end))
                pos[r] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            blocked = {r: o[pos[r]] for r, o in orders.items() if pos[r] < len(o)}
            raise RuntimeError(f"pipeline schedule deadlocks; blocked actions by rank: {blocked}")
    return timeline


def theoretical_bubble(
    orders: dict[int, list[Action]],
    num_stages: int,
    t_fwd: float = 1.0,
    t_bwd: float = 2.0,
    costs: dict[Action, float] | None = None,
) -> dict[int, float]:
    """Per rank, idle time / total time of the simulated timeline."""
    tl = simulate(orders, num_stages, t_fwd, t_bwd, costs)
    total = max(e for ev in tl.values() for _, _, e in ev)
    return {r: 1.0 - sum(e - s for _, s, e in ev) / total for r, ev in tl.items()}
