"""``FlatParamHandle``: one flat, padded, sharded parameter standing for several originals.

The originals of a unit are copied into one flat storage of ``padded`` elements (a multiple
of the number of shards); the module attributes become plain views into that storage and the
originals leave ``module._parameters``. Rank ``r`` owns elements ``[r*s, (r+1)*s)``; its
``flat_param`` (an ``nn.Parameter`` the optimizer sees) holds that shard, either in its own
memory (``keep_full=False``: FSDP) or as a view of the persistent storage (``keep_full=True``:
ZeRO-1/2, where full parameters stay on every rank).

Forward with gradients goes through ``_Unflatten``: one autograd node whose outputs are the
per-parameter views. It runs in backward after every use of the unit's parameters, so its
backward is the unit's post-backward point: it assembles the full flat gradient, starts the
reduce-scatter (or all-reduce), and frees the gathered parameters; that gradient side
(``post_backward``, the reductions, ``finalize_grads``) is a mixin in ``_flat_param_grads.py``.
"""

from __future__ import annotations

import weakref

import numpy as np

import ember
from ember import _interop
from ember.autograd import Function
from ember.nn import Parameter

from .. import distributed_c10d as c10d
from . import _orig_params as _orig
from ._flat_param_grads import _empty_like, _FlatGradMixin, _to_host  # noqa: F401
from ._storage import FlatStorage


class _Entry:
    """One original parameter: where its elements live in the flat storage."""

    __slots__ = ("aliases", "shape", "numel", "offset")

    def __init__(self, aliases, shape, numel, offset):
        self.aliases = aliases  # [(module, name), ...]: more than one for a shared parameter
        self.shape = tuple(shape)
        self.numel = numel
        self.offset = offset


class _Unflatten(Function):
    """Flat storage -> per-parameter views; backward hands the flat gradient to the handle."""

    _view_of = 0
    supports_double_backward = False

    @staticmethod
    def forward(ctx, flat, handle):
        ctx.handle = handle
        ctx.set_materialize_grads(False)
        return tuple(flat[e.offset : e.offset + e.numel].reshape(e.shape) for e in handle.entries)

    @staticmethod
    def backward(ctx, *grads):
        handle = ctx.handle
        xp = ctx.xp
        full = xp.zeros(handle.padded, dtype=handle.compute_dtype)
        for e, g in zip(handle.entries, grads):
            if g is not None:
                full[e.offset : e.offset + e.numel] = g.reshape(-1)
        handle.post_backward(full)
        return None, None


