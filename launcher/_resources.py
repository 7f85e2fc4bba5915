"""Impossible resource requests: what ``ember:`` asks of a node against what nodes offer.

A node that declares its CPUs/GPUs (``ember.hosts``/``ember.node`` for the local provider, a
node type's ``resources`` in the cloud, a KubeRay group's container limits or rayStartParams)
must fit ``workers_per_node`` workers of ``cpus_per_worker``/``gpus_per_worker`` each: every
host of a local cluster, at least one node type elsewhere. Undeclared resources are detected by
Ray when the node starts and are not judged here.
"""

from __future__ import annotations


def check_resources(cfg, errors: list) -> None:
    """Reject requests no node can satisfy: per-worker needs times workers per node."""
    e = cfg.ember
    per_node = {
        "CPU": e["cpus_per_worker"] * e["workers_per_node"],
        "GPU": e["gpus_per_worker"] * e["workers_per_node"],
    }
    gpus = e["gpus_per_worker"]
    if gpus > 1 and gpus != int(gpus):
        errors.append(("ember.gpus_per_worker", f"{gpus} GPUs: Ray gives whole GPUs above 1"))
    nodes = _declared_nodes(cfg)  # {where: {"CPU": n?, "GPU": n?}} for nodes that declare some
    if not nodes:
        return
    fits = []
    for where, offer in nodes.items():
        if offer.get("CPU") == 0 and not offer.get("GPU"):
            continue  # a node kept free of work (the usual head setting)
        short = [
            f"{per_node[r]:g} {r}"
            for r in ("CPU", "GPU")
            if per_node[r] > offer.get(r, float("inf"))
        ]  # undeclared: detected by Ray
        fits.append(not short)
        if short and cfg.provider == "local":  # every listed host is meant to run workers
            errors.append(
                (
                    where,
                    f"offers {_fmt(offer)} but ember.workers_per_node="
                    f"{e['workers_per_node']} workers need {' and '.join(short)} "
                    "per node (cpus_per_worker/gpus_per_worker x workers_per_node)",
                )
            )
    if cfg.provider != "local" and fits and not any(fits):
        errors.append(
            (
                "ember.workers_per_node",
                f"no node type can host {e['workers_per_node']} "
                f"workers needing {_fmt(per_node)} per node; "
                "node types offer: " + "; ".join(f"{w}: {_fmt(o)}" for w, o in nodes.items()),
            )
        )


def _declared_nodes(cfg) -> dict:
    if cfg.kind == "kuberay":
        from .kuberay import group_resources

        return group_resources(cfg.raw)
    if cfg.provider == "local":
        from .config import host_settings

        out = {}
        for ip in [cfg.raw["provider"]["head_ip"]] + list(
            cfg.raw["provider"].get("worker_ips") or []
        ):
            s = host_settings(cfg, ip)
            offer = {}
            if s.get("num_cpus") is not None:
                offer["CPU"] = s["num_cpus"]
            if s.get("num_gpus") is not None:
                offer["GPU"] = s["num_gpus"]
            if offer:
                where = (
                    f"ember.hosts.{ip}" if ip in cfg.ember["hosts"] else f"ember.node (host {ip})"
                )
                out[where] = offer
        return out
    out = {}
    for name, spec in (cfg.raw.get("available_node_types") or {}).items():
        res = spec.get("resources") or {}
        offer = {r: res[r] for r in ("CPU", "GPU") if r in res}
        if offer:
            out[f"available_node_types.{name}.resources"] = offer
    return out


def _fmt(res: dict) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in res.items()) or "nothing"
