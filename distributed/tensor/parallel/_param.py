"""``DTensorParameter``: how a parallelized module holds one rank's piece of a parameter.

PyTorch stores ``nn.Parameter(DTensor)``. An ember ``Parameter`` is a ``Tensor`` holding an
array, so here the parameter *is* the local piece (optimizers, ``.grad``, ``state_dict`` and
DDP/FSDP see plain local tensors) and also carries the DTensor layout: ``device_mesh``,
``placements``, ``to_local()``, ``full_tensor()`` and ``as_dtensor()`` (the DTensor view the
module's forward computes with; its gradient lands on this parameter).
"""

from __future__ import annotations

from ember._interop import array_of, wrap

from ....nn.parameter import Parameter
from .._api import DTensor, _from_replicate

__all__ = ["DTensorParameter"]


class DTensorParameter(Parameter):
    """A ``Parameter`` that is this rank's piece of a ``DTensor``.

    Args:
        dtensor (DTensor): the distributed value; its local piece becomes the data.
        requires_grad (bool, optional): Default: ``True``.

    ``.shape`` and ``.grad`` are the local piece's; the global shape is
    ``as_dtensor().shape``, and the global gradient ``grad_dtensor().full_tensor()``.
    """

    def __new__(cls, dtensor: DTensor, requires_grad: bool = True):
        if not isinstance(dtensor, DTensor):
            raise TypeError(f"DTensorParameter: expected a DTensor, got {type(dtensor).__name__}")
        p = Parameter.__new__(cls, dtensor.to_local().detach(), requires_grad)
        p.device_mesh = dtensor.device_mesh
        p.placements = dtensor.placements
        p._global_shape = tuple(dtensor.shape)
        return p

    def __init__(self, dtensor: DTensor, requires_grad: bool = True):
        pass

    def as_dtensor(self) -> DTensor:
        """This parameter as a DTensor (no copy; autograd reaches this parameter)."""
        return DTensor(self, self.device_mesh, self.placements, self._global_shape)

    def to_local(self) -> DTensorParameter:
        return self

    def full_tensor(self):
        """The whole parameter on every rank (a gather along the sharded mesh dims)."""
        return self.as_dtensor().full_tensor()

    def _piece_of(self, full):
        """This rank's piece of ``full`` (a tensor of the global shape) under this layout, with
        no communication. ``nn.init`` draws the whole tensor on every rank and keeps its piece,
        so a sharded init equals the slice of the same init done unsharded (what torch's
        DTensor RNG tracker guarantees) and every rank's generator advances alike."""
        dt = _from_replicate(full, self.device_mesh, self.placements, self._global_shape)
        return dt.to_local()

    @staticmethod
    def _global_norm_terms(params: list, terms: list, norm_type: float) -> list:
        """``clip_grad_norm_``'s hook: ``terms`` holds, per parameter of ``params``, this
        rank's norm term of its gradient piece (a sum of ``|g|^p``, or the max / min for the
        infinite norms); returns each whole parameter's, reduced over the mesh dimensions its
        layout shards (replicated dimensions hold equal pieces and are not summed). One
        collective per (mesh, sharded dimensions) and dimension, in parameter order, which
        every rank shares."""
        import math

        import ember
        import ember.distributed as dist

        from .. import _funcol

        op = dist.ReduceOp.SUM
        if math.isinf(norm_type):
            op = dist.ReduceOp.MAX if norm_type > 0 else dist.ReduceOp.MIN
        groups: dict = {}
        for i, p in enumerate(params):
            dims = tuple(d for d, pl in enumerate(p.placements) if pl.is_shard())
            groups.setdefault((id(p.device_mesh), dims), (p.device_mesh, dims, []))[2].append(i)
        out = list(terms)
        for mesh, dims, idx in groups.values():
            if not dims:
                continue
            vec = ember.stack([terms[i] for i in idx])
            for d in dims:
                _funcol.all_reduce(vec, op=op, group=mesh.get_group(d))  # Partial -> Replicate
            for j, i in enumerate(idx):
                out[i] = vec[j]
        return out

    def grad_dtensor(self) -> DTensor | None:
        """``.grad`` as a DTensor of this parameter's layout (``None`` before backward)."""
        if self.grad is None:
            return None
        return DTensor(self.grad, self.device_mesh, self.placements, self._global_shape)

    def __deepcopy__(self, memo):
        # the copy gets its own data and shares the mesh (its process groups are not copied)
        if id(self) in memo:
            return memo[id(self)]
        local = wrap(array_of(self).copy())
        dt = DTensor(local, self.device_mesh, self.placements, self._global_shape)
        out = type(self)(dt, self.requires_grad)
        memo[id(self)] = out
        return out

    def __reduce_ex__(self, protocol):
        raise TypeError(
            "DTensorParameter cannot be pickled: its DeviceMesh holds process groups; save "
            "the module's state_dict() (the local pieces) or full_tensor() instead"
        )

    def __repr__(self) -> str:
        return (
            f"DTensorParameter(placements={self.placements}, global_shape={self._global_shape}, "
            f"local={super().__repr__()})"
        )
