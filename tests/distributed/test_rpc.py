"""``ember.distributed.rpc`` and ``ember.distributed.autograd`` between real processes.

Each scenario starts fresh processes (``run_ranks``) that join RPC themselves; the functions
they call on each other live at module level here (pickled by reference, as in PyTorch).
"""

from __future__ import annotations

import gc
import os
import pathlib
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from dist_harness import free_port, run_ranks

import ember
import ember.distributed.autograd as dist_autograd
import ember.distributed.rpc as rpc
from ember.distributed.optim import DistributedOptimizer
from ember.futures import Future


def _init(rank, world_size=2, **opts):
    rpc.init_rpc(
        f"worker{rank}",
        rank=rank,
        world_size=world_size,
        rpc_backend_options=rpc.TensorPipeRpcBackendOptions(**opts),
    )


def _outcomes(res, n):
    assert len(res) == n and all(o is not None for o in res.values()), res
    for r, o in res.items():
        assert o.ok, f"rank {r}: {o.traceback}"
    return [res[r].value for r in range(n)]


# ---- functions the workers call on each other ---------------------------------------------------
def add(a, b):
    return a + b


def fail(msg):
    raise ValueError(msg)


def nap(secs):
    time.sleep(secs)
    return secs


def whoami():
    return rpc.get_worker_info().name


def fetch_twice(rref):
    """On a third worker: a forked RRef still reads its value."""
    return rref.to_here() * 2


@rpc.functions.async_execution
def add_later(to, a, b):
    # chains the answer on another call's future: no RPC thread waits meanwhile
    return rpc.rpc_async(to, add, args=(a, b)).then(lambda f: f.wait() * 10)


class Counter:
    def __init__(self, start):
        self.n = start

    def bump(self, k):
        self.n += k
        return self.n

    @rpc.functions.async_execution
    def bump_async(self, k):
        f = Future()
        f.set_result(self.bump(k))
        return f


def owned():
    gc.collect()
    return rpc.rref.owned_count()


# ---- scenarios ---------------------------------------------------------------------------
def scenario_calls(rank, port):
    _init(rank, 3, rpc_timeout=20)
    out = {}
    if rank == 0:
        t = rpc.rpc_sync("worker1", add, args=(ember.ones(2, 3), 2))
        out["sync"] = t.numpy().tolist()
        out["builtin"] = rpc.rpc_sync(1, ember.add, args=(ember.ones(2), ember.ones(2))).tolist()
        futs = [rpc.rpc_async(f"worker{i}", add, args=(i, 1)) for i in range(3)]
        out["wait_all"] = ember.futures.wait_all(futs)
        out["who"] = rpc.rpc_sync(rpc.get_worker_info("worker2"), whoami)
        out["self"] = rpc.rpc_sync("worker0", add, args=(1, 1))
        out["async_exec"] = rpc.rpc_sync("worker1", add_later, args=("worker2", 1, 2))
        # errors: the remote type, the worker's name and its traceback text
        try:
            rpc.rpc_sync("worker1", fail, args=("bad input",))
        except ValueError as e:
            out["error"] = str(e)
        try:
            rpc.rpc_sync("worker1", nap, args=(0.6,), timeout=0.2)
        except RuntimeError as e:
            out["timeout"] = str(e)
        # RRefs: remote, proxies, forking to a third worker, to_here
        c = rpc.remote("worker1", Counter, args=(5,))
        out["owner"] = (c.owner_name(), c.is_owner())
        out["proxy_sync"] = c.rpc_sync().bump(1)
        out["proxy_async"] = c.rpc_async().bump_async(2).wait()
        out["proxy_remote"] = c.remote().bump(3).to_here()
        r = rpc.remote("worker1", add, args=(ember.ones(2), 1))
        out["forked"] = rpc.rpc_sync("worker2", fetch_twice, args=(r,)).tolist()
        bad = rpc.remote("worker1", fail, args=("in remote",))
        try:
            bad.to_here()
        except ValueError as e:
            out["remote_error"] = str(e)
        try:
            c.local_value()
        except RuntimeError as e:
            out["local_value"] = str(e)
        # distributed autograd through remote() on worker1 and to_here() on worker2
        x = ember.tensor([1.0, 2.0], requires_grad=True)
        with dist_autograd.context() as cid:
            doubled = rpc.remote("worker1", ember.mul, args=(x, 3.0))
            z = rpc.rpc_async("worker2", fetch_twice, args=(doubled,)).wait()
            dist_autograd.backward(cid, [(z * z).sum()])
            out["grad_through_rrefs"] = dist_autograd.get_gradients(cid)[x].tolist()
        try:
            dist_autograd.get_gradients(cid)
        except RuntimeError as e:
            out["ctx_gone"] = str(e)
        mine = rpc.RRef(ember.zeros(1))
        out["own"] = (mine.is_owner(), mine.local_value().tolist())
        out["owned_while_held"] = rpc.rpc_sync("worker1", owned)
        del c, r, bad, mine, futs, doubled
        gc.collect()
        deadline = time.monotonic() + 10
        while rpc.rpc_sync("worker1", owned) and time.monotonic() < deadline:
            time.sleep(0.05)
        out["owned_after_del"] = rpc.rpc_sync("worker1", owned)
    rpc.shutdown()
    try:
        rpc.rpc_sync("worker1", add, args=(1, 1))
    except RuntimeError as e:
        out["after_shutdown"] = str(e)
    # and once more in the same process, through init_method
    opts = rpc.TensorPipeRpcBackendOptions(init_method=f"tcp://127.0.0.1:{port}")
    rpc.init_rpc(f"again{rank}", rank=rank, world_size=3, rpc_backend_options=opts)
    out["again"] = rpc.rpc_sync(f"again{(rank + 1) % 3}", whoami)
    rpc.shutdown()
    return out


