"""``ZeroRedundancyOptimizer`` (ZeRO-1), PyTorch's ``torch.distributed.optim`` API.

The parameters of each param group (per dtype and device) are packed into one flat buffer,
padded to a multiple of the world size; the parameters become views of it (PyTorch's
``parameters_as_bucket_view``, always on here). Rank ``r`` owns elements ``[r*s, (r+1)*s)``:
its local optimizer (``optimizer_class``) steps a parameter that views that slice, so it keeps
state for 1/N of the elements. After the local step the buffers are all-gathered in place,
which updates every rank's parameters. Gradients are averaged by DDP as usual; the shard's
gradient is assembled from the parameters' ``.grad`` for the local step and dropped after it.

Updates are elementwise, so flat shards give the same result as per-parameter updates for
every elementwise optimizer (SGD, Adam(W), Adagrad, RMSprop, ...). One difference: a
parameter whose ``.grad`` is None is stepped with a zero gradient when others in its buffer
have gradients (all ranks see the same gradients under DDP).
"""

from __future__ import annotations

import weakref

import ember
from ember import _interop
from ember.nn import Parameter
from ember.optim import Optimizer

from .. import distributed_c10d as c10d
from ..algorithms.join import Join, Joinable, JoinHook

__all__ = ["ZeroRedundancyOptimizer"]

# id(parameter) -> weakref of the parameters already packed by some instance (an id-keyed
# dict: Tensor.__eq__ is elementwise, so WeakSet membership cannot be used).
_OWNED: dict[int, weakref.ref] = {}


def _owned(p) -> bool:
    ref = _OWNED.get(id(p))
    return ref is not None and ref() is p


def _own(p) -> None:
    key = id(p)
    _OWNED[key] = weakref.ref(p, lambda _: _OWNED.pop(key, None))  # gone with the parameter


