"""What every transform shares: one *level* per transform call.

A level lifts the differentiated inputs to fresh differentiable tensors, runs the function
with grad mode on, and differentiates with ``autograd.grad`` (which never touches ``.grad``, so
the transforms are pure). Levels nest through the autograd graph itself: an input that already
requires grad (an outer level's input, or a parameter) is lifted to a differentiable alias, so
an outer transform differentiates through this one, while this level's gradients flow only
into its own aliases (no perturbation confusion). A level builds a graph of its results
(``create_graph=True``) only when the caller had grad mode on and the results can depend on
something outside the level; otherwise its results are plain tensors, as under PyTorch.
"""

from __future__ import annotations

from typing import Any

from ..autograd import grad_mode
from ..autograd.function import Function
from ..tensor import Tensor
from ._pytree import tree_flatten, tree_unflatten
from ._vmap_dispatch import patched as vmap_patched
from ._vmap_tensor import grad as vmap_grad
from ._vmap_tensor import lift as vmap_lift
from ._vmap_tensor import rewrap as vmap_rewrap

__all__ = [
    "Level",
    "normalize_argnums",
    "check_out_tensors",
    "split_aux",
    "detach_tree",
    "one_hot",
    "zeros",
]


def normalize_argnums(argnums: Any, num_args: int) -> tuple[int, ...]:
    r"""``argnums`` as a tuple of non-negative indices, checked as PyTorch checks them."""
    if isinstance(argnums, bool) or not isinstance(argnums, (int, tuple)):
        raise RuntimeError(f"argnums must be int or Tuple[int, ...], got: {type(argnums)}")
    nums = (argnums,) if isinstance(argnums, int) else argnums
    if not nums:
        raise RuntimeError("argnums must be non-empty")
    out = []
    for a in nums:
        if isinstance(a, bool) or not isinstance(a, int):
            raise RuntimeError(f"argnums must be int or Tuple[int, ...], got: {type(argnums)}")
        if not -num_args <= a < num_args:
            raise RuntimeError(f"Got argnum={a}, but only {num_args} positional inputs")
        out.append(a % num_args)
    if len(set(out)) != len(out):
        raise RuntimeError(f"argnums elements must be unique, got {argnums}")
    return tuple(out)


def check_out_tensors(flat: list, api: str) -> None:
    for o in flat:
        if not isinstance(o, Tensor):
            raise RuntimeError(
                f"{api}: expected f(*primals) to return only tensors, got unsupported type "
                f"{type(o)}"
            )


def split_aux(out: Any, api: str) -> tuple[Any, Any]:
    r"""``(output, aux)`` of a ``has_aux=True`` function; aux must hold only tensors."""
    if not (isinstance(out, tuple) and len(out) == 2):
        raise RuntimeError(
            f"{api}: output of function f should be a tuple: (output, aux) if has_aux is True"
        )
    for leaf in tree_flatten(out[1])[0]:
        if not isinstance(leaf, Tensor):
            raise RuntimeError(f"Expected tensors, got unsupported type {type(leaf)}")
    return out


def detach_tree(tree: Any) -> Any:
    leaves, spec = tree_flatten(tree)
    return tree_unflatten([x.detach() if isinstance(x, Tensor) else x for x in leaves], spec)


def zeros(shape, like: Tensor) -> Tensor:
    from ..creation import zeros as _zeros

    return _zeros(tuple(shape), dtype=like.dtype, device=like.device)


def one_hot(like: Tensor, k: int) -> Tensor:
    r"""A tensor shaped and typed like ``like``, zero but for a one at flat index ``k``."""
    t = zeros(like.shape, like)
    t._data.reshape(-1)[k] = 1  # reshape of a fresh contiguous array is a view
    return t


