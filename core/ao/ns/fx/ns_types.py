"""The numeric suite's result types (``torch.ao.ns.fx.ns_types``)."""

from __future__ import annotations

import enum
from typing import Any

__all__ = ["NSSingleResultValuesType", "NSSingleResultType", "NSResultsType", "NSNodeTargetType"]


class NSSingleResultValuesType(str, enum.Enum):
    """What a result entry holds: a layer's weights, its output, or one of its inputs."""

    WEIGHT = "weight"
    NODE_OUTPUT = "node_output"
    NODE_INPUT = "node_input"


# One entry: {"type", "values", "ref_node_name", "ref_node_target_type", "prev_node_name",
# "prev_node_target_type", "index_within_arg", "index_of_arg", "fqn", ...comparisons}
NSSingleResultType = dict[str, Any]
# {layer name: {result type: {model name: [entries]}}}
NSResultsType = dict[str, dict[str, dict[str, list[NSSingleResultType]]]]
# a node's target: a module class, a function, or a method name
NSNodeTargetType = Any
