"""KubeRay ``RayCluster`` manifests: structure checks and ember's settings from annotations.

Kubernetes takes no ``ember:`` section in a custom resource, so ember's defaults for a manifest
live in annotations named ``ember.dev/<setting>`` (``ember.dev/workers-per-node: "1"``); the
values are YAML scalars written as strings, as Kubernetes requires.
"""

from __future__ import annotations

import re

from . import _checks as ck

_SPEC_KEYS = {
    "headGroupSpec",
    "workerGroupSpecs",
    "rayVersion",
    "enableInTreeAutoscaling",
    "autoscalerOptions",
    "headServiceAnnotations",
    "suspend",
    "managedBy",
    "gcsFaultToleranceOptions",
    "upgradeStrategy",
    "authOptions",
}
_HEAD_KEYS = {"serviceType", "headService", "enableIngress", "rayStartParams", "template"}
_WORKER_KEYS = {
    "groupName",
    "replicas",
    "minReplicas",
    "maxReplicas",
    "numOfHosts",
    "rayStartParams",
    "template",
    "scaleStrategy",
    "suspend",
    "idleTimeoutSeconds",
}
_TOP_KEYS = {"apiVersion", "kind", "metadata", "spec", "status"}
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def check_manifest(raw: dict, errors: list) -> None:
    for key in raw:
        if key not in _TOP_KEYS:
            errors.append(
                (str(key), "unknown key in a RayCluster manifest" + ck.did_you_mean(key, _TOP_KEYS))
            )
    if raw.get("apiVersion") != "ray.io/v1":
        errors.append(("apiVersion", f"expected 'ray.io/v1', got {raw.get('apiVersion')!r}"))
    if raw.get("kind") != "RayCluster":
        errors.append(("kind", f"expected 'RayCluster', got {raw.get('kind')!r}"))
    meta = raw.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        errors.append(("metadata.name", "required (the cluster's name)"))
    elif not _DNS_LABEL.fullmatch(meta["name"]) or len(meta["name"]) > 50:
        # KubeRay derives service and pod names from it, which must stay DNS labels.
        errors.append(
            (
                "metadata.name",
                f"{meta['name']!r} must be a DNS label (lowercase "
                "letters, digits, '-') of at most 50 characters",
            )
        )
    spec = raw.get("spec")
    if not isinstance(spec, dict):
        errors.append(("spec", "required (headGroupSpec and workerGroupSpecs)"))
        return
    for key in spec:
        if key not in _SPEC_KEYS:
            errors.append((f"spec.{key}", "unknown key" + ck.did_you_mean(key, _SPEC_KEYS)))
    head = spec.get("headGroupSpec")
    if not isinstance(head, dict):
        errors.append(("spec.headGroupSpec", "required (the head pod's template)"))
    else:
        _check_group(head, "spec.headGroupSpec", _HEAD_KEYS, errors)
    groups = spec.get("workerGroupSpecs", [])
    if not isinstance(groups, list):
        errors.append(("spec.workerGroupSpecs", f"expected a list, got {type(groups).__name__}"))
        return
    names = []
    for i, g in enumerate(groups):
        where = f"spec.workerGroupSpecs[{i}]"
        if not isinstance(g, dict):
            errors.append((where, "expected a mapping"))
            continue
        _check_group(g, where, _WORKER_KEYS, errors)
        name = g.get("groupName")
        if not isinstance(name, str) or not name:
            errors.append((f"{where}.groupName", "required (a name for the group)"))
        elif name in names:
            errors.append((f"{where}.groupName", f"{name!r} is used by two groups"))
        names.append(name)
        counts = {k: g.get(k) for k in ("replicas", "minReplicas", "maxReplicas", "numOfHosts")}
        for k, v in counts.items():
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                errors.append((f"{where}.{k}", f"expected an integer >= 0, got {v!r}"))
        lo, hi, n = counts["minReplicas"], counts["maxReplicas"], counts["replicas"]
        if all(isinstance(v, int) for v in (lo, hi)) and lo > hi:
            errors.append((f"{where}.minReplicas", f"minReplicas={lo} > maxReplicas={hi}"))
        if all(isinstance(v, int) for v in (lo, hi, n)) and not lo <= n <= hi:
            errors.append(
                (
                    f"{where}.replicas",
                    f"replicas={n} is outside [minReplicas={lo}, maxReplicas={hi}]",
                )
            )


