"""``ember.functional``: the tensor functions PyTorch keeps in ``torch.functional``
(einsum, meshgrid, split, norm, ...), the same objects as ``ember.<name>``."""

from __future__ import annotations

__all__ = [  # noqa: F822  (resolved by __getattr__ below)
    "atleast_1d",
    "atleast_2d",
    "atleast_3d",
    "broadcast_shapes",
    "broadcast_tensors",
    "cartesian_prod",
    "block_diag",
    "cdist",
    "chain_matmul",
    "einsum",
    "istft",
    "lu",
    "norm",
    "meshgrid",
    "pca_lowrank",
    "split",
    "stft",
    "svd_lowrank",
    "tensordot",
    "unique",
    "unique_consecutive",
    "unravel_index",
]


def __getattr__(name):
    # resolved on access: these live in the op families, some of which load lazily
    if name in __all__:
        import ember

        return getattr(ember, name)
    raise AttributeError(f"module 'ember.functional' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
