"""DistributedDataParallel, PyTorch's behaviour on ember's collectives.

Parameters and buffers are broadcast from rank 0 at wrap time. Gradients are packed into
buckets (by default 25 MiB with a 1 MiB first bucket; an explicit ``bucket_cap_mb`` gives
equal buckets, as in PyTorch 2.13; parameters in reverse registration order, rebuilt
after the first iteration in the order gradients actually arrived). A bucket's all-reduce is
launched from the gradient hooks as soon as its last gradient is accumulated, so communication
runs while backward continues; when backward ends, the engine calls back and DDP waits for the
outstanding buckets and writes the averaged gradients back. One exception, measured: when all
ranks share one host whose cores their threads already fill, overlap cannot help, and all
buckets are reduced together (one allreduce per storage) at the end of backward
(``_overlap_policy``). On one host the buckets live in shared memory (``_shm_arena.py``): their
allreduce copies no data through messages, Linear writes its gradients straight into them, and
afterwards the gradients are views of them (``_ddp_storage.py``: the buckets return to that
memory at the next forward once the gradients are dropped, else they use another block).

Choice on state_dict: ``ddp.state_dict()`` returns the wrapped module's keys WITHOUT the
``module.`` prefix (so a checkpoint loads straight into an unwrapped model), and
``load_state_dict`` accepts keys with or without it.
"""

from __future__ import annotations

import contextlib
import os
import time
import weakref

import numpy as np

import ember
from ember import _interop
from ember.backend.threads import usable_cores
from ember.nn import Module

from .. import collectives
from .._runtime._state import resolve_group
from ..algorithms.join import Join, Joinable
from ..distributed_c10d import get_world_size, is_initialized
from ..reduce_op import ReduceOp
from ._ddp_hooks import HookWork, checked_comm_hook
from ._ddp_info import DDPInfo
from ._ddp_join import JoinableDDP, scale_for_joined
from ._ddp_layout import BucketLayout
from ._ddp_storage import Bucket as _Bucket

# Optional timing hook (ember.distributed.experiment's timeline): when set, it is called as
# _tracer(name, start, end, lane, nbytes) with time.perf_counter() stamps, for each bucket's
# allreduce (launch to completion, lane "comm") and each wait for it after backward.
_tracer = None


def _overlap_policy(pg, module: Module) -> bool:
    """Whether bucket allreduces run on the communication thread while backward continues
    (PyTorch's behaviour), or all at the end of backward in the backward's own thread.

    Overlap pays when communication waits on something other than this host's cores: a network
    (ranks on several hosts) or a GPU (NCCL). When every rank is on this host and the ranks'
    threads already fill its cores, a same-host allreduce is work for those same cores: on a
    comm thread it only competes with backward, pays a thread hand-off per bucket, and gives
    every bucket its own point where the ranks wait for each other (measured: mlp, 2 ranks on
    2 cores, 6.0-6.3 ms a step with overlap against 5.4-5.6 ms without).
    ``EMBER_DDP_OVERLAP=1`` or ``0`` overrides the choice.
    """
    mode = os.environ.get("EMBER_DDP_OVERLAP", "auto").lower()
    if mode in ("1", "on", "true"):
        return True
    if mode in ("0", "off", "false"):
        return False
    if mode != "auto":
        raise ValueError(f"EMBER_DDP_OVERLAP must be auto, 1 or 0, got {mode!r}")
    if pg is None or len(pg.hosts) != 1:
        return True
    if any(type(_interop.array_of(p)) is not np.ndarray for p in module.parameters()):
        return True
    return pg.size() * ember.get_num_threads() < usable_cores()


# DDP's own bookkeeping, set several times a step: plain attributes (never parameters,
# buffers or modules), stored without ``Module.__setattr__``'s checks (~1.5 us a set).
_PLAIN_ATTRS = frozenset(
    (
        "_callback_queued",
        "_next_bucket",
        "_seen",
        "_handed",
        "_join_work",
        "_unused",
        "require_forward_param_sync",
        "modules_buffers",
    )
)


