"""The job secret, gRPC plumbing shared by the store and peer services, and addresses.

Every endpoint of a job (the store, each rank's peer service, each raw data connection) checks
the job's secret token: gRPC calls carry it in the ``x-ember-token`` metadata entry, raw data
connections prove it with an HMAC over a one-time nonce. The token comes from ``EMBER_TOKEN``
(the ``ember`` launcher and the Trainer generate one per job); without it, from a per-user
private token file (``_token_file``); an empty token only with ``EMBER_INSECURE_NO_TOKEN=1``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import socket
import threading
import time

logger = logging.getLogger("ember.distributed")

# gRPC's C core logs connection teardown at INFO ("Got goaway") when a job ends; keep its
# default quieter unless the user asked for something else.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

TOKEN_ENV = "EMBER_TOKEN"
METADATA_KEY = "x-ember-token"

# Options for every channel and server of the job: never route through an HTTP proxy from the
# environment, reconnect quickly while a peer starts, no message size cap (chunks are bounded
# by the sender), and never share a port with another server (gRPC sets SO_REUSEPORT by default,
# which would let a second master silently bind the same port).
CHANNEL_OPTIONS = [
    ("grpc.enable_http_proxy", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]
SERVER_OPTIONS = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]

_warned_no_token = False
INSECURE_ENV = "EMBER_INSECURE_NO_TOKEN"


def job_token(token: str | None = None) -> str:
    """The job's secret: ``token`` if given, else ``$EMBER_TOKEN``, else this user's generated
    token (a private file, see ``_token_file``; issue #28). Only ``EMBER_INSECURE_NO_TOKEN=1``
    gives ``""`` (any local process could then join), with one loud warning.
    """
    global _warned_no_token
    if token is not None:
        return str(token)
    value = os.environ.get(TOKEN_ENV)
    if value:  # an empty EMBER_TOKEN (``EMBER_TOKEN=$UNSET``) is taken as unset, not as ""
        return value
    if os.environ.get(INSECURE_ENV, "").strip().lower() in ("1", "true", "yes"):
        if not _warned_no_token:
            _warned_no_token = True
            logger.warning(
                "INSECURE: %s=1 and %s is not set: this job's store and peer endpoints accept "
                "ANY process that can reach their address (read and write the store, join the "
                "collectives); unset %s to use a generated token",
                INSECURE_ENV,
                TOKEN_ENV,
                INSECURE_ENV,
            )
        return ""
    from ._token_file import user_token

    return user_token()


def new_token() -> str:
    """A fresh random job secret (what launchers export as ``EMBER_TOKEN``)."""
    return secrets.token_hex(16)


def metadata(token: str) -> tuple[tuple[str, str], ...]:
    """The gRPC call metadata carrying ``token``."""
    return ((METADATA_KEY, token),)


def token_ok(context, token: str, service: str) -> bool:
    """Check a gRPC call's token; on mismatch log the caller and abort it (UNAUTHENTICATED)."""
    import grpc

    got = ""
    for key, value in context.invocation_metadata():
        if key == METADATA_KEY:
            got = value
            break
    if hmac.compare_digest(got.encode(), token.encode()):
        return True
    log_refusal(
        f"{service} refused a call",
        context.peer(),
        f"{'wrong' if got else 'missing'} x-ember-token",
    )
    context.abort(
        grpc.StatusCode.UNAUTHENTICATED,
        f"{service}: missing or wrong job token (x-ember-token); check {TOKEN_ENV}",
    )
    return False


class RefusalLog:
    """Logs refused calls and connections without letting a flood flood the log (issue #28):
    the first ``first`` in full, then at most one line per ``every`` seconds counting those
    not shown since (a count that is never reported is flushed by the next refusal after
    ``every`` seconds)."""

    def __init__(self, first: int = 10, every: float = 60.0, clock=time.monotonic) -> None:
        if first < 0 or every <= 0:
            raise ValueError(
                f"RefusalLog needs first >= 0 and every > 0, got first={first}, every={every}"
            )
        self.first, self.every, self._clock = int(first), float(every), clock
        self.total = 0
        self._hidden = 0
        self._last = 0.0
        self._lock = threading.Lock()

    def __call__(self, what: str, peer, reason: str) -> bool:
        """Record one refusal (``what``: e.g. "ember store refused a call"); True if logged."""
        with self._lock:
            self.total += 1
            now = self._clock()
            if self.total <= self.first:
                if self.total == self.first:
                    self._last = now
                    reason += (
                        f" (refusal {self.first}: later ones are counted and reported "
                        f"every {self.every:g} s)"
                    )
                logger.warning("%s from %s: %s", what, peer or "a local process", reason)
                return True
            self._hidden += 1
            if now - self._last < self.every:
                return False
            hidden, self._hidden, self._last = self._hidden, 0, now
        logger.warning(
            "%d more refused calls or connections (%d in all) in the last %.0f s; "
            "the latest: %s from %s: %s",
            hidden,
            self.total,
            self.every,
            what,
            peer or "a local process",
            reason,
        )
        return True


def new_refusal_log() -> RefusalLog:
    """A refusal log with the limits of ``EMBER_REFUSAL_LOG_FIRST``/``_EVERY_S``."""
    return RefusalLog(
        int(os.environ.get("EMBER_REFUSAL_LOG_FIRST", 10)),
        float(os.environ.get("EMBER_REFUSAL_LOG_EVERY_S", 60)),
    )


# One per process: every endpoint of the job shares the budget (the store helper process
# starts a new one per store it serves).
log_refusal = new_refusal_log()


def sign(token: str, nonce: bytes, rank: int) -> bytes:
    """HMAC-SHA256 proof that the holder of ``token`` answers ``nonce`` as ``rank``."""
    msg = nonce + int(rank).to_bytes(4, "little", signed=True)
    return hmac.new(token.encode(), msg, hashlib.sha256).digest()


def verify(token: str, nonce: bytes, rank: int, proof: bytes) -> bool:
    return hmac.compare_digest(sign(token, nonce, rank), proof)


# ---- addresses ----------------------------------------------------------------------------
def normalize_host(host: str) -> str:
    """``localhost`` -> ``127.0.0.1`` (binding a name can pick IPv6 or both stacks)."""
    return "127.0.0.1" if host in ("localhost", "") else host


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def local_address_towards(host: str) -> str:
    """This node's own address on the route to ``host`` (no packet is sent).

    Endpoints bind to this address rather than to all interfaces. ``EMBER_BIND_ADDR``
    overrides it.
    """
    override = os.environ.get("EMBER_BIND_ADDR")
    if override:
        return override
    host = normalize_host(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))  # UDP connect only selects a route; nothing goes on the wire
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def is_local_address(host: str) -> bool:
    """Whether ``host`` (an address or a name) is an address of this machine."""
    host = normalize_host(host)
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except OSError:
        return False
    for family, _, _, _, addr in infos:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.bind((addr[0], 0))  # binding succeeds only for this machine's addresses
                return True
        except OSError:
            continue
    return False


