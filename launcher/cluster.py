"""Cluster configs (Ray cluster-launcher YAML): reading one, and its head's address."""

from __future__ import annotations

import os
import subprocess
import tempfile

from .config import ClusterConfig, ConfigError, load


def load_config(path: str) -> dict:
    """The validated config as a dict; exits with the file, key and reason when it is bad."""
    try:
        return load(path).raw
    except ConfigError as e:
        raise SystemExit(f"ember: {e}") from None


def head_address(path_or_cfg: str | ClusterConfig) -> str:
    """``HOST:PORT`` of the cluster's Ray head (GCS port 6379 unless ``ember.ray_port`` says
    else): the head's address for the local provider, the head service for a KubeRay
    manifest, and Ray's ``ray get-head-ip`` for cloud providers."""
    cfg = path_or_cfg if isinstance(path_or_cfg, ClusterConfig) else load(path_or_cfg)
    port = cfg.ember["ray_port"]
    if cfg.kind == "kuberay":
        ns = cfg.raw["metadata"].get("namespace", "default")
        return f"{cfg.name}-head-svc.{ns}.svc.cluster.local:{port}"
    if cfg.provider == "local":
        return f"{cfg.raw['provider']['head_ip']}:{port}"
    import yaml

    # Ray's own tools reject the `ember:` section: hand them the config without it
    fd, tmp = tempfile.mkstemp(prefix=f"ember-{cfg.name}-", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(cfg.ray_config(), f, sort_keys=False)
    try:
        out = subprocess.run(
            ["ray", "get-head-ip", tmp], capture_output=True, text=True, check=True, timeout=120
        )
    except (subprocess.CalledProcessError, FileNotFoundError, subprocess.TimeoutExpired) as e:
        detail = getattr(e, "stderr", "") or str(e)
        raise SystemExit(
            f"ember: could not get the head address of {cfg.path}: {detail.strip()[-500:]}"
        ) from None
    finally:
        os.remove(tmp)
    return f"{out.stdout.strip().splitlines()[-1]}:{port}"
