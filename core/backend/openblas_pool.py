"""OpenBLAS's idle workers: let them sleep soon after a product instead of spinning ~0.1 s.

OpenBLAS's pthreads build keeps its worker threads busy-waiting for ``2**28`` cycles after each
threaded call (about 0.1 s of a core here) before they sleep. ember's own parallel kernels
(numba's convolution and tail kernels, the split elementwise updates) then share the cores with
a spinning worker: at two threads, a convolution step right after a 2-thread GEMM took 1.6x its
time alone (docs/kernels.md, session 23, h1 and h8). OpenBLAS reads ``OPENBLAS_THREAD_TIMEOUT``
(the spin as ``2**value`` cycles, 4 to 30) into a cache when it loads and applies it when it
starts its workers; both steps are exported, so the setting can change after NumPy loaded:
re-read the environment (``openblas_read_env``), then stop the workers
(``blas_thread_shutdown_``, ~0.2 ms); the next threaded call starts them with the new timeout.
"""

from __future__ import annotations

import ctypes
import os

ENV = "OPENBLAS_THREAD_TIMEOUT"
# 2**22 cycles, ~1.6 ms: long enough that back-to-back products find their workers awake (4,
# sleep at once, cost GEMM-bound convolutions their wake-ups), short enough that the next
# parallel kernel runs alone (measurements in docs/kernels.md, "two threads that help").
DEFAULT_TIMEOUT = 22
OPENBLAS_DEFAULT = 28  # OpenBLAS's own (its THREAD_TIMEOUT build default)

_applied: int | None = None  # the timeout set through set_thread_timeout, if any
_done: set[str] = set()  # the libraries (paths) that have it


def _openblas_libs(controller=None) -> list:
    """(path, library) of each pthreads OpenBLAS loaded in this process: NumPy's, and SciPy's
    where SciPy was imported (its own copy, with its own pool). ``controller``: a
    ``threadpoolctl.ThreadpoolController`` the caller already made (its scan costs ~1 ms)."""
    if controller is None:
        from threadpoolctl import ThreadpoolController

        controller = ThreadpoolController()
    libs = []
    for ctl in controller.select(internal_api="openblas").lib_controllers:
        if getattr(ctl, "threading_layer", None) != "pthreads":
            continue  # an OpenMP build waits as its OpenMP runtime says (OMP_WAIT_POLICY)
        try:
            lib = ctypes.CDLL(ctl.filepath)  # the loaded copy: dlopen returns its handle
        except OSError:
            continue
        if hasattr(lib, "openblas_read_env") and hasattr(lib, "blas_thread_shutdown_"):
            libs.append((ctl.filepath, lib))
    return libs


def set_thread_timeout(value: int) -> bool:
    """Make OpenBLAS's idle workers spin ``2**value`` cycles (4 to 30) before they sleep.

    Process-wide, for each pthreads OpenBLAS loaded (NumPy's; SciPy's, which ``set_num_threads``
    also reaches when it loads later). The workers stop at once and start again with the new
    timeout on the next threaded product; call it where no other thread is inside an OpenBLAS
    call. The environment is left as it was (a child process does not inherit the setting).
    Returns whether an OpenBLAS library took it.
    """
    global _applied
    if isinstance(value, bool) or not isinstance(value, int) or not 4 <= value <= 30:
        raise ValueError(f"set_thread_timeout expects an integer from 4 to 30, got {value!r}")
    libs = _openblas_libs()
    _apply(libs, value)
    _applied = value
    return bool(libs)


def _apply(libs: list, value: int) -> None:
    if not libs:
        return
    prev = os.environ.get(ENV)
    os.environ[ENV] = str(value)
    try:
        for path, lib in libs:
            lib.openblas_read_env()  # re-reads all OPENBLAS_* variables; only ours changed
            lib.blas_thread_shutdown_()
            _done.add(path)
    finally:
        if prev is None:
            del os.environ[ENV]
        else:
            os.environ[ENV] = prev


def catch_up(controller=None) -> None:
    """The timeout ember set, on OpenBLAS libraries loaded since (SciPy's): called by
    ``set_num_threads`` with its ``ThreadpoolController``."""
    if _applied is None:
        return
    try:
        libs = _openblas_libs(controller)
        _apply([(p, lib) for p, lib in libs if p not in _done], _applied)
    except (ImportError, OSError, AttributeError):
        pass


def quiet_on_import() -> None:
    """At ``import ember``: the short timeout, unless the user set ``OPENBLAS_THREAD_TIMEOUT``
    (OpenBLAS then has the user's value) or asked ember to leave OpenBLAS alone
    (``EMBER_OPENBLAS_THREAD_TIMEOUT=0``); ``EMBER_OPENBLAS_THREAD_TIMEOUT=n`` picks ``n``."""
    if ENV in os.environ:
        return
    own = os.environ.get("EMBER_OPENBLAS_THREAD_TIMEOUT", "")
    try:
        value = int(own) if own else DEFAULT_TIMEOUT
    except ValueError:
        raise ValueError(
            f"EMBER_OPENBLAS_THREAD_TIMEOUT must be an integer (0, or 4 to 30), got {own!r}"
        ) from None
    if value == 0:
        return
    try:
        set_thread_timeout(value)
    except (ImportError, OSError, AttributeError):  # no threadpoolctl, an unusual build
        pass


def thread_timeout() -> int | None:
    """The timeout ember set (``set_thread_timeout``), or None where it set none."""
    return _applied