class _Bucket:
    """One flat buffer: its parameters (as views), and this rank's shard parameter."""

    def __init__(self, group_index: int, params: list, world: int, rank: int) -> None:
        self.group_index = group_index
        self.params = params
        self.offsets, n = [], 0
        for p in params:
            self.offsets.append(n)
            n += p.numel()
        self.numel = n
        self.shard_size = -(-max(n, 1) // world)
        self.lo, self.hi = rank * self.shard_size, (rank + 1) * self.shard_size
        first = _interop.array_of(params[0])
        xp = ember.backend.get_array_module(first)
        self.flat = xp.zeros(self.shard_size * world, dtype=first.dtype)
        self.views = []
        for p, off in zip(params, self.offsets):
            view = self.flat[off : off + p.numel()].reshape(tuple(p.shape))
            view[...] = _interop.array_of(p)
            _interop.set_array(p, view)  # the parameter now lives in the flat buffer
            self.views.append(view)
        self.shard = Parameter(_interop.wrap(self.flat[self.lo : self.hi]))

    def shard_grad(self):
        """This rank's slice of the parameters' gradients (None when none has a gradient)."""
        if all(p.grad is None for p in self.params):
            return None
        xp = ember.backend.get_array_module(self.flat)
        out = xp.zeros(self.shard_size, dtype=self.flat.dtype)
        for p, off in zip(self.params, self.offsets):
            a, b = max(self.lo, off), min(self.hi, off + p.numel())
            if b > a and p.grad is not None:
                grad = _interop.array_of(p.grad).reshape(-1)
                out[a - self.lo : b - self.lo] = grad[a - off : b - off]
        return out


class _ZeROJoinHook(JoinHook):
    """What a rank that ran out of inputs does for a ``ZeroRedundancyOptimizer`` inside
    ``Join``: one step per iteration of the others, so its shard is still updated (with the
    gradients it holds, as in PyTorch) and it joins their all-gather."""

    def __init__(self, zero: ZeroRedundancyOptimizer) -> None:
        self.zero = zero

    def main_hook(self) -> None:
        self.zero._step(None, notify=False)


class ZeroRedundancyOptimizer(Optimizer, Joinable):
    r"""Wrap ``optimizer_class`` so that each rank keeps the state of 1/N of the parameters.

    Use it with ``DistributedDataParallel`` (which averages the gradients); every rank calls
    ``step`` and ends with the same parameters. It is a ``Joinable``: with uneven inputs,
    ``with Join([ddp_model, zero_optimizer]):`` keeps the joined ranks stepping their shards.

    Args:
        params (iterable): tensors or param-group dicts, as for any optimizer.
        optimizer_class (type): the local optimizer, e.g. ``ember.optim.Adam``.
        process_group: the group to shard over (default: the world).
        parameters_as_bucket_view (bool): accepted for compatibility; parameters are always
            views of the flat buffers here.
        overlap_with_ddp (bool): not supported (must be False).
        **defaults: the local optimizer's arguments (``lr``, ``betas``, ...).
    """

    def __init__(
        self,
        params,
        optimizer_class: type,
        process_group=None,
        parameters_as_bucket_view: bool = False,
        overlap_with_ddp: bool = False,
        **defaults,
    ):
        if overlap_with_ddp:
            raise NotImplementedError(
                "ZeroRedundancyOptimizer: overlap_with_ddp=True is not supported"
            )
        if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer)):
            raise TypeError(
                f"optimizer_class must be an ember.optim.Optimizer subclass, got "
                f"{optimizer_class!r}"
            )
        if not c10d.is_initialized():
            raise RuntimeError(
                "ZeroRedundancyOptimizer needs a process group: call "
                "ember.distributed.init_process_group() first"
            )
        self.process_group = process_group
        self.world_size = c10d.get_world_size(process_group)
        self.rank = c10d.get_rank(process_group)
        self.global_rank = c10d.get_rank()
        self._optim_constructor = optimizer_class
        self._optim_defaults = defaults
        self._buckets: list[_Bucket] = []
        self._consolidated = None
        self.optim = None
        Joinable.__init__(self)  # (Optimizer.__init__ does not chain to it)
        super().__init__(params, defaults)
        self.optim = optimizer_class([self._local_group(b) for b in self._buckets], **defaults)
        self._sync_groups(to_local=False)

    # ---- buckets -------------------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        """Add a param group (packed into new flat buffers sharded like the others)."""
        super().add_param_group(param_group)
        gi = len(self.param_groups) - 1
        params = self.param_groups[gi]["params"]
        for i, p in enumerate(params):
            if _owned(p):
                raise RuntimeError(
                    f"ZeroRedundancyOptimizer: parameter {i} of group {gi} "
                    f"(shape {tuple(p.shape)}) is already managed by another "
                    "ZeroRedundancyOptimizer; shard each parameter once"
                )
            if getattr(p, "_ember_fsdp_flat", False):
                raise RuntimeError(
                    "ZeroRedundancyOptimizer: the parameters belong to a "
                    "FullyShardedDataParallel / ZeroDataParallel model, whose "
                    "optimizer state is sharded already; use a plain optimizer"
                )
        runs, key = [], None
        for p in params:
            k = (_interop.array_of(p).dtype, str(p.device))
            if not runs or k != key:
                runs.append([])
            runs[-1].append(p)
            key = k
        new = [_Bucket(gi, run, self.world_size, self.rank) for run in runs]
        for p in params:
            _own(p)
        self._buckets.extend(new)
        if self.optim is not None:
            for b in new:
                self.optim.add_param_group(self._local_group(b))
            self._sync_groups(to_local=False)

    def _local_group(self, b: _Bucket) -> dict:
        g = {
            k: v
            for k, v in self.param_groups[b.group_index].items()
            if k not in ("params", "param_names")
        }
        g["params"] = [b.shard]
        return g

    def _sync_groups(self, to_local: bool) -> None:
        """Copy hyper-parameters from the global groups to the local (per bucket) ones, or
        back (so LR schedulers on this optimizer reach the local optimizer, as in PyTorch)."""
        for b, local in zip(self._buckets, self.optim.param_groups):
            glob = self.param_groups[b.group_index]
            src, dst = (glob, local) if to_local else (local, glob)
            for k, v in src.items():
                if k not in ("params", "param_names"):
                    dst[k] = v

    def _check_params(self) -> None:
        for b in self._buckets:
            for i, (p, view) in enumerate(zip(b.params, b.views)):
                if _interop.array_of(p) is not view:
                    raise RuntimeError(
                        f"ZeroRedundancyOptimizer: parameter {i} of group {b.group_index} "
                        f"(shape {tuple(p.shape)}) was replaced after the optimizer was built "
                        "(its data no longer lives in the optimizer's flat buffer, e.g. after "
                        ".to(), .data = ... or load_state_dict(assign=True)); build the "
                        "optimizer after moving or casting the model"
                    )

    # ---- stepping ------------------------------------------------------------------------
    def step(self, closure=None, **kwargs):
        """Step this rank's shard with the local optimizer, then all-gather the parameters."""
        return self._step(closure, notify=True, **kwargs)

    def _step(self, closure, notify: bool, **kwargs):
        if notify:  # (a joined rank's main hook steps without telling the join context)
            Join.notify_join_context(self)
        loss = self._eval_closure(closure)
        self._check_params()
        self._sync_groups(to_local=True)
        for b in self._buckets:
            g = b.shard_grad()
            b.shard.grad = None if g is None else _interop.wrap(g)
        try:
            self.optim.step(**kwargs)
        finally:
            for b in self._buckets:
                b.shard.grad = None
        self._sync_groups(to_local=False)
        if self.world_size > 1:
            works = [
                c10d.all_gather_into_tensor(
                    _interop.wrap(b.flat),
                    _interop.wrap(b.flat[b.lo : b.hi]),
                    group=self.process_group,
                    async_op=True,
                )
                for b in self._buckets
            ]
            for w in works:
                w.wait()
        for b in self._buckets:
            for p in b.params:
                _interop.bump_version(p)
        return loss

    # ---- Joinable ----------------------------------------------------------------------
    def join_hook(self, **kwargs) -> JoinHook:
        """The hook a joined rank runs: a step per iteration of the ranks not joined."""
        return _ZeROJoinHook(self)

    @property
    def join_device(self):
        return self._buckets[0].shard.device if self._buckets else ember.device("cpu")

    @property
    def join_process_group(self):
        return self.process_group

    # ---- state dicts ---------------------------------------------------------------------
    def consolidate_state_dict(self, to: int = 0) -> None:
        """Gather the full optimizer state on rank ``to`` (call on every rank); then
        ``state_dict()`` there returns it in ``optimizer_class``'s own layout."""
        from ._zero_state import consolidate

        self._consolidated = consolidate(self, to)

    def state_dict(self) -> dict:
        """The consolidated state (rank ``to`` of the last ``consolidate_state_dict`` only)."""
        if self._consolidated is None:
            raise RuntimeError(
                "Optimizer state has not been consolidated on this rank. Please call "
                "`consolidate_state_dict(to=<rank>)` on all ranks beforehand if you meant to "
                "save the global state."
            )
        return self._consolidated

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a full state dict (``optimizer_class``'s layout, e.g. from ``state_dict()``
        or a plain optimizer); each rank keeps the state of its own shard."""
        from ._zero_state import load

        load(self, state_dict)

    def _ember_memory_arrays(self):
        for b in self._buckets:
            yield "parameters", b.flat
            if b.shard.grad is not None:
                yield "gradients", _interop.array_of(b.shard.grad)
