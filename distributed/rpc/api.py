"""``init_rpc``, ``shutdown``, ``rpc_sync``, ``rpc_async``, ``remote``, ``get_worker_info``."""

from __future__ import annotations

import functools
import time
from datetime import timedelta

from ember.futures import Future

from .. import distributed_c10d as _c10d
from .._runtime import _auth
from ..store import PrefixStore, TCPStore
from . import _agent
from ._agent import Agent, _AsyncResult
from .functions import _is_async
from .options import (
    UNSET_RPC_TIMEOUT,
    BackendType,
    RpcBackendOptions,
    TensorPipeRpcBackendOptions,
    WorkerInfo,
)
from .rref import FULL, RRef, _new_id

_generation = [0]


def init_rpc(
    name: str,
    backend: BackendType | None = None,
    rank: int = -1,
    world_size: int | None = None,
    rpc_backend_options: RpcBackendOptions | None = None,
) -> None:
    """Join the RPC group as worker ``name`` (PyTorch's signature).

    Rendezvous as ``init_process_group``: ``rpc_backend_options.init_method`` (default
    ``"env://"``: ``MASTER_ADDR``, ``MASTER_PORT``, and ``RANK``/``WORLD_SIZE`` when not given)
    or ``"tcp://host:port"``; rank 0 hosts the store. When this process already joined a
    process group whose store has that address, RPC shares it.
    """
    if _agent._agent is not None:
        raise RuntimeError("RPC is already initialized (call rpc.shutdown() first)")
    if not isinstance(name, str) or not name:
        raise ValueError(f"init_rpc needs a non-empty worker name, got {name!r}")
    if backend is not None and backend != BackendType.TENSORPIPE:
        raise ValueError(f"unsupported RPC backend {backend!r}; ember has BackendType.TENSORPIPE")
    opts = rpc_backend_options or TensorPipeRpcBackendOptions()
    if not isinstance(opts, TensorPipeRpcBackendOptions):
        opts = TensorPipeRpcBackendOptions(
            rpc_timeout=opts.rpc_timeout, init_method=opts.init_method
        )
    rank, world_size, host, port = _c10d._rendezvous_address(
        opts.init_method, -1 if rank is None else rank, -1 if world_size is None else world_size
    )
    if not 0 <= rank < world_size:
        raise ValueError(f"init_rpc: rank {rank} is not in [0, world_size={world_size})")
    token = _auth.job_token()
    secs = max(float(opts.rpc_timeout), 60.0) if opts.rpc_timeout > 0 else 1800.0
    gen = _generation[0]
    _generation[0] += 1
    pg_store = _c10d._own_store
    host = _auth.bind_host(host, world_size)
    if (
        pg_store is not None
        and getattr(pg_store, "port", None) == int(port)
        and _auth.normalize_host(pg_store.host) == _auth.normalize_host(host)
    ):
        store, own = PrefixStore(f"rpc{gen}", pg_store), None
    else:
        store = own = TCPStore(
            host,
            port,
            world_size,
            is_master=rank == 0,
            timeout=timedelta(seconds=secs),
            wait_for_workers=False,
            token=token,
            _rank=rank,
        )
    agent = Agent(name, rank, world_size, store, own, token, opts)
    _agent._agent = agent  # serving starts as soon as the address is published
    try:
        agent.join(secs)
    except BaseException:
        _agent._agent = None
        agent.close()
        if own is not None:
            own.close()
        raise


def shutdown(graceful: bool = True, timeout: float = 0) -> None:
    """Leave RPC. ``graceful``: first wait until this worker's calls have answered and every
    worker has reached ``shutdown`` (serving calls meanwhile), as PyTorch does."""
    agent = _agent.current()
    limit = timeout if timeout and timeout > 0 else max(agent.timeout, 60.0)
    try:
        if graceful:
            deadline = time.monotonic() + limit
            while agent.outstanding() and time.monotonic() < deadline:
                time.sleep(0.005)
            agent.flush_oneway()
            _barrier(agent, "rpc/shutdown", deadline)
            agent.flush_oneway()
            _barrier(agent, "rpc/shutdown2", deadline)  # all decrefs sent before anyone closes
    finally:
        _agent._agent = None
        agent.close()
        own = agent._own_store
        if own is not None:
            if graceful:  # the store's host stays until everyone has read the barrier
                try:
                    n = agent.store.add("rpc/left", 1)
                    end = time.monotonic() + 10.0
                    while own._server is not None and n < agent.world_size:
                        if time.monotonic() > end:
                            break
                        time.sleep(0.005)
                        n = agent.store.add("rpc/left", 0)
                except Exception:
                    pass
            own.close()


