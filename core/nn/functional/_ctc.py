"""Connectionist Temporal Classification loss (``F.ctc_loss``): the forward-backward algorithm.

For each sequence the target ``l`` is extended with blanks, ``l' = (b, l_1, b, l_2, ..., b)``;
``alpha`` (forward) and ``beta`` (backward) are the log-probabilities of the prefix / suffix
paths through ``l'``. The loss is :math:`-\\log p(l \\mid x)`, and the gradient is PyTorch's:
:math:`\\partial/\\partial \\text{lp}_{t,c} = e^{\\text{lp}_{t,c}} - \\frac{1}{p\\,y_{t,c}}
\\sum_{s: l'_s = c} \\alpha_t(s) \\beta_t(s)` (the gradient with respect to the logits of a
``log_softmax``, which is what ``log_probs`` are meant to be).
"""

from __future__ import annotations

import numpy as np

from ...autograd.function import Function
from ...tensor import Tensor

__all__ = ["ctc_loss"]

_NEG_INF = -np.inf


def _lse(*xs):
    """log(sum(exp(x))) of equally shaped arrays, exact at -inf."""
    m = xs[0]
    for x in xs[1:]:
        m = np.maximum(m, x)
    safe = np.where(np.isfinite(m), m, 0.0)
    total = sum(np.exp(x - safe) for x in xs)
    with np.errstate(divide="ignore"):
        return np.log(total) + safe


def _extended(labels, blank):
    ext = np.full(2 * len(labels) + 1, blank, dtype=np.int64)
    ext[1::2] = labels
    # a skip from s-2 to s is allowed onto a label that differs from the label two back
    skip = np.zeros(ext.shape[0], dtype=bool)
    skip[3::2] = ext[3::2] != ext[1:-2:2]
    return ext, skip


def _alpha_beta(lp, ext, skip):
    """lp: (T, C) host log-probs of one sequence; returns alpha, beta (T, S') and the nll."""
    t_len, s_len = lp.shape[0], ext.shape[0]
    alpha = np.full((t_len, s_len), _NEG_INF, dtype=lp.dtype)
    beta = np.full((t_len, s_len), _NEG_INF, dtype=lp.dtype)
    if t_len == 0:
        return alpha, beta, np.inf
    y = lp[:, ext]  # (T, S'): the log-prob of each extended label at each step
    alpha[0, 0] = y[0, 0]
    if s_len > 1:
        alpha[0, 1] = y[0, 1]
    for t in range(1, t_len):
        a = alpha[t - 1]
        one = np.concatenate([[_NEG_INF], a[:-1]])
        two = np.where(skip, np.concatenate([[_NEG_INF, _NEG_INF], a[:-2]]), _NEG_INF)
        alpha[t] = _lse(a, one, two) + y[t]
    beta[-1, -1] = y[-1, -1]
    if s_len > 1:
        beta[-1, -2] = y[-1, -2]
    skip_next = np.concatenate([skip[2:], [False, False]])  # may s jump to s + 2?
    for t in range(t_len - 2, -1, -1):
        b = beta[t + 1]
        one = np.concatenate([b[1:], [_NEG_INF]])
        two = np.where(skip_next, np.concatenate([b[2:], [_NEG_INF, _NEG_INF]]), _NEG_INF)
        beta[t] = _lse(b, one, two) + y[t]
    ends = [alpha[-1, -1]] + ([alpha[-1, -2]] if s_len > 1 else [])
    nll = -float(_lse(*[np.asarray(e) for e in ends]))
    return alpha, beta, nll


