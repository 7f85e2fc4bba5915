"""The float layer inside a module handed to a dynamic ``from_float``."""

from __future__ import annotations


def float_layer(mod):
    from .intrinsic.modules.fused import _FusedModule

    if isinstance(mod, _FusedModule):
        return mod[0]
    if hasattr(mod, "weight_fake_quant") and hasattr(mod, "to_float"):
        return mod.to_float()
    return mod
