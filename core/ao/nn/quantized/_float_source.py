"""Find, in an observed float / fused / QAT module, the float layer and its two observers."""

from __future__ import annotations

__all__ = ["float_linear_parts"]


def _fused_first(mod):
    from ...nn.intrinsic.modules.fused import _FusedModule

    return mod[0] if isinstance(mod, _FusedModule) else mod


def float_linear_parts(mod, cls):
    """(float layer with ``weight``/``bias``, activation observer, weight observer that has
    seen the weight) for ``cls.from_float(mod)``."""
    name = cls.__name__
    if not hasattr(mod, "activation_post_process"):
        raise RuntimeError(
            f"{name}.from_float: the input float module has no observer "
            f"(activation_post_process); run prepare() and calibrate first"
        )
    if not hasattr(mod, "qconfig") or mod.qconfig is None:
        raise RuntimeError(f"{name}.from_float: input float module must have qconfig defined")
    act = mod.activation_post_process
    if hasattr(mod, "weight_fake_quant"):  # a QAT module: the weight's fake quantizer decides
        layer = mod.to_float_folded() if hasattr(mod, "to_float_folded") else mod
        wt = mod.weight_fake_quant
        wt(layer.weight)
        return layer, act, wt
    layer = _fused_first(mod)
    wt = mod.qconfig.weight()
    wt(layer.weight)
    return layer, act, wt
