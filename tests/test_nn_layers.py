"""PyTorch parity for D1's layers, activations, losses and functional forms.

Each case builds the module in both frameworks, copies torch's weights into ember through
``load_state_dict``, and compares (float32) the outputs, the gradients of every floating input
and of every parameter, and the buffers, in training and in eval mode.

Tolerances: float32, ``rtol=1e-4, atol=1e-5`` unless a case states otherwise (fused kernels sum
in a different order than PyTorch's).
"""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F

torch = pytest.importorskip("torch")
tnn = torch.nn
TF = torch.nn.functional

RTOL, ATOL = 1e-4, 1e-5
rng = np.random.default_rng(1234)


def randn(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def randint(high, *shape):
    return rng.integers(0, high, shape).astype(np.int64)


def close(a, b, rtol=RTOL, atol=ATOL, what=""):
    a = a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)
    b = b.detach().numpy() if hasattr(b, "detach") else np.asarray(b)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} vs {b.shape}"
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=what)


def _pair_inputs(arrays):
    t_in, e_in = [], []
    for a in arrays:
        floating = a.dtype.kind == "f"
        t_in.append(torch.tensor(a, requires_grad=floating))
        e_in.append(ember.tensor(a, requires_grad=floating))
    return t_in, e_in


def check_module(tmod, emod, arrays, *, modes=("train", "eval"), rtol=RTOL, atol=ATOL, steps=2):
    """Forward + backward in each mode (``steps`` times in train mode, so that running
    statistics evolve) comparing outputs, input and parameter gradients, and buffers."""
    res = emod.load_state_dict(tmod.state_dict())
    assert not res.missing_keys and not res.unexpected_keys
    for mode in modes:
        tmod.train(mode == "train")
        emod.train(mode == "train")
        for _ in range(steps if mode == "train" else 1):
            t_in, e_in = _pair_inputs(arrays)
            t_out, e_out = tmod(*t_in), emod(*e_in)
            close(e_out, t_out, rtol, atol, f"{mode} output")
            if not t_out.requires_grad:
                continue
            g = randn(*t_out.shape)
            tmod.zero_grad()
            emod.zero_grad()
            t_out.backward(torch.tensor(g))
            e_out.backward(ember.tensor(g))
            for i, (ti, ei) in enumerate(zip(t_in, e_in)):
                if ti.grad is not None:
                    close(ei.grad, ti.grad, rtol, atol, f"{mode} grad of input {i}")
            t_params = dict(tmod.named_parameters())
            for name, ep in emod.named_parameters():
                tg = t_params[name].grad
                if tg is None:
                    assert ep.grad is None or float(ep.grad.abs().sum()) == 0, name
                else:
                    close(ep.grad, tg, rtol, atol, f"{mode} grad of {name}")
            t_bufs = dict(tmod.named_buffers())
            for name, eb in emod.named_buffers():
                close(eb, t_bufs[name], rtol, atol, f"{mode} buffer {name}")


def build(name, *args, **kwargs):
    return getattr(tnn, name)(*args, **kwargs), getattr(nn, name)(*args, **kwargs)


# ---- layers ---------------------------------------------------------------------------------
LAYER_CASES = [
    ("Linear", (5, 3), {}, [(4, 5)]),
    ("Linear", (5, 3), {"bias": False}, [(2, 3, 5)]),
    ("Linear", (5, 3), {}, [(5,)]),
    ("Bilinear", (3, 4, 2), {}, [(5, 3), (5, 4)]),
    ("Bilinear", (3, 4, 2), {"bias": False}, [(2, 5, 3), (2, 5, 4)]),
    ("Identity", (7,), {"unused": 1}, [(3, 2)]),
    ("Flatten", (), {}, [(2, 3, 4, 5)]),
    ("Flatten", (0, 2), {}, [(2, 3, 4, 5)]),
    ("Unflatten", (1, (2, 3)), {}, [(4, 6, 2)]),
    ("BatchNorm1d", (4,), {}, [(8, 4)]),
    ("BatchNorm1d", (4,), {"momentum": None}, [(6, 4, 5)]),
    ("BatchNorm1d", (4,), {"affine": False}, [(8, 4)]),
    ("BatchNorm1d", (4,), {"bias": False}, [(8, 4)]),
    ("BatchNorm1d", (4,), {"track_running_stats": False}, [(8, 4, 3)]),
    ("BatchNorm2d", (3,), {"momentum": 0.3, "eps": 1e-3}, [(4, 3, 5, 5)]),
    ("BatchNorm3d", (2,), {}, [(2, 2, 3, 3, 3)]),
    ("LayerNorm", (6,), {}, [(4, 6)]),
    ("LayerNorm", ((3, 6),), {"eps": 1e-3}, [(2, 4, 3, 6)]),
    ("LayerNorm", (6,), {"elementwise_affine": False}, [(4, 6)]),
    ("LayerNorm", (6,), {"bias": False}, [(4, 6)]),
    ("GroupNorm", (2, 4), {}, [(3, 4, 5, 5)]),
    ("GroupNorm", (4, 4), {"affine": False}, [(3, 4, 7)]),
    ("InstanceNorm1d", (3,), {}, [(2, 3, 7)]),
    ("InstanceNorm1d", (3,), {}, [(3, 7)]),
    ("InstanceNorm2d", (3,), {"affine": True, "track_running_stats": True}, [(2, 3, 5, 5)]),
    ("InstanceNorm3d", (2,), {"affine": True}, [(2, 2, 3, 3, 3)]),
    ("RMSNorm", (6,), {}, [(4, 6)]),
    ("RMSNorm", ((3, 6),), {"eps": 1e-5}, [(2, 3, 6)]),
    ("RMSNorm", (6,), {"elementwise_affine": False}, [(4, 6)]),
    ("PReLU", (), {}, [(4, 6, 3)]),
    ("PReLU", (6,), {"init": 0.1}, [(4, 6, 3)]),
]


