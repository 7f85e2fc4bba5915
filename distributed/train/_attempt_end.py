"""How a Trainer attempt ends, seen from the driver: the workers' task ends as events
(``_watch_tasks``), the root cause among failed ranks (``primary_failure``) and the two
exceptions that end an attempt early (``_WorkerFailure``: restart or raise per the failure
policy; ``_Grow``: an elastic group restarts larger at a checkpoint boundary)."""

from __future__ import annotations

import queue
import traceback


class _Grow(Exception):
    """An elastic group ends its attempt at a checkpoint boundary to restart larger."""

    def __init__(self, current: int, room: int):
        super().__init__(f"{current} -> {current + room}")
        self.current, self.room = current, room


class _WorkerFailure(Exception):
    def __init__(self, rank, node, pid, detail):
        super().__init__(detail)
        self.rank, self.node, self.pid, self.detail = rank, node, pid, detail


def _watch_tasks(ray, refs, events: queue.Queue) -> None:
    """Queue ``("end", ref)`` as each worker's task ends (a thread of the driver)."""
    rest = list(refs)
    while rest:
        try:
            ready, rest = ray.wait(rest, num_returns=1)
        except Exception:  # Ray shut down under us: the driver is leaving anyway
            return
        for r in ready:
            events.put(("end", r))


def first_error(ray, refs, ready):
    """``(rank, exception)`` of the first of the ``ready`` tasks that raised, else None."""
    for r in ready:
        try:
            ray.get(r)
        except Exception as exc:  # the user's exception or the actor's death
            return refs.index(r), exc
    return None


def primary_failure(ray, group, refs, failed) -> _WorkerFailure:
    """The root cause among the ranks' failures: when one worker dies, its peers fail a
    moment later in their collectives; report the death (or the user's own exception),
    not the peers' follow-on communication errors."""
    from ray.exceptions import RayActorError

    from ..errors import DistributedError

    errors = {failed[0]: failed[1]}
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=3.0)
    for r in ready:
        rank = refs.index(r)
        if rank not in errors:
            try:
                ray.get(r)
            except Exception as exc:
                errors[rank] = exc

    def severity(item):
        exc = item[1]
        if isinstance(exc, RayActorError):
            return 0
        return 2 if isinstance(exc, DistributedError) else 1

    rank, exc = min(sorted(errors.items()), key=severity)
    info = group.infos[rank]
    return _WorkerFailure(rank, info.node_ip, info.pid, _describe(exc))


def _describe(exc: BaseException) -> str:
    """The worker's own traceback when Ray carries one, else a plain account of the death."""
    from ray.exceptions import RayActorError, RayTaskError

    if isinstance(exc, RayTaskError):
        return str(exc)
    if isinstance(exc, RayActorError):
        return (
            "the worker process died unexpectedly (killed by a signal, out of memory, or "
            f"its node was lost): {exc}"
        )
    return "".join(traceback.format_exception(exc))