def test_rpc_calls_rrefs_errors_shutdown_and_reinit():
    res = _outcomes(run_ranks(scenario_calls, 3, free_port(), timeout=90), 3)
    out = res[0]
    assert out["sync"] == [[3.0] * 3] * 2
    assert out["builtin"] == [2.0, 2.0]
    assert out["wait_all"] == [1, 2, 3]
    assert out["who"] == "worker2" and out["self"] == 2
    assert out["async_exec"] == 30
    assert "On WorkerInfo(id=1, name=worker1)" in out["error"]
    assert "bad input" in out["error"] and "Traceback" in out["error"]
    assert "in fail" in out["error"]  # the remote frame
    assert "timeout" in out["timeout"] and "worker1" in out["timeout"]
    assert out["owner"] == ("worker1", False)
    assert (out["proxy_sync"], out["proxy_async"], out["proxy_remote"]) == (6, 8, 11)
    assert out["forked"] == [4.0, 4.0]
    assert "in remote" in out["remote_error"] and "worker1" in out["remote_error"]
    assert "owned by 'worker1'" in out["local_value"]
    assert out["own"] == (True, [0.0])
    # z = 6x, d/dx sum(z^2) = 72x
    assert out["grad_through_rrefs"] == [72.0, 144.0]
    assert "Could not find autograd context" in out["ctx_gone"]
    assert out["owned_while_held"] >= 3
    assert out["owned_after_del"] == 0
    assert all("RPC has not been initialized" in o["after_shutdown"] for o in res)
    assert [o["again"] for o in res] == ["again1", "again2", "again0"]


# ---- a parameter server trained with distributed autograd ---------------------------------
class Server:
    """Holds the second layer; the trainer holds the first (gradients cross both ways)."""

    def __init__(self):
        ember.manual_seed(1)
        self.head = ember.nn.Linear(4, 3)

    def forward(self, h):
        return self.head(h)

    def param_rrefs(self):
        return [rpc.RRef(p) for p in self.head.parameters()]


def _data():
    g = np.random.default_rng(0)
    x = ember.tensor(g.standard_normal((8, 5)).astype(np.float32))
    y = ember.tensor(g.integers(0, 3, 8))
    return x, y


def scenario_param_server(rank, steps):
    _init(rank, 2, rpc_timeout=30)
    result = None
    if rank == 0:
        ember.manual_seed(0)
        body = ember.nn.Linear(5, 4)
        server = rpc.remote("worker1", Server)
        params = [rpc.RRef(p) for p in body.parameters()]
        params += server.rpc_sync().param_rrefs()
        opt = DistributedOptimizer(ember.optim.SGD, params, lr=0.1, momentum=0.9)
        x, y = _data()
        losses, grads_here = [], None
        for i in range(steps):
            with dist_autograd.context() as cid:
                h = ember.tanh(body(x))
                out = server.rpc_sync().forward(h)
                loss = ember.nn.functional.cross_entropy(out, y)
                dist_autograd.backward(cid, [loss])
                if i == 0:
                    assert body.weight.grad is None  # gradients live in the context
                grads_here = dist_autograd.get_gradients(cid)
                opt.step(cid)
                losses.append(loss.item())
        head = server.rpc_sync().forward(ember.eye(4)).detach().numpy()
        result = {
            "losses": losses,
            "body": [p.detach().numpy() for p in body.parameters()],
            "head_out": head,
            "n_grads_here": len(grads_here),
        }
    rpc.shutdown()
    return result