@pytest.mark.parametrize(
    "name,args,kwargs,shapes", LAYER_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(LAYER_CASES)]
)
def test_layer_parity(name, args, kwargs, shapes):
    tmod, emod = build(name, *args, **kwargs)
    check_module(tmod, emod, [randn(*s) for s in shapes])


def test_default_reprs_match_torch():
    extra = [
        ("Embedding", (10, 3), {}),
        ("Embedding", (10, 3), {"padding_idx": 0, "max_norm": 1.0}),
        ("Embedding", (10, 3), {"scale_grad_by_freq": True, "sparse": True}),
        ("EmbeddingBag", (10, 3), {}),
        ("EmbeddingBag", (10, 3), {"mode": "sum", "padding_idx": 1, "max_norm": 2.0}),
        ("LazyLinear", (3,), {}),
        ("Dropout", (0.2, True), {}),
        ("Dropout2d", (), {}),
        ("AlphaDropout", (), {}),
        ("RReLU", (), {}),
        ("Softmax", (), {}),
        ("CrossEntropyLoss", (), {}),
        ("BCEWithLogitsLoss", (), {}),
        ("ReLU", (True,), {}),
        ("LeakyReLU", (0.2, True), {}),
        ("ELU", (0.5, True), {}),
        ("Hardtanh", (-2, 2, True), {}),
        ("Softplus", (2, 10), {}),
    ]
    for name, args, kwargs, *_ in LAYER_CASES + ACTIVATION_CASES + extra:
        tmod, emod = build(name, *args, **kwargs)
        assert repr(emod) == repr(tmod)


# ---- activations ----------------------------------------------------------------------------
ACTIVATION_CASES = [
    ("ReLU", (), {}, [(4, 6)]),
    ("ReLU6", (), {}, [(4, 6)]),
    ("LeakyReLU", (), {}, [(4, 6)]),
    ("LeakyReLU", (0.2,), {}, [(4, 6)]),
    ("ELU", (), {}, [(4, 6)]),
    ("ELU", (0.5,), {}, [(4, 6)]),
    ("SELU", (), {}, [(4, 6)]),
    ("CELU", (), {}, [(4, 6)]),
    ("CELU", (2.0,), {}, [(4, 6)]),
    ("GELU", (), {}, [(4, 6)]),
    ("GELU", ("tanh",), {}, [(4, 6)]),
    ("SiLU", (), {}, [(4, 6)]),
    ("Mish", (), {}, [(4, 6)]),
    ("Sigmoid", (), {}, [(4, 6)]),
    ("Tanh", (), {}, [(4, 6)]),
    ("Hardtanh", (), {}, [(4, 6)]),
    ("Hardtanh", (-2.0, 2.5), {}, [(4, 6)]),
    ("Hardsigmoid", (), {}, [(4, 6)]),
    ("Hardswish", (), {}, [(4, 6)]),
    ("Softplus", (), {}, [(4, 6)]),
    ("Softplus", (2.0, 3.0), {}, [(4, 6)]),
    ("Softsign", (), {}, [(4, 6)]),
    ("Softmax", (1,), {}, [(4, 6)]),
    ("Softmax", (-1,), {}, [(2, 3, 6)]),
    ("Softmax", (0,), {}, [(4, 6)]),
    ("LogSoftmax", (1,), {}, [(4, 6)]),
    ("LogSoftmax", (2,), {}, [(2, 3, 6)]),
    ("Softmin", (1,), {}, [(4, 6)]),
    ("Softmax2d", (), {}, [(2, 3, 4, 4)]),
    ("Threshold", (0.1, 20.0), {}, [(4, 6)]),
    ("Tanhshrink", (), {}, [(4, 6)]),
    ("Hardshrink", (), {}, [(4, 6)]),
    ("Softshrink", (0.3,), {}, [(4, 6)]),
    ("LogSigmoid", (), {}, [(4, 6)]),
    ("GLU", (), {}, [(4, 6)]),
    ("GLU", (0,), {}, [(4, 6)]),
]


@pytest.mark.parametrize(
    "name,args,kwargs,shapes",
    ACTIVATION_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(ACTIVATION_CASES)],
)
def test_activation_parity(name, args, kwargs, shapes):
    tmod, emod = build(name, *args, **kwargs)
    # values spread over every branch (|x| up to ~9), avoiding exact kinks
    check_module(tmod, emod, [randn(*s, scale=3.0) for s in shapes], modes=("train",), steps=1)


def test_activations_large_inputs_are_stable():
    x = np.array([-200.0, -30.0, -1.0, 0.5, 30.0, 200.0], dtype=np.float32)
    for name in ("SiLU", "Mish", "Softplus", "LogSigmoid", "ELU", "SELU", "GELU"):
        tmod, emod = build(name)
        check_module(tmod, emod, [x], modes=("train",), steps=1)


@pytest.mark.parametrize(
    "fn,args",
    [
        ("relu", ()),
        ("relu6", ()),
        ("leaky_relu", (0.1,)),
        ("elu", (1.0,)),
        ("selu", ()),
        ("celu", (1.0,)),
        ("hardtanh", (-1.0, 1.0)),
        ("silu", ()),
        ("hardsigmoid", ()),
        ("hardswish", ()),
        ("mish", ()),
    ],
)
def test_inplace_activations(fn, args):
    x = randn(3, 4, scale=3.0)
    g = randn(3, 4)
    tx, ex = torch.tensor(x, requires_grad=True), ember.tensor(x, requires_grad=True)
    th, eh = tx * 2, ex * 2
    tout = getattr(TF, fn)(th, *args, inplace=True)
    eout = getattr(F, fn)(eh, *args, inplace=True)
    assert eout is eh
    close(eh, th, what="in-place result")
    tout.backward(torch.tensor(g))
    eout.backward(ember.tensor(g))
    close(ex.grad, tx.grad, what="grad through in-place")


