"""PyTorch parity for the nn breadth of issue #17: the rest of ``nn.functional`` (grid sampling,
CTC, margin losses, LP pooling, unpooling, fractional pooling, ...), ``torch.<nn op>`` spellings
with ATen's signatures, and the deprecated ``nn.init`` names.

Inputs are float64 and copied into both frameworks; outputs and the gradients of every floating
input are compared. Modules (lazy layers, losses, ...) are in tests/test_nn_breadth_modules.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ember
import ember.nn.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

rng = np.random.default_rng(7)


def randn(*shape):
    return rng.standard_normal(shape)


def close(a, b, tol=1e-10, what=""):
    a = a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)
    b = b.detach().numpy() if hasattr(b, "detach") else np.asarray(b)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} vs {b.shape}"
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=what)


def both(fn_e, fn_t, arrays, *, grad=True, tol=1e-10, ints=()):
    """Run ``fn_e`` on ember tensors and ``fn_t`` on torch tensors made from ``arrays``;
    compare outputs and (for float arrays not in ``ints``) the gradients of a random
    weighting of the output."""
    te = [ember.tensor(a, requires_grad=grad and i not in ints) for i, a in enumerate(arrays)]
    tt = [torch.tensor(a, requires_grad=grad and i not in ints) for i, a in enumerate(arrays)]
    oe, ot = fn_e(*te), fn_t(*tt)
    close(oe, ot, tol, "output")
    if grad:
        w = rng.standard_normal(tuple(ot.shape))
        (ot * torch.tensor(w)).sum().backward()
        (oe * ember.tensor(w)).sum().backward()
        for i, (a, b) in enumerate(zip(te, tt)):
            if i in ints:
                continue
            ga = a.grad.numpy() if a.grad is not None else np.zeros(a.shape)
            close(ga, b.grad, tol, f"grad {i}")
    return oe, ot


# ---- grid sampling --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_grid_sample_2d(mode, padding_mode, align_corners):
    x, g = randn(2, 2, 4, 5), rng.uniform(-1.3, 1.3, (2, 3, 4, 2))
    both(
        lambda a, b: F.grid_sample(a, b, mode, padding_mode, align_corners),
        lambda a, b: TF.grid_sample(a, b, mode, padding_mode, align_corners),
        [x, g],
    )


@pytest.mark.parametrize(
    "mode,padding_mode", [("bilinear", "reflection"), ("nearest", "zeros"), ("bilinear", "border")]
)
def test_grid_sample_3d(mode, padding_mode):
    x, g = randn(1, 2, 3, 4, 5), rng.uniform(-1.2, 1.2, (1, 2, 3, 2, 3))
    both(
        lambda a, b: F.grid_sample(a, b, mode, padding_mode, False),
        lambda a, b: TF.grid_sample(a, b, mode, padding_mode, False),
        [x, g],
    )


@pytest.mark.parametrize("size", [[2, 3, 4, 5], [2, 1, 3, 4, 2]])
@pytest.mark.parametrize("align_corners", [False, True])
def test_affine_grid(size, align_corners):
    theta = randn(2, 2, 3) if len(size) == 4 else randn(2, 3, 4)
    both(
        lambda t: F.affine_grid(t, size, align_corners),
        lambda t: TF.affine_grid(t, size, align_corners),
        [theta],
    )


def test_grid_sampler_toplevel_and_warning():
    x, g = randn(1, 1, 3, 3), rng.uniform(-1, 1, (1, 2, 2, 2))
    close(
        ember.grid_sampler(ember.tensor(x), ember.tensor(g), 2, 1, True),
        torch.grid_sampler(torch.tensor(x), torch.tensor(g), 2, 1, True),
    )
    with pytest.warns(UserWarning, match="align_corners=False"):
        F.grid_sample(ember.tensor(x), ember.tensor(g))
    assert F.GRID_SAMPLE_INTERPOLATION_MODES == TF.GRID_SAMPLE_INTERPOLATION_MODES
    assert F.GRID_SAMPLE_PADDING_MODES == TF.GRID_SAMPLE_PADDING_MODES


# ---- CTC --------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("concatenated", [False, True])
def test_ctc_loss(reduction, concatenated):
    logits = randn(10, 3, 5)
    tl = np.array([4, 2, 3])
    padded = np.array([[1, 1, 2, 3], [4, 2, 0, 0], [3, 3, 3, 0]])  # repeats need blanks
    targets = np.concatenate([padded[k, : tl[k]] for k in range(3)]) if concatenated else padded
    il = np.array([10, 8, 9])

    def run(lib, mod, x):
        return mod.ctc_loss(
            x.log_softmax(2),
            lib.tensor(targets),
            lib.tensor(il),
            lib.tensor(tl),
            reduction=reduction,
        )

    both(lambda x: run(ember, F, x), lambda x: run(torch, TF, x), [logits])


@pytest.mark.parametrize("zi", [False, True])
def test_ctc_loss_infeasible_and_unbatched(zi):
    # 3 steps cannot emit 'aaa' (needs blanks between): infinite loss, zeroed by zero_infinity
    lp = np.log(np.full((3, 1, 3), 1 / 3))
    both(
        lambda x: F.ctc_loss(
            x, ember.tensor([[1, 1, 1]]), [3], [3], zero_infinity=zi, reduction="sum"
        ),
        lambda x: TF.ctc_loss(
            x, torch.tensor([[1, 1, 1]]), [3], [3], zero_infinity=zi, reduction="sum"
        ),
        [lp],
        grad=zi,
    )
    both(
        lambda x: F.ctc_loss(x.log_softmax(1), ember.tensor([1, 2]), 6, 2),
        lambda x: TF.ctc_loss(
            x.log_softmax(1), torch.tensor([1, 2]), torch.tensor(6), torch.tensor(2)
        ),
        [randn(6, 4)],
    )


# ---- margin losses ------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_loss(reduction, p):
    x, t, w = randn(4, 5), np.array([0, 3, 4, 3]), rng.uniform(0.5, 2, 5)
    both(
        lambda a, b, c: F.multi_margin_loss(a, b, p, 0.7, c, reduction=reduction),
        lambda a, b, c: TF.multi_margin_loss(a, b, p, 0.7, c, reduction=reduction),
        [x, t, w],
        ints=(1, 2),
    )
    both(
        lambda a, b: F.multi_margin_loss(a, b, reduction=reduction),
        lambda a, b: TF.multi_margin_loss(a, b, reduction=reduction),
        [randn(5), np.array(2)],
        ints=(1,),
    )


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_multilabel_losses(reduction):
    x = randn(3, 4)
    t = np.array([[3, 0, -1, 1], [1, 2, 3, 0], [-1, 1, 2, 3]])
    both(
        lambda a, b: F.multilabel_margin_loss(a, b, reduction=reduction),
        lambda a, b: TF.multilabel_margin_loss(a, b, reduction=reduction),
        [x, t],
        ints=(1,),
    )
    y, w = rng.integers(0, 2, (3, 4)).astype(np.float64), rng.uniform(0.5, 2, 4)
    both(
        lambda a, b, c: F.multilabel_soft_margin_loss(a, b, c, reduction=reduction),
        lambda a, b, c: TF.multilabel_soft_margin_loss(a, b, c, reduction=reduction),
        [x, y, w],
        ints=(1, 2),
    )


@pytest.mark.parametrize("swap", [False, True])
def test_triplet_margin_with_distance_loss(swap):
    a, p, n = randn(4, 3), randn(4, 3), randn(4, 3)
    both(
        lambda *t: F.triplet_margin_with_distance_loss(*t, swap=swap, margin=0.5),
        lambda *t: TF.triplet_margin_with_distance_loss(*t, swap=swap, margin=0.5),
        [a, p, n],
    )
    both(
        lambda *t: F.triplet_margin_with_distance_loss(
            *t, distance_function=lambda u, v: 1 - F.cosine_similarity(u, v), reduction="none"
        ),
        lambda *t: TF.triplet_margin_with_distance_loss(
            *t, distance_function=lambda u, v: 1 - TF.cosine_similarity(u, v), reduction="none"
        ),
        [a, p, n],
    )


# ---- pooling, shuffles, normalisation ------------------------------------------------------
def test_lp_pool():
    x = rng.uniform(0.1, 2, (2, 3, 6, 6))
    both(lambda a: F.lp_pool2d(a, 2, 2), lambda a: TF.lp_pool2d(a, 2, 2), [x])
    both(
        lambda a: F.lp_pool2d(a, 3, (2, 3), 1, True),
        lambda a: TF.lp_pool2d(a, 3, (2, 3), 1, True),
        [x],
    )
    both(lambda a: F.lp_pool1d(a, 1.5, 3, 2), lambda a: TF.lp_pool1d(a, 1.5, 3, 2), [x[0]])
    x3 = rng.uniform(0.1, 2, (1, 2, 4, 4, 4))
    both(lambda a: F.lp_pool3d(a, 2, 2), lambda a: TF.lp_pool3d(a, 2, 2), [x3])


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_unpool(nd):
    x = torch.tensor(randn(*(2, 2) + (4,) * nd))
    pool = getattr(TF, f"max_pool{nd}d")
    out, idx = pool(x, 2, return_indices=True)
    unpool_e, unpool_t = getattr(F, f"max_unpool{nd}d"), getattr(TF, f"max_unpool{nd}d")
    both(
        lambda a, i: unpool_e(a, i, 2),
        lambda a, i: unpool_t(a, i, 2),
        [out.numpy(), idx.numpy()],
        ints=(1,),
    )
    size = (5,) * nd
    both(
        lambda a, i: unpool_e(a, i, 2, output_size=size),
        lambda a, i: unpool_t(a, i, 2, output_size=size),
        [out.numpy(), idx.numpy()],
        ints=(1,),
    )


@pytest.mark.parametrize("nd", [2, 3])
def test_fractional_max_pool(nd):
    x, s = randn(*(2, 3) + (7,) * nd), rng.random((2, 3, nd))
    fe, ft = getattr(F, f"fractional_max_pool{nd}d"), getattr(TF, f"fractional_max_pool{nd}d")
    oe, ot = both(
        lambda a, r: fe(a, 2, output_size=4, _random_samples=r),
        lambda a, r: ft(a, 2, output_size=4, _random_samples=r),
        [x, s],
        ints=(1,),
    )
    ie = fe(
        ember.tensor(x),
        3,
        output_ratio=(0.5,) * nd,
        return_indices=True,
        _random_samples=ember.tensor(s),
    )[1]
    it = ft(
        torch.tensor(x),
        3,
        output_ratio=(0.5,) * nd,
        return_indices=True,
        _random_samples=torch.tensor(s),
    )[1]
    np.testing.assert_array_equal(ie.numpy(), it.numpy())


def test_adaptive_max_pool_with_indices():
    x = randn(2, 3, 7, 6)
    for nd, sl in ((1, (0,)), (2, ()), (3, None)):
        a = x[sl] if sl is not None else x[None]
        fe = getattr(F, f"adaptive_max_pool{nd}d_with_indices")
        ft = getattr(TF, f"adaptive_max_pool{nd}d_with_indices")
        (oe, ie), (ot, it) = fe(ember.tensor(a), 3), ft(torch.tensor(a), 3)
        close(oe, ot)
        np.testing.assert_array_equal(ie.numpy(), it.numpy())


@pytest.mark.parametrize("size", [3, 4])
def test_channel_shuffle_and_local_response_norm(size):
    x = randn(2, 6, 3, 3)
    both(lambda a: F.channel_shuffle(a, 3), lambda a: TF.channel_shuffle(a, 3), [x])
    close(ember.channel_shuffle(ember.tensor(x), 2), torch.channel_shuffle(torch.tensor(x), 2))
    both(
        lambda a: F.local_response_norm(a, size, 0.1, 0.6, 2.0),
        lambda a: TF.local_response_norm(a, size, 0.1, 0.6, 2.0),
        [x],
    )
    both(
        lambda a: F.local_response_norm(a, 2),
        lambda a: TF.local_response_norm(a, 2),
        [randn(2, 5, 4)],
    )


def test_gumbel_softmax():
    logits = ember.tensor(randn(64, 5), requires_grad=True)
    soft = F.gumbel_softmax(logits, tau=0.5)
    np.testing.assert_allclose(soft.sum(-1).detach().numpy(), 1.0)
    hard = F.gumbel_softmax(logits, hard=True)
    h = hard.detach().numpy()
    assert set(np.unique(h)) <= {0.0, 1.0} and (h.sum(-1) == 1).all()
    hard.sum().backward()  # straight-through: the soft sample's gradient reaches the logits
    assert logits.grad is not None and logits.grad.shape == logits.shape
    # the Gumbel-max trick: argmax samples follow softmax(logits)
    ember.manual_seed(0)
    big = ember.tensor(np.tile(np.log([0.2, 0.5, 0.3]), (4000, 1)))
    freq = F.gumbel_softmax(big, hard=True).numpy().mean(0)
    np.testing.assert_allclose(freq, [0.2, 0.5, 0.3], atol=0.04)


# ---- matmul heads ---------------------------------------------------------------------------
def test_grouped_mm():
    offs = np.array([2, 5, 6], dtype=np.int32)
    cases = [
        (randn(6, 4), randn(3, 4, 5)),
        (randn(3, 5, 4), randn(4, 6)),
        (randn(5, 6), randn(6, 3)),
        (randn(3, 2, 4), randn(3, 4, 5)),
    ]
    for a, b in cases:
        o = None if a.ndim == 3 and b.ndim == 3 else offs
        te = F.grouped_mm(
            ember.tensor(a), ember.tensor(b), offs=None if o is None else ember.tensor(o)
        )
        # torch's CPU grouped_mm wants bfloat16; the reference is the definition itself
        if o is None:
            ref = a @ b
        elif a.ndim == 2 and b.ndim == 3:
            ref = np.concatenate([a[s:e] @ b[g] for g, (s, e) in enumerate(zip([0, *o[:-1]], o))])
        elif a.ndim == 3:
            ref = np.concatenate(
                [a[g] @ b[:, s:e] for g, (s, e) in enumerate(zip([0, *o[:-1]], o))], 1
            )
        else:
            ref = np.stack([a[:, s:e] @ b[s:e] for s, e in zip([0, *o[:-1]], o)])
        close(te, ref)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_linear_cross_entropy(reduction):
    x, w, b, t = randn(4, 3), randn(5, 3), randn(5), np.array([0, 4, 2, -100])
    both(
        lambda a, c, d, e: F.linear_cross_entropy(a, c, d, linear_bias=e, reduction=reduction),
        lambda a, c, d, e: TF.linear_cross_entropy(a, c, d, linear_bias=e, reduction=reduction),
        [x, w, t, b],
        ints=(2,),
    )
    wk, tk = randn(5, 2, 3), rng.integers(0, 5, (4, 2))  # K-dimensional head
    both(
        lambda a, c, d: F.linear_cross_entropy(a, c, d, label_smoothing=0.1),
        lambda a, c, d: TF.linear_cross_entropy(a, c, d, label_smoothing=0.1),
        [x, wk, tk],
        ints=(2,),
    )


# ---- torch.<name> spellings with ATen's signatures -----------------------------------------
def test_toplevel_norms_and_dropout():
    x, w, b = randn(4, 3, 5), randn(3), randn(3)
    rm, rv = randn(3), rng.uniform(0.5, 2, 3)
    both(
        lambda a, c, d: ember.batch_norm(
            a, c, d, ember.tensor(rm), ember.tensor(rv), False, 0.1, 1e-5, True
        ),
        lambda a, c, d: torch.batch_norm(
            a, c, d, torch.tensor(rm), torch.tensor(rv), False, 0.1, 1e-5, True
        ),
        [x, w, b],
    )
    both(
        lambda a, c, d: ember.instance_norm(a, c, d, None, None, True, 0.1, 1e-5, False),
        lambda a, c, d: torch.instance_norm(a, c, d, None, None, True, 0.1, 1e-5, False),
        [x, w, b],
    )
    both(
        lambda a: ember.layer_norm(a, [5], None, None, 1e-5, True),
        lambda a: torch.layer_norm(a, [5], None, None, 1e-5, True),
        [x],
    )
    both(
        lambda a, c, d: ember.group_norm(a, 3, c, d, 1e-5, True),
        lambda a, c, d: torch.group_norm(a, 3, c, d, 1e-5, True),
        [x, w, b],
    )
    t = ember.tensor(x)
    assert ember.dropout(t, 0.5, False) is t
    for fn in ("dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout"):
        y = getattr(ember, fn)(t, 0.0, True)
        close(y, x)
        y = getattr(ember, fn + "_")(ember.tensor(x), 1.0, True)
        ref = getattr(torch, fn + "_")(torch.tensor(x), 1.0, True)
        close(y, ref)  # p = 1 is deterministic (zeros; alpha: the SELU saturation value)
    kept = ember.feature_dropout(ember.ones(50, 8, 3), 0.5, True).numpy()
    assert (kept == kept[:, :, :1]).all()  # whole channels dropped together


@pytest.mark.parametrize("red", [0, 1, 2])
def test_toplevel_losses(red):
    x, y, s = randn(3, 4), rng.uniform(0, 1, (3, 4)), np.sign(randn(3))
    both(
        lambda a, b: ember.binary_cross_entropy_with_logits(a, b, None, None, red),
        lambda a, b: torch.binary_cross_entropy_with_logits(a, b, None, None, red),
        [x, y],
        ints=(1,),
    )
    both(
        lambda a, b: ember.kl_div(a, b, red, log_target=False),
        lambda a, b: torch.kl_div(a, b, red, log_target=False),
        [x, y],
        ints=(1,),
    )
    both(
        lambda a, b: ember.cosine_embedding_loss(a, b, ember.tensor(s), 0.1, red),
        lambda a, b: torch.cosine_embedding_loss(a, b, torch.tensor(s), 0.1, red),
        [x, y],
    )
    both(
        lambda a: ember.hinge_embedding_loss(a, ember.tensor(np.sign(y - 0.5)), 1.0, red),
        lambda a: torch.hinge_embedding_loss(a, torch.tensor(np.sign(y - 0.5)), 1.0, red),
        [x],
    )
    both(
        lambda a, b: ember.margin_ranking_loss(a, b, ember.tensor(np.sign(x)), 0.2, red),
        lambda a, b: torch.margin_ranking_loss(a, b, torch.tensor(np.sign(x)), 0.2, red),
        [x, y],
    )
    both(
        lambda a, b: ember.poisson_nll_loss(a, b, True, False, 1e-8, red),
        lambda a, b: torch.poisson_nll_loss(a, b, True, False, 1e-8, red),
        [x, y],
        ints=(1,),
    )
    both(
        lambda a, b, c: ember.triplet_margin_loss(a, b, c, 1.0, 2.0, 1e-6, True, red),
        lambda a, b, c: torch.triplet_margin_loss(a, b, c, 1.0, 2.0, 1e-6, True, red),
        [x, y, randn(3, 4)],
    )


def test_toplevel_misc():
    x = randn(3, 4)
    both(
        lambda a, b: ember.cdist(a, b),
        lambda a, b: torch.cdist(a, b),
        [randn(2, 4, 3), randn(2, 5, 3)],
    )
    both(
        lambda a, b: ember.cdist(a, b, 1.0),
        lambda a, b: torch.cdist(a, b, 1.0),
        [randn(4, 3), randn(5, 3)],
    )
    both(
        lambda a: ember.constant_pad_nd(a, [1, 2, 0, 1], 0.5),
        lambda a: torch.constant_pad_nd(a, [1, 2, 0, 1], 0.5),
        [x],
    )
    both(
        lambda a, b: ember.convolution(a, b, None, [2], [1], [1], False, [0], 1),
        lambda a, b: torch.convolution(a, b, None, [2], [1], [1], False, [0], 1),
        [randn(2, 3, 7), randn(4, 3, 3)],
    )
    both(
        lambda a, b: ember.convolution(a, b, None, [1, 2], [0, 1], [1, 1], True, [0, 1], 1),
        lambda a, b: torch.convolution(a, b, None, [1, 2], [0, 1], [1, 1], True, [0, 1], 1),
        [randn(1, 3, 4, 4), randn(3, 2, 2, 3)],
    )
    idx = rng.integers(0, 6, (2, 3))
    both(
        lambda w: ember.embedding(w, ember.tensor(idx)),
        lambda w: torch.embedding(w, torch.tensor(idx)),
        [randn(6, 4)],
    )
    oe, ot = (
        ember.adaptive_max_pool1d(ember.tensor(x[None]), 2),
        torch.adaptive_max_pool1d(torch.tensor(x[None]), 2),
    )
    close(oe[0], ot[0])
    np.testing.assert_array_equal(oe[1].numpy(), ot[1].numpy())
    for name in ("sigmoid_", "tanh_", "relu_"):
        e, t = ember.tensor(x), torch.tensor(x)
        assert getattr(ember, name)(e) is e
        getattr(torch, name)(t)
        close(e, t)


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_toplevel_embedding_bag(mode):
    w, idx, offs = randn(10, 3), np.array([1, 2, 4, 5, 4, 3, 2, 9]), np.array([0, 3, 3])
    re = ember.embedding_bag(ember.tensor(w), ember.tensor(idx), ember.tensor(offs), False, mode)
    rt = torch.embedding_bag(torch.tensor(w), torch.tensor(idx), torch.tensor(offs), False, mode)
    close(re[0], rt[0])
    np.testing.assert_array_equal(re[2].numpy(), rt[2].numpy())  # bag sizes


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_toplevel_recurrent(mode, batch_first):
    h, layers, dirs = 3, 2, 2
    gates = {"lstm": 4, "gru": 3}.get(mode, 1)
    params = []
    for layer in range(layers):
        for _ in range(dirs):
            size_in = 2 if layer == 0 else h * dirs
            params += [
                randn(gates * h, size_in),
                randn(gates * h, h),
                randn(gates * h),
                randn(gates * h),
            ]
    x = randn(4, 5, 2)
    hx = [randn(layers * dirs, 4 if batch_first else 5, h) for _ in range(2)]
    xs = [x] + (hx if mode == "lstm" else hx[:1]) + params
    n_h = 2 if mode == "lstm" else 1

    def run(lib, *t):
        hs = list(t[1 : 1 + n_h]) if mode == "lstm" else t[1]
        out = getattr(lib, mode)(
            t[0], hs, list(t[1 + n_h :]), True, layers, 0.0, False, True, batch_first
        )
        return lib.cat([o.reshape(-1) for o in out])

    both(lambda *t: run(ember, *t), lambda *t: run(torch, *t), xs)


@pytest.mark.parametrize("mode", ["lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell"])
def test_toplevel_cells(mode):
    gates = {"lstm_cell": 4, "gru_cell": 3}.get(mode, 1)
    xs = [
        randn(3, 2),
        randn(3, 4),
        randn(3, 4),
        randn(gates * 4, 2),
        randn(gates * 4, 4),
        randn(gates * 4),
        randn(gates * 4),
    ]

    def run(lib, x, h, c, *w):
        hx = [h, c] if mode == "lstm_cell" else h + 0 * c
        out = getattr(lib, mode)(x, hx, *w)
        return lib.cat(list(out), 1) if mode == "lstm_cell" else out

    both(lambda *t: run(ember, *t), lambda *t: run(torch, *t), xs)


# ---- nn.init deprecated names, nn.grad, factory_kwargs -------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "uniform",
        "normal",
        "constant",
        "eye",
        "dirac",
        "xavier_uniform",
        "xavier_normal",
        "kaiming_uniform",
        "kaiming_normal",
        "orthogonal",
        "sparse",
    ],
)
def test_init_deprecated_aliases(name):
    shape = (3, 4, 3) if name == "dirac" else (4, 4)
    args = {"constant": (0.3,), "sparse": (0.5,)}.get(name, ())
    t = ember.empty(*shape)
    with pytest.warns(FutureWarning, match=f"nn.init.{name}` is now deprecated"):
        out = getattr(ember.nn.init, name)(t, *args)
    assert out is t
    if name in ("constant", "eye", "dirac"):
        ref = getattr(torch.nn.init, name + "_")(torch.empty(*shape), *args)
        close(t, ref)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_nn_grad(nd):
    x, w = randn(*(2, 4) + (5,) * nd), randn(*(6, 2) + (3,) * nd)
    conv = getattr(TF, f"conv{nd}d")
    out = conv(torch.tensor(x), torch.tensor(w), stride=2, padding=1, groups=2)
    go = randn(*out.shape)
    kw = dict(stride=2, padding=1, groups=2)
    gi = getattr(ember.nn.grad, f"conv{nd}d_input")(
        x.shape, ember.tensor(w), ember.tensor(go), **kw
    )
    close(
        gi,
        getattr(torch.nn.grad, f"conv{nd}d_input")(
            x.shape, torch.tensor(w), torch.tensor(go), **kw
        ),
    )
    gw = getattr(ember.nn.grad, f"conv{nd}d_weight")(
        ember.tensor(x), w.shape, ember.tensor(go), **kw
    )
    close(
        gw,
        getattr(torch.nn.grad, f"conv{nd}d_weight")(
            torch.tensor(x), w.shape, torch.tensor(go), **kw
        ),
    )


def test_factory_kwargs():
    for kw in (None, {"dtype": ember.float64}, {"device": "cpu", "factory_kwargs": {"dtype": 1}}):
        tk = None if kw is None else {k: v for k, v in kw.items()}
        assert ember.nn.factory_kwargs(kw) == torch.nn.factory_kwargs(tk)
    for bad in ({"foo": 1}, {"dtype": 1, "factory_kwargs": {"dtype": 2}}):
        with pytest.raises(TypeError):
            ember.nn.factory_kwargs(bad)
        with pytest.raises(TypeError):
            torch.nn.factory_kwargs(bad)


def test_rrelu_inplace_eval():
    x = randn(3, 4)
    e, t = ember.tensor(x), torch.tensor(x)
    assert F.rrelu_(e) is e
    TF.rrelu_(t)
    close(e, t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        close(ember.rrelu(ember.tensor(x), 0.1, 0.3), torch.rrelu(torch.tensor(x), 0.1, 0.3))
