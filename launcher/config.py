"""Cluster configs: Ray cluster-launcher YAML plus an ``ember:`` section, checked before use.

A config is rejected before anything starts when it has an unknown key, a value of the wrong
type, or asks for resources no node can offer. Every problem is reported with the file, the
key (dotted path) and the reason; all problems of a file are reported at once.

Checks run in three layers: ember's own (top-level keys with a "did you mean", the ``ember:``
section, resources), Ray's JSON schema (``ray/autoscaler/ray-schema.json``, nested keys), and,
when those pass, Ray's own offline preparation of the config (``prepare_config`` fills in the
provider's defaults and re-validates; for a KubeRay manifest, the conversion the autoscaler
does in the cluster) — the closest thing to a dry run that needs no cloud.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from dataclasses import dataclass, field

from . import _checks as ck
from ._checks import ConfigError
from ._resources import check_resources
from .kuberay import check_manifest, manifest_settings

__all__ = ["ClusterConfig", "ConfigError", "load", "validate"]

# The Ray cluster-launcher keys (ray-schema.json) and the kind of value each takes.
RAY_KEYS = {
    "cluster_name": "str",
    "max_workers": "int",
    "upscaling_speed": "number",
    "idle_timeout_minutes": "number",
    "provider": "map",
    "auth": "map",
    "available_node_types": "map",
    "head_node_type": "str",
    "file_mounts": "map[str]",
    "cluster_synced_files": "list[str]",
    "file_mounts_sync_continuously": "bool",
    "rsync_exclude": "list[str]",
    "rsync_filter": "list[str]",
    "initialization_commands": "list[str]",
    "setup_commands": "list[str]",
    "head_setup_commands": "list[str]",
    "worker_setup_commands": "list[str]",
    "head_start_ray_commands": "list[str]",
    "worker_start_ray_commands": "list[str]",
    "docker": "map",
    "metadata": "map",
    "no_restart": "bool",
}
BACKENDS = ("auto", "grpc", "shm", "nccl", "gloo")

# Ray puts unix sockets under <temp_dir>/session_<timestamp>_<pid>/sockets/plasma_store and the
# kernel limits a socket path to 107 bytes: the session part takes about 62 of them.
_MAX_TEMP_DIR = 107 - len("/session_2026-01-01_00-00-00_000000_1234567/sockets/plasma_store")


@dataclass
class ClusterConfig:
    """A validated cluster config: the YAML as written, and ember's settings with defaults."""

    path: str
    raw: dict
    ember: dict = field(default_factory=dict)
    kind: str = "ray"  # "ray" (cluster-launcher YAML) or "kuberay" (a RayCluster manifest)

    @property
    def name(self) -> str:
        if self.kind == "kuberay":
            return self.raw["metadata"]["name"]
        return self.raw["cluster_name"]

    @property
    def provider(self) -> str:
        return "kuberay" if self.kind == "kuberay" else self.raw["provider"]["type"]

    def ray_config(self) -> dict:
        """The config as Ray's own tools take it (without the ``ember:`` section)."""
        return {k: copy.deepcopy(v) for k, v in self.raw.items() if k != "ember"}

    def max_nodes(self) -> int | None:
        """The most nodes the cluster can have (head included), or None when unbounded."""
        if self.kind == "kuberay":
            groups = self.raw["spec"].get("workerGroupSpecs") or []
            return 1 + sum(
                int(g.get("maxReplicas", 2**31 - 1)) * int(g.get("numOfHosts", 1)) for g in groups
            )
        if self.provider == "local":
            return 1 + len(self.raw["provider"].get("worker_ips") or [])
        if "max_workers" in self.raw:
            return 1 + int(self.raw["max_workers"])
        return None

    def head_ip(self) -> str | None:
        return self.raw["provider"].get("head_ip") if self.kind == "ray" else None


def load(path: str) -> ClusterConfig:
    """Read and validate a cluster config; raise :class:`ConfigError` listing every problem."""
    import yaml

    if not os.path.exists(path):
        raise ConfigError(path, [("", "file not found")])
    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(path, [("", f"not valid YAML: {e}")]) from None
    return validate(raw, path)


