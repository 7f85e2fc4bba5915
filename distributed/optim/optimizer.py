"""``DistributedOptimizer``: an optimizer over parameters spread across RPC workers.

Each owner of some parameters builds a local optimizer over them (an RRef kept by the
``DistributedOptimizer``); ``step(context_id)`` asks every owner at once to copy that
distributed autograd context's gradients into ``.grad`` and step (PyTorch's semantics: a lock
per local optimizer serialises concurrent trainers' steps).
"""

from __future__ import annotations

import threading
from collections import defaultdict

__all__ = ["DistributedOptimizer"]


class _LocalOptimizer:
    # one lock for all local optimizers of a worker, as PyTorch's: trainers' steps on shared
    # parameters do not interleave
    _lock = threading.Lock()

    def __init__(self, optimizer_class, params_rref, args, kwargs) -> None:
        self._params = [r.local_value() for r in params_rref]
        self.optim = optimizer_class(self._params, *args, **kwargs)

    def step(self, context_id: int) -> None:
        from .. import autograd as dist_autograd

        grads = dist_autograd.get_gradients(context_id)
        # the engine lock too: a distributed backward pass on this worker sets the leaves'
        # .grad aside while it runs (see autograd._pass), so .grad must not change meanwhile
        with _LocalOptimizer._lock, dist_autograd._engine_lock:
            for p in self._params:
                g = grads.get(p)
                p.grad = None if g is None else g.clone()
            self.optim.step()


def _new_local_optimizer(optimizer_class, params_rref, args, kwargs):
    from ..rpc import RRef

    return RRef(_LocalOptimizer(optimizer_class, params_rref, args, kwargs))


def _local_step(opt_rref, context_id: int) -> None:
    opt_rref.local_value().step(context_id)


class DistributedOptimizer:
    """An optimizer over parameters that live on several RPC workers.

    Each worker owning some of the parameters builds an ``optimizer_class`` over them;
    :meth:`step` steps them all at once with the gradients that a distributed backward pass
    (:func:`ember.distributed.autograd.backward`) accumulated in a context.

    Args:
        optimizer_class: a local optimizer class (:class:`ember.optim.SGD`, ...).
        params_rref: :class:`~ember.distributed.rpc.RRef` objects to the parameters to
            optimize, owned by any workers.
        args, kwargs: passed to ``optimizer_class`` on every owner.

    Example::

        >>> with dist_autograd.context() as context_id:
        ...     loss = rpc.rpc_sync("worker1", forward, args=(x,)).sum()
        ...     dist_autograd.backward(context_id, [loss])
        ...     opt = DistributedOptimizer(ember.optim.SGD, param_rrefs, lr=0.05)
        ...     opt.step(context_id)
    """

    def __init__(self, optimizer_class, params_rref, *args, **kwargs) -> None:
        from .. import rpc

        per_owner = defaultdict(list)
        for r in params_rref:
            if not isinstance(r, rpc.RRef):
                raise TypeError(
                    f"DistributedOptimizer expects RRefs to parameters, got {type(r).__name__}"
                )
            per_owner[r.owner().id].append(r)
        futs = [
            rpc.rpc_async(owner, _new_local_optimizer, args=(optimizer_class, rrefs, args, kwargs))
            for owner, rrefs in per_owner.items()
        ]
        self.remote_optimizers = [f.wait() for f in futs]

    def step(self, context_id: int) -> None:
        """One step of every local optimizer with the gradients of ``context_id``."""
        from .. import rpc

        futs = [
            rpc.rpc_async(opt.owner(), _local_step, args=(opt, context_id))
            for opt in self.remote_optimizers
        ]
        errors = []
        for f in futs:
            try:
                f.wait()
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]
