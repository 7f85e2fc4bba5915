"""``ember._inductor.config`` (torch._inductor.config): Inductor's settings, accepted and kept.

Programs tune torch's code generator here (``coordinate_descent_tuning``, ``freezing``,
``cpp.enable_kernel_profile``, ...). ember's compiler does not read them; assignments are
stored so a program reading its own setting back sees it; reading a name never set raises
AttributeError, as torch's config does.
"""

from __future__ import annotations

from typing import Any


class _Settings:
    """A namespace that stores any setting (torch's nested groups, like ``cpp``, included)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        group = _Settings()  # an unset name reads as a group (config.cpp.threads = 4)
        object.__setattr__(self, name, group)
        return group


cpp = _Settings()
triton = _Settings()
freezing = False
coordinate_descent_tuning = False
max_autotune = False
fx_graph_cache = True
