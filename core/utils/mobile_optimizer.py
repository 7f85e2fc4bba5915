"""``ember.utils.mobile_optimizer``: torch's ``optimize_for_mobile`` for ember's compiled
modules.

ember has no mobile runtime or prepacked kernels; the optimizations that change the program
are the ones ``ember.jit.optimize_for_inference`` already does (freeze the weights, fold
eval-mode batch norm into the convolution before it), plus dropout removal. The result is a
ScriptModule that ``save`` writes in ember's archive format (``ember.jit.load`` reads it).
"""

from __future__ import annotations

from enum import Enum

__all__ = ["MobileOptimizerType", "optimize_for_mobile"]


class MobileOptimizerType(Enum):
    """The optimization passes torch names (``optimization_blocklist`` entries)."""

    CONV_BN_FUSION = 1
    INSERT_FOLD_PREPACK_OPS = 2
    REMOVE_DROPOUT = 3
    FUSE_ADD_RELU = 4
    HOIST_CONV_PACKED_PARAMS = 5
    VULKAN_AUTOMATIC_GPU_TRANSFER = 6


def optimize_for_mobile(
    script_module,
    optimization_blocklist: set | None = None,
    preserved_methods: list | None = None,
    backend: str = "CPU",
):
    """An optimized copy of ``script_module`` (eval mode, weights frozen).

    Args:
        script_module: a ScriptModule (from ``ember.jit.trace`` or ``ember.jit.script``).
        optimization_blocklist: :class:`MobileOptimizerType` passes to skip
            (``CONV_BN_FUSION``, ``REMOVE_DROPOUT``; the others do nothing in ember).
        preserved_methods: accepted for torch's signature (only ``forward`` is optimized).
        backend: ``"CPU"`` (``"Vulkan"`` and ``"Metal"`` are not available in ember).
    """
    from ember.jit import ScriptModule
    from ember.jit._freeze import _fold_conv_bn, freeze

    if not isinstance(script_module, ScriptModule):
        raise TypeError(
            f"Got {type(script_module)}, but ScriptModule is expected. "
            "Convert it with ember.jit.script or ember.jit.trace first."
        )
    if str(backend).lower() != "cpu":
        raise ValueError(f"optimize_for_mobile: backend {backend!r} is not available (use 'CPU')")
    blocklist = set(optimization_blocklist or ())
    for b in blocklist:
        if not isinstance(b, MobileOptimizerType):
            raise TypeError(
                f"optimization_blocklist entries must be MobileOptimizerType, got {b!r}"
            )
    was_training = script_module.training
    script_module.eval()  # torch optimizes an eval-mode clone; the caller's module is untouched
    try:
        out = freeze(script_module)
    finally:
        script_module.train(was_training)
    if MobileOptimizerType.CONV_BN_FUSION not in blocklist:
        _fold_conv_bn(out)
    if MobileOptimizerType.REMOVE_DROPOUT not in blocklist:
        _remove_dropout(out)
    out.graph.eliminate_dead_code()
    out.recompile()
    return out


def _remove_dropout(mod) -> None:
    """Replace eval-mode dropout calls (``training=False``) with their input."""
    import inspect

    import ember.nn.functional as F

    drops = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout}
    for n in list(mod.graph.nodes):
        if n.op != "call_function" or n.target not in drops:
            continue
        b = inspect.signature(n.target).bind(*n.args, **n.kwargs)
        b.apply_defaults()
        if b.arguments.get("training") is False:
            n.replace_all_uses_with(b.arguments["input"])
            mod.graph.erase_node(n)
