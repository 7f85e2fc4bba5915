"""``ember.backends.mps``: Apple's Metal backend, which ember does not have."""

from __future__ import annotations

__all__ = [
    "is_built",
    "is_available",
    "is_macos13_or_newer",
    "is_macos_or_newer",
    "get_name",
    "get_core_count",
]


def is_built() -> bool:
    """Whether ember was built with MPS support: always ``False``."""
    return False


def is_available() -> bool:
    """Whether an MPS device can be used: always ``False``, ember has no Metal backend."""
    return False


def is_macos_or_newer(major: int, minor: int) -> bool:
    """Whether this machine runs macOS ``major.minor`` or a later version.

    Args:
        major: the major macOS version, e.g. ``14``.
        minor: the minor version.

    Returns:
        bool: ``False`` on any other operating system.
    """
    import platform

    ver = platform.mac_ver()[0]
    if not ver:
        return False
    parts = [int(p) for p in ver.split(".")[:2]] + [0]
    return (parts[0], parts[1]) >= (major, minor)


def is_macos13_or_newer(minor: int = 0) -> bool:
    """Whether this machine runs macOS ``13.minor`` or later (see
    :func:`ember.backends.mps.is_macos_or_newer`).
    """
    return is_macos_or_newer(13, minor)


def get_name() -> str:
    """The name of the Metal GPU: an empty string, as ember has no MPS device."""
    return ""


def get_core_count() -> int:
    """The number of GPU cores of the Metal device: ``0``, as ember has no MPS device."""
    return 0
