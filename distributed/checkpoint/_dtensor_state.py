"""DTensor parameters (tensor parallelism, ``fully_shard``) in ``get_state_dict`` /
``set_state_dict``: their model and optimizer state goes out as DTensors of the parameter's
layout, as PyTorch's (so DCP saves each rank's box of the global tensor and reshards on load),
and comes back as the local pieces the parameters and optimizers hold."""

from __future__ import annotations

from typing import Any

import ember

__all__ = ["dtensor_params", "from_dtensors", "full_tensors", "to_dtensors"]


def dtensor_params(module) -> dict[str, Any]:
    """name -> parameter, for the parameters that are a rank's piece of a DTensor."""
    from ..tensor.parallel import DTensorParameter

    return {n: p for n, p in module.named_parameters() if isinstance(p, DTensorParameter)}


def _wrap(value, p):
    from ..tensor import DTensor

    # the parameter itself and its same-shaped state (Adam's moments); not scalars (``step``)
    if isinstance(value, ember.Tensor) and tuple(value.shape) == tuple(p.shape):
        return DTensor(value, p.device_mesh, p.placements, p._global_shape)
    return value


def _unwrap(value, p, key: str):
    from ..tensor import DTensor
    from ..tensor._api import _from_replicate

    global_shape = tuple(p._global_shape)
    if isinstance(value, ember.Tensor) and tuple(value.shape) != tuple(p.shape):
        if tuple(value.shape) == global_shape:  # a full_state_dict entry: take this rank's piece
            return _from_replicate(value, p.device_mesh, p.placements, global_shape)._local_tensor
        return value
    if not isinstance(value, DTensor):
        return value
    if tuple(value.shape) != global_shape:
        raise ValueError(
            f"set_state_dict: '{key}' is a DTensor of global shape {tuple(value.shape)}, "
            f"the parameter's is {global_shape}"
        )
    if value.device_mesh != p.device_mesh or value.placements != p.placements:
        value = value.redistribute(p.device_mesh, p.placements)
    return value.to_local()


def to_dtensors(sd: dict, params: dict, optim: bool) -> dict:
    """The model (``optim=False``) or optimizer ``state`` entries of DTensor parameters as
    DTensors; other entries unchanged (``sd`` is not modified)."""
    out = dict(sd)
    for name, p in params.items():
        if name not in out:
            continue
        if optim:
            out[name] = {k: _wrap(v, p) for k, v in out[name].items()}
        else:
            out[name] = _wrap(out[name], p)
    return out


def from_dtensors(sd: dict, params: dict, optim: bool) -> dict:
    """Back to the local pieces: each DTensor entry redistributed to its parameter's layout,
    each whole tensor of the parameter's global shape (``full_state_dict``) sliced."""
    out = dict(sd)
    for name, p in params.items():
        if name not in out:
            continue
        if optim:
            out[name] = {k: _unwrap(v, p, f"{name}.{k}") for k, v in out[name].items()}
        else:
            out[name] = _unwrap(out[name], p, name)
    return out


def full_tensors(sd: dict, optim: bool) -> dict:
    """Every DTensor entry gathered to its whole tensor (``full_state_dict``)."""
    from ..tensor import DTensor

    def full(v):
        return v.full_tensor() if isinstance(v, DTensor) else v

    if optim:
        return {n: {k: full(v) for k, v in s.items()} for n, s in sd.items()}
    return {k: full(v) for k, v in sd.items()}


def reshard_fully_shard(module) -> None:
    """Register every ``fully_shard`` group's sharded parameters (the ones its optimizer
    holds and its state dict describes): the root keeps its gathered ones after forward."""
    for m in module.modules():
        if "_fsdp_state" in m.__dict__:
            m.reshard()
