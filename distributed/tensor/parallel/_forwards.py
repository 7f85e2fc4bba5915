"""The forwards a parallel style gives a module: the same computation as the module's own,
over DTensors (ember's ``nn.functional`` runs on plain tensors and does not dispatch on
DTensors, so these call ``tensor.ops``)."""

from __future__ import annotations

import types

from .... import nn
from .. import ops
from .._api import DTensor
from ..placement_types import Partial
from ._param import DTensorParameter

__all__ = ["forward_for", "install_forward"]


def install_forward(module: nn.Module, fqn: str, style: str) -> None:
    """Give ``module`` a forward over DTensors (see the module docstring)."""
    module.forward = types.MethodType(forward_for(module, fqn, style), module)


def forward_for(module: nn.Module, fqn: str, style: str):
    kinds = {
        nn.Linear: _linear_forward,
        nn.Embedding: _embedding_forward,
        nn.LayerNorm: _layer_norm_forward,
        nn.Dropout: _dropout_forward,
    }
    if hasattr(nn, "RMSNorm"):
        kinds[nn.RMSNorm] = _rms_norm_forward
    fn = next((f for cls, f in kinds.items() if isinstance(module, cls)), None)
    if fn is None and style == "SequenceParallel" and not any(True for _ in module.children()):
        # another leaf module (a model's own RMSNorm, as in PyTorch's Llama examples): what
        # sequence parallelism runs is position-wise (norms, dropout), so its own forward runs
        # on this rank's sequence piece. A module with children (attention, a block) is refused:
        # run locally it would silently mix only the local part of the sequence.
        return _sequence_local_forward(type(module).forward)
    if fn is None:
        supported = ", ".join(c.__name__ for c in kinds)
        if style == "SequenceParallel":
            supported += ", or a module without children computing position by position"
        raise NotImplementedError(
            f"{style} does not support {type(module).__name__} '{fqn or '<root>'}'; "
            f"supported modules: {supported}"
        )
    return fn


def _dt(p):
    return p.as_dtensor() if isinstance(p, DTensorParameter) else p


def _linear_forward(self, input):
    return ops.linear(input, _dt(self.weight), _dt(self.bias))


def _embedding_forward(self, input):
    if self.max_norm is not None:
        raise NotImplementedError("parallel Embedding does not support max_norm")
    return ops.embedding(input, _dt(self.weight), self.padding_idx)


def _layer_norm_forward(self, input):
    return ops.layer_norm(input, self.normalized_shape, _dt(self.weight), _dt(self.bias), self.eps)


def _rms_norm_forward(self, input):
    return ops.rms_norm(input, self.normalized_shape, _dt(self.weight), self.eps)


def _dropout_forward(self, input):
    import ember.nn.functional as F

    # each rank draws its own mask: right for shards, not for replicated activations
    local = F.dropout(input._local_tensor, self.p, self.training)
    return DTensor(local, input.device_mesh, input.placements, input._shape)


def _sequence_local_forward(own_forward):
    """A forward running ``own_forward`` on the local sequence piece of a ``Shard`` DTensor
    input, with each replicated parameter used as a local tensor whose gradient is summed over
    the mesh in backward (every rank saw only its part of the sequence); the output is a DTensor
    with the input's placements."""

    def forward(self, input, *args, **kwargs):
        local = input.to_local() if isinstance(input, DTensor) else input
        swapped, shadowed = {}, {}
        for name, p in self._parameters.items():
            if isinstance(p, DTensorParameter):
                partial = [Partial()] * p.device_mesh.ndim
                swapped[name] = p
                self._parameters[name] = p.as_dtensor().to_local(grad_placements=partial)
            # FSDP over TP gives forward the unsharded parameter as a DTensor attribute
            cur = self.__dict__.get(name)
            if isinstance(cur, DTensor):
                shadowed[name] = cur
                partial = [Partial()] * cur.device_mesh.ndim
                self.__dict__[name] = cur.to_local(grad_placements=partial)
        try:
            out = own_forward(self, local, *args, **kwargs)
        finally:
            self._parameters.update(swapped)
            self.__dict__.update(shadowed)
        if not isinstance(input, DTensor):
            return out
        return DTensor.from_local(out, input.device_mesh, input.placements)

    return forward
