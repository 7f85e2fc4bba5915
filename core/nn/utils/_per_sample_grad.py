"""``ember.nn.utils._per_sample_grad.call_for_per_sample_grads``: PyTorch's per-sample
gradients of a module's parameters in one backward (Opacus' ``grad_sample_mode="ew"``).

PyTorch swaps each parameter for an ``ExpandedWeight`` whose layer rules form per-sample
gradients. Here each trainable parameter is expanded to a ``(batch, *shape)`` leaf (a
stride-0 view, no copy) and the module runs under ``func.vmap`` on one sample at a time with
its own slice of every parameter, so the gradient reaching the expanded leaf is the per-sample
gradient; a hook on it stores that in ``param.grad_sample``. ``param.grad`` stays None, as in
PyTorch. As there, every module must treat the samples of a batch independently (no
BatchNorm in training mode).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

__all__ = ["call_for_per_sample_grads"]


def _map_tensors(fn, obj):
    import ember

    if isinstance(obj, ember.Tensor):
        return fn(obj)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple
        return type(obj)(*(_map_tensors(fn, o) for o in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_map_tensors(fn, o) for o in obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(fn, v) for k, v in obj.items()}
    return obj


def call_for_per_sample_grads(
    module,
    *,
    batch_size: int | None = None,
    loss_reduction: str = "sum",
    batch_first: bool = True,
) -> Callable[..., Any]:
    r"""Return a forward function for ``module`` that fills ``param.grad_sample`` with
    per-sample gradients (shape ``(batch_size, *param.shape)``) on backward.

    Args:
        module: the ``nn.Module``; all its trainable parameters get ``grad_sample``.
        batch_size: the batch size of the input; ``None`` takes it from the tensor arguments,
            which must then all have the same size along the batch dimension.
        loss_reduction: ``"sum"`` or ``"mean"``; with ``"mean"`` the per-sample gradients are
            scaled by the batch size, undoing the mean's ``1 / batch_size``.
        batch_first: whether the batch dimension is the first (else the second) dimension.

    Example::

        >>> model = nn.Linear(4, 3)
        >>> call_for_per_sample_grads(model)(torch.randn(5, 4)).sum().backward()
        >>> model.weight.grad_sample.shape
        ember.Size([5, 3, 4])
    """
    import ember

    if loss_reduction not in ("sum", "mean"):
        raise RuntimeError(
            f"Expected loss_reduction argument to be sum or mean, got {loss_reduction!r}"
        )
    if not isinstance(module, ember.nn.Module):
        raise RuntimeError(f"Module passed must be nn.Module, got {type(module).__name__}")
    if not (batch_size is None or isinstance(batch_size, int)):
        raise RuntimeError(
            f"Batch size passed must be None or an integer, got {type(batch_size).__name__}"
        )
    if batch_size is not None and batch_size < 1:
        raise RuntimeError(f"Batch size must be positive, got {batch_size}")
    for weight in module.parameters():
        if getattr(weight, "grad_sample", None) is not None:
            raise RuntimeError(
                "Current Expanded Weights accumulates the gradients, which will be incorrect for "
                f"multiple calls without clearing gradients. Please clear out the grad_sample "
                f"parameter of {weight} first"
            )
    bdim = 0 if batch_first else 1

    def compute_batch_size(tensors) -> int:
        found = None
        for t in tensors:
            n = t.shape[bdim]
            if found is not None and found != n:
                raise RuntimeError(
                    "When computing batch size, found at least one input with batch size "
                    f"{found} and one with batch size {n}. Please specify it explicitly using "
                    "the batch size kwarg in call_for_per_sample_grads"
                )
            found = n
        if found is None:
            raise RuntimeError(
                "Unable to find a tensor in the passed args and kwargs to take the batch size "
                "from. Please specify it explicitly"
            )
        return found

    @functools.wraps(module.forward)
    def wrapper(*args, **kwargs):
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, ember.Tensor)]
        n = batch_size if batch_size is not None else compute_batch_size(tensors)
        scale = n if loss_reduction == "mean" else 1
        named = [(k, p) for k, p in module.named_parameters() if p.requires_grad]
        expanded = []
        for _, p in named:
            e = p.detach().unsqueeze(0).expand(n, *p.shape).requires_grad_(True)
            e.register_hook(functools.partial(_store, p, scale))
            expanded.append(e)
        names = [k for k, _ in named]
        # the batched tensors (positional and keyword) travel through vmap; the rest is closed
        # over unchanged
        arg_slots = [isinstance(a, ember.Tensor) for a in args]
        kw_keys = [k for k, v in kwargs.items() if isinstance(v, ember.Tensor)]
        batched = [a for a in args if isinstance(a, ember.Tensor)] + [kwargs[k] for k in kw_keys]

        def one(*flat):
            xs, ps = flat[: len(batched)], flat[len(batched) :]
            it = iter(xs[: len(batched) - len(kw_keys)])
            a1 = [next(it).unsqueeze(bdim) if s else a for a, s in zip(args, arg_slots)]
            k1 = dict(kwargs)
            for k, x in zip(kw_keys, xs[len(batched) - len(kw_keys) :]):
                k1[k] = x.unsqueeze(bdim)
            out = ember.func.functional_call(module, dict(zip(names, ps)), tuple(a1), k1)
            return _map_tensors(lambda t: t.squeeze(bdim), out)

        in_dims = (bdim,) * len(batched) + (0,) * len(expanded)
        return ember.func.vmap(one, in_dims=in_dims, out_dims=bdim)(*batched, *expanded)

    return wrapper


def _store(param, scale: int, grad) -> None:
    # PyTorch's rule: grad_sample accumulates over backward passes until cleared
    g = grad * scale if scale != 1 else grad
    prev = getattr(param, "grad_sample", None)
    param.grad_sample = g.detach() if prev is None else prev + g.detach()
