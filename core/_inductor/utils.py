"""``ember._inductor.utils`` (torch._inductor.utils)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["fresh_cache", "fresh_inductor_cache"]


@contextlib.contextmanager
def fresh_inductor_cache(
    cache_entries: dict | None = None, dir: str | None = None, delete: bool = True
) -> Iterator[None]:
    """Run the block with empty compile caches on disk (torch.\\_inductor.utils).

    ember.compile keeps its compiled graphs in memory only (``ember.compiler.reset()`` drops
    them), so there is nothing on disk to isolate: the block runs as it is. The arguments are
    accepted for torch's signature.
    """
    del cache_entries, dir, delete
    yield


def fresh_cache(*args: Any, **kwargs: Any) -> contextlib.AbstractContextManager:
    """torch's newer name for :func:`fresh_inductor_cache`."""
    return fresh_inductor_cache(*args, **kwargs)