def test_softmax_dtype_and_implicit_dim():
    x = randn(2, 5)
    close(
        F.softmax(ember.tensor(x), 1, dtype=ember.float64),
        TF.softmax(torch.tensor(x), 1, dtype=torch.float64),
    )
    with pytest.warns(UserWarning, match="Implicit dimension choice"):
        out = F.softmax(ember.tensor(x))
    close(out, TF.softmax(torch.tensor(x), 1))


def test_top_level_and_method_softmax():
    x = randn(3, 5)
    close(ember.softmax(ember.tensor(x), 1), torch.softmax(torch.tensor(x), 1))
    close(ember.log_softmax(ember.tensor(x), 0), torch.log_softmax(torch.tensor(x), 0))
    close(ember.tensor(x).softmax(-1), torch.tensor(x).softmax(-1))
    got = ember.tensor(x).log_softmax(1, dtype=ember.float64)
    assert got.dtype == ember.float64
    close(got, torch.tensor(x).log_softmax(1, dtype=torch.float64))


def test_activation_double_backward():
    from ember.autograd import gradcheck, gradgradcheck

    x = ember.tensor(rng.standard_normal((3, 4)) * 2, dtype=ember.float64, requires_grad=True)
    for fn in (
        F.silu,
        F.elu,
        F.selu,
        F.softplus,
        F.leaky_relu,
        F.hardswish,
        F.logsigmoid,
        lambda t: F.softmax(t, 1),
        lambda t: F.log_softmax(t, 1),
        lambda t: F.linear(t, x[:2] * 1.0),
    ):
        assert gradcheck(fn, (x,))
        assert gradgradcheck(fn, (x,))


# ---- embeddings -----------------------------------------------------------------------------
def test_embedding_parity():
    idx = randint(10, 3, 5)
    for kwargs in ({}, {"padding_idx": 2}, {"padding_idx": -1}, {"scale_grad_by_freq": True}):
        tmod, emod = build("Embedding", 10, 4, **kwargs)
        check_module(tmod, emod, [idx], modes=("train",), steps=1)
    tmod, emod = build("Embedding", 10, 4, max_norm=1.0)
    check_module(tmod, emod, [idx], modes=("train",), steps=1)  # includes renormed weights
    close(emod.weight, tmod.weight, what="max_norm renormalised weight")


def test_embedding_from_pretrained_and_errors():
    w = randn(5, 3)
    e = nn.Embedding.from_pretrained(ember.tensor(w))
    assert not e.weight.requires_grad
    close(e(ember.tensor([4, 0])), w[[4, 0]])
    with pytest.raises(IndexError, match="index out of range in self"):
        e(ember.tensor([5]))
    with pytest.raises(AssertionError, match="Padding_idx must be within num_embeddings"):
        nn.Embedding(4, 2, padding_idx=4)
    row = nn.Embedding(4, 2, padding_idx=1).weight[1]
    assert float(row.abs().sum()) == 0


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_embedding_bag_parity(mode):
    tmod, emod = build("EmbeddingBag", 10, 4, mode=mode)
    check_module(tmod, emod, [randint(10, 3, 5)], modes=("train",), steps=1)
    idx = np.array([1, 2, 4, 5, 4, 3, 2, 9], dtype=np.int64)
    offsets = np.array([0, 3, 3, 6], dtype=np.int64)  # one empty bag
    check_module(tmod, emod, [idx, offsets], modes=("train",), steps=1)
    tmod, emod = build("EmbeddingBag", 10, 4, mode=mode, padding_idx=2, include_last_offset=True)
    check_module(
        tmod, emod, [idx, np.array([0, 3, 6, 8], dtype=np.int64)], modes=("train",), steps=1
    )


def test_embedding_bag_per_sample_weights():
    tmod, emod = build("EmbeddingBag", 10, 4, mode="sum")
    emod.load_state_dict(tmod.state_dict())
    idx = np.array([1, 2, 4, 5, 4, 3], dtype=np.int64)
    offsets = np.array([0, 2], dtype=np.int64)
    w = randn(6)
    tw, ew = torch.tensor(w, requires_grad=True), ember.tensor(w, requires_grad=True)
    t_out = tmod(torch.tensor(idx), torch.tensor(offsets), per_sample_weights=tw)
    e_out = emod(ember.tensor(idx), ember.tensor(offsets), per_sample_weights=ew)
    close(e_out, t_out)
    g = randn(*t_out.shape)
    t_out.backward(torch.tensor(g))
    e_out.backward(ember.tensor(g))
    close(ew.grad, tw.grad, what="per_sample_weights grad")
    close(emod.weight.grad, tmod.weight.grad, what="weight grad")
    with pytest.raises(NotImplementedError, match="only supported for mode='sum'"):
        F.embedding_bag(
            ember.tensor(idx),
            emod.weight,
            ember.tensor(offsets),
            mode="mean",
            per_sample_weights=ew,
        )


# ---- losses ---------------------------------------------------------------------------------
def _probs(*shape):
    p = rng.random(shape).astype(np.float32) * 0.98 + 0.01
    return p


def _soft_targets(n, c):
    p = rng.random((n, c)).astype(np.float32)
    return p / p.sum(1, keepdims=True)


def _signs(*shape):
    return np.where(rng.random(shape) > 0.5, 1.0, -1.0).astype(np.float32)


