"""Idioms of pytorch/tutorials' distributed pages (our own small programs, real processes).

dist_tuto (point-to-point, collectives, a ring all-reduce from ``isend``/``recv``, gradient
averaging by hand), generic_join (``Join`` over DDP and ``ZeroRedundancyOptimizer``, a custom
``Joinable``) and zero_redundancy_optimizer (ZeRO's step equals Adam's). docs/porting_examples.md,
"pytorch/tutorials' distributed pages", lists the runs of the pages themselves.
"""

from __future__ import annotations

import numpy as np

import ember
import ember.nn as nn


# ---- dist_tuto ------------------------------------------------------------------------------
def _point_to_point_and_collectives() -> dict:
    import ember.distributed as dist

    rank, size = dist.get_rank(), dist.get_world_size()
    out = {}
    t = ember.zeros(2)
    if rank == 0:
        t += 3
        dist.send(tensor=t, dst=1)
    elif rank == 1:
        dist.recv(tensor=t, src=0)
    out["send"] = t.tolist()
    t = ember.full((1,), 5.0) if rank == 0 else ember.zeros(1)
    req = dist.isend(tensor=t, dst=1) if rank == 0 else dist.irecv(tensor=t, src=0)
    req.wait()
    out["isend"] = t.tolist()
    group = dist.new_group([0, 1])
    t = ember.ones(1) * (rank + 2)
    dist.all_reduce(t, op=dist.reduce_op.PRODUCT, group=group)  # the tutorial's old alias
    out["product"] = t.item()
    t = ember.zeros(3)
    chunks = [ember.full((3,), float(i)) for i in range(size)] if rank == 0 else None
    dist.scatter(t, src=0, scatter_list=chunks)
    out["scatter"] = t.tolist()
    gathered = [ember.zeros(1) for _ in range(size)] if rank == 0 else None
    dist.gather(ember.tensor([10.0 * rank]), dst=0, gather_list=gathered)
    out["gather"] = None if gathered is None else [g.item() for g in gathered]
    dist.barrier()
    return out


def test_point_to_point_and_collectives(pools):
    got = pools(2, "gloo").run(_point_to_point_and_collectives)
    for rank, r in enumerate(got):
        assert r["send"] == [3.0, 3.0] and r["isend"] == [5.0]
        assert r["product"] == 6.0 and r["scatter"] == [float(rank)] * 3
    assert got[0]["gather"] == [0.0, 10.0] and got[1]["gather"] is None


def _ring_all_reduce(n: int) -> list:
    # the tutorial's ring: alternate buffers, isend right, blocking recv from the left
    import ember.distributed as dist

    rank, size = dist.get_rank(), dist.get_world_size()
    send = ember.arange(float(n)) * (rank + 1)
    send_buff, recv_buff, accum = send.clone(), send.clone(), send.clone()
    left, right = (rank - 1 + size) % size, (rank + 1) % size
    for i in range(size - 1):
        src, dst = (send_buff, recv_buff) if i % 2 == 0 else (recv_buff, send_buff)
        req = dist.isend(src, right)
        dist.recv(dst, left)
        accum[:] += dst[:]
        req.wait()
    recv = ember.zeros(n)
    recv[:] = accum[:]
    return recv.tolist()


def test_ring_all_reduce_from_point_to_point(pools):
    for got in pools(3, "gloo").run(_ring_all_reduce, 5):
        assert got == (np.arange(5.0) * 6).tolist()


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((16, 6)).astype("f4"), rng.standard_normal((16, 2)).astype("f4")