def validate(raw, path: str = "<config>", ray_check: bool = True) -> ClusterConfig:
    """Validate a loaded config (a dict); ``ray_check`` adds Ray's own offline preparation."""
    if not isinstance(raw, dict):
        raise ConfigError(
            path, [("", f"expected a YAML mapping at the top level, got {type(raw).__name__}")]
        )
    errors: list[tuple[str, str]] = []
    if raw.get("kind") == "RayCluster" or "apiVersion" in raw:
        check_manifest(raw, errors)
        settings = manifest_settings(raw, errors)
        cfg = ClusterConfig(path, raw, settings, kind="kuberay")
    else:
        _check_ray_keys(raw, errors)
        settings = _check_ember(raw.get("ember", {}), errors)
        cfg = ClusterConfig(path, raw, settings)
        if not errors:
            _check_provider(cfg, errors)
    if not errors:
        check_resources(cfg, errors)
    if not errors and ray_check:
        _ray_prepare(cfg, errors)
    if errors:
        raise ConfigError(path, errors)
    return cfg


# ---------------------------------------------------------------- Ray's keys


def _check_ray_keys(raw: dict, errors: list) -> None:
    allowed = set(RAY_KEYS) | {"ember"}
    for key in raw:
        if key not in allowed:
            errors.append((str(key), "unknown key" + ck.did_you_mean(key, allowed)))
    for key in ("cluster_name", "provider"):
        if key not in raw:
            errors.append((key, "required key is missing"))
    for key, kind in RAY_KEYS.items():
        if key in raw:
            ck.check_type(raw[key], kind, key, errors)
    name = raw.get("cluster_name")
    if isinstance(name, str) and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name):
        errors.append(("cluster_name", f"{name!r} must be 1-63 letters, digits, '-', '_' or '.'"))
    for key in ("max_workers", "upscaling_speed", "idle_timeout_minutes"):
        value = raw.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            errors.append((key, f"must be >= 0, got {value}"))
    if not errors:
        _ray_schema(raw, errors)


def _ray_schema(raw: dict, errors: list) -> None:
    """Nested checks with Ray's own JSON schema, reported as ``key.path: reason``."""
    import jsonschema

    schema = _ray_json_schema()
    body = {k: v for k, v in raw.items() if k != "ember"}
    validator = jsonschema.Draft7Validator(schema)
    for e in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.path))):
        where = ".".join(str(p) for p in e.absolute_path)
        if e.validator == "additionalProperties":
            known = set((e.schema.get("properties") or {}).keys())
            for extra in re.findall(r"'([^']+)' was unexpected|'([^']+)'(?:,| were)", e.message):
                name = next(x for x in extra if x)
                errors.append(
                    (
                        f"{where}.{name}" if where else name,
                        "unknown key" + ck.did_you_mean(name, known),
                    )
                )
        else:
            errors.append((where or "(top level)", e.message))