class Level:
    r"""One transform call: its lifted inputs and whether its results need a graph."""

    def __init__(self) -> None:
        # the caller's grad mode: under no_grad, results never carry a graph (PyTorch's rule)
        self.outer = grad_mode.is_grad_enabled()
        self._fresh: set[int] = set()

    def lift(self, x: Any) -> Tensor:
        r"""A stand-in for ``x`` that this level differentiates with respect to."""
        if not isinstance(x, Tensor):
            raise ValueError(f"Thing passed to transform API must be Tensor, got {type(x)}")
        if not (x.is_floating_point() or x.is_complex()):
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        with grad_mode.enable_grad():
            # under vmap every input is made per-sample (vmap_lift), so its gradient is too
            if self.outer and x.requires_grad:
                return vmap_lift(x.view_as(x))  # outer levels differentiate through this alias
            return self.fresh_leaf(vmap_lift(x.detach()))

    def fresh_leaf(self, x: Tensor) -> Tensor:
        x.requires_grad_(True)
        self._fresh.add(id(x))
        return x

    def lift_tree(self, tree: Any) -> tuple[Any, list, Any]:
        r"""``tree`` with every leaf lifted, its flat lifted leaves, and its spec."""
        leaves, spec = tree_flatten(tree)
        leaves = [self.lift(x) for x in leaves]
        return tree_unflatten(leaves, spec), leaves, spec

    def lift_args(self, args: tuple, argnums: tuple[int, ...]):
        r"""``args`` with the pytrees at ``argnums`` lifted; also each one's flat lifted leaves
        and spec."""
        args = list(args)
        lifted = []
        for i in argnums:
            args[i], leaves, spec = self.lift_tree(args[i])
            lifted.append((leaves, spec))
        return tuple(args), lifted

    @staticmethod
    def call(func, args: tuple, kwargs: dict, has_aux: bool, api: str) -> tuple[Any, Any]:
        r"""``func(*args, **kwargs)`` with grad mode on, as ``(output, aux)`` (``aux`` is None
        without ``has_aux``)."""
        with grad_mode.enable_grad():
            out = vmap_patched(func)(*args, **kwargs)
        return split_aux(out, api) if has_aux else (out, None)

    def call_flat(self, func, args: tuple, kwargs: dict, has_aux: bool, api: str):
        r""":meth:`call`, with the output flattened and checked to hold only tensors:
        ``(output, flat_output, output_spec, aux)``."""
        out, aux = self.call(func, args, kwargs, has_aux, api)
        flat_o, spec_o = tree_flatten(out)
        check_out_tensors(flat_o, api)
        return out, flat_o, spec_o, aux

    def needs_graph(self, tensors: list, *extra: Tensor) -> bool:
        r"""Whether results computed from ``tensors`` (and ``extra``, e.g. cotangents) must
        stay differentiable for the caller: grad mode was on and the graph reaches a tensor
        that requires grad but is not one of this level's fresh leaves."""
        if not self.outer:
            return False
        if any(isinstance(t, Tensor) and t.requires_grad for t in extra):
            return True
        stack, seen = [], set()
        for t in tensors:
            if isinstance(t, Tensor) and t.requires_grad:
                stack.append(t.grad_fn if t.grad_fn is not None else t)
        while stack:
            node = stack.pop()
            if not isinstance(node, Function):
                if id(node) not in self._fresh:
                    return True
                continue
            for e in node._edges:
                if e is not None and id(e[0]) not in seen:
                    seen.add(id(e[0]))
                    stack.append(e[0])
        return False

    @staticmethod
    def vjp(
        outputs: list,
        inputs: list,
        cotangents: list,
        create_graph: bool,
        retain_graph: bool = False,
    ) -> list:
        r"""``sum_i cotangent_i^T d output_i / d input`` per input (zeros where unused)."""
        pairs = [(o, c) for o, c in zip(outputs, cotangents) if o.requires_grad]
        res = None
        if pairs:
            with grad_mode.enable_grad():
                res = vmap_grad(
                    [o for o, _ in pairs],
                    inputs,
                    [c for _, c in pairs],
                    retain_graph=retain_graph or create_graph,
                    create_graph=create_graph,
                    allow_unused=True,
                )
        if res is None:
            res = [None] * len(inputs)
        return [vmap_rewrap(zeros(x.shape, x) if g is None else g, x) for x, g in zip(inputs, res)]
