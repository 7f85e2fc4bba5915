"""Higher-order control-flow ops: ``ember.cond`` and ``ember.while_loop`` (torch.cond,
torch.while_loop).

Eagerly they are plain Python control flow. In an fx graph (``ember.jit.script`` builds
them) they are ``call_function`` nodes whose branch/body arguments are GraphModules held as
``get_attr`` submodules, so a graph keeps data-dependent control flow instead of baking in
the path one example took. The graph calls pass every value a branch reads as an operand
(branches close over nothing), which is what lets the JSON form save them.

A ``cond`` whose predicate is a tracer's Proxy (``ember.export``, ``ember.fx.symbolic_trace``
of a program written with ``torch.cond``) records both branches and ``where`` s their outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["cond", "while_loop"]


def _as_bool(pred: Any, what: str) -> bool:
    from .tensor import Tensor

    if isinstance(pred, Tensor):
        if pred.numel() != 1:
            raise RuntimeError(
                f"{what}: expected the predicate to be a bool or a tensor with "
                f"one element, got a tensor of shape {tuple(pred.shape)}"
            )
        return bool(pred.item())
    if isinstance(pred, (bool, int)) or hasattr(pred, "__bool__"):
        return bool(pred)
    raise RuntimeError(
        f"{what}: expected the predicate to be a bool or a tensor with one "
        f"element, got {type(pred).__name__}"
    )


def _check_operands(operands: Any, what: str, name: str) -> tuple:
    if not isinstance(operands, (tuple, list)):
        raise RuntimeError(
            f"{what}: expected {name} to be a tuple or list, got {type(operands).__name__}"
        )
    return tuple(operands)


def cond(pred: Any, true_fn: Callable, false_fn: Callable, operands: Sequence = ()) -> Any:
    """Return ``true_fn(*operands)`` if ``pred`` holds, else ``false_fn(*operands)``.

    Args:
        pred: a Python bool or a tensor with one element.
        true_fn, false_fn: callables (functions or Modules, e.g. GraphModules) taking the
            operands and returning outputs of the same structure.
        operands: a tuple or list of the inputs both branches receive.
    """
    if not callable(true_fn) or not callable(false_fn):
        raise RuntimeError(
            "cond: expected true_fn and false_fn to be callable, got "
            f"{type(true_fn).__name__} and {type(false_fn).__name__}"
        )
    operands = _check_operands(operands, "cond", "operands")
    from .fx.proxy import Proxy

    if isinstance(pred, Proxy):  # traced (ember.export, fx): the predicate has no value yet
        return _traced_cond(pred, true_fn, false_fn, operands)
    return (true_fn if _as_bool(pred, "cond") else false_fn)(*operands)


cond._traces_itself = True  # fx/_patch.py: a traced call runs cond itself, not a leaf node


def _traced_cond(pred: Any, true_fn: Callable, false_fn: Callable, operands: tuple) -> Any:
    """Under a tracer (``torch.export``'s ``cond`` idiom), record both branches and select
    each output with ``where(pred, t, f)``: the graph stays a flat list of tensor ops (it
    saves and loads like any other) and follows the predicate on every call. torch.cond's own
    rules make this exact: both branches return the same structure, shapes and dtypes, and
    mutate nothing. Both branches run, so gradients of the branch not taken are zeros."""
    import ember

    t, f = true_fn(*operands), false_fn(*operands)
    # a comparison of sizes is a traced Python bool: as a tensor it can drive where()
    pred = ember.as_tensor(pred)

    def merge(a: Any, b: Any, where: str) -> Any:
        if isinstance(a, (tuple, list)) and type(a) is type(b) and len(a) == len(b):
            return type(a)(merge(x, y, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b)))
        tensors = (ember.Tensor, ember.fx.Proxy)
        if isinstance(a, tensors) and isinstance(b, tensors):
            return ember.where(pred, a, b)
        if not isinstance(a, tensors) and not isinstance(b, tensors) and a == b:
            return a
        raise RuntimeError(
            "cond: true_fn and false_fn must return outputs of the same structure; "
            f"output{where or ''} is {type(a).__name__} in true_fn and {type(b).__name__} "
            "in false_fn"
        )

    return merge(t, f, "")


def while_loop(
    cond_fn: Callable, body_fn: Callable, carried_inputs: Sequence, additional_inputs: Sequence = ()
) -> tuple:
    """Run ``carried = body_fn(*carried)`` while ``cond_fn(*carried)`` holds; return carried.

    Args:
        cond_fn: takes the carried values (then ``additional_inputs``) and returns a bool or
            a one-element tensor.
        body_fn: takes the same arguments and returns new carried values (a tuple/list of
            the same length as ``carried_inputs``; a single value when there is one).
        carried_inputs: the initial loop state, a tuple or list.
        additional_inputs: values both functions read but the loop does not change (the
            graph form passes the tensors a loop reads this way).
    """
    if not callable(cond_fn) or not callable(body_fn):
        raise RuntimeError("while_loop: expected cond_fn and body_fn to be callable")
    carried = _check_operands(carried_inputs, "while_loop", "carried_inputs")
    extra = _check_operands(additional_inputs, "while_loop", "additional_inputs")
    while _as_bool(cond_fn(*carried, *extra), "while_loop"):
        out = body_fn(*carried, *extra)
        if not isinstance(out, (tuple, list)):
            out = (out,)
        if len(out) != len(carried):
            raise RuntimeError(
                f"while_loop: body_fn returned {len(out)} values but the loop "
                f"carries {len(carried)}"
            )
        carried = tuple(out)
    return carried
