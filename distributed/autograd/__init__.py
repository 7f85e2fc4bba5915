"""``ember.distributed.autograd``: backward through RPC calls (``torch.distributed.autograd``).

Inside ``with context() as context_id:`` every RPC (``rpc_sync``, ``rpc_async``, ``remote``,
``to_here``) that carries tensors requiring grad records a *send* on the sending worker and a
*recv* on the receiving one, under one message id; the received tensors are fresh leaves. The
context id travels with each call, so calls made by the callee join the same context.

``backward(context_id, roots)`` runs local autograd from the roots to every leaf it reaches
(an accumulating pass: hooks, DDP's gradient buckets and engine callbacks run as in
``Tensor.backward``); gradients of received tensors go back over RPC to the worker that sent
them, which continues from its send (PyTorch's "FAST mode": one local pass per arriving
gradient, the graph kept until the context ends). Gradients accumulate in the context, per
worker, not in ``.grad`` (each leaf's ``.grad`` is set aside during a pass and restored):
``get_gradients(context_id)`` returns them as ``{tensor: grad}``.
"""

from __future__ import annotations

import contextlib
import itertools
import threading

import ember

__all__ = ["context", "backward", "get_gradients", "is_available", "DistAutogradContext"]

_lock = threading.Lock()
_contexts: dict[int, DistAutogradContext] = {}
_local = threading.local()
_seq = itertools.count(1)
_msg_seq = itertools.count(1)
_engine_lock = threading.Lock()


class DistAutogradContext:
    """One context's record on this worker (PyTorch's ``DistAutogradContext``)."""

    def __init__(self, context_id: int) -> None:
        self.id = int(context_id)
        self.lock = threading.Lock()
        self.workers: set[int] = set()  # workers this context exchanged messages with
        self.sends: dict[int, list] = {}  # message id -> tensors sent (their grads come back)
        self.recvs: dict[int, tuple] = {}  # id(tensor) -> (peer, message id, position)
        self._recv_keep: list = []  # the received tensors themselves (stable ids)
        self.grads: dict[int, tuple] = {}  # id(leaf) -> (leaf, accumulated grad)

    def _context_id(self) -> int:
        return self.id

    def record_send(self, tensors: list) -> int:
        """Record ``tensors`` sent in an RPC of this context; returns the message id under
        which their gradients come back."""
        msg_id = next(_msg_seq)
        with self.lock:
            self.sends[msg_id] = list(tensors)
        return msg_id

    def record_recv(self, peer: int, msg_id: int, tensors: list) -> None:
        """Record ``tensors`` received from worker ``peer`` in message ``msg_id``: backward
        sends their gradients back there."""
        with self.lock:
            for pos, t in enumerate(tensors):
                self.recvs[id(t)] = (peer, msg_id, pos, len(tensors))
                self._recv_keep.append(t)

    def accumulate(self, leaf, grad) -> None:
        """Add ``grad`` to the gradient of ``leaf`` held in this context (not its
        ``.grad``)."""
        with self.lock:
            old = self.grads.get(id(leaf))
            self.grads[id(leaf)] = (leaf, grad if old is None else old[1] + grad)

    def gradients(self) -> dict:
        """The gradients accumulated in this context: ``{leaf tensor: gradient}`` (what
        :func:`get_gradients` returns)."""
        with self.lock:
            return {leaf: g for leaf, g in self.grads.values()}


def is_available() -> bool:
    """Distributed autograd is always built in ember (torch's ``is_available``)."""
    return True


def _current() -> DistAutogradContext | None:
    return getattr(_local, "ctx", None)


@contextlib.contextmanager
def _as_current(ctx):
    prev = getattr(_local, "ctx", None)
    _local.ctx = ctx
    try:
        yield ctx
    finally:
        _local.ctx = prev


def _get_or_create(context_id: int) -> DistAutogradContext:
    with _lock:
        ctx = _contexts.get(context_id)
        if ctx is None:
            ctx = _contexts[context_id] = DistAutogradContext(context_id)
        return ctx


def _retrieve(context_id: int) -> DistAutogradContext:
    with _lock:
        ctx = _contexts.get(int(context_id))
    if ctx is None:
        raise RuntimeError(
            f"Could not find autograd context with id: {context_id} on this worker (it ended, "
            "or no RPC of that context reached this worker)"
        )
    return ctx


def _worker_rank() -> int:
    from ..rpc import _agent

    return _agent.current().rank


class context:
    """``with context() as context_id:`` a distributed autograd context (its id, an int)."""

    def __enter__(self) -> int:
        if _current() is not None:
            raise RuntimeError("Already have an autograd context id for this thread.")
        cid = (_worker_rank() << 48) | next(_seq)
        self._ctx = _get_or_create(cid)
        _local.ctx = self._ctx
        return cid

    def __exit__(self, *exc) -> None:
        _local.ctx = None
        _release(self._ctx.id, from_worker=None)