def single_host_job(world_size: int) -> bool:
    """The launcher says every rank runs on this machine (``LOCAL_WORLD_SIZE`` equals the
    world size; torchrun, ``ember launch`` and the Trainer set it)."""
    try:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "-1"))
    except ValueError:
        return False
    return local == int(world_size) > 0


def bind_host(host: str, world_size: int) -> str:
    """``host``, or loopback for a single-host job whose ``host`` is this machine's own
    (routable) address: nothing off the machine needs to reach its endpoints (issue #28).
    ``EMBER_BIND_ADDR`` set means the user chose, and keeps ``host``."""
    if os.environ.get("EMBER_BIND_ADDR") or not single_host_job(world_size):
        return host
    normal = normalize_host(host)
    if normal.startswith("127.") or normal == "::1" or not is_local_address(normal):
        return normal
    return "::1" if ":" in normal else "127.0.0.1"


def host_identity() -> str:
    """Which machine this process runs on; ranks with the same identity use shared memory.

    ``EMBER_HOST_ID`` if set (tests fake several hosts with it), else the hostname plus the
    network namespace, so that containers or namespaces sharing a hostname are kept apart.
    """
    override = os.environ.get("EMBER_HOST_ID")
    if override:
        return override
    try:
        netns = os.stat("/proc/self/ns/net").st_ino
    except OSError:
        netns = 0
    return f"{socket.gethostname()}/{netns}"
