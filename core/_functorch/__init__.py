"""``torch._functorch``: the module paths of PyTorch's function transforms that libraries import.

The transforms live in ``ember.func``; this package holds the internal names libraries reach
for: ``vmap`` (the stages of a vmap call, which tensordict replaces to batch its containers),
``make_functional`` (``FunctionalModule``) and ``deprecated`` (the ``functorch`` names).
"""
