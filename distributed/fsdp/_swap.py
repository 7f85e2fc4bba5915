"""Moving a finished checkpoint directory into place without a moment where neither the old
nor the new one is loadable.

A sharded save writes into a staging directory beside the target. ``install`` then exchanges
the two in one ``renameat2(RENAME_EXCHANGE)`` call (Linux 3.15+, on local filesystems) and
deletes the old one. Where the exchange is not available it renames the old directory aside
(``.<name>.<host>-<pid>.<hex>.old``) and the new one into place; a save killed between those
two renames leaves the old checkpoint there, which ``resolve`` reads and the next save's
``recover`` puts back.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import sys
from collections.abc import Callable

from ember import _tempfiles

__all__ = ["install", "recover", "resolve"]

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_RENAMEAT2: list = []


def _renameat2():
    if not _RENAMEAT2:
        fn = None
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                fn = ctypes.CDLL(None, use_errno=True).renameat2
                fn.argtypes = [
                    ctypes.c_int,
                    ctypes.c_char_p,
                    ctypes.c_int,
                    ctypes.c_char_p,
                    ctypes.c_uint,
                ]
                fn.restype = ctypes.c_int
        _RENAMEAT2.append(fn)
    return _RENAMEAT2[0]


def exchange(a: str, b: str) -> bool:
    """Atomically swap two existing paths; False where the OS or filesystem cannot."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, f"cannot exchange {a} and {b}: {os.strerror(err)}")


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _carry(src: str, dst: str, is_ours: Callable[[str], bool]) -> None:
    """Hard-link (or copy) the entries of ``src`` that the save does not own into ``dst``, so
    a user's files kept in the checkpoint directory survive the swap."""
    for entry in os.scandir(src):
        if is_ours(entry.name):
            continue
        target = os.path.join(dst, entry.name)
        if os.path.lexists(target):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.copytree(entry.path, target, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry.path, target)


def _link_or_copy(src: str, dst: str) -> None:
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def install(staging: str, final: str, is_ours: Callable[[str], bool]) -> None:
    """Put the complete checkpoint ``staging`` at ``final`` (replacing what is there)."""
    parent = os.path.dirname(final)
    if not os.path.lexists(final):
        _fsync_dir(staging)
        os.rename(staging, final)
        _fsync_dir(parent)
        return
    _carry(final, staging, is_ours)
    _fsync_dir(staging)
    if exchange(staging, final):
        _fsync_dir(parent)
        shutil.rmtree(staging, ignore_errors=True)  # now the old checkpoint
        return
    old = _tempfiles.temp_path(final, "old")
    os.rename(final, old)
    os.rename(staging, final)
    _fsync_dir(parent)
    shutil.rmtree(old, ignore_errors=True)


def _aside(final: str, marker: str) -> list[str]:
    """Old checkpoints renamed aside by an interrupted ``install``, newest first."""
    parent, base = os.path.split(os.path.abspath(final))
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            if (
                entry.name.startswith(f".{base}.")
                and entry.name.endswith(".old")
                and os.path.exists(os.path.join(entry.path, marker))
            ):
                found.append((entry.stat().st_mtime, entry.path))
    return [p for _, p in sorted(found, reverse=True)]


def resolve(final: str, marker: str) -> str:
    """The directory holding the checkpoint at ``final``: ``final`` itself, or the old one an
    interrupted ``install`` left aside."""
    if os.path.exists(os.path.join(final, marker)):
        return final
    aside = _aside(final, marker)
    return aside[0] if aside else final


def recover(final: str, marker: str) -> None:
    """Before a new save: move an old checkpoint left aside back to ``final``."""
    if os.path.lexists(final):
        return
    aside = _aside(final, marker)
    if aside:
        os.rename(aside[0], final)
