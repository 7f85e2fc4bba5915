"""One ``fully_shard`` group: its parameters' shards, the flat all-gather that unshards them
and the flat reduce-scatter that shards their gradients.

Layout (as PyTorch's FSDP2): a parameter of first dimension ``n`` is cut into ``torch.chunk``
pieces of ``ceil(n / world)`` rows, the last ones shorter or empty; on the wire each rank's
piece is padded to the full ``ceil(n / world)`` rows, so that one all-gather of every rank's
concatenated padded shards (as bytes: the parameters may differ in dtype) rebuilds all the
group's parameters at once, and one reduce-scatter per gradient dtype shards the gradients.

The unsharded parameters are views of one ``FlatStorage`` that lives as long as the group:
autograd keeps views of it between forward and backward, resharding hands its memory back
(``madvise``) and unsharding writes the gathered values into the same addresses.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import ember
from ember import _interop
from ember.backend import get_array_module

from ... import collectives as _c
from ...reduce_op import ReduceOp
from ...tensor import DTensor, Replicate, Shard
from ...tensor.parallel import DTensorParameter
from ...tensor.placement_types import _StridedShard
from .._storage import FlatStorage
from ._api import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy

__all__ = ["FSDPParamGroup"]

_ALIGN = 16  # byte alignment of each parameter inside the flat buffers


def _align(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


class _TPLayout(NamedTuple):
    """A tensor-parallel parameter's layout before ``fully_shard`` (``tp_*``) and after it
    (``mesh``: the data-parallel dims then the TP ones, ``placements``)."""

    tp_mesh: Any
    tp_placements: tuple
    shape: tuple  # the global shape (TP's; FSDP keeps it)
    mesh: Any
    placements: tuple


def _tp_layout(full, mesh, placements, fqn: str) -> _TPLayout | None:
    """The layout of a tensor-parallel parameter (a ``DTensorParameter`` from
    ``parallelize_module``) sharded by ``fully_shard`` over ``mesh`` with ``placements``, as
    PyTorch lays FSDP2 over TP: ``Shard(0)`` on the data-parallel dimension
    (``_StridedShard(0, tp)`` when TP also shards dim 0: FSDP cuts the TP piece), then the TP
    placement. ``None`` for a plain parameter."""
    if not isinstance(full, DTensorParameter):
        return None
    tp_mesh, tp_places = full.device_mesh, tuple(full.placements)
    dp_names, tp_names = mesh.mesh_dim_names, tp_mesh.mesh_dim_names
    root = mesh._root
    if not dp_names or not tp_names or tp_mesh._root is not root:
        raise ValueError(
            f"fully_shard: parameter '{fqn}' is a DTensor on {tp_mesh!r}; to shard it over "
            f"{mesh!r} both meshes must be named slices of one DeviceMesh "
            "(init_device_mesh(..., mesh_dim_names=('dp', 'tp')), then mesh['dp'] and mesh['tp'])"
        )
    names = dp_names + tp_names
    order = [root.mesh_dim_names.index(n) for n in names]
    if order != sorted(order) or len(set(names)) != len(names):
        raise ValueError(
            f"fully_shard: parameter '{fqn}' is a DTensor on mesh dims {tp_names}; the "
            f"data-parallel dims {dp_names} must come before them in the root mesh "
            f"{root.mesh_dim_names}"
        )
    if any(not isinstance(p, (Shard, Replicate)) for p in tp_places):
        raise NotImplementedError(
            f"fully_shard: parameter '{fqn}' has placements {tp_places}; only Shard and "
            "Replicate tensor-parallel parameters can be sharded"
        )
    spmd_mesh = root[names]
    tp_size = 1
    for i, p in enumerate(tp_places):
        if p.is_shard(0):
            tp_size *= tp_mesh.size(i)
    dp_places = tuple(
        _StridedShard(0, tp_size) if p.is_shard(0) and tp_size > 1 else p for p in placements
    )
    return _TPLayout(
        tp_mesh, tp_places, tuple(full._global_shape), spmd_mesh, dp_places + tp_places
    )


class _Param:
    """One managed parameter: where it lives in its module, its shard and its unsharded view."""

    def __init__(
        self, module, name: str, full, mesh, rank: int, world: int, fqn: str, placements
    ) -> None:
        if full.dim() == 0:
            raise NotImplementedError(
                f"fully_shard: parameter '{fqn}' is 0-dimensional; FSDP2 shards dimension 0"
            )
        self.module, self.name, self.fqn = module, name, fqn
        self.shape = tuple(full.shape)
        self.orig_dtype = full.dtype
        self.requires_grad = full.requires_grad
        n = self.shape[0]
        self.pad_rows = -(-n // world)  # rows of every rank's padded shard
        self.row_numel = 1
        for s in self.shape[1:]:
            self.row_numel *= s
        lo, hi = min(rank * self.pad_rows, n), min((rank + 1) * self.pad_rows, n)
        # a tensor-parallel parameter: FSDP shards its local piece (``self.shape``); the
        # sharded parameter is a DTensor on the (dp..., tp) mesh of the TP global shape
        self.tp = _tp_layout(full, mesh, placements, fqn)
        if self.tp is None:
            self.spmd_mesh, self.spmd_placements, self.global_shape = mesh, placements, self.shape
        else:
            self.spmd_mesh, self.spmd_placements = self.tp.mesh, self.tp.placements
            self.global_shape = self.tp.shape
        local = full.detach()[lo:hi].clone()  # this rank's own data, as PyTorch (no broadcast)
        self.sharded = self.make_sharded(local)
        self.unsharded = None  # a Parameter viewing the group's storage (made at first unshard)
        self.grad_ready = False

    def make_sharded(self, local) -> DTensorParameter:
        """A sharded parameter holding ``local`` (this rank's rows)."""
        dt = DTensor(local, self.spmd_mesh, self.spmd_placements, self.global_shape)
        return DTensorParameter(dt, requires_grad=self.requires_grad)

    def make_unsharded(self, full):
        """The unsharded parameter over ``full`` (no copy): a plain ``Parameter``, or for a
        tensor-parallel parameter a ``DTensorParameter`` of its TP layout, so that the TP
        forward computes with the DTensor as before ``fully_shard``."""
        if self.tp is None:
            return ember.nn.Parameter(full, self.requires_grad)
        dt = DTensor(full, self.tp.tp_mesh, self.tp.tp_placements, self.tp.shape)
        return DTensorParameter(dt, self.requires_grad)

    @property
    def padded_numel(self) -> int:
        return self.pad_rows * self.row_numel

    @property
    def local_rows(self) -> int:
        return self.sharded.shape[0]


class FSDPParamGroup:
    """The parameters one ``fully_shard`` call manages, and their collectives."""

    def __init__(
        self,
        params: list[tuple[Any, str, str]],
        mesh,
        mp_policy: MixedPrecisionPolicy,
        offload_policy: OffloadPolicy,
    ) -> None:
        self.mesh = mesh
        # a 1-d mesh shards over its ranks; a 2-d mesh is HSDP, as PyTorch: dim 0 replicates
        # (gradients all-reduced across it), dim 1 shards
        shard_dim = mesh.ndim - 1
        self.group = mesh.get_group(shard_dim)
        self.world = mesh.size(shard_dim)
        self.rank = mesh.get_coordinate()[shard_dim]
        self.replicate_group = mesh.get_group(0) if mesh.ndim == 2 else None
        self.replicas = mesh.size(0) if mesh.ndim == 2 else 1
        self.placements = (Shard(0),) if mesh.ndim == 1 else (Replicate(), Shard(0))
        self.mp = mp_policy
        self.offload = isinstance(offload_policy, CPUOffloadPolicy)
        self.params: list[_Param] = []
        self.device = None
        for module, name, fqn in params:
            full = module._parameters[name]
            if self.device is None:
                self.device = full.device
            self.params.append(
                _Param(module, name, full, mesh, self.rank, self.world, fqn, self.placements)
            )
        for p in self.params:
            sharded = p.sharded
            if self.offload and sharded.device.type != "cpu":
                p.sharded = sharded = p.make_sharded(sharded.to("cpu"))
            setattr(p.module, p.name, p.sharded)
        # byte layout of the all-gather (per rank) and of the unsharded storage
        self._ag_off, self._st_off, ag, st = [], [], 0, 0
        for p in self.params:
            nbytes = p.padded_numel * self._np_dtype(self.param_dtype(p)).itemsize
            self._ag_off.append((ag, nbytes))
            self._st_off.append((st, nbytes * self.world))
            ag += _align(nbytes)
            st += _align(nbytes * self.world)
        self._ag_bytes, self._st_bytes = ag, st
        self.storage: FlatStorage | None = None
        self.is_unsharded = False
        self.reshard_after_forward = True
        self.reshard_after_backward = True
        self.requires_grad_sync = True
        self.reduced_this_backward = False
        self.divide_factor: float | None = None  # None: the world size (a mean)

    # ---- dtypes ---------------------------------------------------------------------------
    def param_dtype(self, p: _Param):
        return self.mp.param_dtype or p.orig_dtype

    def reduce_dtype(self, p: _Param):
        return self.mp.reduce_dtype or self.param_dtype(p)

    @staticmethod
    def _np_dtype(dtype):
        return dtype.np

    # ---- unshard / reshard ----------------------------------------------------------------
    def _views(self):
        """The unsharded parameters' arrays: padded (world * pad_rows rows) views of the
        storage, one per parameter."""
        arr = self.storage.array
        out = []
        for p, (off, nbytes) in zip(self.params, self._st_off):
            dt = self._np_dtype(self.param_dtype(p))
            out.append(arr[off : off + nbytes].view(dt).reshape(p.pad_rows * self.world, -1))
        return out

    def unshard(self) -> None:
        """All-gather the group's parameters (one flat collective) into the unsharded
        parameters and register those on their modules."""
        if self.is_unsharded or not self.params:
            return
        if self.device.type == "meta":  # sharded on meta, then to_empty(): where shards are now
            self.device = self.params[0].sharded.device
        xp = get_array_module(self.device)
        send = xp.zeros(self._ag_bytes, dtype=xp.uint8)
        for p, (off, _) in zip(self.params, self._ag_off):
            local = p.sharded.detach().to(device=self.device, dtype=self.param_dtype(p))
            arr = _interop.array_of(local).reshape(-1)
            send[off : off + arr.nbytes] = arr.view(xp.uint8)
        recv = xp.empty(self._ag_bytes * self.world, dtype=xp.uint8)
        _c.all_gather_into_tensor(_interop.wrap(recv), _interop.wrap(send), group=self.group)
        recv = recv.reshape(self.world, self._ag_bytes)
        if self.storage is None:
            self.storage = FlatStorage(self._st_bytes, "uint8", self.device)
        self.storage.acquire()
        views = self._views()
        for p, view, (off, nbytes) in zip(self.params, views, self._ag_off):
            view.view(xp.uint8).reshape(self.world, nbytes)[...] = recv[:, off : off + nbytes]
            if p.unsharded is None:
                full = view[: p.shape[0]].reshape(p.shape)
                p.unsharded = p.make_unsharded(_interop.wrap(full))
                if p.requires_grad:
                    p.unsharded.register_post_accumulate_grad_hook(self._make_grad_hook(p))
            setattr(p.module, p.name, p.unsharded)
        self.is_unsharded = True

    def reshard(self) -> None:
        """Register the sharded parameters again and give the unsharded memory back."""
        if not self.is_unsharded or not self.params:
            return
        for p in self.params:
            setattr(p.module, p.name, p.sharded)
        self.storage.release()
        self.is_unsharded = False

    # ---- gradients ------------------------------------------------------------------------
    def _make_grad_hook(self, p: _Param):
        def hook(_param) -> None:
            p.grad_ready = True
            if all(q.grad_ready for q in self.params if q.requires_grad):
                self.post_backward()

        return hook

    def post_backward(self) -> None:
        """Reduce-scatter the unsharded gradients (mean over the ranks) into the sharded
        parameters' ``.grad``; then reshard if ``reshard_after_backward``."""
        for p in self.params:
            p.grad_ready = False
        if self.reduced_this_backward:
            return
        self.reduced_this_backward = True
        if self.requires_grad_sync:
            self._reduce_scatter()
        if self.reshard_after_backward:
            self.reshard()

    def _reduce_scatter(self) -> None:
        with_grad = [
            p for p in self.params if p.unsharded is not None and p.unsharded.grad is not None
        ]
        by_dtype: dict = {}
        for p in with_grad:
            by_dtype.setdefault(self.reduce_dtype(p), []).append(p)
        xp = get_array_module(self.device)
        for rdtype, ps in by_dtype.items():
            npd = self._np_dtype(rdtype)
            offs, total = [], 0
            for p in ps:
                offs.append(total)
                total += p.padded_numel
            send = xp.zeros((self.world, total), dtype=npd)
            for p, off in zip(ps, offs):
                g = _interop.array_of(p.unsharded.grad).reshape(-1)
                # rank r's part: rows [r * pad_rows, (r + 1) * pad_rows) of the gradient
                # (the rows past the parameter's end stay zero: the padding)
                step = p.pad_rows * p.row_numel
                for r in range(self.world):
                    part = g[r * step : (r + 1) * step]
                    send[r, off : off + part.size] = part
            recv = xp.empty(total, dtype=npd)
            _c.reduce_scatter_tensor(
                _interop.wrap(recv),
                _interop.wrap(send.reshape(-1)),
                op=ReduceOp.SUM,
                group=self.group,
            )
            if self.replicate_group is not None:  # HSDP: sum the shard over the replicas
                _c.all_reduce(_interop.wrap(recv), op=ReduceOp.SUM, group=self.replicate_group)
            # mean over the data-parallel ranks (every replica of every shard)
            recv /= self.divide_factor or self.world * self.replicas
            for p, off in zip(ps, offs):
                piece = recv[off : off + p.local_rows * p.row_numel].reshape(p.sharded.shape)
                grad = _interop.wrap(piece).to(
                    device=p.sharded.device, dtype=p.sharded.dtype, copy=True
                )
                if p.sharded.grad is None:
                    p.sharded.grad = grad
                else:
                    p.sharded.grad = p.sharded.grad + grad
                p.unsharded.grad = None
                _interop.run_post_accumulate_grad_hooks(p.sharded)
