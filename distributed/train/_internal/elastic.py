"""Elastic membership: how many workers fit the cluster now, and forming a group of that size.

``ScalingConfig(num_workers=(min, max))`` (the Trainer) and ``ember launch --nnodes MIN:MAX``
(the launcher) size each attempt's worker group by the room the cluster has at that moment:

- ``free_slots`` counts the worker bundles that fit the alive nodes' *available* resources
  (what a running group holds is not available, so it is not counted twice), honouring the
  placement strategy (STRICT_SPREAD: one per node; STRICT_PACK: the roomiest node only).
- ``form_group`` starts a group of ``min(max, free_slots)`` workers. Ray's resource view lags a
  moment behind a group's shutdown or a node's loss, so the count is re-read until it settles;
  a placement that still cannot be made (a node lost after it was counted) is retried one
  smaller, and fewer than ``min`` fitting for ``wait_s`` seconds is an error naming the
  bundle, the strategy and what each node has free.

The Trainer grows a group back at checkpoint boundaries (``trainer.py``), the launcher when a
node joins (``launcher/launch.py``); both ask ``free_slots`` whether more would fit.
"""

from __future__ import annotations

import math
import time

__all__ = ["check_num_workers", "free_slots", "form_group", "ElasticCapacityError"]


class ElasticCapacityError(RuntimeError):
    """Fewer than the minimum number of workers fit the cluster."""


def check_num_workers(num_workers) -> None:
    """Validate ``ScalingConfig.num_workers``: a positive int or a ``(min, max)`` pair with
    ``1 <= min <= max``; the error names the values."""

    def positive_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    if isinstance(num_workers, tuple):
        if len(num_workers) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in num_workers
        ):
            raise ValueError(
                "ScalingConfig.num_workers must be an int or a (min, max) pair of ints, "
                f"got {num_workers!r}"
            )
        lo, hi = num_workers
        if lo < 1:
            raise ValueError(
                f"ScalingConfig.num_workers=(min, max) needs min >= 1, got min={lo} "
                f"(num_workers={num_workers!r})"
            )
        if lo > hi:
            raise ValueError(
                f"ScalingConfig.num_workers=(min, max) needs min <= max, got min={lo} > max={hi}"
            )
        return
    if not positive_int(num_workers):
        raise ValueError(
            "ScalingConfig.num_workers must be a positive int or a (min, max) pair, "
            f"got {num_workers!r}"
        )


def _per_node_free() -> dict[str, dict]:
    """``{node_id: available resources}`` of the alive nodes, less what pending placement
    groups are waiting for."""
    import ray
    from ray._private.state import available_resources_per_node
    from ray.util.placement_group import placement_group_table

    alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
    free = {k: dict(v) for k, v in available_resources_per_node().items() if k in alive}
    pending = [
        pg["bundles"]
        for pg in placement_group_table().values()
        if pg.get("state") in ("PENDING", "RESCHEDULING")
    ]
    return _reserve_pending(free, pending)


def _reserve_pending(free: dict[str, dict], pending: list[dict]) -> dict[str, dict]:
    """Take the bundles of placement groups that asked first out of ``free``: Ray places
    pending groups as room appears (a killed worker's CPU, a group just removed), but its
    available-resources view shows that room as free for a moment, and a group sized on it
    would take the room from under them (another job, or a failed group's replacement racing
    the job that reserved the CPU). Each bundle is taken from the roomiest node it fits on;
    a bundle that fits no node now is not competing for this room and is left out."""
    for bundles in pending:
        for bundle in bundles.values():
            need = {k: v for k, v in bundle.items() if v}
            fits = [node for node, avail in free.items() if _fits(avail, need) >= 1]
            if not need or not fits:
                continue
            node = max(fits, key=lambda n: sum(free[n].get(k, 0.0) for k in need))
            for k, v in need.items():
                free[node][k] = free[node].get(k, 0.0) - v
    return free


def _fits(avail: dict, bundle: dict) -> int:
    need = {k: v for k, v in bundle.items() if v}
    if not need:
        return 1 << 30
    # (a small tolerance: Ray keeps fractional resources in fixed point)
    return min(int(math.floor(avail.get(k, 0.0) / v + 1e-9)) for k, v in need.items())


