"""ember's private fused helpers that a trace records as one ``call_function`` leaf.

A few ember.nn modules call a fused helper instead of a public function (MultiheadAttention's
forward calls ``_mha``, which takes ``batch_first`` directly rather than transposing). Traced
*through* (``is_leaf_module`` False), such a module would run the helper's shape checks on
Proxies; recording the helper itself keeps the graph exactly the eager computation (bitwise:
ember.compile relies on it), and the name resolves inside ember when a graph is loaded.
"""

from __future__ import annotations

__all__ = ["fused_leaf_ids"]


def fused_leaf_ids() -> set[int]:
    from ember.nn.functional import _attention

    return {id(_attention._mha)}
