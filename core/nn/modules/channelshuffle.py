"""``torch.nn.modules.channelshuffle``: ``ChannelShuffle``."""

from __future__ import annotations

from .normalization_extra import ChannelShuffle

__all__ = ["ChannelShuffle"]