LOSS_CASES = [
    ("MSELoss", {}, lambda: [randn(4, 5), randn(4, 5)]),
    ("L1Loss", {}, lambda: [randn(4, 5), randn(4, 5)]),
    ("SmoothL1Loss", {}, lambda: [randn(4, 5), randn(4, 5)]),
    ("SmoothL1Loss", {"beta": 0.5}, lambda: [randn(4, 5), randn(4, 5)]),
    ("HuberLoss", {"delta": 0.7}, lambda: [randn(4, 5), randn(4, 5)]),
    ("CrossEntropyLoss", {}, lambda: [randn(6, 5), randint(5, 6)]),
    ("CrossEntropyLoss", {}, lambda: [randn(5), np.array(3, dtype=np.int64)]),
    ("CrossEntropyLoss", {"ignore_index": 1}, lambda: [randn(8, 3), randint(3, 8)]),
    ("CrossEntropyLoss", {"label_smoothing": 0.2}, lambda: [randn(6, 5), randint(5, 6)]),
    (
        "CrossEntropyLoss",
        {"label_smoothing": 0.1, "ignore_index": 0},
        lambda: [randn(8, 4), randint(4, 8)],
    ),
    ("CrossEntropyLoss", {}, lambda: [randn(2, 4, 3, 5), randint(4, 2, 3, 5)]),
    ("CrossEntropyLoss", {"label_smoothing": 0.3}, lambda: [randn(2, 4, 3), randint(4, 2, 3)]),
    ("CrossEntropyLoss", {}, lambda: [randn(6, 5), _soft_targets(6, 5)]),
    ("CrossEntropyLoss", {"label_smoothing": 0.2}, lambda: [randn(6, 5), _soft_targets(6, 5)]),
    ("NLLLoss", {}, lambda: [randn(6, 5), randint(5, 6)]),
    ("NLLLoss", {"ignore_index": 2}, lambda: [randn(8, 3), randint(3, 8)]),
    ("NLLLoss", {}, lambda: [randn(2, 4, 3, 3), randint(4, 2, 3, 3)]),
    ("BCELoss", {}, lambda: [_probs(4, 5), _probs(4, 5)]),
    ("BCEWithLogitsLoss", {}, lambda: [randn(4, 5, scale=3), _probs(4, 5)]),
    ("KLDivLoss", {"reduction": "batchmean"}, lambda: [randn(4, 5), _probs(4, 5)]),
    ("KLDivLoss", {"log_target": True, "reduction": "sum"}, lambda: [randn(4, 5), randn(4, 5)]),
    ("CosineEmbeddingLoss", {"margin": 0.2}, lambda: [randn(6, 5), randn(6, 5), _signs(6)]),
    ("MarginRankingLoss", {"margin": 0.5}, lambda: [randn(6), randn(6), _signs(6)]),
    ("TripletMarginLoss", {}, lambda: [randn(6, 5), randn(6, 5), randn(6, 5)]),
    (
        "TripletMarginLoss",
        {"p": 1.0, "swap": True, "margin": 2.0},
        lambda: [randn(6, 5), randn(6, 5), randn(6, 5)],
    ),
    ("HingeEmbeddingLoss", {}, lambda: [randn(6, 5), _signs(6, 5)]),
    ("SoftMarginLoss", {}, lambda: [randn(6, 5), _signs(6, 5)]),
    ("PoissonNLLLoss", {}, lambda: [randn(6, 5), _probs(6, 5) * 4]),
    (
        "PoissonNLLLoss",
        {"log_input": False, "full": True},
        lambda: [_probs(6, 5) * 3, _probs(6, 5) * 4],
    ),
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "name,kwargs,make", LOSS_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(LOSS_CASES)]
)
def test_loss_parity(name, kwargs, make, reduction):
    kwargs = dict(kwargs)
    if "reduction" in kwargs and reduction != "mean":
        return  # the case fixes its own reduction
    kwargs.setdefault("reduction", reduction)
    tmod, emod = build(name, **kwargs)
    arrays = make()
    t_in, e_in = _pair_inputs(arrays)
    # targets get gradients too where PyTorch supports them
    try:
        t_out = tmod(*t_in)
    except RuntimeError as exc:
        assert "is not differentiable with respect to argument" in str(exc)
        for ti, ei in zip(t_in[1:], e_in[1:]):
            ti.requires_grad_(False)
            ei.requires_grad_(False)
        t_out = tmod(*t_in)
    e_out = emod(*e_in)
    close(e_out, t_out, what="loss")
    g = randn(*t_out.shape)
    t_out.backward(torch.tensor(g))
    e_out.backward(ember.tensor(g))
    for i, (ti, ei) in enumerate(zip(t_in, e_in)):
        if ti.grad is not None:
            close(ei.grad, ti.grad, what=f"grad of input {i}")


