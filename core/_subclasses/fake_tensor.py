"""``ember._subclasses.fake_tensor`` (torch._subclasses.fake_tensor)."""

from __future__ import annotations

from typing import Any

__all__ = ["FakeTensorConverter", "FakeTensorMode", "is_fake"]


def is_fake(x: Any) -> bool:
    """Return whether ``x`` is a fake tensor (never, in ember: it has no fake mode)."""
    return False


class FakeTensorMode:
    """``FakeTensorMode()`` (torch's mode that runs ops on shape-only tensors). ember has no
    fake tensors; the mode is accepted as a no-op context so that code building one (torchtune's
    checkpoint hooks) runs, and :class:`FakeTensorConverter` makes ``meta`` tensors for it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> FakeTensorMode:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


class FakeTensorConverter:
    """Turns real tensors into shape-only ones (torch's ``FakeTensorConverter``): ember gives a
    ``meta`` tensor of the same shape, dtype and requires_grad (no data is copied)."""

    def from_real_tensor(self, fake_mode: FakeTensorMode, t: Any, *args: Any, **kwargs: Any):
        """A ``meta`` tensor shaped as ``t``."""
        import ember

        out = ember.empty(t.shape, dtype=t.dtype, device="meta")
        if t.requires_grad:
            out.requires_grad_(True)
        return out
