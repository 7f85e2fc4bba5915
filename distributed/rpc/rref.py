"""``RRef``: a reference to a value that lives on one worker (its owner).

Lifetime: weighted reference counting. The owner's entry for a value starts at ``FULL``
weight, held by the first ``RRef`` (the one ``remote()`` returned, or ``RRef(value)``).
Pickling an ``RRef`` to another worker gives half of its weight to the copy, so forking needs
no message; a deleted ``RRef`` returns its weight to the owner (a one-way message), and the
owner drops the value once all weight is back. A copy lost in transit keeps its value alive
(a leak, never an early delete).
"""

from __future__ import annotations

import threading

from ember.futures import Future

from . import _agent
from ._agent import Agent, _AsyncResult
from .functions import _is_async

FULL = 1 << 40

_ids = threading.Lock()
_seq = [0]


def _new_id(agent) -> tuple:
    with _ids:
        _seq[0] += 1
        return (agent.rank, _seq[0])


class _OwnerEntry:
    __slots__ = ("fut", "weight")

    def __init__(self) -> None:
        self.fut: Future = Future()
        self.weight = 0


def _entry(agent, rref_id, add: int = 0) -> _OwnerEntry:
    with agent.owned_lock:
        e = agent.owned.get(rref_id)
        if e is None:
            e = agent.owned[rref_id] = _OwnerEntry()
        e.weight += add
        if e.weight == 0 and add:
            del agent.owned[rref_id]
        return e


def owned_count() -> int:
    """How many values this worker owns for RRefs (tests follow lifetimes with it)."""
    agent = _agent.current()
    with agent.owned_lock:
        return len(agent.owned)


class RRef:
    """A remote reference (``torch.distributed.rpc.RRef``).

    ``RRef(value)`` makes this worker the owner of ``value``; ``rpc.remote(...)`` returns an
    RRef to a value made on another worker.
    """

    # _session: the agent (one init_rpc .. shutdown) the reference belongs to; a reference
    # that outlives its session (a cycle collected after a re-init) must not decref there
    __slots__ = ("_owner", "_id", "_weight", "_created", "_session", "__weakref__")

    def __init__(self, value=None, type_hint=None) -> None:
        agent = _agent.current()
        self._owner, self._id, self._weight = agent.rank, _new_id(agent), FULL
        self._created, self._session = None, agent
        _entry(agent, self._id, FULL).fut.set_result(value)

    @classmethod
    def _make(cls, owner: int, rref_id, weight: int, created=None) -> RRef:
        r = cls.__new__(cls)
        r._owner, r._id, r._weight, r._created = owner, rref_id, weight, created
        r._session = _agent._agent
        return r

    # ---- identity -----------------------------------------------------------------------
    def owner(self):
        """The owner's ``WorkerInfo``."""
        return _agent.current().workers[self._owner]

    def owner_name(self) -> str:
        """The owner's worker name."""
        return self.owner().name

    def is_owner(self) -> bool:
        """Whether this worker owns the value."""
        return _agent.current().rank == self._owner

    def confirmed_by_owner(self) -> bool:
        """Whether the owner has confirmed this reference: ``True`` once the call that
        creates the value (:func:`~ember.distributed.rpc.remote`'s) has completed."""
        return self._created is None or self._created.done()

    # ---- values -------------------------------------------------------------------------
    def local_value(self):
        """The value, on its owner; raises elsewhere."""
        agent = _agent.current()
        if agent.rank != self._owner:
            raise RuntimeError(
                f"RRef.local_value() called on {agent.name!r}, but the RRef is owned by "
                f"{agent.workers[self._owner].name!r}; use to_here() on non-owners"
            )
        return _entry(agent, self._id).fut.wait()

    def to_here(self, timeout: float = -1.0):
        """A copy of the value on this worker (blocks; the owner's own value on the owner)."""
        agent = _agent.current()
        if self._created is not None and self._created.done():
            self._created.wait()  # raise the creation's error
        if agent.rank == self._owner:
            secs = agent.timeout if timeout is None or timeout < 0 else timeout
            return _entry(agent, self._id).fut.wait(secs or None)
        return agent.request(self._owner, "fetch", self._id, timeout).wait()

    def _get_future(self) -> Future:
        """The creation's future (``remote()``'s call); done at once for ``RRef(value)``."""
        if self._created is not None:
            return self._created
        f: Future = Future()
        f.set_result(None)
        return f

    # ---- proxies ------------------------------------------------------------------------
    def rpc_sync(self, timeout: float = -1.0):
        """``rref.rpc_sync().method(*args)`` runs ``method`` on the owner's value and waits."""
        return _Proxy(self, "rpc_sync", timeout)

    def rpc_async(self, timeout: float = -1.0):
        """``rref.rpc_async().method(*args)`` runs ``method`` on the owner's value and
        returns a :class:`~ember.futures.Future` of its result."""
        return _Proxy(self, "rpc_async", timeout)

    def remote(self, timeout: float = -1.0):
        """``rref.remote().method(*args)`` runs ``method`` on the owner's value and returns
        an ``RRef`` to its result, owned by the same worker."""
        return _Proxy(self, "remote", timeout)

    def backward(self, dist_autograd_ctx_id: int = -1, retain_graph: bool = False) -> None:
        """Run (distributed) backward from the owner's value (a scalar tensor)."""
        from . import api

        api.rpc_sync(
            self._owner, _backward_on_owner, args=(self, dist_autograd_ctx_id, retain_graph)
        )

    # ---- lifetime -----------------------------------------------------------------------
    def __reduce__(self):
        agent = _agent.current()
        if self._weight < 2:  # split 40 times already: ask the owner for more
            if agent.rank == self._owner:
                _entry(agent, self._id, FULL)
            else:
                agent.request(self._owner, "incref", (self._id, FULL)).wait()
            self._weight += FULL
        give = self._weight // 2
        self._weight -= give
        return (_rebuild, (self._owner, self._id, give))

    def __del__(self) -> None:
        agent = _agent._agent
        weight, self._weight = getattr(self, "_weight", 0), 0
        session = getattr(self, "_session", None)
        if weight and agent is not None and agent is session and not agent._closed:
            agent.oneway(self._owner, "decref", (self._id, weight))

    def __repr__(self) -> str:
        try:
            name = _agent.current().workers[self._owner].name
        except Exception:
            name = self._owner
        kind = "OwnerRRef" if self.is_owner() else "UserRRef"
        return f"{kind}(RRefId = {self._id}, owner = {name})"


