"""Hook machinery for ``nn.Module``: removable handles and full backward hooks.

Full backward hooks follow PyTorch's design: the module's tensor inputs and outputs each pass
through one identity autograd Function. The output identity's backward sees every gradient with
respect to the outputs at once (it runs the backward pre-hooks); the input identity's backward
sees every gradient with respect to the inputs at once (it runs the backward hooks with both).
"""

from __future__ import annotations

from .._hook_handle import RemovableHandle  # noqa: F401 (imported from here too)
from ..autograd.function import Function
from ..tensor import Tensor


def _wrap_grads(ctx, grads):
    """Gradients as Tensors for user hooks (they already are with ``create_graph=True``)."""
    if ctx._tensor_mode:
        return tuple(grads)
    return tuple(None if g is None else Tensor._wrap(g) for g in grads)


def _unwrap_grads(ctx, grads):
    if ctx._tensor_mode:
        return tuple(grads)
    return tuple(None if g is None else g._data for g in grads)


def _check_hook_result(result, expected: int, what: str):
    if not isinstance(result, tuple):
        result = (result,)
    if len(result) != expected:
        raise RuntimeError(
            f"Backward hook returned an invalid number of grad_{what} ({len(result)}), "
            f"expected {expected}"
        )
    return result


class _OutputIdentity(Function):
    """Identity over the module's outputs; its backward runs the backward pre-hooks."""

    @staticmethod
    def forward(ctx, state, *arrays):
        ctx.state = state
        return tuple(arrays)

    @staticmethod
    def backward(ctx, *grads):
        state = ctx.state
        grad_outputs = _wrap_grads(ctx, grads)
        for hook in state.pre_hooks:
            result = hook(state.module, grad_outputs)
            if result is not None:
                grad_outputs = _check_hook_result(result, len(grad_outputs), "outputs")
        state.grad_outputs = grad_outputs
        if not state.inputs_require_grad:
            # Nothing flows to the inputs: PyTorch calls the hooks now with None grad_inputs.
            state.run_hooks(tuple(None for _ in range(state.n_inputs)))
        return (None, *_unwrap_grads(ctx, grad_outputs))


class _InputIdentity(Function):
    """Identity over the module's tensor inputs; its backward runs the full backward hooks."""

    @staticmethod
    def forward(ctx, state, *arrays):
        ctx.state = state
        return tuple(arrays)

    @staticmethod
    def backward(ctx, *grads):
        needs = ctx.needs_input_grad[1:]
        grad_inputs = tuple(g if n else None for g, n in zip(_wrap_grads(ctx, grads), needs))
        new = ctx.state.run_hooks(grad_inputs)
        return (None, *_unwrap_grads(ctx, new))


class BackwardHook:
    """Per-call state connecting a module's inputs, outputs and its full backward hooks."""

    def __init__(self, module, hooks, pre_hooks):
        self.module = module
        self.hooks = hooks
        self.pre_hooks = pre_hooks
        self.grad_outputs = None
        self.n_inputs = 0
        self.inputs_require_grad = False

    def run_hooks(self, grad_inputs):
        grad_outputs = self.grad_outputs
        for hook in self.hooks:
            result = hook(self.module, grad_inputs, grad_outputs)
            if result is not None:
                grad_inputs = _check_hook_result(result, len(grad_inputs), "inputs")
        self.grad_outputs = None
        return grad_inputs

    @staticmethod
    def _replace(values, positions, new):
        values = list(values)
        for pos, t in zip(positions, new):
            values[pos] = t
        return values

    def setup_input_hook(self, args):
        positions = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        self.n_inputs = len(positions)
        tensors = [args[i] for i in positions]
        self.inputs_require_grad = any(t.requires_grad for t in tensors)
        if not self.inputs_require_grad or not self.hooks:
            return args
        new = _InputIdentity.apply(self, *tensors)
        return tuple(self._replace(args, positions, new))

    def setup_output_hook(self, result):
        single = isinstance(result, Tensor)
        values = (result,) if single else result
        if not isinstance(values, tuple):
            return result
        positions = [i for i, a in enumerate(values) if isinstance(a, Tensor)]
        tensors = [values[i] for i in positions]
        if not any(t.requires_grad for t in tensors):
            return result
        new = _OutputIdentity.apply(self, *tensors)
        out = self._replace(values, positions, new)
        return out[0] if single else type(result)(out) if type(result) is tuple else tuple(out)
