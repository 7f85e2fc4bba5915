"""``ember.sparse._triton_ops_meta`` (torch.sparse._triton_ops_meta): the tuning database of
torch's Triton block-sparse kernels. ember has no Triton kernels, so the database is empty:
``get_meta`` finds nothing (``None``, as torch for an untuned shape), and tuning raises."""

from __future__ import annotations

from typing import Any

__all__ = ["get_meta", "minimize", "update"]


def get_meta(op: str, key: Any, device_name: str | None = None, version=(0, None), exact=False):
    """The tuned kernel parameters of ``op`` for ``key``: ``None`` (nothing is tuned)."""
    return None


def update(op: str, device_name: str, version: Any, key: Any, value: Any) -> None:
    """Record tuned parameters: ember has no Triton kernels to tune."""
    raise RuntimeError("torch.sparse._triton_ops_meta.update needs Triton, which ember lacks")


def minimize(*args: Any, **kwargs: Any) -> Any:
    """Tune kernel parameters: ember has no Triton kernels to tune."""
    raise RuntimeError("torch.sparse._triton_ops_meta.minimize needs Triton, which ember lacks")
