"""The autograd side of a custom op: an autograd ``Function`` around its kernel.

The Function is PyTorch's split form (``forward(*args)`` + ``setup_context`` + ``backward``)
declared outside ember's own modules, so autograd hands it tensors, not raw arrays
(``autograd/_user_function.py``): the registered ``setup_context(ctx, inputs, output)`` and
``backward(ctx, *grads)`` are the user's, unchanged. Keyword-only arguments travel as one
trailing dict (``ctx.keyword_only_args``); ``backward`` returns one gradient per positional
input, as torch's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._custom_op import _OpDef

__all__ = ["make_autograd_function"]


def make_autograd_function(op: _OpDef) -> type:
    """An autograd Function (tensor in/out, PyTorch's split form) around ``op``'s kernel."""
    from ember.autograd import Function

    def forward(*args):  # the keyword-only arguments travel as one trailing dict
        kw = args[-1]
        return op.redispatch(
            [*args[:-1], *(kw[a.name] for a in op.schema.arguments[len(args) - 1 :])]
        )

    def setup_context(ctx, inputs, output):
        if op.setup_context is not None:
            ctx.keyword_only_args = inputs[-1]
            real = op.inputs_stack[-1] if op.inputs_stack else tuple(inputs[:-1])
            op.setup_context(ctx, real, output)

    def backward(ctx, *grads):
        if op.backward is None:
            raise RuntimeError(
                f"Trying to backward through {op.ns}.{op.name}.default but no autograd formula "
                f"was registered. Please use register_autograd to add one "
                f"(ember.library.register_autograd('{op.qualname}', backward, setup_context=...))"
            )
        res = op.backward(ctx, *grads)
        n = sum(not a.kwarg_only for a in op.schema.arguments)
        if not isinstance(res, tuple):
            res = (res,)
        if len(res) != n:
            raise RuntimeError(
                f"{op.qualname}: the backward returned {len(res)} gradient(s); expected {n}, "
                "one per input (None for inputs without a gradient)"
            )
        return (*res, None)  # none for the keyword-only dict

    # a module outside ember: the Function sees tensors (autograd/_user_function.py)
    ns = {
        "__module__": "ember_custom_ops",
        "__qualname__": f"{op.ns}_{op.name}",
        "forward": staticmethod(forward),
        "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward),
    }
    return type(f"{op.ns}_{op.name}", (Function,), ns)