def test_weighted_losses():
    w = rng.random(5).astype(np.float32) + 0.5
    x, t = randn(8, 5), randint(5, 8)
    for kwargs in (
        {},
        {"ignore_index": 2},
        {"label_smoothing": 0.2},
        {"label_smoothing": 0.1, "ignore_index": 0},
        {"reduction": "sum"},
        {"reduction": "none"},
    ):
        for name in ("CrossEntropyLoss", "NLLLoss"):
            if name == "NLLLoss" and "label_smoothing" in kwargs:
                continue
            tmod = getattr(tnn, name)(weight=torch.tensor(w), **kwargs)
            emod = getattr(nn, name)(weight=ember.tensor(w), **kwargs)
            t_in, e_in = _pair_inputs([x, t])
            t_out, e_out = tmod(*t_in), emod(*e_in)
            close(e_out, t_out, what=f"{name} {kwargs}")
            t_out.sum().backward()
            e_out.sum().backward()
            close(e_in[0].grad, t_in[0].grad, what=f"{name} {kwargs} grad")
    # probabilities with weights
    soft = _soft_targets(8, 5)
    t_in, e_in = _pair_inputs([x, soft])
    t_out = TF.cross_entropy(t_in[0], t_in[1], weight=torch.tensor(w), label_smoothing=0.1)
    e_out = F.cross_entropy(e_in[0], e_in[1], weight=ember.tensor(w), label_smoothing=0.1)
    close(e_out, t_out)
    t_out.backward()
    e_out.backward()
    close(e_in[0].grad, t_in[0].grad)
    close(e_in[1].grad, t_in[1].grad)
    # BCE family with weight and pos_weight
    pw = rng.random(5).astype(np.float32) + 0.5
    xl, y = randn(8, 5, scale=3), _probs(8, 5)
    t_in, e_in = _pair_inputs([xl, y, w, pw])
    for i in (2, 3):  # PyTorch: not differentiable w.r.t. weight and pos_weight
        t_in[i].requires_grad_(False)
        e_in[i].requires_grad_(False)
    t_out = TF.binary_cross_entropy_with_logits(t_in[0], t_in[1], t_in[2], pos_weight=t_in[3])
    e_out = F.binary_cross_entropy_with_logits(e_in[0], e_in[1], e_in[2], pos_weight=e_in[3])
    close(e_out, t_out)
    t_out.backward()
    e_out.backward()
    for i in (0, 1):
        close(e_in[i].grad, t_in[i].grad, what=f"bce logits grad {i}")
    # ember also differentiates w.r.t. weight and pos_weight: check those numerically
    from ember.autograd import gradcheck

    args = [ember.tensor(a, dtype=ember.float64, requires_grad=True) for a in (xl, y, w, pw)]
    assert gradcheck(
        lambda *a: F.binary_cross_entropy_with_logits(a[0], a[1], a[2], pos_weight=a[3]), args
    )
    p = _probs(8, 5)
    t_in, e_in = _pair_inputs([p, y, w])
    t_in[2].requires_grad_(False)
    e_in[2].requires_grad_(False)
    t_out = TF.binary_cross_entropy(t_in[0], t_in[1], t_in[2], reduction="sum")
    e_out = F.binary_cross_entropy(e_in[0], e_in[1], e_in[2], reduction="sum")
    close(e_out, t_out)
    t_out.backward()
    e_out.backward()
    for i in range(2):
        close(e_in[i].grad, t_in[i].grad, what=f"bce grad {i}")


def test_gaussian_nll_loss():
    x, y = randn(6, 3), randn(6, 3)
    for var in (_probs(6, 3), _probs(6, 1), _probs(6)):
        t_in, e_in = _pair_inputs([x, y, var])
        t_out = TF.gaussian_nll_loss(*t_in, full=True)
        e_out = F.gaussian_nll_loss(*e_in, full=True)
        close(e_out, t_out)
        t_out.backward()
        e_out.backward()
        for i in range(3):
            close(e_in[i].grad, t_in[i].grad, what=f"gaussian nll grad {i}")


def test_cross_entropy_errors_match_torch():
    x = ember.tensor(randn(3, 4))
    with pytest.raises(
        ValueError,
        match=r"Expected input batch_size \(3\) to match target "
        r"batch_size \(2\)",
    ):
        F.cross_entropy(x, ember.tensor([0, 1]))
    with pytest.raises(IndexError, match="Target 7 is out of bounds."):
        F.cross_entropy(x, ember.tensor([0, 7, 1]))
    with pytest.raises(RuntimeError, match="Expected target size"):
        F.cross_entropy(ember.tensor(randn(2, 4, 3)), ember.tensor(randint(4, 2, 4)))
    with pytest.raises(RuntimeError, match="weight tensor should be defined either for all 4"):
        F.cross_entropy(x, ember.tensor([0, 1, 2]), weight=ember.ones(3))
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.cross_entropy(x, ember.tensor([0, 1, 2]), reduction="avg")


def test_cross_entropy_all_ignored_is_nan_like_torch():
    t = torch.tensor([-100, -100])
    e_val = F.cross_entropy(ember.tensor(randn(2, 3)), ember.tensor([-100, -100]))
    t_val = TF.cross_entropy(torch.randn(2, 3), t)
    assert np.isnan(float(e_val)) and np.isnan(float(t_val))


# ---- functional helpers ----------------------------------------------------------------------
def test_functional_helpers_parity():
    a, b = randn(4, 6), randn(4, 6)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    ea, eb = ember.tensor(a, requires_grad=True), ember.tensor(b, requires_grad=True)
    pairs = [
        (TF.normalize(ta), F.normalize(ea)),
        (TF.normalize(ta, p=1, dim=0), F.normalize(ea, p=1, dim=0)),
        (TF.cosine_similarity(ta, tb), F.cosine_similarity(ea, eb)),
        (TF.cosine_similarity(ta, tb, dim=0), F.cosine_similarity(ea, eb, dim=0)),
        (TF.pairwise_distance(ta, tb), F.pairwise_distance(ea, eb)),
        (
            TF.pairwise_distance(ta, tb, p=3.0, keepdim=True),
            F.pairwise_distance(ea, eb, p=3.0, keepdim=True),
        ),
        (TF.pdist(ta), F.pdist(ea)),
    ]
    for i, (t_out, e_out) in enumerate(pairs):
        close(e_out, t_out, what=f"helper {i}")
        t_out.sum().backward()
        e_out.sum().backward()
        close(ea.grad, ta.grad, what=f"helper {i} grad")
        ta.grad = None
        ea.grad = None
        tb.grad = None
        eb.grad = None


