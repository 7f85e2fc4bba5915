"""Reports from the workers to the driver: one small async actor that the driver waits on.

Each ``report()`` is put into the inbox actor and returns once it is there, so a checkpoint
reported survives its worker dying a moment later. The driver keeps one ``next()`` call
outstanding and waits on it together with the workers' tasks, so nothing polls: a polling
driver (a queue-size call every 0.1 s) woke the Ray processes ~120 times a second, preempting
the training workers on a machine whose cores they fill.
"""

from __future__ import annotations

import asyncio
from collections import deque


class _InboxActor:
    def __init__(self) -> None:
        self._items: deque = deque()
        self._waiter: asyncio.Future | None = None

    async def put(self, item) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(item)
            self._waiter = None
        else:
            self._items.append(item)

    async def next(self):
        """The next item, once there is one (one call outstanding at a time)."""
        if self._items:
            return self._items.popleft()
        self._waiter = asyncio.get_running_loop().create_future()
        return await self._waiter

    async def drain(self) -> tuple[list, bool]:
        """The items queued, and whether the outstanding ``next()`` still waits (if not, it
        has returned an item, which comes before these)."""
        waiting = self._waiter is not None and not self._waiter.done()
        items = list(self._items)
        self._items.clear()
        return items, waiting


class ReportInbox:
    """Driver side: creates the actor; workers call ``put`` (it travels with them pickled)."""

    def __init__(self) -> None:
        import ray

        self.actor = ray.remote(num_cpus=0)(_InboxActor).remote()

    def put(self, item) -> None:
        import ray

        ray.get(self.actor.put.remote(item))

    def next_ref(self):
        return self.actor.next.remote()

    def drain(self, next_ref) -> list:
        """Every item sent so far and not yet taken, in order, without waiting; ``next_ref``
        is used up (make a new one to go on waiting)."""
        import ray

        items, waiting = ray.get(self.actor.drain.remote())
        return items if waiting else [ray.get(next_ref)] + items

    def close(self) -> None:
        import ray

        try:
            ray.kill(self.actor, no_restart=True)
        except Exception:
            pass
