"""Pipeline pieces that need no processes: schedule orders against the bubble formulas,
micro-batching, and splitting a model with ``pipe_split`` / ``SplitPoint``."""

from __future__ import annotations

import numpy as np
import pytest

from ember.distributed.pipelining import _orders as O


@pytest.mark.parametrize("p,m", [(2, 2), (4, 4), (4, 8), (3, 5)])
def test_gpipe_and_1f1b_orders_have_the_formula_bubble(p, m):
    for fn in (O.gpipe_order, O.one_f_one_b_order):
        orders = {r: fn(r, p, m) for r in range(p)}
        bubble = O.theoretical_bubble(orders, p)
        assert bubble == pytest.approx(dict.fromkeys(range(p), (p - 1) / (m + p - 1)))
    # 1F1B keeps at most p - rank micro-batches in flight; GPipe keeps all m
    for r in range(p):
        live = peak = 0
        for a in O.one_f_one_b_order(r, p, m):
            live += 1 if a.kind == "F" else -1
            peak = max(peak, live)
        assert peak == min(p - r, m)


@pytest.mark.parametrize("p,v,m", [(2, 2, 4), (4, 2, 4), (4, 2, 8), (2, 3, 6)])
def test_multi_stage_orders_bubble_is_p_minus_1_over_vm_plus_p_minus_1(p, v, m):
    for fn in (O.interleaved_order, O.looped_bfs_order):
        orders = {r: fn(r, p, v, m) for r in range(p)}
        for r, order in orders.items():  # every local stage runs each micro-batch once each way
            assert sorted(order) == sorted(
                O.Action(s, k, i) for s in range(r, p * v, p) for k in "FB" for i in range(m)
            )
        bubble = O.theoretical_bubble(orders, p * v)
        assert bubble == pytest.approx(dict.fromkeys(range(p), (p - 1) / (v * m + p - 1)))


@pytest.mark.parametrize("p,m", [(2, 4), (4, 8), (4, 16), (3, 6)])
def test_zero_bubble_orders_reach_zb_h1_bubble(p, m):
    # one stage per rank, F = I = W = 1 (t_bwd = 2): ZB-H1's (p-1)/(3m+p-1), vs 1F1B's
    orders = O.zero_bubble_orders({s: s for s in range(p)}, m)
    bubble = max(O.theoretical_bubble(orders, p).values())
    assert bubble == pytest.approx((p - 1) / (3 * m + p - 1))
    assert bubble < (p - 1) / (m + p - 1)
    for r, order in orders.items():
        assert sorted(order) == sorted(O.Action(r, k, i) for k in "FIW" for i in range(m))
        fwd = [a.mb for a in order if a.kind == "F"]
        assert fwd == sorted(fwd)  # a stage's forwards in micro-batch order
        for a in order:  # each W after its own I
            if a.kind == "W":
                assert order.index(O.Action(a.stage, "I", a.mb)) < order.index(a)


@pytest.mark.parametrize("p,m", [(2, 4), (4, 8)])
def test_zbv_orders_beat_interleaved_1f1b(p, m):
    v_shape = {s: s if s < p else 2 * p - 1 - s for s in range(2 * p)}
    zbv = max(O.theoretical_bubble(O.zero_bubble_orders(v_shape, m), 2 * p).values())
    inter = {r: O.interleaved_order(r, p, 2, m) for r in range(p)}
    assert zbv < max(O.theoretical_bubble(inter, 2 * p).values())


def test_split_backward_halves_equal_one_backward():
    import ember
    from ember.autograd._split import backward_input, backward_weight

    ember.manual_seed(0)
    a, b = ember.nn.Linear(4, 5).double(), ember.nn.Linear(5, 3).double()
    params = [*a.parameters(), *b.parameters()]

    def run(x):  # b's weight feeds the output twice: through b and through its sum
        return (b(ember.tanh(a(x))) * b.weight.sum()).sum()

    x = ember.randn(6, 4, dtype=ember.float64, requires_grad=True)
    run(x).backward()
    want = [p.grad.numpy().copy() for p in (x, *params)]
    for p in (x, *params):
        p.grad = None
    y = run(x)
    (gx,), stash = backward_input([y], [ember.ones_like(y)], [x])
    assert all(p.grad is None for p in params) and len(stash) == 3
    backward_weight(stash)
    for got, w in zip([gx, *(p.grad for p in params)], want):
        np.testing.assert_allclose(got.numpy(), w, rtol=1e-12)


