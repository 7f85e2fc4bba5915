"""The forwards a parallel style gives a module: the same computation as the module's own,
over DTensors (ember's ``nn.functional`` runs on plain tensors and does not dispatch on
DTensors, so these call ``tensor.ops``)."""

from __future__ import annotations

import types

from .... import nn
from .. import ops
from .._api import DTensor
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
    if fn is None:
        supported = ", ".join(c.__name__ for c in kinds)
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