def _sgd_averaging_by_hand(world: int) -> list:
    import ember.distributed as dist
    import ember.nn.functional as F

    ember.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    x, y = _data()
    rank = dist.get_rank() if world > 1 else 0
    part = slice(rank * 16 // world, (rank + 1) * 16 // world)
    for _ in range(3):
        opt.zero_grad()
        F.mse_loss(model(ember.tensor(x[part])), ember.tensor(y[part])).backward()
        if world > 1:  # the tutorial's average_gradients
            for p in model.parameters():
                dist.all_reduce(p.grad.data, op=dist.reduce_op.SUM)
                p.grad.data /= float(world)
        opt.step()
    return [p.detach().numpy().copy() for p in model.parameters()]


def test_averaging_gradients_by_hand_equals_one_process(pools):
    want = _sgd_averaging_by_hand(1)
    for got in pools(2, "gloo").run(_sgd_averaging_by_hand, 2):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


# ---- generic_join and zero_redundancy_optimizer ---------------------------------------------
def _join_ddp_zero(use_zero: bool, divide_by_initial: bool) -> list:
    import ember.distributed as dist
    from ember.distributed.algorithms.join import Join
    from ember.distributed.optim import ZeroRedundancyOptimizer
    from ember.nn.parallel import DistributedDataParallel as DDP

    rank = dist.get_rank()
    lin = nn.Linear(2, 1)
    with ember.no_grad():
        lin.weight.copy_(ember.tensor([[0.5, -0.25]]))
        lin.bias.fill_(0.1)
    model = DDP(lin)
    opt = (
        ZeroRedundancyOptimizer(model.parameters(), ember.optim.Adam, lr=0.01)
        if use_zero
        else ember.optim.SGD(model.parameters(), lr=0.01)
    )
    inputs = [ember.tensor([[1.0, float(i + rank)]]) for i in range(3 + 2 * rank)]
    seen = 0
    joinables = [model, opt] if use_zero else [model]
    with Join(joinables, divide_by_initial_world_size=divide_by_initial):
        for x in inputs:
            seen += 1
            opt.zero_grad()
            model(x).sum().backward()
            opt.step()
    return [seen, lin.weight.detach().numpy().ravel().tolist(), lin.bias.item()]


# torch 2.13 (CPU, gloo, 2 processes) on the same program
_TORCH_JOIN = {
    (True, True): ([0.4500000476837158, -0.2975744307041168], 0.05133483558893204),
    (True, False): ([0.4500000476837158, -0.2975744307041168], 0.050000011920928955),
    (False, True): ([0.46000003814697266, -0.3400000035762787], 0.06000000610947609),
    (False, False): ([0.4500000476837158, -0.38499999046325684], 0.050000011920928955),
}


def test_join_with_ddp_and_zero_matches_torch(pools):
    pool = pools(2, "gloo")
    for (use_zero, divide), (w, b) in _TORCH_JOIN.items():
        got = pool.run(_join_ddp_zero, use_zero, divide)
        assert [g[0] for g in got] == [3, 5]
        for g in got:
            np.testing.assert_allclose(g[1], w, rtol=1e-6, err_msg=str((use_zero, divide)))
            np.testing.assert_allclose(g[2], b, rtol=1e-6, err_msg=str((use_zero, divide)))


def _counter() -> list:
    # the tutorial's toy Joinable: count the inputs of all ranks, sync the max after joining
    import ember.distributed as dist
    from ember.distributed.algorithms.join import Join, Joinable, JoinHook

    class CounterHook(JoinHook):
        def __init__(self, counter, sync_max_count):
            self.counter, self.sync_max_count = counter, sync_max_count

        def main_hook(self):
            dist.all_reduce(ember.zeros(1))

        def post_hook(self, is_last_joiner):
            if self.sync_max_count:
                rank = dist.get_rank()
                common = ember.tensor([rank if is_last_joiner else -1])
                dist.all_reduce(common, op=dist.ReduceOp.MAX)
                if rank == common.item():
                    self.counter.max_count = self.counter.count.detach().clone()
                dist.broadcast(self.counter.max_count, src=common.item())

    class Counter(Joinable):
        def __init__(self):
            super().__init__()
            self.count, self.max_count = ember.zeros(1), ember.zeros(1)

        def __call__(self):
            Join.notify_join_context(self)
            t = ember.ones(1)
            dist.all_reduce(t)
            self.count += t

        def join_hook(self, **kwargs):
            return CounterHook(self, kwargs.get("sync_max_count", False))

        @property
        def join_device(self):
            return ember.device("cpu")

        @property
        def join_process_group(self):
            return dist.group.WORLD

    counter = Counter()
    with Join([counter], sync_max_count=True):
        for _ in range(4 + 3 * dist.get_rank()):
            counter()
    return [counter.count.item(), counter.max_count.item()]


def test_custom_joinable_counter(pools):
    assert pools(2, "gloo").run(_counter) == [[8.0, 11.0], [11.0, 11.0]]


def _zero_vs_adam(use_zero: bool) -> list:
    import ember.distributed as dist
    from ember.distributed.optim import ZeroRedundancyOptimizer
    from ember.nn.parallel import DistributedDataParallel as DDP

    ember.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(12, 12) for _ in range(3)])
    ddp = DDP(model)
    if use_zero:
        opt = ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=ember.optim.Adam, lr=0.01)
    else:
        opt = ember.optim.Adam(ddp.parameters(), lr=0.01)
    ember.manual_seed(1 + dist.get_rank())
    for _ in range(2):
        opt.zero_grad()
        nn.MSELoss()(ddp(ember.randn(4, 12)), ember.randn(4, 12)).backward()
        opt.step()
    return [p.detach().numpy().copy() for p in model.parameters()]