def test_parameter_server_matches_local_training():
    steps = 3
    out = _outcomes(run_ranks(scenario_param_server, 2, steps, timeout=90), 2)[0]
    ember.manual_seed(0)
    body = ember.nn.Linear(5, 4)
    server = Server()
    params = list(body.parameters()) + list(server.head.parameters())
    opt = ember.optim.SGD(params, lr=0.1, momentum=0.9)
    x, y = _data()
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ember.nn.functional.cross_entropy(server.forward(ember.tanh(body(x))), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    np.testing.assert_allclose(out["losses"], losses, rtol=1e-6)
    for got, want in zip(out["body"], body.parameters()):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-6, atol=1e-7)
    want_head = server.forward(ember.eye(4)).detach().numpy()
    np.testing.assert_allclose(out["head_out"], want_head, rtol=1e-6, atol=1e-7)
    assert out["n_grads_here"] == 2  # the trainer's own two leaves


@pytest.mark.parametrize("bad", ["", 3])
def test_init_rpc_rejects_bad_names(bad):
    with pytest.raises(ValueError, match="worker name"):
        rpc.init_rpc(bad, rank=0, world_size=1)


def test_docs_rpc_example_runs(tmp_path):
    """The RPC snippet of docs/distributed.md runs as written (on a free port)."""
    doc = pathlib.Path(__file__).resolve().parents[2] / "docs" / "distributed.md"
    text = doc.read_text().split("## RPC", 1)[1]
    block = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    script = tmp_path / "rpc_example.py"
    script.write_text(block.replace('"29517"', f'"{free_port()}"'))
    env = {**os.environ, "EMBER_TOKEN": "docs-test"}
    r = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env
    )
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
    assert "tensor([2., 2.])" in r.stdout


def identity(x):
    return x


@rpc.functions.async_execution
def not_a_future():
    return 3


def test_rpc_in_one_process_edge_cases(rpc_solo):
    assert rpc.get_worker_info() == rpc.WorkerInfo("solo", 0)
    with pytest.raises(ValueError, match="unknown RPC worker name 'nobody'"):
        rpc.rpc_sync("nobody", identity, args=(1,))
    with pytest.raises(TypeError, match="args must be a tuple"):
        rpc.rpc_sync("solo", identity, args=1)
    with pytest.raises(TypeError, match="must return an ember.futures.Future"):
        rpc.rpc_sync("solo", not_a_future)
    with pytest.raises(RuntimeError, match="already initialized"):
        rpc.init_rpc("again", rank=0, world_size=1)
    # an RRef forked many more times than its weight splits keeps its value, then frees it
    r = rpc.remote("solo", ember.ones, args=(2,))
    for _ in range(45):
        r = rpc.rpc_sync("solo", identity, args=(r,))
    assert r.to_here().tolist() == [1.0, 1.0] and rpc.rref.owned_count() == 1
    del r
    deadline = time.monotonic() + 5
    while owned() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert owned() == 0
    # RRef.backward: distributed backward from the owner's scalar
    w = ember.tensor([2.0, 3.0], requires_grad=True)
    with dist_autograd.context() as cid:
        loss = rpc.remote("solo", ember.dot, args=(w, w))
        loss.backward(cid)
        assert dist_autograd.get_gradients(cid)[w].tolist() == [4.0, 6.0]
    assert w.grad is None


def test_an_rref_outliving_its_session_leaves_the_next_alone(monkeypatch):
    # an RRef kept by a reference cycle is collected after shutdown and a new init_rpc: its
    # decref must not reach the new session (it made the owner count go negative there)
    monkeypatch.setenv("EMBER_TOKEN", "solo-test")

    def init():
        opts = rpc.TensorPipeRpcBackendOptions(init_method=f"tcp://127.0.0.1:{free_port()}")
        rpc.init_rpc("solo", rank=0, world_size=1, rpc_backend_options=opts)

    gc.disable()
    try:
        init()
        cycle = [rpc.remote("solo", ember.ones, args=(2,))]
        cycle.append(cycle)
        cycle[0].to_here()
        del cycle
        rpc.shutdown()
        init()
    finally:
        gc.enable()
    try:
        gc.collect()
        time.sleep(0.5)  # a stray decref is a one-way message: give it time to land
        assert owned() == 0
    finally:
        rpc.shutdown()


def die():
    os._exit(3)


def scenario_worker_dies(rank):
    _init(rank, 2, rpc_timeout=20)
    if rank == 1:
        time.sleep(30)  # worker0's call ends this process first
        return None
    try:
        rpc.rpc_sync("worker1", die)
    except RuntimeError as e:
        msg = str(e)
    rpc.shutdown(graceful=False)
    return msg


def test_a_dying_worker_fails_its_pending_calls_naming_it():
    res = run_ranks(scenario_worker_dies, 2, timeout=60)
    assert res[0] is not None and res[0].ok, res
    assert "worker1" in res[0].value and "closed the connection" in res[0].value
    assert res[1] is None  # it exited inside the call