@functools.lru_cache(maxsize=1)
def _ray_json_schema() -> dict:
    import ray.autoscaler

    with open(os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json")) as f:
        return json.load(f)


# Providers that ship with Ray: their settings are the schema's provider keys. An external
# provider (`type: external`, `module: ...`) may take any keys.
_BUILTIN_PROVIDERS = ("local", "aws", "gcp", "azure", "kuberay", "vsphere", "aliyun")


def _check_provider(cfg: ClusterConfig, errors: list) -> None:
    raw = cfg.raw
    provider = raw["provider"]
    ptype = provider.get("type")
    if not isinstance(ptype, str):
        errors.append(("provider.type", "required: local, aws, gcp, azure, kuberay, ..."))
        return
    if ptype in _BUILTIN_PROVIDERS:
        known = set(_ray_json_schema()["properties"]["provider"]["properties"])
        for key in provider:
            if key not in known:
                errors.append(
                    (
                        f"provider.{key}",
                        f"unknown key for the {ptype!r} provider" + ck.did_you_mean(key, known),
                    )
                )
    if ptype == "local":
        head = provider.get("head_ip")
        if not isinstance(head, str) or not head:
            errors.append(
                ("provider.head_ip", "required for the local provider (the head node's address)")
            )
        workers = provider.get("worker_ips") or []
        for i, ip in enumerate(workers):
            if not isinstance(ip, str) or not ip:
                errors.append((f"provider.worker_ips[{i}]", f"expected an address, got {ip!r}"))
        everyone = [head] + list(workers)
        dups = sorted({ip for ip in everyone if everyone.count(ip) > 1 and ip})
        if dups:
            errors.append(("provider.worker_ips", f"address listed more than once: {dups}"))
        if "available_node_types" in raw:
            errors.append(
                (
                    "available_node_types",
                    "not supported by the local provider (Ray "
                    "derives one node type from the host list); "
                    "set per-host resources under ember.hosts",
                )
            )
        for ip in cfg.ember["hosts"]:
            if ip not in everyone:
                errors.append(
                    (
                        f"ember.hosts.{ip}",
                        "not one of the cluster's hosts "
                        f"{everyone}" + ck.did_you_mean(ip, everyone),
                    )
                )
        for ip in everyone:
            td = host_temp_dir(cfg, ip) if isinstance(ip, str) else ""
            if len(td) > _MAX_TEMP_DIR:
                explicit = cfg.ember["hosts"].get(ip, {}).get("temp_dir")
                where = f"hosts.{ip}.temp_dir" if explicit else "temp_dir"
                errors.append(
                    (
                        f"ember.{where}",
                        f"the Ray temp dir of host {ip}, {td!r}, is "
                        f"{len(td)} characters; Ray's unix sockets "
                        f"under it need <= {_MAX_TEMP_DIR} (shorten "
                        "ember.temp_dir or cluster_name)",
                    )
                )
        if cfg.ember["launcher"] == "ember":
            for key in ("head_start_ray_commands", "worker_start_ray_commands"):
                if raw.get(key):
                    errors.append(
                        (
                            key,
                            "ember's local launcher starts Ray itself (so that "
                            "`ember down` can stop exactly what it started); put "
                            "`ray start` options in ember.node.ray_start_args, or "
                            "use `ember: {launcher: ray}` to run these commands",
                        )
                    )
            for key in ("file_mounts", "cluster_synced_files"):
                if raw.get(key):
                    errors.append(
                        (
                            key,
                            "not supported by ember's local launcher (hosts share "
                            "files or get them from setup_commands); use "
                            "`ember: {launcher: ray}` to let Ray's launcher sync "
                            "them over ssh",
                        )
                    )
        return
    if cfg.ember["launcher"] != "ray" and "launcher" in raw.get("ember", {}):
        errors.append(
            (
                "ember.launcher",
                f"must be 'ray' for the {ptype!r} provider (only the "
                "local provider can use ember's launcher)",
            )
        )
    cfg.ember["launcher"] = "ray"
    types = raw.get("available_node_types")
    if types is None:
        return  # Ray fills the provider's default node types in
    head_type = raw.get("head_node_type")
    if head_type is None:
        errors.append(("head_node_type", "required when available_node_types is set"))
    elif head_type not in types:
        errors.append(
            (
                "head_node_type",
                f"{head_type!r} is not one of available_node_types "
                f"{sorted(types)}" + ck.did_you_mean(head_type, types),
            )
        )
    total_min = 0
    for name, spec in types.items():
        lo, hi = spec.get("min_workers", 0), spec.get("max_workers")
        total_min += lo if name != head_type else 0
        if hi is not None and lo > hi:
            errors.append(
                (
                    f"available_node_types.{name}.min_workers",
                    f"min_workers={lo} is larger than max_workers={hi}",
                )
            )
    if "max_workers" in raw and total_min > raw["max_workers"]:
        errors.append(
            (
                "max_workers",
                f"max_workers={raw['max_workers']} is smaller than the "
                f"sum of the node types' min_workers ({total_min})",
            )
        )


# ---------------------------------------------------------------- the ember section

_EMBER_KEYS = {
    "backend": ("choice", BACKENDS, "auto"),
    "workers_per_node": ("int>=1", None, 1),
    "cpus_per_worker": ("number>=0", None, 1),
    "gpus_per_worker": ("number>=0", None, 0),
    "ray_port": ("port", None, 6379),
    "dashboard_port": ("port", None, 8265),
    "embedded": ("bool", None, False),
    "launcher": ("choice", ("ember", "ray"), "ember"),
    "temp_dir": ("abspath", None, "/tmp/ember-ray"),
    "python": ("str", None, "python3"),
    "ray": ("str", None, "ray"),
    "token": ("map", None, None),
    "node": ("map", None, None),
    "hosts": ("map", None, None),
}
_TOKEN_KEYS = {
    # Ray's own cluster authentication (RAY_AUTH_MODE) for `ray start`, drivers and Ray Jobs
    "ray_auth": ("choice", ("inherit", "token", "disabled"), "inherit"),
    # where the Ray token lives on every host (default: Ray's ~/.ray/auth_token)
    "ray_token_path": ("str", None, None),
    # EMBER_TOKEN guarding ember's gRPC endpoints: a fresh secret per job, or the driver's own
    "job": ("choice", ("per_job", "env"), "per_job"),
}
_HOST_KEYS = {
    "num_cpus": ("int>=0", None, None),
    "num_gpus": ("int>=0", None, None),
    "resources": ("map[number]", None, None),
    "object_store_memory": ("int>=0", None, None),
    "command_prefix": ("argv", None, None),
    "env": ("map[scalar]", None, None),
    "ray_start_args": ("list[str]", None, None),
    "temp_dir": ("abspath", None, None),
}


def _check_ember(section, errors: list) -> dict:
    if not isinstance(section, dict):
        errors.append(("ember", f"expected a mapping, got {type(section).__name__}"))
        section = {}
    out = ck.check_section(section, _EMBER_KEYS, "ember", errors)
    out["token"] = ck.check_section(out["token"] or {}, _TOKEN_KEYS, "ember.token", errors)
    out["node"] = ck.check_section(out["node"] or {}, _HOST_KEYS, "ember.node", errors)
    hosts = {}
    for ip, spec in (out["hosts"] or {}).items():
        hosts[str(ip)] = ck.check_section(spec or {}, _HOST_KEYS, f"ember.hosts.{ip}", errors)
    out["hosts"] = hosts
    return out


def host_temp_dir(cfg: ClusterConfig, ip: str) -> str:
    """Where the Ray node on ``ip`` keeps sockets and logs: ``ember.hosts[ip].temp_dir``, else
    ``<ember.temp_dir>/<cluster_name>-<ip>`` (one per host, so that several nodes of one
    machine, e.g. network namespaces, never share a session directory)."""
    explicit = host_settings(cfg, ip).get("temp_dir")
    return explicit or f"{cfg.ember['temp_dir'].rstrip('/')}/{cfg.name}-{ip}"


def host_settings(cfg: ClusterConfig, ip: str) -> dict:
    """The ``ember.node`` defaults overlaid with ``ember.hosts[ip]`` (None where unset)."""
    merged = dict(cfg.ember["node"])
    merged.update({k: v for k, v in cfg.ember["hosts"].get(ip, {}).items() if v is not None})
    return merged


# ---------------------------------------------------------------- Ray's own preparation


def _ray_prepare(cfg: ClusterConfig, errors: list) -> None:
    """Run Ray's offline config preparation and validation (no cloud is contacted)."""
    import logging

    quiet = logging.getLogger("ray.autoscaler")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # Ray logs the defaults it fills in at INFO
    try:
        from ray.autoscaler._private.util import prepare_config, validate_config

        if cfg.kind == "kuberay":
            from ray.autoscaler._private.kuberay.autoscaling_config import (
                _derive_autoscaling_config_from_ray_cr,
            )

            cr = copy.deepcopy(cfg.raw)
            cr["metadata"].setdefault("namespace", "default")
            _derive_autoscaling_config_from_ray_cr(cr)  # validates its result itself
            return
        prepared = prepare_config(cfg.ray_config())
        validate_config(prepared)
    except SystemExit as e:  # Ray's cli_logger.abort exits
        errors.append(("(ray)", f"Ray's cluster launcher rejected the config: {e}"))
    except Exception as e:  # noqa: BLE001 - any failure of Ray's check is a config problem
        msg = getattr(e, "message", None) or str(e)
        errors.append(
            ("(ray)", f"Ray's cluster launcher rejected the config: {type(e).__name__}: {msg}")
        )
    finally:
        quiet.setLevel(level)
