"""``ember.ao.ns``: the quantization numeric suite (torch.ao.ns's layout): compare a float
model with the model quantized from it, weights and activations, layer by layer.

``ember.ao.ns._numeric_suite`` is the eager-mode API (``compare_weights``,
``compare_model_outputs``, ``compare_model_stub``), ``ember.ao.ns._numeric_suite_fx`` the FX
one (``extract_weights``, ``add_loggers``, ``add_shadow_loggers``); ``ember.ao.ns.fx.utils``
holds the comparison functions. See docs/quantization.md, "Numeric suite".
"""

from . import fx

__all__ = ["fx"]