def _check_group(group: dict, where: str, allowed: set, errors: list) -> None:
    for key in group:
        if key not in allowed:
            errors.append((f"{where}.{key}", "unknown key" + ck.did_you_mean(key, allowed)))
    params = group.get("rayStartParams", {})
    if not isinstance(params, dict):
        errors.append((f"{where}.rayStartParams", "expected a mapping of strings"))
    else:
        for k, v in params.items():
            if not isinstance(v, str):
                # the CRD types it map[string]string: the API server refuses numbers/booleans
                errors.append(
                    (
                        f"{where}.rayStartParams.{k}",
                        f"must be a string (quote it: '{v}'), got {type(v).__name__}",
                    )
                )
    containers = ((group.get("template") or {}).get("spec") or {}).get("containers")
    if not isinstance(containers, list) or not containers:
        errors.append(
            (f"{where}.template.spec.containers", "required (at least the Ray container)")
        )
        return
    for i, c in enumerate(containers):
        at = f"{where}.template.spec.containers[{i}]"
        if not isinstance(c, dict) or not c.get("image") or not c.get("name"):
            errors.append((at, "each container needs a name and an image"))


def _quantity(q) -> float | None:
    """A Kubernetes quantity as a number (``"500m"`` -> 0.5); None when absent."""
    if q is None:
        return None
    s = str(q).strip()
    m = re.fullmatch(r"([0-9.]+)(m?)", s)
    if not m:
        return None
    return float(m.group(1)) / (1000 if m.group(2) else 1)


def group_resources(raw: dict) -> dict:
    """CPUs and GPUs each group's Ray node offers (rayStartParams first, then limits)."""
    spec = raw["spec"]
    groups = [("spec.headGroupSpec", spec["headGroupSpec"])] + [
        (f"spec.workerGroupSpecs[{i}]", g) for i, g in enumerate(spec.get("workerGroupSpecs") or [])
    ]
    out = {}
    for where, g in groups:
        params = g.get("rayStartParams") or {}
        c = g["template"]["spec"]["containers"][0]
        res = c.get("resources") or {}
        limits = {**(res.get("requests") or {}), **(res.get("limits") or {})}
        cpu = (
            _quantity(params.get("num-cpus"))
            if "num-cpus" in params
            else _quantity(limits.get("cpu"))
        )
        gpu = (
            _quantity(params.get("num-gpus"))
            if "num-gpus" in params
            else _quantity(limits.get("nvidia.com/gpu"))
        )
        offer = {k: v for k, v in (("CPU", cpu), ("GPU", gpu)) if v is not None}
        if offer:
            out[where] = offer
    return out


def manifest_settings(raw: dict, errors: list) -> dict:
    """ember's settings from ``ember.dev/*`` annotations, checked like an ``ember:`` section."""
    import yaml

    from .config import _check_ember

    notes = (raw.get("metadata") or {}).get("annotations") or {}
    section = {}
    for key, value in notes.items():
        if not str(key).startswith("ember.dev/"):
            continue
        name = str(key)[len("ember.dev/") :].replace("-", "_")
        try:
            section[name] = yaml.safe_load(value) if isinstance(value, str) else value
        except yaml.YAMLError:
            section[name] = value
    sub: list = []
    settings = _check_ember(section, sub)
    for key, reason in sub:
        rest = key[len("ember.") :] if key.startswith("ember.") else key
        errors.append((f"metadata.annotations.ember.dev/{rest.replace('_', '-')}", reason))
    settings["launcher"] = "kubectl"
    return settings
