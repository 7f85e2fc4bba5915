"""Cluster configs (Ray cluster-launcher YAML): reading the head address."""

from __future__ import annotations

import os
import subprocess


def load_config(path: str) -> dict:
    import yaml

    if not os.path.exists(path):
        raise SystemExit(f"ember: cluster config not found: {path}")
    with open(path) as f:
        cfg = yaml.safe_load(f)
    if not isinstance(cfg, dict):
        raise SystemExit(f"ember: {path}: expected a YAML mapping at the top level")
    return cfg


def head_address(path: str) -> str:
    """``HOST:PORT`` of the cluster's Ray head (GCS port 6379 unless the config says else)."""
    cfg = load_config(path)
    provider = cfg.get("provider") or {}
    port = (cfg.get("ember") or {}).get("ray_port", 6379)
    if provider.get("type") == "local":
        head = provider.get("head_ip")
        if not head:
            raise SystemExit(f"ember: {path}: provider.head_ip is required for the local provider")
        return f"{head}:{port}"
    try:  # cloud providers: ask Ray's own cluster launcher
        out = subprocess.run(["ray", "get-head-ip", path], capture_output=True, text=True,
                             check=True, timeout=120)
    except (subprocess.CalledProcessError, FileNotFoundError, subprocess.TimeoutExpired) as e:
        raise SystemExit(f"ember: could not get the head address of {path}: {e}") from None
    return f"{out.stdout.strip().splitlines()[-1]}:{port}"
