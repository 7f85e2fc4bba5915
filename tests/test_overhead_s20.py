"""The per-call fast paths of session 20: the engine's inline backward call, the identity
search of saved arrays, the direct zero-stride view of sum/mean backward and the one-slice
layer norm kernels. Each must give the general path's results and gradients, and hooks,
anomaly mode, dispatch modes and the profiler must still see every node."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.autograd import engine
from ember.autograd.function import Function

torch = pytest.importorskip("torch")


def _pair(shape, dtype="float32", seed=0):
    a = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return (
        ember.tensor(a, requires_grad=True),
        torch.tensor(a, requires_grad=True),
    )


def _close(e, t, tol=1e-5):
    np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), rtol=tol, atol=tol)


def _graph(lib, a, b, c, ln):
    # small ops of every kind the fast path meets: binary, reduction, norm, multi-output
    h = lib.nn.functional.layer_norm(a * b + c, (6,), ln[0], ln[1])
    p, q = h.split(3, dim=1)
    return (p.relu() * 2).sum() + q.mean()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_plain_path_matches_general_path_and_torch(dtype):
    tol = 1e-5 if dtype == "float32" else 1e-10
    (ea, ta), (eb, tb), (ec, tc) = (_pair((4, 6), dtype, s) for s in range(3))
    (ew, tw), (ebias, tbias) = _pair((6,), dtype, 3), _pair((6,), dtype, 4)
    _graph(ember, ea, eb, ec, (ew, ebias)).backward()  # the inline path
    _graph(torch, ta, tb, tc, (tw, tbias)).backward()
    for e, t in ((ea, ta), (eb, tb), (ec, tc), (ew, tw), (ebias, tbias)):
        _close(e.grad, t.grad, tol)
    # the general path (autograd.grad captures gradients: no inline call) gives the same bits
    out = _graph(ember, ea, eb, ec, (ew, ebias))
    grads = ember.autograd.grad(out, (ea, eb, ec, ew, ebias))
    for g, e in zip(grads, (ea, eb, ec, ew, ebias)):
        np.testing.assert_array_equal(g.numpy(), e.grad.numpy())


def test_unused_output_materialized_and_hooks_seen():
    ea, ta = _pair((4, 6))
    seen = []
    for x in (ea, ta):
        p, q = x.split(3, dim=1)  # q gets no gradient: zeros are made for the split's backward
        p.register_hook(lambda g: seen.append(("pre", type(g).__module__)) or g * 2)
        node = p.grad_fn
        node.register_hook(lambda gi, go: seen.append(("post", len(gi))))
        x.register_post_accumulate_grad_hook(lambda t: seen.append(("acc", t.grad.shape[0])))
        (p * 3).sum().backward()
    _close(ea.grad, ta.grad)
    mine, theirs = seen[: len(seen) // 2], seen[len(seen) // 2 :]
    assert [s[0] for s in mine] == [s[0] for s in theirs] == ["pre", "post", "acc"]


def test_materialize_grads_off_and_gradient_counts():
    class TwoOut(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.set_materialize_grads(False)
            return x * 2, x * 3

        @staticmethod
        def backward(ctx, g1, g2):
            assert g2 is None  # not materialized
            return g1 * 2, None  # a trailing None beyond the inputs is allowed (torch)

    x = ember.ones(3, requires_grad=True)
    a, _ = TwoOut.apply(x)
    a.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full(3, 2.0, np.float32))

    class Wrong(Function):
        @staticmethod
        def forward(ctx, x, y):
            return x + y

        @staticmethod
        def backward(ctx, g):
            return (g,)

    y = ember.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="incorrect number of gradients"):
        Wrong.apply(x, y).sum().backward()


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_anomaly_mode_and_profiler_and_dispatch_mode_see_nodes():
    from ember.utils._python_dispatch import TorchDispatchMode

    x = ember.tensor([0.0, 1.0], requires_grad=True)
    with pytest.warns(UserWarning, match="Anomaly Detection has been enabled"):
        mode = ember.autograd.detect_anomaly()
    with mode, pytest.warns(UserWarning, match="Error detected in SqrtBackward0"):
        with pytest.raises(RuntimeError, match="returned nan values"):
            (x.sqrt() * 0.0).sum().backward()  # sqrt's backward at 0: inf * 0 = nan

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    w = ember.ones(4, requires_grad=True)
    with Record() as rec:
        (w * 3).sum().backward()
    assert engine._call_backward is engine._plain_call_backward  # restored on exit
    assert any("mul" in op for op in rec.ops[2:]), rec.ops  # backward ops reached the mode
    np.testing.assert_array_equal(w.grad.numpy(), np.full(4, 3.0, np.float32))

    with ember.profiler.profile() as prof:
        (w * 2).sum().backward()
    names = " ".join(e.name for e in prof.events())
    assert "MulBackward0" in names and "SumBackward0" in names


def test_saved_versions_and_double_backward_through_derived_saves():
    x, _ = _pair((3, 5), "float64")
    w = ember.ones(5, dtype=ember.float64, requires_grad=True)
    y = ember.nn.functional.layer_norm(x, (5,), w)
    with ember.no_grad():
        w.add_(1.0)  # a saved input modified in place
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
    b = ember.ones(5, dtype=ember.float64, requires_grad=True)
    fn = lambda x, w, b: ember.nn.functional.layer_norm(x * x, (5,), w, b)  # noqa: E731
    assert ember.autograd.gradcheck(fn, (x, w, b))
    assert ember.autograd.gradgradcheck(fn, (x, w, b))
    a = ember.tensor([1.0, 2.0], requires_grad=True)
    out = a * a  # both saved arrays are the same input
    assert out.grad_fn._saved_self is a and out.grad_fn._saved_other is a


@pytest.mark.parametrize(
    "shape,dim,keepdim",
    [((8, 64), None, False), ((3, 4, 5), (0, 2), False), ((3, 4), 1, True), ((0, 3), 1, False)],
)
def test_sum_mean_backward_views(shape, dim, keepdim):
    for red in ("sum", "mean"):
        e, t = _pair(shape, "float64")
        kw = {} if dim is None else {"dim": dim, "keepdim": keepdim}
        ge = getattr(e, red)(**kw)
        gt = getattr(t, red)(**kw)
        (ge * 1.5).sum().backward()
        (gt * 1.5).sum().backward()
        _close(e.grad, t.grad, 1e-12)
        e.grad.add_(1.0)  # the leaf owns a writable copy, not the zero-stride view
        assert e.grad.numpy().flags.writeable


@pytest.mark.parametrize("rows", [8, 4096])
def test_layer_norm_one_slice_and_split_paths(rows, monkeypatch):
    from ember.ops import _kernel_split

    ex, tx = _pair((rows, 64), "float32", 5)
    eln, tln = ember.nn.LayerNorm(64), torch.nn.LayerNorm(64)
    with torch.no_grad():
        tln.weight.copy_(torch.linspace(0.5, 1.5, 64))
        tln.bias.copy_(torch.linspace(-1, 1, 64))
    eln.load_state_dict({k: ember.tensor(v.numpy()) for k, v in tln.state_dict().items()})
    if rows > 8:  # the split kernels on a small problem at 2 threads
        monkeypatch.setattr(_kernel_split, "_MIN_PER_THREAD", 1 << 10)
        ember.set_num_threads(2)
    try:
        ye, yt = eln(ex), tln(tx)
        (ye * ye).sum().backward()
        (yt * yt).sum().backward()
    finally:
        ember.set_num_threads(1)
    _close(ye, yt, 1e-4)
    _close(ex.grad, tx.grad, 1e-3)
    _close(eln.weight.grad, tln.weight.grad, 1e-2)
    _close(eln.bias.grad, tln.bias.grad, 1e-3)


def test_leaf_accumulation_inline_and_hooked():
    w = ember.nn.Parameter(ember.ones(3))
    for _ in range(2):  # the second adds into .grad in place (the inline delivery)
        (w * 2).sum().backward()
    first = w.grad
    seen = []
    w.register_hook(lambda g: seen.append("hook") or g * 10)
    w.register_post_accumulate_grad_hook(lambda t: seen.append("acc"))
    (w * 2).sum().backward()
    assert w.grad is first and seen == ["hook", "acc"]
    np.testing.assert_array_equal(w.grad.numpy(), np.full(3, 24.0, np.float32))
    x = ember.ones(2, requires_grad=True)
    x.grad = ember.zeros(2, requires_grad=True)  # a grad that requires grad: out of place
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.detach().numpy(), np.full(2, 3.0, np.float32))


@pytest.mark.parametrize("dtype,shape", [("float32", (1, 2, 300, 16)), ("float64", (2, 1, 256, 8))])
def test_causal_attention_unnormalised_blocks_match_torch(dtype, shape, monkeypatch):
    from ember.ops import attention_causal

    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(shape).astype(dtype) for _ in range(3)]
    tol = 2e-5 if dtype == "float32" else 1e-12
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in arrays)
    to = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True)
    (to * to).sum().backward()
    for unnormalised in (True, False):  # the new blocks, and the normalised ones they replace
        monkeypatch.setattr(attention_causal, "UNNORMALISED", unnormalised)
        eq, ek, ev = (ember.tensor(a, requires_grad=True) for a in arrays)
        eo = ember.nn.functional.scaled_dot_product_attention(eq, ek, ev, is_causal=True)
        (eo * eo).sum().backward()
        for e, t in ((eo, to), (eq.grad, tq.grad), (ek.grad, tk.grad), (ev.grad, tv.grad)):
            _close(e, t, tol * max(1.0, float(t.detach().abs().max())))


def test_causal_attention_unnormalised_gradcheck():
    from ember.ops import attention_causal

    assert attention_causal.UNNORMALISED
    rng = np.random.default_rng(2)
    q, k, v = (
        ember.tensor(rng.standard_normal((1, 1, 256, 2)), requires_grad=True) for _ in range(3)
    )
    fn = lambda q, k, v: ember.nn.functional.scaled_dot_product_attention(  # noqa: E731
        q, k, v, is_causal=True
    )
    assert attention_causal.applies(np, q._data, k._data, None, 0.0, True, False)
    assert ember.autograd.gradcheck(fn, (q, k, v), eps=1e-6, atol=1e-5)