def _barrier(agent, key: str, deadline: float) -> None:
    n = agent.store.add(key, 1)
    while n < agent.world_size:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"rpc.shutdown: {agent.world_size - n} of {agent.world_size} workers did not "
                "reach shutdown in time"
            )
        time.sleep(0.005)
        n = agent.store.add(key, 0)


def _require_initialized(func):
    """Decorate ``func`` to raise, as torch's, when called before ``init_rpc``.

    PyTorch Geometric's distributed helpers wrap their RPC calls with it at import.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        _agent.current()  # raises "RPC has not been initialized ..."
        return func(*args, **kwargs)

    return wrapper


def get_worker_info(worker_name: str | None = None) -> WorkerInfo:
    """This worker's ``WorkerInfo``, or the one named ``worker_name``."""
    agent = _agent.current()
    return agent.info if worker_name is None else agent.resolve(worker_name)


def _check_call(func, args, kwargs) -> tuple:
    if not callable(func):
        raise TypeError(f"RPC target must be callable, got {type(func).__name__}")
    if args is not None and not isinstance(args, tuple | list):
        raise TypeError(f"RPC args must be a tuple, got {type(args).__name__}")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(f"RPC kwargs must be a dict, got {type(kwargs).__name__}")
    return tuple(args or ()), dict(kwargs or {})


def rpc_async(to, func, args=None, kwargs=None, timeout: float = UNSET_RPC_TIMEOUT) -> Future:
    """Call ``func(*args, **kwargs)`` on worker ``to`` without waiting.

    An error raised there re-raises from ``wait()`` naming the worker, with its traceback.

    Args:
        to: the destination worker: its name, id or :class:`WorkerInfo`.
        func: a picklable callable (a module-level function, a builtin, a class ...).
        args: the positional arguments of ``func`` (a tuple).
        kwargs: the keyword arguments of ``func`` (a dict).
        timeout: seconds before ``wait()`` raises; :data:`UNSET_RPC_TIMEOUT` (the default)
            takes the backend's ``rpc_timeout``, ``0`` waits forever.

    Returns:
        An :class:`ember.futures.Future` of ``func``'s result.

    Example::

        >>> fut = rpc.rpc_async("worker1", ember.add, args=(ember.ones(2), 3))
        >>> fut.wait()
        tensor([4., 4.])
    """
    args, kwargs = _check_call(func, args, kwargs)
    return _agent.current().request(to, "call", (func, args, kwargs), timeout)


def rpc_sync(to, func, args=None, kwargs=None, timeout: float = UNSET_RPC_TIMEOUT):
    """Call ``func(*args, **kwargs)`` on worker ``to`` and wait for its result:
    ``rpc_async(to, func, args, kwargs, timeout).wait()`` (see :func:`rpc_async` for the
    arguments).

    Example::

        >>> rpc.rpc_sync("worker1", ember.add, args=(ember.ones(2), 3))
        tensor([4., 4.])
    """
    return rpc_async(to, func, args, kwargs, timeout).wait()


def remote(to, func, args=None, kwargs=None, timeout: float = UNSET_RPC_TIMEOUT) -> RRef:
    """Run ``func(*args, **kwargs)`` on worker ``to`` and keep the result there.

    Returns at once; :meth:`RRef.to_here` waits for the value (and raises the call's error).
    The arguments are :func:`rpc_async`'s.

    Returns:
        An :class:`RRef` to the result, owned by ``to``.

    Example::

        >>> rref = rpc.remote("worker1", ember.add, args=(ember.ones(2), 3))
        >>> rref.to_here()
        tensor([4., 4.])
    """
    args, kwargs = _check_call(func, args, kwargs)
    agent = _agent.current()
    owner = agent.resolve(to).id
    rref_id = _new_id(agent)
    created = agent.request(owner, "remote", (rref_id, func, args, kwargs), timeout)
    return RRef._make(owner, rref_id, FULL, created)


def _on_call(agent, caller, obj):
    func, args, kwargs = obj
    out = func(*args, **kwargs)
    if _is_async(func):
        if not isinstance(out, Future):
            raise TypeError(
                f"@async_execution function {getattr(func, '__name__', func)!r} must return "
                f"an ember.futures.Future, got {type(out).__name__}"
            )
        return _AsyncResult(out)
    return out


Agent.handlers["call"] = _on_call