def test_one_hot():
    idx = randint(5, 3, 4)
    close(F.one_hot(ember.tensor(idx)), TF.one_hot(torch.tensor(idx)))
    close(F.one_hot(ember.tensor(idx), 7), TF.one_hot(torch.tensor(idx), 7))
    assert F.one_hot(ember.tensor(idx)).dtype == ember.int64
    with pytest.raises(RuntimeError, match="Class values must be smaller than num_classes."):
        F.one_hot(ember.tensor([1, 5]), 3)
    with pytest.raises(RuntimeError, match="Class values must be non-negative."):
        F.one_hot(ember.tensor([-1, 0]))


def test_linear_errors_match_torch():
    w = ember.ones(3, 4)
    with pytest.raises(
        RuntimeError,
        match=r"mat1 and mat2 shapes cannot be multiplied "
        r"\(2x5 and 4x3\)",
    ):
        F.linear(ember.ones(2, 5), w)
    with pytest.raises(
        RuntimeError, match="mat1 and mat2 must have the same dtype, but got Double and Float"
    ):
        F.linear(ember.ones(2, 4, dtype=ember.float64), w)


# ---- dropout --------------------------------------------------------------------------------
def test_dropout_train_eval_and_statistics():
    ember.manual_seed(0)
    d = nn.Dropout(0.3)
    x = ember.ones(200, 500, requires_grad=True)
    y = d(x)
    kept = y.detach().numpy() != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y.detach().numpy()[kept], 1 / 0.7, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy() != 0, kept)  # the same mask in backward
    d.eval()
    assert d(x) is x
    assert float(F.dropout(x, 1.0).abs().sum()) == 0
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        nn.Dropout(1.5)
    ember.manual_seed(1)
    a = F.dropout(x, 0.5).detach().numpy()
    ember.manual_seed(1)
    b = F.dropout(x, 0.5).detach().numpy()
    np.testing.assert_array_equal(a, b)  # masks come from ember's generator


def test_feature_dropout_zeroes_whole_channels():
    x = ember.ones(8, 16, 5, 5)
    y = nn.Dropout2d(0.5)(x).numpy()
    per_channel = y.reshape(8, 16, -1)
    assert np.all((per_channel == 0).all(-1) | (per_channel == 2).all(-1))
    y1 = nn.Dropout1d(0.5)(ember.ones(4, 16, 7)).numpy()
    assert np.all((y1 == 0).all(-1) | (y1 == 2).all(-1))
    with pytest.warns(UserWarning, match="Received a 2-D input to dropout2d"):
        y2 = F.dropout2d(ember.ones(64, 64), 0.5).numpy()  # PyTorch: elementwise, with a warning
    assert 0 < (y2 == 0).sum(1).min() and (y2 == 0).sum(1).max() < 64
    with pytest.raises(RuntimeError, match="Feature dropout requires at least 2 dimensions"):
        F.dropout2d(ember.ones(4), 0.5)


def test_alpha_dropout_keeps_moments():
    ember.manual_seed(0)
    x = ember.randn(400, 400)
    y = nn.AlphaDropout(0.2)(x).numpy()
    assert abs(y.mean()) < 0.02 and abs(y.std() - 1) < 0.02
    m = nn.AlphaDropout(0.2).eval()
    assert m(x) is x


def test_dropout_inplace():
    x = ember.ones(10, 10, requires_grad=True)
    h = x * 1
    out = F.dropout(h, 0.5, inplace=True)
    assert out is h
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), h.detach().numpy())


# ---- utils ----------------------------------------------------------------------------------
def test_clip_grad_norm_and_value_match_torch():
    tm, em = build("Linear", 4, 3)
    em.load_state_dict(tm.state_dict())
    x = randn(5, 4, scale=10)
    for norm_type in (2.0, 1.0, float("inf"), 3.0):
        for m, lib in ((tm, torch), (em, ember)):
            m.zero_grad()
            (m(lib.tensor(x)) ** 2).sum().backward()
        t_total = torch.nn.utils.clip_grad_norm_(tm.parameters(), 1.5, norm_type)
        e_total = nn.utils.clip_grad_norm_(em.parameters(), 1.5, norm_type)
        close(e_total, t_total, what=f"total norm {norm_type}")
        close(em.weight.grad, tm.weight.grad, what="clipped grad")
    torch.nn.utils.clip_grad_value_(tm.parameters(), 0.01)
    nn.utils.clip_grad_value_(em.parameters(), 0.01)
    close(em.weight.grad, tm.weight.grad)
    em.weight.grad.fill_(float("nan"))
    with pytest.raises(RuntimeError, match="is non-finite, so it cannot be clipped"):
        nn.utils.clip_grad_norm_(em.parameters(), 1.0, error_if_nonfinite=True)
    assert float(nn.utils.clip_grad_norm_([], 1.0)) == 0.0


def test_parameters_vector_roundtrip():
    m = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    vec = nn.utils.parameters_to_vector(m.parameters())
    assert vec.shape == (11,)
    nn.utils.vector_to_parameters(vec * 0 + 1, m.parameters())
    assert all(float(p.sum()) == p.numel() for p in m.parameters())
    with pytest.raises(TypeError, match="expected ember.Tensor"):
        nn.utils.vector_to_parameters([1.0], m.parameters())


def test_pad_sequence_matches_torch():
    seqs = [randn(3, 2), randn(5, 2), randn(1, 2)]
    for kwargs in ({}, {"batch_first": True}, {"padding_value": -1.0, "padding_side": "left"}):
        t_in, e_in = _pair_inputs(seqs)
        t_out = torch.nn.utils.rnn.pad_sequence(t_in, **kwargs)
        e_out = nn.utils.rnn.pad_sequence(e_in, **kwargs)
        close(e_out, t_out, what=str(kwargs))
        t_out.sum().backward()
        e_out.sum().backward()
        close(e_in[1].grad, t_in[1].grad)


