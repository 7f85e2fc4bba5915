"""``ember.nn.functional`` called with DTensors on 2 real ranks (the broad
``__torch_function__`` set): ``layer_norm``, ``embedding`` with a vocabulary-sharded weight,
``linear``, ``relu``, against the single-process results; a function DTensor has no rule for
(``cross_entropy``) names itself in ``NotImplementedError``."""

from __future__ import annotations

import numpy as np

import ember
import ember.nn.functional as F

WORLD = 2


def case_functional():
    from ember.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor

    mesh = ember.distributed.device_mesh.init_device_mesh("cpu", (WORLD,))
    rng = np.random.RandomState(5)
    res = {}
    x0 = ember.tensor(rng.standard_normal((4, 6, 8)))
    w0, b0 = ember.tensor(rng.standard_normal(8)), ember.tensor(rng.standard_normal(8))
    xs = distribute_tensor(x0, mesh, [Shard(0)])
    y = F.layer_norm(xs, (8,), w0, b0)
    want = F.layer_norm(x0, (8,), w0, b0)
    res["layer_norm"] = (
        type(y).__name__,
        str(y.placements),
        float(np.abs(y.full_tensor().numpy() - want.numpy()).max()),
    )
    table = ember.tensor(rng.standard_normal((10, 4)))
    idx = ember.tensor([[1, 7, 9], [0, 4, 5]])
    e = F.embedding(idx, distribute_tensor(table, mesh, [Shard(0)]))
    res["embedding"] = (
        type(e).__name__,
        float(np.abs(e.full_tensor().numpy() - F.embedding(idx, table).numpy()).max()),
    )
    lw = ember.tensor(rng.standard_normal((6, 8)))
    lin = F.linear(
        distribute_tensor(x0, mesh, [Replicate()]), distribute_tensor(lw, mesh, [Shard(0)])
    )
    res["linear"] = (
        str(lin.placements),
        float(np.abs(lin.full_tensor().numpy() - F.linear(x0, lw).numpy()).max()),
    )
    r = F.relu(xs)
    res["relu"] = (
        str(r.placements),
        float(np.abs(r.full_tensor().numpy() - F.relu(x0).numpy()).max()),
    )
    try:
        # no DTensor rule (loss parallelism): the function as written cannot run on one
        logits = distribute_tensor(ember.tensor(rng.standard_normal((4, 5))), mesh, [Shard(0)])
        F.cross_entropy(logits, ember.tensor([0, 1, 2, 3]))
    except NotImplementedError as err:
        res["error"] = str(err)
    assert isinstance(xs, DTensor)
    return res


def test_functional_on_dtensors(pools):
    for r in pools(WORLD, "shm").run(case_functional, timeout=120):
        name, placements, err = r["layer_norm"]
        assert (name, placements) == ("DTensor", "(Shard(dim=0),)") and err < 1e-12, r
        assert r["embedding"][0] == "DTensor" and r["embedding"][1] < 1e-12, r
        assert r["linear"][0] == "(Shard(dim=2),)" and r["linear"][1] < 1e-12, r
        assert r["relu"] == ("(Shard(dim=0),)", 0.0), r
        assert "cross_entropy is not implemented for DTensor" in r["error"]
