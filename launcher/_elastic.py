"""``ember launch --nnodes MIN:MAX``: the elastic worker group of one attempt.

Each attempt starts on as many nodes (of MIN..MAX) as have room for ``--nproc-per-node``
workers each, and gives ``launch._pump`` a check that counts the nodes outside the group that
have room now: when one joins, the workers stop and the job restarts on more nodes (torchrun's
membership change, not counted against ``--max-restarts``). The counting and forming are the
Trainer's (``ember.distributed.train._internal.elastic``).
"""

from __future__ import annotations

import os
import sys


def elastic_group(worker_group_cls, scaling, token, lo: int, hi: int, per_node: int):
    """The workers on as many nodes in ``lo..hi`` as have room for ``per_node`` each, and a
    check that says how many more nodes would fit now (0 once at ``hi``)."""
    from ember.distributed.train._internal.elastic import form_group, free_slots, place_or_raise

    bundle, strategy = scaling.bundle(), scaling.placement_strategy

    def make(nodes: int, timeout: float):
        return place_or_raise(
            worker_group_cls, nodes * per_node, bundle, strategy, env=token, place_timeout=timeout
        )

    group = form_group(
        make,
        bundle,
        strategy,
        lo,
        hi,
        per_node=per_node,
        wait_s=float(os.environ.get("EMBER_ELASTIC_WAIT_S", "60")),
        log=lambda msg: print(f"(ember launch) {msg}", file=sys.stderr, flush=True),
    )
    nodes = group.num_workers // per_node
    print(
        f"(ember launch) elastic job on {nodes} node(s) of {lo}..{hi}: WORLD_SIZE="
        f"{group.num_workers}",
        file=sys.stderr,
        flush=True,
    )
    mine = {info.node_id for info in group.infos}

    def room() -> int:  # nodes outside the group with room for per_node workers each
        if nodes >= hi:
            return 0
        n = free_slots(bundle, "STRICT_SPREAD", exclude_nodes=mine, per_node=per_node)
        return min(n, hi - nodes)

    return group, room