class DistributedDataParallel(Module, BucketLayout, JoinableDDP, DDPInfo):
    """Synchronous data parallelism over a process group (PyTorch's DDP)."""

    def __setattr__(self, name: str, value) -> None:
        if name in _PLAIN_ATTRS:
            self.__dict__[name] = value
        else:
            super().__setattr__(name, value)

    def __init__(
        self,
        module: Module,
        device_ids=None,
        output_device=None,
        dim: int = 0,
        broadcast_buffers: bool = True,
        process_group=None,
        bucket_cap_mb: float | None = None,
        find_unused_parameters: bool = False,
        gradient_as_bucket_view: bool = False,
        static_graph: bool = False,
        device_mesh=None,
    ):
        super().__init__()
        Joinable.__init__(self)
        if process_group is not None and device_mesh is not None:
            raise RuntimeError("Cannot specify both process_group and device_mesh arguments.")
        if device_mesh is not None:  # e.g. mesh["dp"] of a (dp, tp) mesh: DDP over TP
            if device_mesh.ndim != 1:
                raise RuntimeError(f"Only 1D device mesh is supported, but got {device_mesh}.")
            process_group = device_mesh.get_group(mesh_dim=0)
        self.device_mesh = device_mesh
        if isinstance(module, DistributedDataParallel) or getattr(module, "_ember_ddp", False):
            raise RuntimeError("the module is already wrapped in DistributedDataParallel")
        if not is_initialized():
            raise RuntimeError(
                "DistributedDataParallel needs a process group: call "
                "ember.distributed.init_process_group() first"
            )
        self.module = module
        module._ember_ddp = True
        self.process_group = process_group
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.static_graph = bool(static_graph)  # kept for PyTorch's readers (_ddp_info.py)
        # PyTorch's rule: the small first bucket (to start communicating early) applies only
        # when the cap is left at its default
        self._first_small = bucket_cap_mb is None
        self.bucket_bytes_cap = int((25 if bucket_cap_mb is None else bucket_cap_mb) * 1024 * 1024)
        self.world_size = get_world_size(process_group)
        self._overlap = _overlap_policy(resolve_group(process_group), module)
        self.require_backward_grad_sync = True
        self.require_forward_param_sync = True
        self._comm_hook = None  # (state, hook) from register_comm_hook
        self._divide_by_initial_world_size = True  # set by join()
        self._join_work = None  # this iteration's Join notification (the ranks not joined)
        self._params = [p for p in module.parameters() if p.requires_grad]
        self._names = {id(p): n for n, p in module.named_parameters()}
        # PyTorch's ``modules_buffers``: the buffers to broadcast at each forward, collected
        # again at each broadcast (buffers may be reassigned); a module with none at wrap time
        # skips the broadcast without walking its submodules every step, as PyTorch does
        self.modules_buffers = list(module.buffers())
        self._sync_module_states()
        self._order: list[int] = []  # gradient arrival order, recorded in the first iteration
        self._rebuilt = False
        self._handed = False  # a shared storage went to the gradients in the last backward
        self._buckets = self._build_buckets(
            list(reversed(range(len(self._params)))), self._first_small
        )
        self._reset_iteration_state()
        self._unused: list[int] = []
        self._hooks = [
            p.register_post_accumulate_grad_hook(self._make_hook(i))
            for i, p in enumerate(self._params)
        ]
        _interop.use_grad_destinations(1)
        weakref.finalize(self, _release_destinations, self._params, self._hooks)

    # ---- set-up ----------------------------------------------------------------------------
    def _sync_module_states(self) -> None:
        """Broadcast parameters and buffers from rank 0 so every replica starts equal."""
        with ember.no_grad():
            for t in list(self.module.parameters()) + list(self.module.buffers()):
                collectives.broadcast(t, group=self.process_group, group_src=0)

    def _reset_iteration_state(self) -> None:
        for b in self._buckets:
            b.pending = len(b.params)
            b.work = None
        self._callback_queued = False
        self._seen = set()
        self._next_bucket = 0  # buckets launch in index order, as PyTorch's Reducer does

    # ---- hooks -----------------------------------------------------------------------------
    def _make_hook(self, index: int):
        # The hook lives on the parameter, which may outlive this wrapper (the user keeps the
        # module): it holds the wrapper weakly, so that dropping the wrapper frees it and its
        # buckets (issue #28: a strong closure kept 128 MiB of shared memory per wrapper).
        ref = weakref.ref(self)

        def hook(param):
            ddp = ref()
            if ddp is not None:
                ddp._mark_ready(index)

        return hook

    def _mark_ready(self, index: int) -> None:
        if not self.require_backward_grad_sync:
            return
        if self._handed:  # a backward without a forward through this wrapper
            self._renew()
        if not self._callback_queued:
            _interop.queue_engine_callback(self._finalize)
            self._callback_queued = True
            if self.find_unused_parameters:
                for i in self._unused:
                    self._mark_ready_one(i)
        self._mark_ready_one(index)

    def _mark_ready_one(self, index: int) -> None:
        if index in self._seen:
            return  # a parameter used twice gets its hook once per accumulation; count it once
        self._seen.add(index)
        if not self._rebuilt:
            self._order.append(index)
        b = self._buckets[self._bucket_of[index]]
        b.pending -= 1
        # a finished bucket waits for the ones before it (gradients need not become ready in
        # bucket order), so the communication hook sees buckets 0, 1, ... as PyTorch's does
        buckets = self._buckets
        while self._next_bucket < len(buckets) and buckets[self._next_bucket].pending == 0:
            self._next_bucket += 1
            self._launch(buckets[self._next_bucket - 1])

    def _launch(self, b: _Bucket) -> None:
        """Bucket ``b`` is ready: copy its gradients in and start (or defer) its allreduce."""
        for p, view in zip(b.params, b.views):
            if p.grad is None:
                view[...] = 0
            # (unless the gradient was written there: see _slice_buckets)
            elif (g := _interop.array_of(p.grad)) is not view:
                view[...] = g
        if self._comm_hook is not None:  # the hook communicates, bucket by bucket
            b.work = HookWork(self._comm_hook, self._buckets, b)
            return
        if self._next_bucket < len(self._buckets):  # not the last bucket
            if self._overlap:
                self._reduce(b, b.flat, async_op=True)
            return
        # The last bucket has no backward left to overlap with and is waited for at once:
        # reduce it in this thread, without the hand-off to the comm thread and back.
        # Without overlap, every bucket is reduced now, by one allreduce per storage.
        if self._overlap:
            self._reduce(b, b.flat, async_op=False)
            return
        for flat in self._storages:
            self._reduce(None, flat, async_op=False)

    def _reduce(self, b: _Bucket | None, flat, async_op: bool) -> None:
        """All-reduce ``flat`` (bucket ``b``'s, or a whole storage when ``b`` is None)."""
        start = time.perf_counter()
        work = collectives.all_reduce(
            _interop.wrap(flat), op=ReduceOp.AVG, group=self.process_group, async_op=async_op
        )
        if b is not None:
            b.work = work
        if _tracer is None:
            return
        label = (
            f"buckets 0-{len(self._buckets) - 1}"
            if b is None
            else f"bucket {self._buckets.index(b)}"
        )
        tracer, name, nbytes = _tracer, f"allreduce {label}", flat.nbytes
        if work is None:
            end = time.perf_counter()
            tracer(name, start, end, "comm", nbytes)
            tracer(f"wait {label}", start, end, "main", 0)
        else:
            work.get_future().add_done_callback(
                lambda _f: tracer(name, start, time.perf_counter(), "comm", nbytes)
            )

    def _finalize(self) -> None:
        """Called by the engine when backward has finished: wait and write grads back."""
        missing = [b for b in self._buckets if b.pending > 0]
        if missing:
            names = [
                self._names.get(id(self._params[i]), "?")
                for b in missing
                for i in b.indices
                if i not in self._seen
            ]
            self._reset_iteration_state()
            raise RuntimeError(
                "DistributedDataParallel: these parameters did not receive gradients in this "
                f"iteration: {names[:10]}{' ...' if len(names) > 10 else ''}. If some "
                "parameters are unused in forward, pass find_unused_parameters=True; if the "
                "loss does not depend on all outputs, make it depend on them."
            )
        for i, b in enumerate(self._buckets):
            if b.work is not None:  # None: reduced synchronously in _launch
                start = time.perf_counter()
                b.work.wait()
                if _tracer is not None:
                    _tracer(f"wait bucket {i}", start, time.perf_counter(), "main", 0)
        scale_for_joined(self)
        for k, pool in enumerate(self._pools):
            # A shared-memory storage is handed to the gradients (views of it; no copy), so
            # no later iteration overwrites gradients still held; the buckets move to a free
            # block at the next forward (``_renew``; see ``_ddp_storage.py``). With no room
            # for one, and for private storage, the gradients get copies. (The first backward
            # needs no spare: the buckets are rebuilt in new storage after it.)
            hand = pool is not None and (not self._rebuilt or pool.ensure_spare())
            for b in self._members[k]:
                bucket = self._buckets[b]
                for p, view in zip(bucket.params, bucket.views):
                    if hand:
                        if p.grad is None or _interop.array_of(p.grad) is not view:
                            p.grad = _interop.wrap(view)
                        # (no destination until _renew gives the bucket its block)
                        _interop.set_grad_destination(p, None)
                    elif p.grad is None or _interop.array_of(p.grad) is view:
                        p.grad = _interop.wrap(view.copy())  # the storage is reused
                    else:
                        ember.backend.get_array_module(view).copyto(_interop.array_of(p.grad), view)
            self._handed = self._handed or hand
        if not self._rebuilt:
            # rebuild the buckets once, in the order gradients actually became ready
            order = self._order + [i for i in range(len(self._params)) if i not in self._seen]
            self._buckets = self._build_buckets(order, self._first_small)
            self._rebuilt = True
            self._handed = False
        self._reset_iteration_state()

    # ---- forward ---------------------------------------------------------------------------
    def forward(self, *inputs, **kwargs):
        if self._handed:
            self._renew()
        # PyTorch's order: the Join notification, the buffers, whether this iteration syncs
        self._join_work = Join.notify_join_context(self)
        self._sync_buffers()
        if self._join_config.enable:
            self._global_requires_backward_grad_sync(joined=False)
        out = self.module(*inputs, **kwargs)
        self.require_forward_param_sync = (
            ember.is_grad_enabled() and self.require_backward_grad_sync
        )
        if (
            self.find_unused_parameters
            and ember.is_grad_enabled()
            and self.require_backward_grad_sync
        ):
            self._unused = self._find_unused(out)
        else:
            self._unused = []
        return out

    def _renew(self) -> None:
        """Move the buckets of storage handed to the gradients by the last backward to a block
        no gradient uses (normally the same block: zero_grad dropped the gradients)."""
        self._handed = False
        for k, pool in enumerate(self._pools):
            if pool is not None:
                self._storages[k] = None  # (a reference settle must not count)
                pool.settle()
                self._storages[k] = pool.root
        self._slice_buckets(private=False)

    def _find_unused(self, out) -> list[int]:
        """Parameters the graph of ``out`` does not reach (their buckets are ready at once)."""
        roots = [t.grad_fn for t in _tensors(out) if t.grad_fn is not None]
        reached = set()
        stack, seen = list(roots), {id(r) for r in roots}
        while stack:
            node = stack.pop()
            for e in node._edges:
                if e is None:
                    continue
                tgt = e[0]
                if isinstance(tgt, ember.autograd.Function):
                    if id(tgt) not in seen:
                        seen.add(id(tgt))
                        stack.append(tgt)
                else:
                    reached.add(id(tgt))
        return [i for i, p in enumerate(self._params) if id(p) not in reached]

    def register_comm_hook(self, state: object, hook) -> None:
        """Communicate each gradient bucket with ``hook(state, bucket) -> Future[Tensor]``
        instead of the built-in averaging allreduce (PyTorch's ``register_comm_hook``).

        ``bucket`` is a ``GradBucket``; the future's value (a tensor of ``bucket.buffer()``'s
        size) becomes the bucket's gradients. See
        ``ember.distributed.algorithms.ddp_comm_hooks.default_hooks`` for the built-in hooks
        (``allreduce_hook``, ``fp16_compress_hook``, ``bf16_compress_hook``). Call it once,
        before the first backward.
        """
        self._comm_hook = checked_comm_hook(self._comm_hook, state, hook)

    @contextlib.contextmanager
    def no_sync(self):
        """Accumulate gradients locally (no all-reduce) inside the block."""
        prev = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = prev

    # ---- state dict without the "module." surprise -------------------------------------------
    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, **kwargs):
        return self.module.load_state_dict(
            _strip_module_prefix(state_dict), strict=strict, **kwargs
        )


def _release_destinations(params, hooks=()) -> None:
    """A DDP is gone: its parameters' gradients go back to fresh arrays, its hooks go."""
    _interop.use_grad_destinations(-1)
    for p in params:
        _interop.set_grad_destination(p, None)
    for h in hooks:
        h.remove()


def _strip_module_prefix(state_dict):
    """Accept checkpoints saved from a wrapper with PyTorch's ``module.`` key prefix."""
    prefix = "module."
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return state_dict


def _tensors(obj):
    if isinstance(obj, ember.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


# DataParallel lives in data_parallel.py; this import keeps the old path working.
from .data_parallel import DataParallel as DataParallel  # noqa: E402
