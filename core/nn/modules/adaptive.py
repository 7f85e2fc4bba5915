"""``AdaptiveLogSoftmaxWithLoss`` (Grave et al., 2016): a head over the frequent classes plus
one cluster token per tail cluster; each tail cluster has a smaller projection."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence

import numpy as np

from ... import ops
from ...backend.device import get_array_module
from ...creation import zeros
from ...tensor import Tensor
from .. import functional as F
from .container import ModuleList, Sequential
from .linear import Linear
from .module import Module

__all__ = ["AdaptiveLogSoftmaxWithLoss"]

_ASMoutput = namedtuple("_ASMoutput", ["output", "loss"])


class AdaptiveLogSoftmaxWithLoss(Module):
    r"""Efficient softmax approximation for large output spaces.

    Args:
        in_features: features of the input.
        n_classes: number of classes.
        cutoffs: increasing class indices at which the head/tail clusters split.
        div_value: each tail cluster's projection is ``div_value`` times smaller.
        head_bias: whether the head ``Linear`` has a bias.

    ``forward(input, target)`` returns ``(output, loss)``: the target log-probabilities and
    their negated mean.
    """

    def __init__(
        self,
        in_features: int,
        n_classes: int,
        cutoffs: Sequence[int],
        div_value: float = 4.0,
        head_bias: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        cutoffs = list(cutoffs)
        if len(cutoffs) == 0:
            raise ValueError("cutoffs should be a sequence of length larger than 0")
        if (
            cutoffs != sorted(cutoffs)
            or min(cutoffs) <= 0
            or max(cutoffs) > n_classes - 1
            or len(set(cutoffs)) != len(cutoffs)
            or any(int(c) != c for c in cutoffs)
        ):
            raise ValueError(
                "cutoffs should be a sequence of unique, positive integers sorted "
                "in an increasing order, where each value is between 1 and "
                "n_classes-1"
            )
        self.in_features = in_features
        self.n_classes = n_classes
        self.cutoffs = cutoffs + [n_classes]
        self.div_value = div_value
        self.head_bias = head_bias
        self.shortlist_size = self.cutoffs[0]
        self.n_clusters = len(self.cutoffs) - 1
        self.head_size = self.shortlist_size + self.n_clusters
        self.head = Linear(in_features, self.head_size, bias=head_bias, device=device, dtype=dtype)
        self.tail = ModuleList()
        for i in range(self.n_clusters):
            hsz = int(in_features // (div_value ** (i + 1)))
            osz = self.cutoffs[i + 1] - self.cutoffs[i]
            self.tail.append(
                Sequential(
                    Linear(in_features, hsz, bias=False, device=device, dtype=dtype),
                    Linear(hsz, osz, bias=False, device=device, dtype=dtype),
                )
            )

    def reset_parameters(self) -> None:
        self.head.reset_parameters()
        for i2h, h2o in self.tail:
            i2h.reset_parameters()
            h2o.reset_parameters()

    def forward(self, input_: Tensor, target_: Tensor) -> _ASMoutput:
        targ_dim = target_.dim()
        if targ_dim == 1:
            if input_.shape[0] != target_.shape[0]:
                raise RuntimeError(
                    "Input and target should have the same size in the batch dimension."
                )
            if input_.dim() != 2:
                raise RuntimeError(
                    "1D target tensor expects 2D input tensors, but found "
                    f"inputs with size {list(input_.shape)}"
                )
        elif targ_dim == 0:
            if input_.dim() != 1:
                raise RuntimeError(
                    "0D target tensor expects 1D input tensors, but found "
                    f"inputs with size {list(input_.shape)}"
                )
        else:
            raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
        batched = targ_dim > 0
        input = input_ if batched else input_.unsqueeze(0)
        target = target_ if batched else target_.unsqueeze(0)
        t = target._data
        xp = get_array_module(t)
        batch = t.shape[0]
        gather_inds = t.astype(np.int64).copy()
        rows_seen, pieces = [], []
        used = 0
        bounds = [0] + self.cutoffs
        for i in range(len(bounds) - 1):
            low, high = bounds[i], bounds[i + 1]
            rows = xp.nonzero((t >= low) & (t < high))[0]
            if rows.size == 0:
                continue
            used += int(rows.size)
            if i == 0:
                continue  # shortlist rows: only the head term
            rel = Tensor._wrap((t[rows] - low).astype(np.int64).reshape(-1, 1))
            sub = ops.index_select(input, 0, Tensor._wrap(rows))
            logp = F.log_softmax(self.tail[i - 1](sub), dim=1)
            pieces.append(ops.gather(logp, 1, rel).reshape(-1))
            rows_seen.append(rows)
            gather_inds[rows] = self.shortlist_size + i - 1
        if used != batch:
            raise RuntimeError(
                f"Target values should be in [0, {self.n_classes - 1}], but "
                f"values in range [{int(t.min())}, {int(t.max())}] were found. "
            )
        head_logprob = F.log_softmax(self.head(input), dim=1)
        output = ops.gather(head_logprob, 1, Tensor._wrap(gather_inds.reshape(-1, 1)))
        output = output.reshape(-1)
        if pieces:
            # scatter the tail terms back to their rows: concatenate, then a permutation
            rows = xp.concatenate(rows_seen)
            head_rows = xp.setdiff1d(xp.arange(batch), rows)
            filler = zeros(int(head_rows.size), dtype=output.dtype, device=output.device)
            tail = ops.cat([filler] + pieces, 0)
            order = xp.empty(batch, dtype=np.int64)
            order[xp.concatenate([head_rows, rows])] = xp.arange(batch)
            output = output + ops.index_select(tail, 0, Tensor._wrap(order))
        loss = (-output).mean()
        if not batched:
            output = output.squeeze(0)
        return _ASMoutput(output, loss)

    def _get_full_log_prob(self, input: Tensor, head_output: Tensor) -> Tensor:
        head_logprob = F.log_softmax(head_output, dim=1)
        parts = [head_logprob[:, : self.shortlist_size]]
        for i in range(self.n_clusters):
            cluster_logprob = F.log_softmax(self.tail[i](input), dim=1)
            parts.append(cluster_logprob + head_logprob[:, self.shortlist_size + i].unsqueeze(1))
        return ops.cat(parts, 1)

    def log_prob(self, input: Tensor) -> Tensor:
        r"""Log-probabilities of all ``n_classes`` classes: (N, n_classes) or (n_classes,)."""
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        out = self._get_full_log_prob(x, self.head(x))
        return out if batched else out.squeeze(0)

    def predict(self, input: Tensor) -> Tensor:
        r"""The most likely class of each row (``log_prob(input).argmax(-1)``)."""
        return self.log_prob(input).argmax(-1)