def _release(context_id: int, from_worker) -> None:
    """Drop the context here and on every worker it reached (each forwards once)."""
    with _lock:
        ctx = _contexts.pop(context_id, None)
    if ctx is None:
        return
    from ..rpc import _agent

    agent = _agent._agent
    if agent is None:
        return
    for peer in ctx.workers - {from_worker, agent.rank}:
        agent.oneway(peer, "release_ctx", context_id)


def get_gradients(context_id: int) -> dict:
    """The gradients that :func:`backward` accumulated on this worker in a context.

    Args:
        context_id: the id of a :class:`context`.

    Returns:
        ``{tensor: gradient}`` for the leaves this worker's part of the backward pass reached
        (their ``.grad`` is left alone).
    """
    return _retrieve(context_id).gradients()


def backward(context_id: int, roots, retain_graph: bool = False) -> None:
    """Run the backward pass from ``roots`` through every worker that the forward pass's RPCs
    reached; returns once every worker's part has finished.

    Args:
        context_id: the id of the :class:`context` the forward pass ran in.
        roots: scalar tensors on this worker (usually the loss).
        retain_graph: accepted for compatibility: the graph stays until the context ends.

    Example::

        >>> with dist_autograd.context() as context_id:
        ...     loss = rpc.rpc_sync("worker1", ember.mul, args=(x, 2)).sum()
        ...     dist_autograd.backward(context_id, [loss])
        ...     grads = dist_autograd.get_gradients(context_id)  # {x: tensor([2., 2.])}
    """
    ctx = _retrieve(context_id)
    roots = list(roots)
    for r in roots:
        if not isinstance(r, ember.Tensor):
            raise TypeError(f"dist_autograd.backward: roots must be tensors, got {type(r)}")
        if r.numel() != 1:
            raise RuntimeError(
                f"dist_autograd.backward: roots must be scalars, got shape {tuple(r.shape)}"
            )
        if not r.requires_grad:
            raise RuntimeError(
                "element 0 of tensors does not require grad and does not have a grad_fn"
            )
    _pass(ctx, roots, [ember.ones_like(r) for r in roots])


def _reachable_leaves(outputs) -> list:
    seen_nodes, leaves, seen_leaves = set(), [], set()
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        var = getattr(node, "variable", None)
        if isinstance(var, ember.Tensor):
            if id(var) not in seen_leaves:
                seen_leaves.add(id(var))
                leaves.append(var)
            continue
        for nxt, _ in getattr(node, "next_functions", ()):
            if nxt is not None:
                stack.append(nxt)
    return leaves


def _pass(ctx: DistAutogradContext, outputs, grads) -> None:
    """One local pass from ``outputs`` (seeded with ``grads``), then the remote parts.

    The pass is an ordinary accumulating backward, as PyTorch's distributed engine runs
    AccumulateGrad's hooks: leaf hooks, post-accumulate-grad hooks (DDP's buckets and their
    allreduce) and engine callbacks (DDP's finalize) all fire. The leaves' ``.grad`` is set
    aside for the pass and restored after it, so what accumulated lands in the context only.
    """
    roots, groots = [], []
    for t, g in zip(outputs, grads):
        if g is not None and t.requires_grad:
            roots.append(t)
            groots.append(g)
    results = []
    if roots:
        leaves = _reachable_leaves([t for t in roots if t.grad_fn is not None])
        known = {id(t) for t in leaves}
        for t in roots:  # leaves sent themselves (a tensor may travel twice in a message)
            if t.grad_fn is None and id(t) not in known:
                known.add(id(t))
                leaves.append(t)
        with _engine_lock:  # one local pass at a time: the engine's state is per process
            kept = [leaf.grad for leaf in leaves]
            try:
                for leaf in leaves:
                    leaf.grad = None
                ember.autograd.backward(roots, groots, retain_graph=True)
                results = [(leaf, leaf.grad) for leaf in leaves if leaf.grad is not None]
            finally:
                for leaf, old in zip(leaves, kept):
                    leaf.grad = old
    onward: dict[tuple, list] = {}
    for t, g in results:
        where = ctx.recvs.get(id(t))
        if where is None:
            ctx.accumulate(t, g.detach())
            continue
        peer, msg_id, pos, n = where
        slot = onward.setdefault((peer, msg_id), [None] * n)
        slot[pos] = g.detach() if slot[pos] is None else slot[pos] + g.detach()
    if not onward:
        return
    from ..rpc import _agent

    agent = _agent.current()
    futs = [
        agent.request(peer, "dist_backward", (ctx.id, msg_id, gl), ctx=False)  # nothing to record
        for (peer, msg_id), gl in onward.items()
    ]
    for f in futs:
        f.wait()


def _on_dist_backward(agent, caller, obj):
    context_id, msg_id, grads = obj
    ctx = _retrieve(context_id)
    sent = ctx.sends.get(msg_id)
    if sent is None:
        raise RuntimeError(f"dist_autograd: no send {msg_id} recorded in context {context_id}")
    _pass(ctx, sent, grads)


def _on_release(agent, caller, context_id):
    _release(context_id, from_worker=caller)


def _register() -> None:
    from ..rpc._agent import Agent

    Agent.handlers.update(dist_backward=_on_dist_backward, release_ctx=_on_release)


_register()
