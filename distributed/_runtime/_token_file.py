"""The job token used when ``EMBER_TOKEN`` is not set: a per-user secret file (issue #28).

Ranks started by hand, by SLURM/MPI or with ``init_method="tcp://..."`` have no channel to
agree on a fresh secret before the store exists, so ember reads (and, the first time, creates)
a random token in a file only the user can read: ``$EMBER_TOKEN_FILE``, else
``~/.ember/job_token``, else ``$TMPDIR/ember-<uid>/job_token`` when the home directory is not
writable. Every process of that user on that machine (or on machines sharing the home
directory) gets the same token; other users' processes cannot read it, so they cannot talk to
the job's store or peers. Ranks on machines that do not share the file need ``EMBER_TOKEN``.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile

FILE_ENV = "EMBER_TOKEN_FILE"


class TokenFileError(RuntimeError):
    """The token file (or its directory) is unsafe or unusable; the message says how to fix it."""


def candidates() -> list[str]:
    """Where the per-user token may live, in the order they are tried."""
    chosen = os.environ.get(FILE_ENV)
    if chosen:
        return [os.path.expanduser(chosen)]
    return [
        os.path.join(os.path.expanduser("~"), ".ember", "job_token"),
        os.path.join(tempfile.gettempdir(), f"ember-{os.getuid()}", "job_token"),
    ]


def _read(path: str) -> str:
    """The token in ``path``; refuses a file other users could read or that is not the user's."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd) as f:
        st = os.fstat(f.fileno())
        if st.st_uid != os.getuid() or st.st_mode & 0o077 or not stat.S_ISREG(st.st_mode):
            raise TokenFileError(
                f"ember: the job token file {path} must be a regular file owned by this user "
                f"and readable by nobody else (chmod 600 {path}), or set EMBER_TOKEN"
            )
        token = f.read().strip()
    if not token:
        raise TokenFileError(f"ember: the job token file {path} is empty; remove it or fill it")
    return token


def _create(path: str) -> str:
    """Create ``path`` with a fresh token unless another process got there first (atomic)."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    st = os.stat(directory)
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise TokenFileError(
            f"ember: {directory} (for the job token file) must be owned by this user and "
            "writable by nobody else"
        )
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(16) + "\n")
        try:
            os.link(tmp, path)  # fails if it exists: the first writer's token wins
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)
    return _read(path)


def user_token() -> str:
    """This user's job token (created on first use); raises naming what to set if no
    candidate file can be read or created."""
    errors = []
    for path in candidates():
        try:
            return _read(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            errors.append(str(e))
            continue
        try:
            return _create(path)
        except OSError as e:
            errors.append(f"{path}: {e}")
    raise RuntimeError(
        "ember: EMBER_TOKEN is not set and no per-user job token file could be used ("
        + "; ".join(errors)
        + "): set EMBER_TOKEN for every rank, or EMBER_TOKEN_FILE to a private file"
    )