def free_slots(
    bundle: dict,
    strategy: str = "PACK",
    exclude_nodes=(),
    per_node: int = 1,
    free: dict | None = None,
) -> int:
    """How many more workers of ``bundle`` the alive nodes have room for now.

    ``per_node`` > 1 counts whole nodes that fit that many workers each (the launcher's
    ``--nproc-per-node``); ``exclude_nodes`` are node ids not to count (a STRICT_SPREAD group's
    own nodes, which may not take a second worker)."""
    free = _per_node_free() if free is None else free
    counts = [_fits(avail, bundle) for node, avail in free.items() if node not in exclude_nodes]
    if per_node > 1:
        return sum(1 for c in counts if c >= per_node)
    if strategy == "STRICT_SPREAD":
        return sum(1 for c in counts if c >= 1)
    if strategy == "STRICT_PACK":
        return max(counts, default=0)
    return sum(counts)


def describe_free(free: dict | None = None) -> str:
    """What each alive node has free, for error messages."""
    free = _per_node_free() if free is None else free
    parts = []
    for node, avail in free.items():
        shown = {k: v for k, v in sorted(avail.items()) if "_group_" not in k and k != "bundle"}
        shown = {k: (int(v) if float(v).is_integer() else v) for k, v in shown.items()}
        parts.append(f"node {node[:8]}: {shown}")
    return "; ".join(parts) or "no alive nodes"


def settled_slots(
    bundle: dict,
    strategy: str,
    want: int,
    settle_s: float = 3.0,
    per_node: int = 1,
    poll_s: float = 0.25,
) -> int:
    """``free_slots``, re-read until it reaches ``want`` or has not grown for ``settle_s``
    seconds: resources a group just released (and a node just lost) reach Ray's view with a
    delay, and sizing on a stale view would start a smaller group than fits."""
    best = free_slots(bundle, strategy, per_node=per_node)
    quiet_since = time.monotonic()
    while best < want and time.monotonic() - quiet_since < settle_s:
        time.sleep(poll_s)
        now = free_slots(bundle, strategy, per_node=per_node)
        if now > best:
            best, quiet_since = now, time.monotonic()
    return best


def form_group(
    make_group,
    bundle: dict,
    strategy: str,
    lo: int,
    hi: int,
    *,
    per_node: int = 1,
    wait_s: float = 60.0,
    settle_s: float = 3.0,
    place_timeout_s: float = 15.0,
    log=None,
):
    """Start ``make_group(n, place_timeout_s)`` with the largest ``n`` in ``[lo, hi]`` that
    fits (``n`` counts nodes when ``per_node`` > 1). Waits up to ``wait_s`` for ``lo`` to fit,
    then raises ``ElasticCapacityError`` naming the need and what the nodes have free."""
    deadline = time.monotonic() + wait_s
    said_waiting = False
    while True:
        room = min(hi, settled_slots(bundle, strategy, hi, settle_s, per_node))
        n = room
        while n >= lo:
            try:
                return make_group(n, place_timeout_s)
            except _PlacementTimeout:
                # counted but not placeable (a node lost after the count, or another job took
                # the room): one smaller
                n -= 1
        if time.monotonic() >= deadline:
            unit = f"nodes with room for {per_node} workers" if per_node > 1 else "workers"
            raise ElasticCapacityError(
                f"elastic group needs at least {lo} {unit} (range {lo}..{hi}) of {bundle} "
                f"each ({strategy}); the cluster has room for {room} after waiting "
                f"{wait_s:.0f} s. Free now: {describe_free()}"
            )
        if log is not None and not said_waiting:
            log(f"waiting up to {wait_s:.0f} s for room for {lo} workers (room for {room} now)")
            said_waiting = True
        time.sleep(1.0)


class _PlacementTimeout(Exception):
    """The placement group of a counted size did not become ready in time."""


def place_or_raise(fn, *args, **kwargs):
    """Call ``fn`` (a WorkerGroup constructor); its placement timeout becomes
    ``_PlacementTimeout`` so that ``form_group`` retries with one fewer."""
    try:
        return fn(*args, **kwargs)
    except RuntimeError as e:
        if str(e).startswith("could not place"):
            raise _PlacementTimeout(str(e)) from e
        raise