# ---- float64 gradcheck of the fused Functions ---------------------------------------------
def _t64(a, grad=True):
    return ember.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def test_fused_ops_gradcheck():
    from ember.autograd import gradcheck

    x = _t64(rng.standard_normal((5, 4)))
    x4 = _t64(rng.standard_normal((3, 4, 2, 2)))
    w4, b4 = _t64(rng.random(4) + 0.5), _t64(rng.standard_normal(4))
    tgt = ember.tensor([0, 3, 1, 1, 2])
    cw = _t64(rng.random(4) + 0.5, grad=False)
    soft = _t64(_soft_targets(5, 4))
    cases = [
        (lambda a: F.cross_entropy(a, tgt), (x,)),
        (lambda a: F.cross_entropy(a, tgt, weight=cw, label_smoothing=0.2, ignore_index=1), (x,)),
        (lambda a: F.cross_entropy(a, tgt, reduction="none"), (x,)),
        (lambda a, s: F.cross_entropy(a, s, label_smoothing=0.1), (x, soft)),
        (lambda a: F.nll_loss(a, tgt, weight=cw, reduction="sum"), (x,)),
        (lambda a, w, b: F.batch_norm(a, None, None, w, b, True), (x4, w4, b4)),
        (
            lambda a, w, b: F.layer_norm(
                a,
                (2, 2),
                w[:2].reshape(1, 2).expand(2, 2) * 1.0,
                b[:2].reshape(1, 2).expand(2, 2) * 1.0,
            ),
            (x4, w4, b4),
        ),
        (lambda a, w, b: F.group_norm(a, 2, w, b), (x4, w4, b4)),
        (lambda a: F.instance_norm(a), (x4,)),
        (lambda a: F.gelu(a), (x,)),
        (lambda a: F.gelu(a, approximate="tanh"), (x,)),
        (lambda a: F.mish(a), (x,)),
        (lambda a, w: F.prelu(a, w), (x4, w4)),
        (lambda a: F.embedding(ember.tensor([[0, 2], [2, 1]]), a, padding_idx=4), (x,)),
        (
            lambda a: F.embedding_bag(
                ember.tensor([0, 2, 2, 4, 1]), a, ember.tensor([0, 2, 2]), mode="mean"
            ),
            (x,),
        ),
        (
            lambda a: F.embedding_bag(
                ember.tensor([0, 2, 3, 4, 1]), a, ember.tensor([0, 2, 2]), mode="max"
            ),
            (x,),
        ),
        (lambda a, s: F.binary_cross_entropy(a, s), (_t64(_probs(3, 4)), _t64(_probs(3, 4)))),
        (
            lambda a, b: F.bilinear(a, a, b),
            (_t64(rng.standard_normal((2, 3))), _t64(rng.standard_normal((2, 3, 3)))),
        ),
    ]
    for i, (fn, args) in enumerate(cases):
        assert gradcheck(fn, args), f"case {i}"


@pytest.mark.parametrize(
    "name,kwargs", [("gelu", {}), ("gelu", {"approximate": "tanh"}), ("mish", {})]
)
def test_fused_activation_double_backward_matches_torch(name, kwargs):
    """A gradient penalty through GELU / Mish: float64 gradgradcheck, and the second-order
    gradient against PyTorch's."""
    from ember.autograd import gradgradcheck

    x = rng.standard_normal((4, 5)) * 3  # well into both tails
    fn = getattr(F, name)
    assert gradgradcheck(lambda a: fn(a, **kwargs), (_t64(x),))
    xe, xt = _t64(x), torch.tensor(x, requires_grad=True)
    (ge,) = ember.autograd.grad(fn(xe, **kwargs).sum(), xe, create_graph=True)
    (gt,) = torch.autograd.grad(
        getattr(torch.nn.functional, name)(xt, **kwargs).sum(), xt, create_graph=True
    )
    (gge,) = ember.autograd.grad((ge * ge).sum(), xe)
    (ggt,) = torch.autograd.grad((gt * gt).sum(), xt)
    np.testing.assert_allclose(gge.numpy(), ggt.numpy(), rtol=1e-10, atol=1e-12)


def _second_order(m, fn, arrays):
    """Gradients of the squared first-order gradients (a gradient penalty, or MAML's outer
    step) for framework ``m``."""
    xs = [m.tensor(a, requires_grad=True) for a in arrays]
    grads = m.autograd.grad(fn(m, *xs).sum(), xs, create_graph=True)
    return [g.detach().numpy() for g in m.autograd.grad(sum((g * g).sum() for g in grads), xs)]


def _functional(m):
    return F if m is ember else TF


