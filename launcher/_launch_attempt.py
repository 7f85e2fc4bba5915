"""One attempt of an ``ember launch`` job: start the worker group (``_run_once``), stream the
workers' output and watch their ends (``_pump``: the first failure stops the others; an
elastic job stops to grow when more nodes have room), and say why a worker's actor died."""

from __future__ import annotations

import sys
import time

from ._launch_sigterm import _TERM
from ._live_status import LaunchStatus
from ._worker_io import Printer, run_child

# _run_once's code when an elastic job stops its workers to restart on more nodes
_GROW = -1


def _run_once(ray, scaling, cmd, cwd, env, elastic=None) -> tuple[int, list]:
    """One attempt: (exit code, infos of workers whose actor died); ``_GROW`` when an
    elastic job (``elastic``: min nodes, max nodes, workers per node) stopped to grow."""
    from ray.util.queue import Queue
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from ember.distributed.train._internal.worker_group import WorkerGroup

    token = {"EMBER_TOKEN": env["EMBER_TOKEN"]} if "EMBER_TOKEN" in env else None
    grow = None
    if elastic is None:
        group = WorkerGroup(
            scaling.num_workers, scaling.bundle(), scaling.placement_strategy, env=token
        )
    else:
        from ._elastic import elastic_group

        group, grow = elastic_group(WorkerGroup, scaling, token, *elastic)
    # the output queue lives on the driver's node and takes no CPU: it must neither compete
    # with the workers for slots nor die with a worker node
    here = ray.get_runtime_context().get_node_id()
    queue = Queue(
        actor_options={
            "num_cpus": 0,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(here, soft=False),
        }
    )
    lost: list = []
    try:
        refs = group.execute_async(run_child, cmd, cwd, env, queue)
        status = None
        if LaunchStatus.wanted():  # a live per-rank table under the output, on a terminal
            status = LaunchStatus([info.node_ip for info in group.infos])
        try:
            return _pump(ray, group, refs, queue, Printer(status), lost, grow), lost
        finally:
            if status is not None:
                status.close()
    except KeyboardInterrupt:
        print("(ember launch) interrupted: stopping all workers", file=sys.stderr, flush=True)
        return 130, lost
    except BaseException:
        if _TERM["pending"]:  # _Terminated, possibly wrapped by Ray (see _sigterm_stops_job)
            print("(ember launch) SIGTERM: stopping all workers", file=sys.stderr, flush=True)
        raise
    finally:
        group.shutdown()
        try:
            ray.kill(queue.actor, no_restart=True)
        except Exception:
            pass


def _pump(ray, group, refs, queue, printer, lost: list, grow=None) -> int:
    remaining = list(refs)
    codes: dict[int, int] = {}
    next_look = time.monotonic() + 1.0
    while True:
        printer.drain(queue)
        if not remaining:
            break
        if grow is not None and time.monotonic() >= next_look:
            next_look = time.monotonic() + 1.0
            more = grow()
            if more:
                printer.drain(queue)
                print(
                    f"(ember launch) {more} more node(s) have room; restarting the workers on "
                    "more nodes (a membership change: not counted against --max-restarts)",
                    file=sys.stderr,
                    flush=True,
                )
                return _GROW
        ready, remaining = ray.wait(remaining, num_returns=len(remaining), timeout=0.05)
        for r in ready:
            rank = refs.index(r)
            try:
                codes[rank] = ray.get(r)
            except Exception as exc:
                info = group.infos[rank]
                lost.append(info)
                print(
                    f"(ember launch) worker rank {rank} on node {info.node_ip} died"
                    f"{_node_lost(ray, info)}: {_first_line(exc)}",
                    file=sys.stderr,
                    flush=True,
                )
                codes[rank] = 1
            if printer.status is not None:
                printer.drain(queue)
                printer.status.finished(rank, codes[rank])
            if codes[rank] != 0:
                # like torchrun: one failure ends the job; the others are stopped
                printer.drain(queue)
                print(
                    f"(ember launch) rank {rank} exited with code {codes[rank]}; stopping "
                    "the other workers",
                    file=sys.stderr,
                    flush=True,
                )
                return codes[rank]
    return 0


def _node_lost(ray, info) -> str:
    """A note on the worker's node: its Ray processes gone, or the node unreachable (a
    partition: its processes may still run), told apart by probing its raylet (issue #28)."""
    from ._node_reach import lost_note

    try:
        nodes = ray.nodes()
    except Exception:  # the GCS itself may be gone
        return ""
    return lost_note(nodes, info.node_id, info.node_ip)


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
