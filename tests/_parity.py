"""Helpers shared by the third-party idiom tests: run one program on ember and on torch with
the same seed, compare the results, and keep torch on one thread (its default pool
oversubscribes the shared CI cores: an SSIM test took 10 s at the default, 0.5 s at one)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def one_thread():
    """Autouse in every test module that imports it: ember on one thread for each test (the
    kernel paths a test pins are the one-thread ones), the thread count restored after."""
    from ember.backend.threads import get_num_threads, set_num_threads

    prev = get_num_threads()
    set_num_threads(1)
    yield
    set_num_threads(prev)


def torch_one_thread_fixture(torch):
    """A module-scoped autouse fixture that holds ``torch`` to one thread while it runs."""

    @pytest.fixture(autouse=True, scope="module")
    def _torch_one_thread():
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(n)

    return _torch_one_thread


def both(libs, fn, *args):
    """``fn(lib, *args)`` for each library of ``libs``, each one's RNG seeded alike."""
    out = []
    for lib in libs:
        lib.manual_seed(0)
        out.append(fn(lib, *args))
    return out


def close(a, b, rtol=1e-5, atol=1e-6):
    """Each pair of ``a`` and ``b`` equal within the tolerances (arrays, tensors, numbers)."""
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def restoring(module, *names: str):
    """An autouse fixture that puts ``module``'s attributes ``names`` (A/B switches,
    thresholds) and ember's thread count back as they were after each test."""

    @pytest.fixture(autouse=True)
    def _restoring():
        from ember.backend.threads import get_num_threads, set_num_threads

        prev = [getattr(module, n) for n in names], get_num_threads()
        yield
        for n, v in zip(names, prev[0]):
            setattr(module, n, v)
        set_num_threads(prev[1])

    return _restoring