class FlatParamHandle(_FlatGradMixin):
    """The flat parameter of one FSDP unit (or one ZeRO bucket) and its communication.

    Args:
        entries: ``(parameter, [(module, name), ...])`` in flattening order.
        owner: the FSDP module that owns the handle (for its runtime state and flags).
        config: the owner's ``_UnitConfig``.
    """

    def __init__(self, entries: list, owner, config) -> None:
        self._owner = weakref.ref(owner)
        self.config = config
        pg = config.process_group
        self.world_size = c10d.get_world_size(pg)
        self.rank = c10d.get_rank(pg)
        self.nshards = self.world_size if config.shard else 1
        self.shard_rank = self.rank if config.shard else 0
        first = entries[0][0]
        self.dtype = _interop.array_of(first).dtype
        self.device = first.device
        self.requires_grad = first.requires_grad
        # HYBRID_SHARD: gradients are also all-reduced over the replicas of this shard
        self.replicate_group = config.replicate_group
        self.dp_size = self.world_size
        if self.replicate_group is not None:
            self.dp_size *= c10d.get_world_size(self.replicate_group)
        self.offload = config.offload_params and self.device.type != "cpu"
        self.orig_params = [p for p, _ in entries] if config.use_orig_params else None
        numels = [p.numel() for p, _ in entries]
        if self.orig_params is not None:  # PyTorch aligns each original's start
            offsets, offset = _orig.aligned_offsets(numels, self.dtype.itemsize)
        else:
            offsets, offset = [sum(numels[:i]) for i in range(len(numels))], sum(numels)
        self.entries: list[_Entry] = []
        for (p, aliases), n, off in zip(entries, numels, offsets):
            self.entries.append(_Entry(aliases, p.shape, n, off))
        # tensor-parallel parameters (DTensorParameter) are flattened as their local pieces;
        # forward sees them as DTensors of the same layout again (FSDP1 over TP: 2-D)
        self._layouts = [
            (p.device_mesh, p.placements, p._global_shape) if hasattr(p, "as_dtensor") else None
            for p, _ in entries
        ]
        self.numel = offset
        self.shard_size = -(-max(offset, 1) // self.nshards)
        self.padded = self.shard_size * self.nshards
        self.sharded_at_rest = config.shard and not config.keep_full
        mp = config.mixed_precision
        # Mixed precision: forward/backward use a second, low-precision full copy (``low``),
        # gathered from the cast shard; ``storage`` stays in the parameter dtype and serves
        # state dicts and summon_full_params. Gradients are reduced in ``reduce``.
        self.low = self.reduce = None
        self.keep_low_grads = False
        if mp is not None and first.dtype.is_floating_point:
            from ._mixed_precision import np_dtype

            low, red = np_dtype(mp.param_dtype), np_dtype(mp.reduce_dtype)
            self.low = low if low is not None and low != self.dtype else None
            self.reduce = red if red is not None and red != self.compute_dtype else None
            self.keep_low_grads = mp.keep_low_precision_grads and self.low is not None

        self.storage = FlatStorage(self.padded, self.dtype, self.device)
        full = self.storage.array
        full[...] = 0  # the padding (and the alignment gaps of use_orig_params)
        for (p, _), e in zip(entries, self.entries):
            full[e.offset : e.offset + e.numel] = _interop.array_of(p).reshape(-1)
        lo, hi = self.shard_bounds()
        if self.offload and not self.sharded_at_rest:
            raise NotImplementedError(
                f"FullyShardedDataParallel: CPUOffload(offload_params=True) with "
                f"{config.strategy.name} on {self.device} is not supported (use FULL_SHARD, "
                "SHARD_GRAD_OP or HYBRID_SHARD)"
            )
        if not config.shard or config.keep_full:
            flat = full[lo:hi]  # NO_SHARD: the whole storage; ZeRO-1/2: a view of its shard
        elif self.offload:
            flat = _to_host(full[lo:hi])  # CPUOffload: the shard lives in host memory
        else:
            flat = full[lo:hi].copy()
        self.flat_param = Parameter(_interop.wrap(flat), self.requires_grad)
        self.flat_param._ember_fsdp_flat = True  # ZeroRedundancyOptimizer refuses these
        self._flat_array = flat
        self._plain = self._views_of(full)
        self.mp_storage = self._plain_low = self._mp_work = None
        self.mp_unsharded, self.mp_version = False, None
        if self.low is not None:
            self.mp_storage = FlatStorage(self.padded, self.low, self.device)
            self._plain_low = self._views_of(self.mp_storage.array)
        self._graph_views = None
        self._gather_work = None
        self._gather_version = None
        self.gathered_version = _interop.version(self.flat_param)
        self._pending: list = []  # (work, array) of gradient reductions in flight
        self._acc_grad = None  # unreduced gradient accumulated under no_sync()
        self.unsharded = True
        if self.orig_params is not None:
            _orig.bind(self)
        else:
            for e, view in zip(self.entries, self._plain):
                for module, name in e.aliases:
                    del module._parameters[name]
                    module.__dict__[name] = view
        if self.sharded_at_rest:
            self.reshard()

    # ---- layout --------------------------------------------------------------------------
    @property
    def compute_dtype(self):
        """The dtype forward and backward see (``param_dtype`` under mixed precision)."""
        return self.dtype if self.low is None else self.low

    def _views_of(self, full) -> tuple:
        return tuple(
            _interop.wrap(full[e.offset : e.offset + e.numel].reshape(e.shape))
            for e in self.entries
        )

    def _to_compute(self, arr):
        """``arr`` (the host shard under CPUOffload) on the compute device."""
        if not self.offload:
            return arr
        from ember.backend import get_array_module

        return get_array_module(self.device).asarray(arr)

    @property
    def owner(self):
        return self._owner()

    def shard_bounds(self, shard_rank: int | None = None) -> tuple[int, int]:
        """This rank's (or ``shard_rank``'s) element range in the flat storage."""
        r = self.shard_rank if shard_rank is None else shard_rank
        return r * self.shard_size, (r + 1) * self.shard_size

    def names(self, fqns: dict) -> list[str]:
        """The first fully qualified name of each entry (``fqns`` maps (id(module), name))."""
        return [fqns[(id(e.aliases[0][0]), e.aliases[0][1])] for e in self.entries]

    def check_unchanged(self, unit_name: str) -> None:
        """Raise if the flat parameter or an original was replaced after wrapping."""
        arr = _interop.array_of(self.flat_param)
        if arr is not self._flat_array:
            raise RuntimeError(
                f"{unit_name}: the flat parameter's data was replaced after wrapping (it now has "
                f"shape {tuple(arr.shape)}, expected ({self.shard_size},) sharing the "
                "unit's storage). Move or cast the model before wrapping it, and change "
                "parameter values in place (e.g. under summon_full_params)."
            )
        for i, e in enumerate(self.entries):
            for module, name in e.aliases:
                if self.orig_params is not None:
                    if module._parameters.get(name) is not self.orig_params[i]:
                        raise RuntimeError(
                            f"{unit_name}: parameter '{name}' of {type(module).__name__} was "
                            "replaced after wrapping (use_orig_params=True keeps the original "
                            "Parameter objects); change its values in place instead."
                        )
                    continue
                if name in module._parameters:
                    raise RuntimeError(
                        f"{unit_name}: parameter '{name}' of {type(module).__name__} was "
                        "re-registered after wrapping; the wrapper no longer manages it. Assign "
                        "new parameters before wrapping the model."
                    )

    def sync_orig_params(self) -> None:
        """use_orig_params: take parameters given new data into the shard; the optimizer
        changed the shard through the views, so the low-precision copy is stale too."""
        if self.orig_params is None:
            return
        _orig.write_back(self)
        _interop.bump_version(self.flat_param)

    # ---- parameters ----------------------------------------------------------------------
    def needs_gather(self) -> bool:
        if not self.config.shard:
            return False
        if self.config.keep_full:
            return _interop.version(self.flat_param) != self.gathered_version
        return not self.unsharded

    def unshard(self, async_op: bool = False) -> None:
        """All-gather the full parameters into the storage (no-op when they are there)."""
        if self._gather_work is None and self.needs_gather():
            self.storage.acquire()
            self._gather_version = _interop.version(self.flat_param)
            # CPUOffload: the host shard goes up to the device first (a no-op on the CPU)
            src = self._to_compute(self._flat_array)
            if self.world_size == 1:
                self.storage.array[: self.shard_size] = src
                self._gather_work = True
            else:
                self._gather_work = c10d.all_gather_into_tensor(
                    _interop.wrap(self.storage.array),
                    _interop.wrap(src),
                    group=self.config.process_group,
                    async_op=True,
                )
        if not async_op:
            self.wait_unshard()

    def wait_unshard(self) -> None:
        work = self._gather_work
        if work is None:
            return
        self._gather_work = None
        if work is not True:
            work.wait()
        self.unsharded = True
        self.gathered_version = self._gather_version

    def unshard_compute(self, async_op: bool = False) -> None:
        """Gather the parameters forward/backward use: the full-precision ones, or under
        mixed precision the shard cast to ``param_dtype`` and all-gathered in it."""
        if self.low is None:
            return self.unshard(async_op)
        version = _interop.version(self.flat_param)
        if self._mp_work is None and not (self.mp_unsharded and self.mp_version == version):
            self.mp_storage.acquire()
            src = self._to_compute(self._flat_array).astype(self.low)
            if not self.config.shard or self.world_size == 1:
                self.mp_storage.array[: src.shape[0]] = src
                work = None
            else:
                work = c10d.all_gather_into_tensor(
                    _interop.wrap(self.mp_storage.array),
                    _interop.wrap(src),
                    group=self.config.process_group,
                    async_op=True,
                )
            self._mp_work = (work, src, version)  # src stays alive until the gather is done
        if not async_op:
            self.wait_compute()

    def wait_compute(self) -> None:
        if self.low is None:
            return self.wait_unshard()
        if self._mp_work is None:
            return
        (work, _, version), self._mp_work = self._mp_work, None
        if work is not None:
            work.wait()
        self.mp_unsharded, self.mp_version = True, version

    def reshard(self) -> None:
        """Free the gathered parameters (sharded-at-rest handles only)."""
        if self.orig_params is not None:
            _orig.use_sharded_views(self)
        if not self.sharded_at_rest:
            return
        if self.low is not None:
            self.wait_compute()
            self.mp_storage.release()
            self.mp_unsharded = False
        if self._gather_work is not None:
            self.wait_unshard()
        self.storage.release()
        self.unsharded = False

    def attach_views(self, with_graph: bool, compute: bool = False) -> None:
        """Point the module attributes at views of the storage (graph-connected ones when
        gradients will flow: one ``_Unflatten`` node per handle and iteration). ``compute``:
        the low-precision copy under mixed precision (forward and backward)."""
        low = compute and self.low is not None
        if with_graph and self.requires_grad:
            if self._graph_views is None:
                src = self.mp_storage if low else self.storage
                leaf = _interop.wrap(src.array)
                leaf.requires_grad = True
                self._graph_views = _Unflatten.apply(leaf, self)
            views = self._graph_views
        else:
            views = self._plain_low if low else self._plain
        for e, view, layout in zip(self.entries, views, self._layouts):
            if layout is not None:
                from ..tensor import DTensor

                view = DTensor(view, *layout)
            for module, name in e.aliases:
                module.__dict__[name] = view

    def detach_views(self) -> None:
        """Forget this iteration's graph views (the attributes become plain views again)."""
        if self._graph_views is not None:
            self._graph_views = None
            if self.orig_params is not None:
                _orig.use_sharded_views(self)
            else:
                self.attach_views(False)

    def load_full_flat(self, full: np.ndarray) -> None:
        """Take new values from a full flat array (of ``padded`` elements) on every rank."""
        lo, hi = self.shard_bounds()
        with ember.no_grad():
            if self.config.keep_full or not self.config.shard:
                self.storage.array[...] = full
                _interop.bump_version(self.flat_param)
                self.gathered_version = _interop.version(self.flat_param)
            else:
                self._flat_array[...] = _to_host(full[lo:hi]) if self.offload else full[lo:hi]
                _interop.bump_version(self.flat_param)
                if self.unsharded:
                    self.storage.array[...] = full

    def write_back(self) -> None:
        """Copy this rank's part of the (possibly edited) full parameters into the shard."""
        self.mp_unsharded = False  # the low-precision copy may be stale now: cast it again
        if self.sharded_at_rest and self.unsharded:
            lo, hi = self.shard_bounds()
            part = self.storage.array[lo:hi]
            self._flat_array[...] = _to_host(part) if self.offload else part
            _interop.bump_version(self.flat_param)

    def memory_arrays(self):
        """(category, array) pairs this handle holds beyond its flat parameter and grad."""
        if self.storage.resident or not self.storage._releasable:
            yield "parameters", self.storage.array
        mp = self.mp_storage
        if mp is not None and (mp.resident or not mp._releasable):
            yield "parameters", mp.array
        if self._acc_grad is not None:
            yield "gradients", self._acc_grad
        for _, arr in self._pending:
            yield "communication_buffers", arr
