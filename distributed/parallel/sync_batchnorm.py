"""SyncBatchNorm: batch norm whose statistics span every rank of a process group.

PyTorch's ``torch.nn.SyncBatchNorm`` (also ``ember.nn.SyncBatchNorm``). In training, with a
process group of more than one rank, each rank's batch is normalised with the mean and
variance of the union of all ranks' batches, so N ranks with batches B_1..B_N compute what one
process computes on their concatenation: outputs, input gradients and running statistics.
Ranks may hold different batch sizes (even empty ones).

How (one collective each way, on C-sized vectors, never on the activations):
- forward: every rank all-gathers its count, mean and sum of squared deviations per channel,
  and combines them in rank order (Chan's parallel variance), so every rank gets bitwise the
  same statistics;
- backward: the per-channel sums ``sum(dy)`` and ``sum(dy * xhat)`` are all-reduced, which is
  all that the input gradient needs from other ranks.

The weight and bias gradients stay local, as in PyTorch: DistributedDataParallel averages them
like any other parameter's. Without an initialised process group, with one rank, in eval mode
(running statistics) or when this rank is not in the group, the layer is plain batch norm.
Double backward is not supported (as in PyTorch).
"""

from __future__ import annotations

import math

import numpy as np

from ember import _interop
from ember.autograd.function import Function
from ember.nn import functional as F
from ember.nn.modules.normalization import _BatchNorm
from ember.ops.norm_ops import batch_norm_input_grad, scale_shift, update_running_stats

from .. import collectives
from .._runtime._state import resolve_group
from ..distributed_c10d import is_initialized

__all__ = ["SyncBatchNorm"]


class SyncBatchNorm(_BatchNorm):
    r"""Batch norm over (N, C, \*) inputs with statistics synchronised across ``process_group``
    (default: the whole world) in training.

    Args:
        num_features (int): C, the number of channels.
        eps (float): added to the variance (default: 1e-5).
        momentum (float or None): running statistics' update factor; ``None`` for a
            cumulative average (default: 0.1).
        affine (bool): learnable weight and bias (default: True).
        track_running_stats (bool): keep running mean and variance (default: True).
        process_group (ProcessGroup, optional): the ranks to synchronise over.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group=None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.process_group = process_group

    def _check_input_dim(self, input) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input):
        self._check_input_dim(input)
        if input.shape[1] == 0:
            raise ValueError("SyncBatchNorm number of input channels should be non-zero")
        bn_training, factor, running_mean, running_var = self._step_statistics()
        pg = None
        if bn_training and self.training and is_initialized():
            pg = resolve_group(self.process_group)
        if pg is None or pg.size() == 1:
            return F.batch_norm(
                input,
                running_mean,
                running_var,
                self.weight,
                self.bias,
                bn_training,
                factor,
                self.eps,
            )
        mean, var = (
            None if t is None else _interop.array_of(t) for t in (running_mean, running_var)
        )
        out = _SyncBatchNorm.apply(input, self.weight, self.bias, mean, var, factor, self.eps, pg)
        for t in (running_mean, running_var):
            if t is not None:
                _interop.bump_version(t)
        return out

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """``module`` with every ``BatchNorm1d/2d/3d`` in it replaced by a ``SyncBatchNorm``
        that shares its parameters and buffers and keeps its mode (PyTorch's classmethod).
        Returns the new root when ``module`` itself is a batch norm."""
        out = module
        if isinstance(module, _BatchNorm):
            out = cls(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
                process_group,
            )
            if module.affine:
                out.weight, out.bias = module.weight, module.bias
                out.bias_enabled = module.bias_enabled
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
            out.training = module.training
        for name, child in module.named_children():
            out.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return out


class _SyncBatchNorm(Function):
    """The synchronised training pass on an (N, C, L) view (see the module docstring)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps, pg):
        xp = ctx.xp
        shape_in, c = x.shape, x.shape[1]
        x3 = x.reshape(shape_in[0], c, math.prod(shape_in[2:]))  # (-1 fails on empty batches)
        n_local = x3.shape[0] * x3.shape[2]
        # this rank's count, mean and sum of squared deviations, in float64 for the combination
        mine = xp.zeros(1 + 2 * c, dtype=np.float64)
        mine[0] = n_local
        if n_local:
            mean_r = x3.sum(axis=(0, 2), dtype=np.float64) / n_local
            dev = x3 - mean_r.astype(x.dtype)[:, None]
            mine[1 : 1 + c] = mean_r
            mine[1 + c :] = xp.einsum("ncl,ncl->c", dev, dev)
        every = xp.empty((pg.size(), 1 + 2 * c), dtype=np.float64)
        collectives.all_gather_into_tensor(_interop.wrap(every), _interop.wrap(mine), group=pg)
        counts, means, m2s = every[:, 0], every[:, 1 : 1 + c], every[:, 1 + c :]
        n = float(counts.sum())
        if n <= 1:
            raise ValueError(
                "Expected more than 1 value per channel when training, got "
                f"{int(n)} over the group's ranks (input size {tuple(shape_in)} "
                "on this rank)"
            )
        mean = (counts[:, None] * means).sum(axis=0) / n
        var = (m2s + counts[:, None] * (means - mean) ** 2).sum(axis=0) / n
        update_running_stats(running_mean, running_var, mean, var, n, momentum)
        invstd = (1 / xp.sqrt(var + eps)).astype(x.dtype, copy=False)
        xhat = x3 - mean.astype(x.dtype)[:, None]
        out = scale_shift(xhat, invstd, weight, bias)
        ctx.save_for_backward(xhat, weight, invstd)
        ctx.meta = (shape_in, n, pg)
        return out.reshape(shape_in)

    @staticmethod
    def backward(ctx, grad):
        if ctx._tensor_mode:
            raise RuntimeError("SyncBatchNorm does not support double backward")
        xhat, weight, invstd = ctx.saved_tensors
        xp = ctx.xp
        shape_in, n, pg = ctx.meta
        nx, nw, nb = ctx.needs_input_grad[:3]
        g3 = grad.reshape(xhat.shape)
        c = xhat.shape[1]
        sums = xp.empty(2 * c, dtype=g3.dtype)
        sums[:c] = g3.sum(axis=(0, 2))  # d bias (this rank's)
        sums[c:] = xp.einsum("ncl,ncl->c", g3, xhat)  # d weight (this rank's)
        gw = sums[c:].copy() if nw else None
        gb = sums[:c].copy() if nb else None
        gx = None
        if nx:
            # the input gradient needs the sums over every rank's batch
            collectives.all_reduce(_interop.wrap(sums), group=pg)
            k = invstd if weight is None else invstd * weight
            gx = batch_norm_input_grad(g3, xhat, sums[:c], sums[c:], n, k).reshape(shape_in)
        return gx, gw, gb, None, None, None, None, None