def test_simulator_reports_a_deadlocking_order():
    # rank 0 waits for stage 1's backward before sending its forward: nothing can start
    orders = {0: [O.Action(0, "B", 0), O.Action(0, "F", 0)], 1: O.gpipe_order(1, 2, 1)}
    with pytest.raises(RuntimeError, match="deadlocks.*0: 0B0"):
        O.simulate(orders, 2)


def test_split_and_merge_chunks():
    import ember
    from ember.distributed.pipelining import TensorChunkSpec, merge_chunks
    from ember.distributed.pipelining import split_args_kwargs_into_chunks as split

    x, y = ember.arange(24.0).reshape(4, 6), ember.arange(12.0).reshape(2, 6)
    args, kwargs = split((x, 3), {"mask": y}, 2, kwargs_chunk_spec={"mask": TensorChunkSpec(1)})
    assert [a[0].tolist() for a in args] == [x[:2].tolist(), x[2:].tolist()]
    assert [a[1] for a in args] == [3, 3]  # non-tensors are replicated
    assert [k["mask"].shape for k in kwargs] == [(2, 3), (2, 3)]
    assert merge_chunks([a[0] for a in args]).tolist() == x.tolist()
    merged = merge_chunks([k["mask"] for k in kwargs], TensorChunkSpec(1))
    assert merged.tolist() == y.tolist()
    with pytest.raises(ValueError, match=r"n_microbatches \(3\) must divide.*args\[0\] has size 4"):
        split((x,), None, 3)


def _mlp():
    import ember

    class Net(ember.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = (ember.nn.Linear(4, 4) for _ in range(3))
            self.scale = ember.nn.Parameter(ember.full((4,), 0.5))

        def forward(self, x):
            from ember.distributed.pipelining import pipe_split

            h = ember.relu(self.a(x))
            pipe_split()
            h = self.b(h) * self.scale
            pipe_split()
            return self.c(h) + x  # x skips stage 1: passed through it

    ember.manual_seed(0)
    return Net()


def test_pipe_split_cuts_the_traced_model():
    import ember
    from ember.distributed.pipelining import pipe_split, pipeline

    net, x = _mlp(), ember.randn(3, 4)
    pipe_split()  # eager: a no-op
    pipe = pipeline(net, (x,))
    assert pipe.num_stages == 3
    s0, s1, s2 = (pipe.get_stage_module(i) for i in range(3))
    h0 = s0(x)
    assert isinstance(h0, tuple) and len(h0) == 2  # (x, relu(a(x))): x travels on
    np.testing.assert_allclose(s2(*s1(*h0)).detach().numpy(), net(x).detach().numpy())
    assert s1.b.weight is net.b.weight and s1.scale is net.scale  # shared, not copied
    assert {n for n, _ in s1.named_parameters()} == {"b.weight", "b.bias", "scale"}
    with pytest.raises(ValueError, match="out of range for 3 stages"):
        pipe.get_stage_module(3)


def test_split_spec_errors():
    import ember
    from ember.distributed.pipelining import SplitPoint, pipeline

    seq = ember.nn.Sequential(*[ember.nn.Linear(2, 2) for _ in range(3)])
    x = ember.randn(1, 2)
    pipe = pipeline(seq, (x,), split_spec={"1": SplitPoint.BEGINNING, "2": SplitPoint.END})
    assert pipe.num_stages == 2  # the empty stage after the last module is dropped
    with pytest.raises(ValueError, match=r"do not exist: \['7'\]"):
        pipeline(seq, (x,), split_spec={"7": SplitPoint.END})
    with pytest.raises(ValueError, match="found no split point"):
        pipeline(seq, (x,))


def test_non_tensor_crossing_a_split_is_refused():
    import ember
    from ember.distributed.pipelining import pipe_split, pipeline

    class Net(ember.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = ember.nn.Linear(4, 4)

        def forward(self, x):
            rows = x.shape[0]
            h = self.a(x)
            pipe_split()
            return h.reshape(rows, 2, 2)

    with pytest.raises(TypeError, match="stage 0 would send 'getitem', a int, to stage 1"):
        pipeline(Net(), (ember.randn(3, 4),))