def test_zero_redundancy_optimizer_steps_like_adam(pools):
    pool = pools(2, "gloo")
    zero, adam = pool.run(_zero_vs_adam, True), pool.run(_zero_vs_adam, False)
    for rank in range(2):
        for z, a, z0 in zip(zero[rank], adam[rank], zero[0]):
            np.testing.assert_allclose(z, a, rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(z, z0)


# ---- distributed_checkpoint_recipe: an AppState (Stateful) wrapper in dcp.save / dcp.load ----
def _app_state(model, optimizer):
    from ember.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    from ember.distributed.checkpoint.stateful import Stateful

    class AppState(Stateful):
        def __init__(self, model, optimizer):
            self.model, self.optimizer = model, optimizer

        def state_dict(self):
            m, o = get_state_dict(self.model, self.optimizer)
            return {"model": m, "optim": o}

        def load_state_dict(self, state_dict):
            set_state_dict(
                self.model,
                self.optimizer,
                model_state_dict=state_dict["model"],
                optim_state_dict=state_dict["optim"],
            )

    return AppState(model, optimizer)


def _fsdp_checkpoint(path: str, save: bool) -> list:
    import ember.distributed.checkpoint as dcp
    from ember.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from ember.distributed.fsdp import FullyShardedDataParallel as FSDP

    ember.manual_seed(0 if save else 1)  # the loading run starts from other weights
    model = FSDP(nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3)))
    opt = ember.optim.Adam(model.parameters(), lr=0.1)
    if save:
        model(ember.rand(4, 6)).sum().backward()
        opt.step()
        dcp.save({"app": _app_state(model, opt), "epoch": 3}, checkpoint_id=path)
    else:
        app = _app_state(model, opt)
        state = {"app": app, "epoch": 0}
        dcp.load(state, checkpoint_id=path)
        assert state["epoch"] == 3 and state["app"] is app  # (the object loads itself)
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    steps = [float(s["step"]) for s in opt.state_dict()["state"].values()]
    return [{k: v.numpy().copy() for k, v in full.items()}, steps]


def test_stateful_app_state_saves_on_two_ranks_and_loads_on_three(pools, tmp_path):
    path = str(tmp_path / "checkpoint")
    saved = pools(2, "gloo").run(_fsdp_checkpoint, path, True)
    loaded = pools(3, "gloo").run(_fsdp_checkpoint, path, False)
    for got in loaded + saved[1:]:
        assert got[1] == saved[0][1] and all(s == 1.0 for s in got[1])
        for k, v in saved[0][0].items():
            np.testing.assert_array_equal(got[0][k], v)


def test_stateful_checkpoint_loads_into_a_plain_model_without_a_process_group(tmp_path):
    # the recipe's last step: no process group, so DCP reads in this process alone
    import ember.distributed.checkpoint as dcp

    ember.manual_seed(0)
    src = nn.Linear(4, 2)
    opt = ember.optim.SGD(src.parameters(), lr=0.1)
    dcp.save({"app": _app_state(src, opt)}, checkpoint_id=str(tmp_path))
    dst = nn.Linear(4, 2)
    state = {"app": {"model": dst.state_dict()}}
    dcp.load(state_dict=state, checkpoint_id=str(tmp_path))
    dst.load_state_dict(state["app"]["model"])
    np.testing.assert_array_equal(dst.weight.detach().numpy(), src.weight.detach().numpy())
