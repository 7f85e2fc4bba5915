"""Shared pytest configuration: markers that skip where the machine cannot run them."""

from __future__ import annotations

import os
import shutil

import pytest


def _cuda_available() -> bool:
    try:
        import ember

        return ember.cuda.is_available()
    except Exception:
        return False


def _netns_available() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs CUDA and CuPy")
    skip_netns = pytest.mark.skip(reason="needs root and `ip netns`")
    cuda = _cuda_available()
    netns = _netns_available()
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(skip_gpu)
        if "multinode" in item.keywords and not netns:
            item.add_marker(skip_netns)
