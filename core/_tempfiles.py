"""Temporary files and directories of atomic saves, and the clean-up of those a killed writer
left behind.

A save writes ``.<name>.<host>-<pid>.<random>.tmp`` next to its target and renames it into
place. A writer killed mid-save (SIGKILL, OOM, power loss) never removes its temp file, so a
crash-looping job would fill the disk. The name records the writer (a tag of its host name
and its process id): the next save into the directory removes every temp file of a writer on
this host that is no longer running. Files of live processes, of other hosts (a shared
filesystem) and of older ember versions (no writer in the name) are left alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import zlib

__all__ = ["host_tag", "pid_alive", "temp_path", "remove_stale"]

# .<name>.<host>-<pid>.<12 hex>.tmp (a file) or .<name>.<host>-<pid>.<12 hex>.partial (a dir)
_TEMP_RE = re.compile(r"^\..+\.([0-9a-f]{8})-(\d+)\.[0-9a-f]{12}\.(tmp|partial|old)$")
_HOST: list[str] = []


def host_tag() -> str:
    """8 hex digits naming this host (a CRC of its name: short, and safe in a file name)."""
    if not _HOST:
        _HOST.append(f"{zlib.crc32(socket.gethostname().encode()):08x}")
    return _HOST[0]


def pid_alive(pid: int) -> bool:
    """Is process ``pid`` running on this host? (A process of another user counts as alive.)"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True  # unknown: keep its files
    return True


def temp_path(path: str, suffix: str = "tmp") -> str:
    """A fresh temporary name next to ``path`` that records this writer (host and pid)."""
    directory, base = os.path.split(os.path.abspath(path))
    return os.path.join(
        directory, f".{base}.{host_tag()}-{os.getpid()}.{secrets.token_hex(6)}.{suffix}"
    )


def remove_stale(directory: str) -> list[str]:
    """Remove the temp files (and ``.partial`` / ``.old`` directories) in ``directory`` whose
    writer, a process on this host, is gone. Returns the paths removed. Never raises: a
    clean-up problem must not fail the save that triggered it."""
    removed: list[str] = []
    me = host_tag()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not name.startswith(".") or not name.endswith((".tmp", ".partial", ".old")):
            continue  # the common case, decided without a regex
        m = _TEMP_RE.match(name)
        if m is None or m.group(1) != me or pid_alive(int(m.group(2))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(entry.path)
    return removed
