"""Token handling for a cluster config's ``ember.token`` section.

Two secrets are involved:

- Ray's own cluster token (``ray_auth``): ``token`` turns Ray's token authentication on for
  every ``ray start`` ember runs, for drivers (``ember launch``/``status``) and Ray Jobs
  clients; ``disabled`` turns it off; ``inherit`` (default) leaves Ray's own choice alone.
  The token lives in ``ray_token_path`` (default Ray's ``~/.ray/auth_token``); ``ember up``
  creates it when missing and copies it to ssh hosts (never on a command line).
- ember's job secret (``job``): ``EMBER_TOKEN`` guards the job's gRPC endpoints (store, peer
  transport). ``per_job`` (default) draws a fresh one for every job; ``env`` takes the
  driver's ``EMBER_TOKEN``, for jobs whose ranks are started by other means too.
"""

from __future__ import annotations

import os
import secrets
import sys

DEFAULT_RAY_TOKEN_PATH = "~/.ray/auth_token"


def ray_auth_env(settings: dict) -> dict:
    """Environment for Ray processes and drivers of a cluster with these ember settings."""
    tok = settings["token"]
    mode = tok["ray_auth"]
    if mode == "inherit":
        return {}
    env = {"RAY_AUTH_MODE": mode}
    if mode == "token" and tok.get("ray_token_path"):
        env["RAY_AUTH_TOKEN_PATH"] = os.path.expanduser(tok["ray_token_path"])
    return env


def resolved_ray_auth_env(settings: dict) -> dict:
    """:func:`ray_auth_env`, with ``inherit`` resolved to the mode Ray itself picks.

    Ray 2.60 with ``RAY_AUTH_MODE`` unset: ``ray start --head`` turns token authentication on
    when a token exists (``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH`` names, or
    ``~/.ray/auth_token``), but ``ray start --address``, ``ray.init(address=...)`` and the Jobs
    client never do: they fail against that head with authentication errors. So ember names
    the mode explicitly for every Ray process and driver of the cluster, and ``ember up``
    records it for ``status``, ``launch --cluster``, ``submit``, ``job`` and ``down``.
    """
    env = ray_auth_env(settings)
    if env:
        return env
    mode = os.environ.get("RAY_AUTH_MODE", "").strip().lower()
    if not mode:
        mode = "token" if ray_token() else "disabled"
    env = {"RAY_AUTH_MODE": mode}
    if mode == "token" and os.environ.get("RAY_AUTH_TOKEN_PATH"):
        env["RAY_AUTH_TOKEN_PATH"] = os.path.expanduser(os.environ["RAY_AUTH_TOKEN_PATH"])
    return env


def ray_token() -> str | None:
    """The Ray token this process would use, in Ray's order: ``RAY_AUTH_TOKEN``, the file
    ``RAY_AUTH_TOKEN_PATH`` names, ``~/.ray/auth_token``; None when there is none."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or DEFAULT_RAY_TOKEN_PATH
    try:
        with open(os.path.expanduser(path)) as f:
            return f.read().strip() or None
    except OSError:
        return None


def cluster_auth_env(cfg) -> dict:
    """The Ray auth variables for drivers of a config's cluster: the ones ``ember up``
    recorded when it started the cluster (the mode its head really runs with), else the
    config's, with ``inherit`` resolved as Ray's head would."""
    if cfg.provider == "local":
        from .local_cluster import read_state

        state = read_state(cfg.name)
        if state and state.get("auth_env"):
            return dict(state["auth_env"])
    return resolved_ray_auth_env(cfg.ember)


def default_env() -> dict:
    """Ray auth variables for a driver of a cluster known only by its address: Ray's own
    choice (``RAY_AUTH_MODE``), else token mode when a token is available, as the head of a
    cluster started with one runs (an explicit address never turns it on in Ray itself)."""
    return resolved_ray_auth_env({"token": {"ray_auth": "inherit"}})


def apply_to_cluster(cfg) -> None:
    """Make this process (a Ray driver or Jobs client) use the auth of a config's cluster."""
    apply_env(cluster_auth_env(cfg))


def ensure_local_token(settings: dict) -> str | None:
    """With ``ray_auth: token``: the token (read, or created with mode 0600 when missing)."""
    tok = settings["token"]
    if tok["ray_auth"] != "token":
        return None
    path = os.path.expanduser(tok.get("ray_token_path") or DEFAULT_RAY_TOKEN_PATH)
    if os.path.exists(path):
        with open(path) as f:
            token = f.read().strip()
        if token:
            return token
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    token = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return token


def remote_token_command(settings: dict) -> list:
    """A shell command that stores the token (fed on stdin) at the host's token path."""
    path = settings["token"].get("ray_token_path") or DEFAULT_RAY_TOKEN_PATH
    if settings["token"].get("ray_auth") == "inherit" and os.environ.get("RAY_AUTH_TOKEN_PATH"):
        path = os.environ["RAY_AUTH_TOKEN_PATH"]  # where resolved_ray_auth_env points hosts
    quoted = '"$HOME"/' + _sh_quote(path[2:]) if path.startswith("~/") else _sh_quote(path)
    return ["sh", "-c", f'umask 077 && mkdir -p "$(dirname {quoted})" && cat > {quoted}']


def apply_to_driver(settings: dict) -> None:
    """Make this process (a Ray driver or Jobs client) use the cluster's Ray auth settings."""
    apply_env(ray_auth_env(settings))


def apply_env(env: dict) -> None:
    """Put Ray auth variables into this process's environment, and make Ray see them."""
    if all(os.environ.get(k) == v for k, v in env.items()):
        return
    os.environ.update(env)
    raylet = sys.modules.get("ray._raylet")
    if raylet is not None:
        # Ray caches its config and the token at import: make it read them again
        try:
            raylet.Config.initialize("")
            raylet.AuthenticationTokenLoader.instance().reset_cache()
        except AttributeError:  # a Ray without token authentication
            pass


def job_env(settings: dict) -> dict:
    """Variables every worker of a job gets from the cluster's ember settings."""
    env = {"EMBER_BACKEND": settings["backend"]}
    if settings["token"]["job"] == "env":
        token = os.environ.get("EMBER_TOKEN")
        if not token:
            raise SystemExit(
                "ember: the cluster config says ember.token.job: env, but "
                "EMBER_TOKEN is not set in this environment"
            )
        env["EMBER_TOKEN"] = token
    return env


def _sh_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)
