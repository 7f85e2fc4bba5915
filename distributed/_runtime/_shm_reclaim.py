"""Names of the distributed runtime's ``/dev/shm`` files, and the reclaiming of those whose
process is gone (issue #28).

A rank unlinks its ring segment and its arena as soon as every peer has mapped them (after the
rendezvous barrier), so a rank killed later leaks nothing: the pages go when the last mapping
does. A rank killed *during* the rendezvous (SIGKILL, OOM) leaves its names behind, up to an
8 GiB sparse arena each. The names record the creator, ``ember-[arena-]<pid>-<ns>-...`` with
``<ns>`` the creator's pid namespace, and every new shared-memory transport on the host first
removes the files of creators that are no longer running: same pid namespace (a pid means the
same process), same owner, process gone. Files of live processes, of other pid namespaces
(containers sharing ``/dev/shm``) and of older ember versions (no namespace in the name) are
left alone.
"""

from __future__ import annotations

import functools
import os
import re
import secrets

from ember._tempfiles import pid_alive

SHM_DIR = "/dev/shm"
_NAME_RE = re.compile(r"^ember-(?:arena-)?(\d+)-([0-9a-f]{1,16})-")


@functools.cache
def namespace_tag() -> str:
    """This process's pid namespace, as hex (``0`` where it cannot be read)."""
    try:
        return f"{os.stat('/proc/self/ns/pid').st_ino:x}"
    except OSError:
        return "0"


def segment_name(kind: str = "") -> str:
    """A fresh name for a file of this process: ``ember-<kind><pid>-<ns>-<12 hex>``."""
    return f"ember-{kind}{os.getpid()}-{namespace_tag()}-{secrets.token_hex(6)}"


def reclaim(directory: str = SHM_DIR) -> list[str]:
    """Remove the runtime's files in ``directory`` whose creator has died (see the module
    docstring); returns the names removed."""
    ns, uid = namespace_tag(), os.geteuid()
    if ns == "0":
        return []  # without a namespace a pid could name a process of another container
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    removed = []
    for name in names:
        m = _NAME_RE.match(name)
        if m is None or m.group(2) != ns or pid_alive(int(m.group(1))):
            continue
        path = os.path.join(directory, name)
        try:
            if os.stat(path).st_uid != uid:
                continue
            os.unlink(path)
        except OSError:
            continue  # gone meanwhile, or not ours to remove
        removed.append(name)
    return removed
