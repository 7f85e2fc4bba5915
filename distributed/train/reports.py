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

_CLOSED = "__ember_inbox_closed__"  # what next() returns once the inbox is drained


class _InboxActor:
    def __init__(self) -> None:
        self._items: deque = deque()
        self._waiter: asyncio.Future | None = None
        self._closed = False

    async def put(self, item) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(item)
            self._waiter = None
        else:
            self._items.append(item)

    async def next(self):
        """The next item, once there is one (one call outstanding at a time); ``_CLOSED``
        after ``drain``."""
        if self._items:
            return self._items.popleft()
        if self._closed:
            return _CLOSED
        self._waiter = asyncio.get_running_loop().create_future()
        return await self._waiter

    async def drain(self) -> list:
        """Close the inbox and return the items queued. An outstanding ``next()`` returns
        ``_CLOSED`` (at once, or when it starts: an async actor may start calls out of
        order), unless it had already returned an item, which comes before these."""
        self._closed = True
        items = list(self._items)
        self._items.clear()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(_CLOSED)
        return items


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
        """Every item sent so far and not yet taken, in order, and close the inbox;
        ``next_ref`` is the outstanding ``next()`` call."""
        import ray

        items = ray.get(self.actor.drain.remote())
        first = ray.get(next_ref)
        return items if isinstance(first, str) and first == _CLOSED else [first] + items

    def close(self) -> None:
        import ray

        try:
            ray.kill(self.actor, no_restart=True)
        except Exception:
            pass
