"""``ember.ao.ns.fx``: the graph matcher, result types and comparison functions behind
``ember.ao.ns._numeric_suite_fx`` (torch.ao.ns.fx's layout)."""

from . import ns_types, utils

__all__ = ["ns_types", "utils"]