def _rebuild(owner: int, rref_id, weight: int) -> RRef:
    return RRef._make(owner, rref_id, weight)


class _Proxy:
    def __init__(self, rref: RRef, how: str, timeout: float) -> None:
        self._rref, self._how, self._timeout = rref, how, timeout

    def __getattr__(self, name: str):
        from . import api

        call = getattr(api, self._how)

        def method(*args, **kwargs):
            return call(
                self._rref._owner,
                _call_method,
                args=(self._rref, name, args, kwargs),
                timeout=self._timeout,
            )

        return method


def _call_method(rref, name, args, kwargs):
    """Runs on the owner: ``rref.local_value().<name>(*args, **kwargs)``; an async method's
    future is passed through (the call is marked async below, so it answers when done)."""
    method = getattr(rref.local_value(), name)
    out = method(*args, **kwargs)
    if _is_async(method):
        return out
    f: Future = Future()
    f.set_result(out)
    return f


_call_method._wrapped_async_rpc_function = _call_method


def _backward_on_owner(rref, ctx_id, retain_graph):
    from .. import autograd as dist_autograd

    value = rref.local_value()
    if ctx_id == -1:
        value.backward(retain_graph=retain_graph)
    else:
        dist_autograd.backward(ctx_id, [value], retain_graph=retain_graph)


# ---- the owner's handlers ---------------------------------------------------------------------
def _on_remote(agent, caller, obj):
    rref_id, fn, args, kwargs = obj
    entry = _entry(agent, rref_id, FULL)
    done: Future = Future()
    try:
        out = fn(*args, **(kwargs or {}))
    except BaseException as e:
        entry.fut.set_exception(e)
        raise
    if _is_async(fn):

        def settle(f):
            try:
                entry.fut.set_result(f.wait())
                done.set_result(None)
            except BaseException as e:
                entry.fut.set_exception(e)
                done.set_exception(e)

        out.add_done_callback(settle)
        return _AsyncResult(done)
    entry.fut.set_result(out)
    return None


def _on_fetch(agent, caller, rref_id):
    return _AsyncResult(_entry(agent, rref_id).fut)


def _on_decref(agent, caller, obj):
    rref_id, weight = obj
    _entry(agent, rref_id, -weight)


def _on_incref(agent, caller, obj):
    rref_id, weight = obj
    _entry(agent, rref_id, weight)


Agent.handlers.update(remote=_on_remote, fetch=_on_fetch, decref=_on_decref, incref=_on_incref)
