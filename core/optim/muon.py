"""Muon, PyTorch's ``torch.optim.Muon``: momentum SGD whose update for each 2-D parameter is
orthogonalized by a Newton-Schulz iteration (https://kellerjordan.github.io/posts/muon/)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..tensor import Tensor
from ._functional import _bump, _lerp_, _to_scalar, _xp, _zeros_state
from .optimizer import Optimizer

__all__ = ["Muon"]

EPS = 1e-7
DEFAULT_A = 3.4445
DEFAULT_B = -4.7750
DEFAULT_C = 2.0315
DEFAULT_NS_STEPS = 5


def _bf16(xp, a):
    """Round float32 values to bfloat16 precision (kept as float32): PyTorch runs the
    Newton-Schulz iteration in bfloat16 (round-to-nearest-even)."""
    a = xp.asarray(a, dtype=xp.float32)
    bits = xp.ascontiguousarray(a).view(xp.uint32)
    rounded = (bits + xp.uint32(0x7FFF) + ((bits >> 16) & xp.uint32(1))) & xp.uint32(0xFFFF0000)
    return rounded.view(xp.float32).reshape(a.shape)


def _zeropower_via_newtonschulz(
    grad, ns_coefficients: tuple[float, float, float], ns_steps: int, eps: float
):
    """Approximately ``U V^T`` of ``grad = U S V^T`` (quintic Newton-Schulz), on arrays."""
    if ns_steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if grad.ndim != 2:
        raise ValueError("Input tensor gradient must be a 2D matrix")
    if len(ns_coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    xp = _xp(grad)
    a, b, c = ns_coefficients
    x = _bf16(xp, grad)
    tall = grad.shape[0] > grad.shape[1]
    if tall:
        x = x.T
    norm = _bf16(xp, xp.sqrt(xp.sum(x * x, dtype=xp.float32)))
    x = _bf16(xp, x / max(float(norm), eps))
    for _ in range(ns_steps):
        gram = _bf16(xp, x @ x.T)
        gram_update = _bf16(xp, b * gram + c * (gram @ gram))
        x = _bf16(xp, a * x + gram_update @ x)
    return x.T if tall else x


def _adjust_lr(lr: float, adjust_lr_fn: str | None, param_shape) -> float:
    """Scale ``lr`` so updates of rectangular matrices have a consistent RMS."""
    rows, cols = param_shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        ratio = math.sqrt(max(1, rows / cols))
    elif adjust_lr_fn == "match_rms_adamw":
        ratio = 0.2 * math.sqrt(max(rows, cols))
    else:
        ratio = 1.0
    return lr * ratio


class Muon(Optimizer):
    r"""Muon: MomentUm Orthogonalized by Newton-Schulz, for 2-D parameters of hidden layers.

    Per parameter::

        buf = momentum * buf + (1 - momentum) * grad            (lerp)
        update = lerp(grad, buf, momentum) if nesterov else buf
        O = NewtonSchulz(update)                                (about U V^T, in bfloat16)
        param *= 1 - lr * weight_decay
        param -= adjust_lr(lr, shape) * O

    Biases, embeddings and other non-2-D parameters belong to another optimizer (AdamW).

    Args:
        params (iterable): 2-D tensors or param-group dicts to optimize.
        lr (float): learning rate (default: 1e-3).
        weight_decay (float): decoupled weight decay (default: 0.1).
        momentum (float): momentum factor (default: 0.95).
        nesterov (bool): Nesterov momentum (default: True).
        ns_coefficients (tuple of three floats): the Newton-Schulz polynomial's coefficients
            (default: (3.4445, -4.7750, 2.0315)).
        eps (float): floor of the norm the update is divided by (default: 1e-7).
        ns_steps (int): Newton-Schulz iterations (default: 5).
        adjust_lr_fn (str, optional): ``"original"`` (``sqrt(max(1, A/B))``) or
            ``"match_rms_adamw"`` (``0.2 * sqrt(max(A, B))``); default ``"original"``.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = (DEFAULT_A, DEFAULT_B, DEFAULT_C),
        eps: float = EPS,
        ns_steps: int = DEFAULT_NS_STEPS,
        adjust_lr_fn: str | None = None,
    ) -> None:
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 <= momentum:
            raise ValueError(f"momentum should be >= 0 but is: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight decay should be >= 0 but is: {weight_decay}")
        if adjust_lr_fn is not None and adjust_lr_fn not in ("original", "match_rms_adamw"):
            raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_coefficients=ns_coefficients,
            eps=eps,
            ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr_fn,
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(
                        "Muon only supports 2D parameters whereas we found a "
                        f"parameter with size: {p.size()}"
                    )

    def _step_group(self, group: dict) -> None:
        lr = _to_scalar(group["lr"])
        momentum = group["momentum"]
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.is_complex():
                raise RuntimeError("Muon does not support complex parameters")
            g = p.grad._data
            if g.ndim != 2:
                raise ValueError("Param gradient must be a 2D matrix")
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = _zeros_state(p)
            buf = state["momentum_buffer"]._data
            _lerp_(buf, g, 1 - momentum)
            if group["nesterov"]:
                update = g.copy()
                _lerp_(update, buf, momentum)
            else:
                update = buf
            o = _zeropower_via_newtonschulz(
                update, group["ns_coefficients"], group["ns_steps"], group["eps"]
            )
            p._data *= 1 - lr * group["weight_decay"]
            p._data -= _adjust_lr(lr, group["adjust_lr_fn"], p.shape) * o.astype(
                p._data.dtype, copy=False
            )
            _bump(p)
