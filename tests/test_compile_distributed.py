"""ember.compile with DDP and FSDP on 2 real ranks: the compiled backward fires the buckets'
gradient hooks, and every wrapping order gives eager DDP's (FSDP's) gradients."""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "distributed"))
from dist_harness import run_ranks  # noqa: E402

WORLD, BATCH, STEPS = 2, 4, 2
DDP_MODES = ("eager", "ddp_of_compiled", "compiled_ddp")
FSDP_MODES = ("eager", "fsdp_of_compiled", "compiled_fsdp")


def _data():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((STEPS, WORLD * BATCH, 1, 8, 8))
    y = rng.integers(0, 3, (STEPS, WORLD * BATCH))
    return x, y


def _model(nn):
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 16),
        nn.Tanh(),
        nn.Linear(16, 3),
    )


def _wrap(ember, mode, model):
    from ember.distributed.fsdp import FullyShardedDataParallel as FSDP
    from ember.nn.parallel import DistributedDataParallel as DDP

    if mode == "eager":
        return None
    if mode == "ddp_of_compiled":
        return DDP(ember.compile(model))
    if mode == "compiled_ddp":
        return ember.compile(DDP(model))
    if mode == "fsdp_of_compiled":
        return FSDP(ember.compile(model))
    return ember.compile(FSDP(model))


def _train(rank, mode, kind):
    import ember
    import ember.nn.functional as F
    from ember.distributed.fsdp import FullyShardedDataParallel as FSDP
    from ember.nn.parallel import DistributedDataParallel as DDP

    ember.manual_seed(0)
    model = _model(ember.nn).double()
    net = _wrap(ember, mode, model) or (DDP(model) if kind == "ddp" else FSDP(model))
    opt = ember.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    fired = []
    if kind == "ddp":  # count the buckets' allreduces launched from the gradient hooks
        ddp = net if isinstance(net, DDP) else net._orig_mod
        launch = ddp._launch
        ddp._launch = lambda b: (fired.append(1), launch(b))[1]
    x, y = _data()
    lo, hi = rank * BATCH, (rank + 1) * BATCH
    out, grads = [], []
    for s in range(STEPS):
        opt.zero_grad()
        loss = F.cross_entropy(net(ember.tensor(x[s, lo:hi])), ember.tensor(y[s, lo:hi]))
        loss.backward()
        out.append(float(loss))
        grads += [p.grad.numpy().copy() for p in net.parameters()]
        opt.step()
    explained = (
        ember._dynamo.explain(net)(ember.tensor(x[0, lo:hi])).graph_count
        if mode.startswith("compiled_")
        else 1
    )  # explain reports the wrapped module's graph
    compiled = [m for m in net.modules() if hasattr(m, "_compiled")]
    graphs = sum(1 for m in compiled for e in m._compiled.entries if e.fn is not None)
    return {
        "loss": out,
        "grads": grads,
        "explained": explained,
        "fired": len(fired),
        "graphs": graphs,
    }


def _rank(rank):
    import ember.distributed as dist

    dist.init_process_group("gloo")
    try:  # one spawn for both: the processes' start and import are most of the time
        return {
            kind: {m: _train(rank, m, kind) for m in modes}
            for kind, modes in (("ddp", DDP_MODES), ("fsdp", FSDP_MODES))
        }
    finally:
        dist.destroy_process_group()


def test_compiled_ddp_and_fsdp_match_eager():
    outcomes = run_ranks(_rank, WORLD, timeout=120)
    for r in range(WORLD):
        o = outcomes[r]
        assert o is not None and o.ok, o and o.traceback
    for r in range(WORLD):
        for kind, res in outcomes[r].value.items():
            eager = res["eager"]
            for mode, got in res.items():
                assert got["graphs"] >= (0 if mode == "eager" else 1), mode  # really compiled
                assert got["explained"] == 1, mode
                np.testing.assert_allclose(got["loss"], eager["loss"], rtol=1e-12, err_msg=mode)
                assert len(got["grads"]) == len(eager["grads"]) > 0
                for a, e in zip(got["grads"], eager["grads"]):
                    np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-14, err_msg=mode)
                if kind == "ddp":  # the buckets fired from the (compiled) backward each step
                    assert got["fired"] >= STEPS, mode


def test_plain_tensor_attributes_are_read_per_call():
    """What FSDP relies on: a tensor attribute that is not a parameter or buffer (FSDP's views
    of its gathered storage, rebound every iteration) is read at each call, as eager reads it,
    never frozen into the compiled graph."""
    import ember

    class Scale(ember.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = ember.nn.Linear(3, 3)
            self.scale = ember.ones(3)  # a plain attribute

        def forward(self, x):
            return self.lin(x) * self.scale

    m = Scale()
    f = ember.compile(m)
    x = ember.randn(2, 3)
    np.testing.assert_array_equal(f(x).detach().numpy(), m(x).detach().numpy())
    m.scale = ember.full((3,), 2.0)
    np.testing.assert_array_equal(f(x).detach().numpy(), m(x).detach().numpy())
    assert len(f._compiled.entries) == 1 and ".scale" in f._compiled.entries[0].source