class CTCLoss(Function):
    """forward(log_probs (T, N, C), targets as host label lists, input_lengths, blank,
    zero_infinity) -> per-sequence negative log-likelihood (N,)."""

    supports_double_backward = False

    @staticmethod
    def forward(ctx, log_probs, labels, input_lengths, blank, zero_infinity):
        xp = ctx.xp
        host = log_probs.get() if hasattr(log_probs, "get") else np.asarray(log_probs)
        t_max, n, c = host.shape
        nll = np.zeros(n, dtype=host.dtype)
        grad = np.zeros_like(host)
        for k in range(n):
            t_len = int(input_lengths[k])
            lp = host[:t_len, k]
            ext, skip = _extended(labels[k], blank)
            alpha, beta, loss = _alpha_beta(lp, ext, skip)
            if zero_infinity and np.isinf(loss):
                continue  # loss and gradient 0
            nll[k] = loss
            if t_len == 0:
                continue
            # sum over s with l'_s = c of alpha*beta, divided by p * y_{t,c}: (T, S') -> (T, C)
            with np.errstate(invalid="ignore", over="ignore"):
                w = np.exp(alpha + beta + loss - lp[:, ext])
            w = np.where(np.isfinite(w), w, 0.0)
            acc = np.zeros((t_len, c), dtype=host.dtype)
            np.add.at(acc, (slice(None), ext), w)
            grad[:t_len, k] = np.exp(lp) - acc
        ctx.grad = xp.asarray(grad)
        return xp.asarray(nll)

    @staticmethod
    def backward(ctx, g):
        return ctx.grad * g.reshape(1, -1, 1), None, None, None, None


def _lengths(x, name: str) -> list[int]:
    if isinstance(x, Tensor):
        d = x._data
        return [int(v) for v in (d.get() if hasattr(d, "get") else d).reshape(-1).tolist()]
    if isinstance(x, int):
        return [x]
    return [int(v) for v in x]


def ctc_loss(
    log_probs: Tensor,
    targets: Tensor,
    input_lengths,
    target_lengths,
    blank: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = False,
) -> Tensor:
    r"""The CTC loss of log-probabilities ``log_probs`` (T, N, C) or (T, C) against
    ``targets``: padded (N, S) or concatenated (sum(target_lengths),) class indices.
    ``reduction='mean'`` divides each loss by its target length, then averages the batch."""
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    unbatched = log_probs.dim() == 2
    lp = log_probs.unsqueeze(1) if unbatched else log_probs
    if lp.dim() != 3:
        raise RuntimeError(f"ctc_loss: expected log_probs to be 2D or 3D, got {log_probs.dim()}D")
    t_max, n, c = lp.shape
    in_len = _lengths(input_lengths, "input_lengths")
    tg_len = _lengths(target_lengths, "target_lengths")
    if len(in_len) != n:
        raise RuntimeError(f"input_lengths must be of size batch_size, but got {len(in_len)}")
    if len(tg_len) != n:
        raise RuntimeError(f"target_lengths must be of size batch_size, but got {len(tg_len)}")
    if not 0 <= blank < c:
        raise RuntimeError("blank must be in label range")
    for k in range(n):
        if in_len[k] > t_max or in_len[k] < 0:
            raise RuntimeError(
                f"Expected input_lengths to have value at most {t_max}, but got "
                f"value {in_len[k]} (while checking arguments for ctc_loss_cpu)"
            )
    td = targets._data
    host = np.asarray(td.get() if hasattr(td, "get") else td).astype(np.int64)
    if unbatched:
        host = host.reshape(1, -1)
    labels = []
    if host.ndim == 1:  # concatenated targets
        offs = np.concatenate([[0], np.cumsum(tg_len)])
        labels = [host[offs[k] : offs[k + 1]] for k in range(n)]
    else:
        for k in range(n):
            if tg_len[k] > host.shape[1]:
                raise RuntimeError(
                    f"Expected tensor to have size at least {tg_len[k]} at "
                    f"dimension 1, but got size {host.shape[1]} for argument "
                    "#2 'targets' (while checking arguments for ctc_loss_cpu)"
                )
            labels.append(host[k, : tg_len[k]])
    nll = CTCLoss.apply(lp, labels, in_len, blank, zero_infinity)
    if reduction == "none":
        return nll.reshape(()) if unbatched else nll
    if reduction == "sum":
        return nll.sum()
    from ...creation import tensor

    div = tensor([max(v, 1) for v in tg_len], dtype=nll.dtype, device=nll.device)
    return (nll / div).mean()
