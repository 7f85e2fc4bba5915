"""OpenBLAS's idle-worker timeout, set by ember at import (core/backend/openblas_pool.py)."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

import ember
from ember.backend import openblas_pool


def _openblas():
    """NumPy's OpenBLAS (SciPy, imported by other tests, loads a second copy)."""
    libs = openblas_pool._openblas_libs()
    ours = [lib for path, lib in libs if "numpy" in path] or [lib for _, lib in libs]
    if not ours:
        pytest.skip("NumPy's BLAS is not a pthreads OpenBLAS with the exported controls")
    lib = ours[0]
    lib.openblas_thread_timeout.restype = ctypes.c_int
    return lib


@pytest.mark.parametrize("bad", [3, 31, "22", 22.0, None, True])
def test_set_thread_timeout_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="4 to 30"):
        openblas_pool.set_thread_timeout(bad)


def test_import_sets_the_short_timeout_and_leaves_the_environment():
    lib = _openblas()
    if openblas_pool.ENV in os.environ or os.environ.get("EMBER_OPENBLAS_THREAD_TIMEOUT"):
        pytest.skip("the environment chooses the timeout here")
    assert openblas_pool.thread_timeout() == openblas_pool.DEFAULT_TIMEOUT
    assert lib.openblas_thread_timeout() == openblas_pool.DEFAULT_TIMEOUT
    assert openblas_pool.ENV not in os.environ  # children do not inherit it


def test_products_after_the_workers_restart():
    lib = _openblas()
    before = ember.get_num_threads()
    ember.set_num_threads(2)
    try:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((256, 256)).astype(np.float32)
        b = rng.standard_normal((256, 256)).astype(np.float32)
        ref = a @ b
        assert openblas_pool.set_thread_timeout(openblas_pool.OPENBLAS_DEFAULT)
        assert lib.openblas_thread_timeout() == openblas_pool.OPENBLAS_DEFAULT
        np.testing.assert_array_equal(a @ b, ref)
        assert openblas_pool.set_thread_timeout(openblas_pool.DEFAULT_TIMEOUT)
        np.testing.assert_array_equal(a @ b, ref)
        x = ember.tensor(a)
        np.testing.assert_array_equal((x @ ember.tensor(b)).numpy(), ref)
    finally:
        openblas_pool.set_thread_timeout(openblas_pool.DEFAULT_TIMEOUT)
        ember.set_num_threads(before)


_PROBE = (
    "import ctypes, ember; from ember.backend import openblas_pool as p; "
    "libs = p._openblas_libs(); f = libs[0][1].openblas_thread_timeout if libs else None; "
    "print(p.thread_timeout(), f() if f else -1)"
)


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"OPENBLAS_THREAD_TIMEOUT": "25"}, "None 25"),  # the user's own value wins
        ({"EMBER_OPENBLAS_THREAD_TIMEOUT": "0"}, "None 0"),  # ember leaves OpenBLAS alone
    ],
)
def test_the_environment_chooses(env, expected):
    _openblas()
    full = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENBLAS_THREAD_TIMEOUT", "EMBER_OPENBLAS_THREAD_TIMEOUT")
    }
    full.update(env)
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=full, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == expected.split()


def test_set_num_threads_catches_up_with_scipy():
    pytest.importorskip("scipy.linalg")
    ember.set_num_threads(ember.get_num_threads())  # reaches SciPy's OpenBLAS, loaded since
    if openblas_pool.thread_timeout() is None:
        pytest.skip("ember set no timeout here")
    for path, lib in openblas_pool._openblas_libs():
        lib.openblas_thread_timeout.restype = ctypes.c_int
        assert lib.openblas_thread_timeout() == openblas_pool.thread_timeout(), path
