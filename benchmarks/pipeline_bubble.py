"""Pipeline bubble: measured idle fraction per rank for each schedule, against theory.

Each rank records when every forward, loss and backward of its stages starts and ends
(``schedule.timeline``, perf_counter: one clock for all processes on a host). Per step, a
rank's bubble is ``1 - busy / (last end - first start over all ranks)``; the table shows the
mean over ranks and steps (after a warm-up step) next to the schedule's ideal value: its
orders run in the simulator with forward 1 and backward 2 (a split backward's I and W 1 each),
mean over ranks. That is ``(p-1)/(m+p-1)`` for GPipe and 1F1B, ``(p-1)/(v*m+p-1)`` for
interleaved 1F1B and looped BFS with ``v`` stages per rank, ``(p-1)/(3m+p-1)`` (ZB-H1) for
the zero-bubble schedule with one stage per rank. Measured values include communication and
Python overhead, and on a machine with fewer free cores than ranks, time-slicing. The CPU-time
replay column runs the same orders in the simulator with each action's measured CPU seconds.

    python benchmarks/pipeline_bubble.py [--hidden 384] [--steps 5]
    python benchmarks/pipeline_bubble.py --schedules Schedule1F1B ScheduleInterleavedZeroBubble
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import pin_threads  # noqa: E402

pin_threads(1)

# (schedule, ranks, stages per rank, micro-batches)
CONFIGS = [
    ("ScheduleGPipe", 2, 1, 4),
    ("Schedule1F1B", 2, 1, 4),
    ("ScheduleGPipe", 4, 1, 4),
    ("Schedule1F1B", 4, 1, 4),
    ("ScheduleGPipe", 4, 1, 8),
    ("Schedule1F1B", 4, 1, 8),
    ("ScheduleInterleaved1F1B", 2, 2, 4),
    ("ScheduleInterleaved1F1B", 4, 2, 8),
    ("ScheduleLoopedBFS", 4, 2, 8),
    ("ScheduleInterleavedZeroBubble", 4, 1, 8),
    ("ScheduleInterleavedZeroBubble", 4, 2, 8),
    ("ScheduleZBVZeroBubble", 4, 2, 8),
    ("ScheduleDualPipeV", 4, 2, 8),
]


def _worker(rank, cfg, port, hidden, mb_rows, steps, q):
    name, p, v, m = cfg
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(p),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        EMBER_TOKEN="bench",
    )
    import ember
    import ember.distributed as dist
    from ember.distributed import pipelining as P

    dist.init_process_group()
    n_stages = p * v
    ember.manual_seed(0)
    stages = []
    mine = range(rank, n_stages, p)
    if name in ("ScheduleZBVZeroBubble", "ScheduleDualPipeV"):  # the V: r and 2p - 1 - r
        mine = (rank, 2 * p - 1 - rank)
    for s in mine:
        mod = ember.nn.Sequential(
            ember.nn.Linear(hidden, hidden), ember.nn.Tanh(), ember.nn.Linear(hidden, hidden)
        )
        stages.append(P.PipelineStage(mod, s, n_stages, "cpu"))
    loss_fn = ember.nn.functional.mse_loss
    if v > 1 or "ZeroBubble" in name or name == "ScheduleDualPipeV":
        sched = getattr(P, name)(stages, m, loss_fn=loss_fn)
    else:
        sched = getattr(P, name)(stages[0], m, loss_fn=loss_fn)
    x, y = ember.randn(m * mb_rows, hidden), ember.randn(m * mb_rows, hidden)
    from ember.distributed.pipelining._orders import Action, theoretical_bubble

    bubbles, replays = [], []
    for step in range(steps + 1):
        dist.barrier()
        sched.step(*((x,) if rank == 0 else ()), target=y)
        allev = [None] * p
        dist.all_gather_object(allev, sched.timeline)
        if step == 0:
            continue  # warm-up
        start = min(e[3] for ev in allev for e in ev)
        end = max(e[4] for ev in allev for e in ev)
        busy = sum(e[4] - e[3] for e in sched.timeline)
        bubbles.append(1.0 - busy / (end - start))
        # replay: this step's per-action CPU seconds on an ideal machine (no contention, no
        # communication cost); the loss counts as part of the last stage's forward
        costs: dict = {}
        for ev in allev:
            for st, kind, mb, _, _, cpu in ev:
                a = Action(st, "F" if kind == "L" else kind, mb)
                costs[a] = costs.get(a, 0.0) + cpu
        replays.append(theoretical_bubble(sched.pipeline_order, n_stages, costs=costs)[rank])
    dist.destroy_process_group()
    q.put((rank, (sum(bubbles) / len(bubbles), sum(replays) / len(replays))))


def theory(cfg) -> float:
    """The schedule's bubble on the ideal machine (F = 1, B = 2, I = W = 1), mean over ranks."""
    from ember.distributed.pipelining import _orders as O

    name, p, v, m = cfg
    if name == "ScheduleDualPipeV":
        orders = {r: O.dual_pipe_v_order(r, p, m) for r in range(p)}
    elif "ZeroBubble" in name:
        v_shape = name == "ScheduleZBVZeroBubble"
        place = {s: (s if s < p else 2 * p - 1 - s) if v_shape else s % p for s in range(p * v)}
        orders = O.zero_bubble_orders(place, m)
    else:
        fn = {
            "ScheduleGPipe": lambda r: O.gpipe_order(r, p, m),
            "Schedule1F1B": lambda r: O.one_f_one_b_order(r, p, m),
            "ScheduleInterleaved1F1B": lambda r: O.interleaved_order(r, p, v, m),
            "ScheduleLoopedBFS": lambda r: O.looped_bfs_order(r, p, v, m),
        }[name]
        orders = {r: fn(r) for r in range(p)}
    bubble = O.theoretical_bubble(orders, p * v)
    return sum(bubble.values()) / p


def run(cfg, hidden, mb_rows, steps) -> list[tuple[float, float]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = cfg[1]
    procs = [
        ctx.Process(target=_worker, args=(r, cfg, port, hidden, mb_rows, steps, q))
        for r in range(p)
    ]
    for proc in procs:
        proc.start()
    got = dict(q.get(timeout=600) for _ in range(p))
    for proc in procs:
        proc.join()
    return [got[r] for r in range(p)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--mb-rows", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    names = sorted({c[0] for c in CONFIGS})
    ap.add_argument("--schedules", nargs="+", choices=names, default=names)
    args = ap.parse_args()
    print(
        f"cpu cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}, "
        f"hidden {args.hidden}, micro-batch rows {args.mb_rows}, {args.steps} steps"
    )
    print(
        "| schedule | p | v | m | theory | measured wall (mean) | per rank "
        "| CPU-time replay (mean) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for cfg in CONFIGS:
        name, p, v, m = cfg
        if name not in args.schedules:
            continue
        ideal = theory(cfg)
        per_rank = run(cfg, args.hidden, args.mb_rows, args.steps)
        wall = sum(b for b, _ in per_rank) / p
        replay = sum(r for _, r in per_rank) / p
        ranks = ", ".join(f"{b:.2f}" for b, _ in per_rank)
        print(
            f"| {name} | {p} | {v} | {m} | {ideal:.3f} | {wall:.3f} | {ranks} | {replay:.3f} |",
            flush=True,
        )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
