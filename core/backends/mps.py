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
    return False


def is_available() -> bool:
    return False


def is_macos_or_newer(major: int, minor: int) -> bool:
    import platform

    ver = platform.mac_ver()[0]
    if not ver:
        return False
    parts = [int(p) for p in ver.split(".")[:2]] + [0]
    return (parts[0], parts[1]) >= (major, minor)


def is_macos13_or_newer(minor: int = 0) -> bool:
    return is_macos_or_newer(13, minor)


def get_name() -> str:
    return ""


def get_core_count() -> int:
    return 0
