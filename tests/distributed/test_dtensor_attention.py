"""Attention over DTensors on 2 real ranks: a GPT block whose q/k/v are ColwiseParallel with
``use_local_output=False`` and whose attention code uses the GLOBAL head count
(``view(b, s, n_heads, head_dim)``, as torch users write it) keeps the heads sharded through
the reshape, transpose, scores, mask, softmax and ``scaled_dot_product_attention``, and gives
the single-process block's output and parameter gradients (float64)."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import tp_models  # noqa: E402

WORLD = 2
VARIANTS = ("sdpa_causal", "sdpa_mask", "matmul_masked_fill")


def _attention_forward(variant: str, seen: dict):
    """The attention module's forward as single-process code writes it (global heads); the
    q/k/v outputs are DTensors, so every op below runs on DTensors."""
    import ember
    from ember.distributed.tensor import DTensor, Replicate, ops

    def forward(self, x):
        b, s, _ = x.shape
        hd = tp_models.D // tp_models.HEADS

        def heads(t):  # [b, s, D] Shard(2) -> [b, H, s, hd] Shard(1): H / tp heads per rank
            return t.view(b, s, tp_models.HEADS, hd).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        mesh = q.device_mesh
        causal = ember.triu(ember.ones(s, s, dtype=ember.bool), diagonal=1)  # True: masked
        if variant == "sdpa_causal":
            y = ops.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif variant == "sdpa_mask":  # a bool mask (True may attend), replicated
            allowed = DTensor.from_local(causal.logical_not(), mesh, [Replicate()])
            y = ops.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        else:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
            mask = DTensor.from_local(causal, mesh, [Replicate()])
            att = att.masked_fill(mask, float("-inf")).softmax(-1)
            y = att @ v
        seen["q"], seen["y"] = str(q.placements), str(y.placements)
        seen["q_local"] = tuple(q.to_local().shape)
        y = y.transpose(1, 2).contiguous().view(b, s, tp_models.D)  # Shard(2) again
        seen["o_in"] = str(y.placements)
        return self.o(y)

    return forward


def case_block(variant: str):
    import types

    from test_tensor_parallel import _counting

    import ember
    from ember.distributed.tensor import init_device_mesh
    from ember.distributed.tensor.parallel import (
        ColwiseParallel,
        DTensorParameter,
        RowwiseParallel,
        parallelize_module,
    )

    mesh = init_device_mesh("cpu", (WORLD,), mesh_dim_names=("tp",))
    x = ember.tensor(tp_models.inputs())
    w_out = ember.tensor(np.random.RandomState(2).standard_normal(tuple(x.shape)))
    ref = tp_models.ember_block()  # one process, all heads
    ref_out = ref(x)
    (ref_out * w_out).sum().backward()

    plan = {
        "attn.q": ColwiseParallel(use_local_output=False),
        "attn.k": ColwiseParallel(use_local_output=False),
        "attn.v": ColwiseParallel(use_local_output=False),
        "attn.o": RowwiseParallel(),
        "mlp.fc1": ColwiseParallel(),
        "mlp.fc2": RowwiseParallel(),
    }
    block = parallelize_module(tp_models.ember_block(), mesh, plan)
    seen, calls = {}, {}
    block.attn.forward = types.MethodType(_attention_forward(variant, seen), block.attn)
    with _counting(calls, "forward"):
        out = block(x)
    (out * w_out).sum().backward()
    grads = {}
    for name, p in block.named_parameters():
        g = p.grad_dtensor().full_tensor() if isinstance(p, DTensorParameter) else p.grad
        grads[name] = g.numpy()
    ref_grads = dict(ref.named_parameters())
    return {
        "out_err": float(np.abs(out.detach().numpy() - ref_out.detach().numpy()).max()),
        "grad_err": {
            n: float(np.abs(g - ref_grads[n].grad.numpy()).max()) for n, g in grads.items()
        },
        "seen": seen,
        "calls": calls,
    }


@pytest.mark.parametrize("variant", VARIANTS)
def test_global_head_attention_matches_single_process(pools, variant):
    results = pools(WORLD, "shm").run(case_block, variant, timeout=120)
    for rank, r in enumerate(results):
        assert r["out_err"] < 1e-12, (rank, r["out_err"])
        assert len(r["grad_err"]) == 16
        bad = {n: e for n, e in r["grad_err"].items() if e > 1e-12}
        assert not bad, (rank, bad)
        # the heads stay sharded from q/k/v to the output projection
        hd = tp_models.D // tp_models.HEADS
        want_local = (tp_models.BATCH, tp_models.HEADS // WORLD, tp_models.SEQ, hd)
        assert r["seen"] == {
            "q": "(Shard(dim=1),)",
            "y": "(Shard(dim=1),)",
            "q_local": want_local,
            "o_in": "(Shard(dim=2),)",
        }
        # no gathers: the one forward all-reduce each of the two rowwise layers needs
        assert r["calls"] == {("forward", "all_reduce"): 2}, r["calls"]


def case_sdpa_layouts():
    """Operands that do not already agree: a replicated key/value beside head-sharded
    queries, a batch shard, a gathered sequence shard; values and gradients vs one process."""
    import ember
    import ember.nn.functional as F
    from ember.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor, ops

    mesh = ember.distributed.device_mesh.init_device_mesh("cpu", (WORLD,))
    rng = np.random.RandomState(5)
    q0, k0, v0 = (rng.standard_normal((2, 4, 4, 5)) for _ in range(3))
    out = {}
    cases = {
        "heads_q_only": (Shard(1), Replicate(), Replicate()),
        "batch": (Shard(0), Shard(0), Replicate()),
        "sequence": (Shard(2), Replicate(), Shard(2)),
        "gqa": (Shard(1), Shard(1), Shard(1)),  # 4 query heads share 2 key/value heads
    }
    for name, (pq, pk, pv) in cases.items():
        gqa = name == "gqa"
        k0, v0 = (a[:, :2] if gqa else a for a in (k0, v0))
        ts = [ember.tensor(a, requires_grad=True) for a in (q0, k0, v0)]
        want = F.scaled_dot_product_attention(*ts, is_causal=True, enable_gqa=gqa)
        (want * want).sum().backward()
        places = (pq, pk, pv)
        # each rank's piece as a leaf of its own
        leaves = [
            distribute_tensor(ember.tensor(a), mesh, [p]).to_local().requires_grad_()
            for a, p in zip((q0, k0, v0), places)
        ]
        dts = [DTensor.from_local(t, mesh, [p]) for t, p in zip(leaves, places)]
        got = ops.scaled_dot_product_attention(*dts, is_causal=True, enable_gqa=gqa)
        assert isinstance(got, DTensor)
        (got * got).sum().full_tensor().backward()
        full_grads = [
            DTensor.from_local(t.grad, mesh, [p]).full_tensor() for t, p in zip(leaves, places)
        ]
        out[name] = (
            str(got.placements),
            float(np.abs(got.full_tensor().detach().numpy() - want.detach().numpy()).max()),
            max(float(np.abs((g - t.grad).numpy()).max()) for g, t in zip(full_grads, ts)),
        )
    errors = []
    plain = ember.randn(2, 4, 4, 5)
    try:
        ops.scaled_dot_product_attention(dts[0], plain, dts[2])
    except RuntimeError as e:
        errors.append(str(e))
    try:
        dts[0].masked_fill(distribute_tensor(ember.ones(3, 4, dtype=ember.bool), mesh), 0.0)
    except RuntimeError as e:
        errors.append(str(e))
    return out, errors


def test_sdpa_layouts_and_errors(pools):
    out, errors = pools(WORLD, "shm").run(case_sdpa_layouts, timeout=120)[0]
    assert {k: v[0] for k, v in out.items()} == {
        "heads_q_only": "(Shard(dim=1),)",  # key/value sliced to the query's heads
        "batch": "(Shard(dim=0),)",
        "sequence": "(Replicate(),)",  # the sequence is gathered
        "gqa": "(Shard(dim=1),)",  # each rank's query heads use its own key/value heads
    }
    for name, (_, err, gerr) in out.items():
        assert err < 1e-12 and gerr < 1e-12, (name, err, gerr)
    assert "mixed ember.Tensor and DTensor" in errors[0]
    assert "mask of shape (3, 4) does not broadcast to the tensor's shape (2, 4, 4, 5)" in errors[1]