@pytest.mark.parametrize(
    "case",
    [
        "ce",
        "ce-weight-smoothing-ignore",
        "ce-none",
        "ce-sum-smooth",
        "ce-probs",
        "ce-probs-weight-smoothing",
        "nll-weight-sum",
    ],
)
def test_loss_double_backward_matches_torch(case):
    from ember.autograd import gradgradcheck

    x = rng.standard_normal((5, 4))
    tgt = [0, 3, 1, 1, 2]
    cw = rng.random(4) + 0.5
    probs = _soft_targets(5, 4).astype(np.float64)
    kw = {
        "ce": {},
        "ce-weight-smoothing-ignore": dict(weight=cw, label_smoothing=0.2, ignore_index=1),
        "ce-none": dict(reduction="none"),
        "ce-sum-smooth": dict(reduction="sum", label_smoothing=0.1),
        "ce-probs": {},
        "ce-probs-weight-smoothing": dict(weight=cw, label_smoothing=0.1),
        "nll-weight-sum": dict(weight=cw, reduction="sum", ignore_index=3),
    }[case]

    def fn(m, a, *p):
        kwm = {k: (m.tensor(v) if k == "weight" else v) for k, v in kw.items()}
        if case.startswith("nll"):
            return _functional(m).nll_loss(m.log_softmax(a, 1), m.tensor(tgt), **kwm)
        target = p[0] if p else m.tensor(tgt)
        return _functional(m).cross_entropy(a, target, **kwm)

    arrays = [x, probs] if "probs" in case else [x]
    assert gradgradcheck(lambda *t: fn(ember, *t), tuple(_t64(a) for a in arrays))
    for got, want in zip(_second_order(ember, fn, arrays), _second_order(torch, fn, arrays)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "case",
    [
        "layer_norm",
        "layer_norm-no-affine",
        "group_norm",
        "instance_norm",
        "batch_norm-train",
        "batch_norm-eval",
    ],
)
def test_norm_double_backward_matches_torch(case):
    from ember.autograd import gradgradcheck

    x = rng.standard_normal((3, 4, 2, 2))
    w, b = rng.random(4) + 0.5, rng.standard_normal(4)
    rm, rv = rng.standard_normal(4), rng.random(4) + 0.5

    def fn(m, a, *wb):
        f = _functional(m)
        if case == "layer_norm":
            return f.layer_norm(a, (2, 2), *[t.reshape(2, 2) for t in wb]).pow(3)
        if case == "layer_norm-no-affine":
            return f.layer_norm(a, (4, 2, 2)).pow(3)
        if case == "group_norm":
            return f.group_norm(a, 2, *wb).pow(3)
        if case == "instance_norm":
            return f.instance_norm(a, weight=wb[0], bias=wb[1]).pow(3)
        return f.batch_norm(
            a, m.tensor(rm.copy()), m.tensor(rv.copy()), *wb, training=case.endswith("train")
        ).pow(3)

    arrays = [x] if case.endswith("no-affine") else [x, w, b]
    assert gradgradcheck(lambda *t: fn(ember, *t), tuple(_t64(a) for a in arrays))
    for got, want in zip(_second_order(ember, fn, arrays), _second_order(torch, fn, arrays)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("case", ["bce", "bce-weight", "bce-logits", "bce-logits-pos-weight"])
def test_bce_double_backward_matches_torch(case):
    from ember.autograd import gradgradcheck

    x = rng.random((3, 4)) * 0.8 + 0.1
    logits = rng.standard_normal((3, 4)) * 2
    t = rng.random((3, 4))
    w = rng.random((3, 4)) + 0.5
    pw = rng.random(4) + 0.5

    def fn(m, a, tt):
        f = _functional(m)
        if case == "bce":
            return f.binary_cross_entropy(a, tt)
        if case == "bce-weight":
            return f.binary_cross_entropy(a, tt, weight=m.tensor(w), reduction="sum")
        if case == "bce-logits":
            return f.binary_cross_entropy_with_logits(a, tt)
        return f.binary_cross_entropy_with_logits(a, tt, pos_weight=m.tensor(pw), reduction="none")

    arrays = [logits if "logits" in case else x, t]
    assert gradgradcheck(lambda *a: fn(ember, *a), tuple(_t64(a) for a in arrays))
    for got, want in zip(_second_order(ember, fn, arrays), _second_order(torch, fn, arrays)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("kwargs", [{}, {"padding_idx": 2}, {"scale_grad_by_freq": True}])
def test_embedding_double_backward_matches_torch(kwargs):
    from ember.autograd import gradgradcheck

    w = rng.standard_normal((5, 3))
    idx = [[0, 2, 4], [2, 2, 1]]

    def fn(m, weight):  # a penalty on the weight gradient: second order through the lookup
        return _functional(m).embedding(m.tensor(idx), weight, **kwargs) ** 3

    if kwargs.get("scale_grad_by_freq"):
        # The first-order "gradient" is scaled on purpose, so gradgradcheck does not apply;
        # the scaled scatter's own derivative must be exact. (PyTorch's double backward
        # leaves the scaling out of it; ember does not.)
        from ember.autograd import gradcheck
        from ember.ops.embedding_ops import EmbeddingBackward

        ids = ember.tensor(idx)
        assert gradcheck(
            lambda g: EmbeddingBackward.apply(g, ids._data, (5, 3), None, True),
            (_t64(rng.standard_normal((2, 3, 3))),),
        )
        return
    assert gradgradcheck(lambda a: fn(ember, a), (_t64(w),))
    for got, want in zip(_second_order(ember, fn, [w]), _second_order(torch, fn, [w])):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "mode,psw,pad",
    [("sum", False, None), ("mean", False, 4), ("sum", True, None), ("sum", True, 2)],
)
def test_embedding_bag_double_backward(mode, psw, pad):
    # PyTorch has no double backward for embedding_bag (NotImplementedError): gradgradcheck
    # (float64, finite differences of the first-order gradient) is the reference
    from ember.autograd import gradgradcheck

    w, sample_w = rng.standard_normal((6, 3)), rng.random(6) + 0.5

    def fn(weight, *p):
        kw = {"mode": mode, "padding_idx": pad}
        if p:
            kw["per_sample_weights"] = p[0]
        return (
            F.embedding_bag(ember.tensor([0, 2, 2, 4, 1, 5]), weight, ember.tensor([0, 2, 2]), **kw)
            ** 3
        )

    assert gradgradcheck(fn, tuple(_t64(a) for a in ([w, sample_w] if psw else [w])))


def test_embedding_bag_max_refuses_double_backward_clearly():
    w = _t64(rng.standard_normal((6, 3)))
    out = F.embedding_bag(ember.tensor([0, 2, 4, 1]), w, ember.tensor([0, 2]), mode="max")
    with pytest.raises(RuntimeError, match=r"mode='max'\) does not support higher-order"):
        ember.autograd.grad((out**3).sum(), w, create_graph=True)
