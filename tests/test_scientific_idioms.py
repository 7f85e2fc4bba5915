"""The PyTorch idioms of neuraloperator 2.0, deepxde 1.15 (pytorch backend), pykeen 1.11 and
torch-harmonics 0.7, in small programs of our own, checked against PyTorch (none of the
libraries is imported).

neuraloperator's ``SpectralConv`` takes ``rfftn`` of its input, multiplies the kept modes by a
complex weight (``nn.Parameter`` of ``cfloat``) in an ``einsum`` (through tensorly and
opt_einsum, whose backend for a tensor is ``type(x).__module__``'s package), writes them into
``torch.zeros(..., dtype=cfloat)`` and goes back with ``irfftn(s=...)``; its weights are
trained by Adam on complex parameters. deepxde's PDE residuals are higher-order gradients
(``torch.autograd.grad(..., create_graph=True)``), minimised by Adam and then
``LBFGS(line_search_fn="strong_wolfe")``. pykeen scores triples with embeddings (TransE's
distance, DistMult's trilinear product, ComplEx's ``view_as_complex``), corrupts positives with
``torch.randint(high=..., size=...)``, trains with margin / softplus losses and ranks the true
entity among all; it imports ``torch.optim.adamw``. torch-harmonics' DISCO convolution
multiplies by a 3-D sparse COO buffer with ``torch.bmm(psi, x)``.
"""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
import torch

import ember

LIBS = [torch, ember]


def _np(t):
    return t.detach().numpy()


def _cplx(rng, *shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


# ---- neuraloperator: complex spectral convolution --------------------------------------------


@pytest.mark.parametrize(
    "eq, sa, sb",
    [
        ("bixy,ioxy->boxy", (2, 3, 4, 3), (3, 5, 4, 3)),  # FNO's dense contraction
        ("bix,iox->box", (2, 3, 4), (3, 2, 4)),
        ("bi,io->bo", (2, 3), (3, 4)),
    ],
)
def test_complex_einsum_gradients(eq, sa, sb):
    # d(a b)/da is conj(b) in torch's convention for complex gradients
    rng = np.random.default_rng(0)
    a0, b0 = _cplx(rng, *sa), _cplx(rng, *sb)
    out_shape = torch.einsum(eq, torch.tensor(a0), torch.tensor(b0)).shape
    up = _cplx(rng, *out_shape)
    res = []
    for T in LIBS:
        a = T.tensor(a0, requires_grad=True)
        b = T.tensor(b0, requires_grad=True)
        out = T.einsum(eq, a, b)
        (out * T.tensor(up)).real.sum().backward()
        res.append((_np(out), _np(a.grad), _np(b.grad)))
    for x, y in zip(*res):
        np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-5)


def test_complex_einsum_three_operands_and_double_backward():
    rng = np.random.default_rng(1)
    x0, u0, v0 = _cplx(rng, 2, 3, 4), _cplx(rng, 3, 2), _cplx(rng, 4, 2)
    res = []
    for T in LIBS:
        x = T.tensor(x0, requires_grad=True)
        u = T.tensor(u0, requires_grad=True)
        v = T.tensor(v0, requires_grad=True)
        y = T.einsum("bix,ir,xr->bx", x, u, v)
        (gx,) = T.autograd.grad(y.abs().sum(), x, create_graph=True)
        gx.abs().sum().backward()
        res.append((_np(y), _np(gx), _np(u.grad), _np(v.grad)))
    for a, b in zip(*res):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def _spectral_conv(T, x, w, modes=4):
    """neuraloperator's SpectralConv (2-D, dense weight, fft_norm="forward")."""
    b, c, h, wd = x.shape
    xf = T.fft.rfftn(x, norm="forward", dim=[-2, -1])
    xf = T.fft.fftshift(xf, dim=[-2])
    out = T.zeros([b, w.shape[1], h, wd // 2 + 1], dtype=T.cfloat)
    rows = slice(h // 2 - modes // 2, h // 2 + modes // 2)  # centred after fftshift
    sl = (slice(None), slice(None), rows, slice(0, modes))
    out[sl] = T.einsum("bixy,ioxy->boxy", xf[sl], w)
    out = T.fft.fftshift(out, dim=[-2])
    return T.fft.irfftn(out, s=(h, wd), dim=[-2, -1], norm="forward")


def test_spectral_conv_forward_backward_and_adam_on_complex_weights():
    rng = np.random.default_rng(2)
    x0 = rng.standard_normal((2, 3, 12, 12)).astype(np.float32)
    y0 = rng.standard_normal((2, 2, 12, 12)).astype(np.float32)
    w0 = (_cplx(rng, 3, 2, 4, 4) / 6).astype(np.complex64)
    res = []
    for T in LIBS:
        x = T.tensor(x0, requires_grad=True)
        w = T.nn.Parameter(T.tensor(w0))
        opt = T.optim.Adam([w], lr=0.05)
        losses = []
        for i in range(4):
            opt.zero_grad()
            out = _spectral_conv(T, x, w)
            # neuraloperator's LpLoss: relative L2 over the grid, summed over the batch
            diff = T.linalg.vector_norm((out - T.tensor(y0)).flatten(1), 2, dim=-1)
            loss = (diff / T.linalg.vector_norm(T.tensor(y0).flatten(1), 2, dim=-1)).sum()
            loss.backward()
            if i == 0:
                first = (_np(out), _np(x.grad), _np(w.grad))
            losses.append(loss.item())
            opt.step()
        res.append((first, np.array(losses), _np(w)))
    (f_t, l_t, w_t), (f_e, l_e, w_e) = res
    for a, b in zip(f_t, f_e):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(l_e, l_t, rtol=1e-5)
    np.testing.assert_allclose(w_e, w_t, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "name, kw",
    [
        ("Adam", dict(lr=0.1)),
        ("Adam", dict(lr=0.1, amsgrad=True)),
        ("AdamW", dict(lr=0.1, weight_decay=0.1)),
        ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
        ("Adagrad", dict(lr=0.1)),
        ("Adamax", dict(lr=0.1)),
        ("NAdam", dict(lr=0.1)),
        ("RAdam", dict(lr=0.1)),
        ("Adadelta", dict(lr=1.0)),
        ("Rprop", dict(lr=0.1)),
        ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ],
)
def test_optimizers_step_complex_parameters_as_real_pairs(name, kw):
    # torch steps a complex parameter as torch.view_as_real of it: Adam's g * g is per part
    rng = np.random.default_rng(3)
    w0, t0 = _cplx(rng, 3, 4), _cplx(rng, 3, 4)
    res = []
    for T in LIBS:
        w = T.tensor(w0, requires_grad=True)
        s = T.tensor(np.complex64(0.5 - 1j), requires_grad=True)  # a 0-d complex parameter
        opt = getattr(T.optim, name)([w, s], **kw)
        for _ in range(4):
            opt.zero_grad()
            ((w * s - T.tensor(t0)).abs() ** 2).sum().backward()
            opt.step()
        res.append((_np(w), _np(s)))
    for a, b in zip(*res):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_on_complex_and_real_parameters(line_search_fn):
    rng = np.random.default_rng(9)
    w0, t0 = _cplx(rng, 4), _cplx(rng, 4)
    res = []
    for T in LIBS:
        w = T.tensor(w0, requires_grad=True)
        v = T.tensor([0.5, -1.0], requires_grad=True)
        opt = T.optim.LBFGS([v, w], max_iter=5, line_search_fn=line_search_fn)

        def closure(T=T, opt=opt, w=w, v=v):
            opt.zero_grad()
            loss = ((w * w - T.tensor(t0)).abs() ** 2).sum() + (v**2).sum() * v.sum()
            loss.backward()
            return loss

        opt.step(closure)
        res.append((_np(w), _np(v)))
    for a, b in zip(*res):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def _fresh_opt_einsum(tmp_path):
    """A stand-in ``opt_einsum`` package: its dispatch table as the real one has it."""
    pkg = tmp_path / "opt_einsum"
    (pkg / "backends").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "backends" / "__init__.py").write_text("")
    (pkg / "backends" / "dispatch.py").write_text(
        '_aliases = {"torch": "opt_einsum.backends.torch"}\n'
    )


def test_opt_einsum_dispatch_table_names_ember(tmp_path, monkeypatch):
    # tensorly's einsum goes through opt_einsum, which looks up ``type(x).__module__``'s
    # package: "ember", served by ember's backend module with NumPy's signatures
    _fresh_opt_einsum(tmp_path)
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] == "opt_einsum"}
    for k in saved:
        del sys.modules[k]
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        dispatch = importlib.import_module("opt_einsum.backends.dispatch")
        package = type(ember.ones(1)).__module__.split(".")[0]  # opt_einsum's backend name
        backend = importlib.import_module(dispatch._aliases[package])
        assert dispatch._aliases["torch"] == "opt_einsum.backends.torch"
    finally:
        for k in [k for k in sys.modules if k.split(".")[0] == "opt_einsum"]:
            del sys.modules[k]
        sys.modules.update(saved)
    rng = np.random.default_rng(4)
    a0 = rng.standard_normal((2, 3, 4)).astype(np.float32)
    b0 = rng.standard_normal((4, 3, 5)).astype(np.float32)
    a, b = ember.tensor(a0), ember.tensor(b0)
    ta, tb = torch.tensor(a0), torch.tensor(b0)
    np.testing.assert_allclose(
        _np(backend.tensordot(a, b, axes=([1, 2], [1, 0]))),
        _np(torch.tensordot(ta, tb, dims=([1, 2], [1, 0]))),
        rtol=1e-5,
    )
    assert backend.transpose(a, (2, 0, 1)).shape == (4, 2, 3)
    np.testing.assert_allclose(
        _np(backend.einsum("abc,cbd->ad", a, b)),
        _np(torch.einsum("abc,cbd->ad", ta, tb)),
        rtol=1e-5,
    )


def test_opt_einsum_contract_on_ember_tensors():
    oe = pytest.importorskip("opt_einsum")
    rng = np.random.default_rng(5)
    ops = [rng.standard_normal(s).astype(np.float32) for s in [(2, 3, 4), (3, 5), (4, 5, 6)]]
    ref = oe.contract("abc,bd,cde->ae", *[torch.tensor(o) for o in ops])
    out = oe.contract("abc,bd,cde->ae", *[ember.tensor(o) for o in ops])
    np.testing.assert_allclose(_np(out), _np(ref), rtol=1e-4)


def test_bmm_of_a_3d_sparse_coo_tensor():
    # torch-harmonics' DISCO convolution: torch.bmm(psi, x) with psi a 3-D sparse COO buffer
    rng = np.random.default_rng(8)
    idx = np.array([[0, 1, 1, 0, 2], [0, 1, 2, 2, 0], [1, 0, 2, 1, 3]])
    vals = rng.standard_normal(5).astype(np.float32)
    x0 = rng.standard_normal((3, 4, 5)).astype(np.float32)
    res = []
    for T in LIBS:
        v = T.tensor(vals, requires_grad=True)
        psi = T.sparse_coo_tensor(T.tensor(idx), v, (3, 3, 4))
        x = T.tensor(x0, requires_grad=True)
        y = T.bmm(psi, x)
        (y**2).sum().backward()
        res.append((_np(y), _np(x.grad), _np(v.grad)))
    for a, b in zip(*res):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="batch2"):
        ember.bmm(
            ember.sparse_coo_tensor(ember.tensor(idx), ember.tensor(vals), (3, 3, 4)),
            ember.ones(3, 5, 2),
        )


# ---- deepxde: PINN residuals with higher-order gradients, Adam then L-BFGS ------------------


def _mlp_weights(rng, sizes):
    return [
        (
            rng.uniform(-1, 1, (n_out, n_in)) * np.sqrt(6 / (n_in + n_out)),
            rng.uniform(-0.3, 0.3, n_out),
        )
        for n_in, n_out in zip(sizes[:-1], sizes[1:])
    ]


def _burgers_program(T, weights, xt, n_lbfgs):
    net = T.nn.Sequential()
    for i, (w, b) in enumerate(weights):
        lin = T.nn.Linear(w.shape[1], w.shape[0], dtype=T.float64)
        with T.no_grad():
            lin.weight.copy_(T.tensor(w))
            lin.bias.copy_(T.tensor(b))
        net.append(lin)
        if i < len(weights) - 1:
            net.append(T.nn.Tanh())
    x = T.tensor(xt, requires_grad=True)

    def residual():
        y = net(x)
        # deepxde's jacobian / hessian: grad of one output column, graph kept
        dy = T.autograd.grad(y, x, grad_outputs=T.ones_like(y), create_graph=True)[0]
        dy_x, dy_t = dy[:, 0:1], dy[:, 1:2]
        dy_xx = T.autograd.grad(dy_x, x, grad_outputs=T.ones_like(dy_x), create_graph=True)[0]
        return dy_t + y * dy_x - 0.01 / np.pi * dy_xx[:, 0:1], y

    def loss_fn():
        r, y = residual()
        ic = (y[:4] + T.sin(np.pi * x[:4, 0:1])) ** 2
        return (r**2).mean() + ic.mean()

    opt = T.optim.Adam(net.parameters(), lr=1e-3)
    adam_losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        adam_losses.append(loss.item())
    lbfgs = T.optim.LBFGS(
        net.parameters(),
        lr=1,
        max_iter=n_lbfgs,
        tolerance_grad=1e-8,
        tolerance_change=0,
        history_size=100,
        line_search_fn="strong_wolfe",
    )

    def closure():
        lbfgs.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    lbfgs.step(closure)
    state = lbfgs.state_dict()["state"][0]
    return np.array(adam_losses), loss_fn().item(), state["n_iter"], state["func_evals"]


def test_pinn_burgers_residual_adam_then_lbfgs_float64():
    rng = np.random.default_rng(6)
    weights = _mlp_weights(rng, [2, 12, 12, 1])
    xt = np.concatenate([rng.uniform(-1, 1, (24, 1)), rng.uniform(0, 1, (24, 1))], axis=1)
    ref = _burgers_program(torch, weights, xt, 15)
    out = _burgers_program(ember, weights, xt, 15)
    np.testing.assert_allclose(out[0], ref[0], rtol=1e-10)
    # L-BFGS amplifies float64 rounding after some tens of iterations; 15 stay close
    np.testing.assert_allclose(out[1], ref[1], rtol=1e-6)
    assert out[2:] == ref[2:]


# ---- pykeen: KGE scoring, negative sampling, margin losses, ranks ---------------------------


def _kge_program(T, ent0, rel0, cent0, crel0, triples):
    ent = T.nn.Embedding.from_pretrained(T.tensor(ent0), freeze=False)
    rel = T.nn.Embedding.from_pretrained(T.tensor(rel0), freeze=False)
    cent = T.nn.Embedding.from_pretrained(T.tensor(cent0), freeze=False)
    crel = T.nn.Embedding.from_pretrained(T.tensor(crel0), freeze=False)
    params = [ent.weight, rel.weight, cent.weight, crel.weight]
    opt = T.optim.Adam(params, lr=0.01)
    T.manual_seed(0)
    pos = T.tensor(triples)
    out = {}
    for step in range(3):
        # pykeen's basic negative sampler: replace the head or the tail, never by itself
        neg = pos.clone()
        sel = T.arange(len(pos)) % 2 * 2  # column 0 (head) or 2 (tail)
        repl = T.randint(high=ent0.shape[0] - 1, size=(len(pos),))
        orig = neg[T.arange(len(pos)), sel]
        repl += (repl >= orig).long()
        neg[T.arange(len(pos)), sel] = repl

        def transe(t):  # TransE: -||h + r - t||_1
            h, r, tl = ent(t[:, 0]), rel(t[:, 1]), ent(t[:, 2])
            return -T.linalg.vector_norm(h + r - tl, ord=1, dim=-1)

        def distmult(t):
            return (ent(t[:, 0]) * rel(t[:, 1]) * ent(t[:, 2])).sum(-1)

        def complex_(t):  # ComplEx: Re(<h, r, conj(t)>), real pairs viewed as complex
            h = T.view_as_complex(cent(t[:, 0]).view(-1, 3, 2))
            r = T.view_as_complex(crel(t[:, 1]).view(-1, 3, 2))
            tl = T.view_as_complex(cent(t[:, 2]).view(-1, 3, 2))
            return T.real(h * r * T.conj(tl)).sum(-1)

        margin = T.nn.MarginRankingLoss(margin=1.0)
        loss = margin(transe(pos), transe(neg), T.ones(len(pos)))
        loss = loss + T.nn.functional.softplus(-distmult(pos)).mean()
        loss = loss + T.nn.functional.softplus(distmult(neg)).mean()
        logits = T.cat([complex_(pos), complex_(neg)])
        labels = T.cat([T.ones(len(pos)), T.zeros(len(pos))])
        loss = loss + T.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        out[f"loss{step}"] = loss.item()
        out[f"neg{step}"] = neg.numpy()
    with T.no_grad():
        # rank-based evaluation of tail prediction: score every entity as the tail
        h = ent(pos[:, 0])[:, None, :] + rel(pos[:, 1])[:, None, :]
        scores = -(h - ent.weight[None]).abs().sum(-1)
        true = scores[T.arange(len(pos)), pos[:, 2]][:, None]
        optimistic = (scores > true).sum(-1) + 1
        pessimistic = (scores >= true).sum(-1)
        rank = (optimistic + pessimistic).double() / 2
        out["mrr"] = (1 / rank).mean().item()
        out["hits3"] = (rank <= 3).double().mean().item()
    return out


def test_kge_scoring_negative_sampling_and_ranks():
    rng = np.random.default_rng(7)
    ent0 = rng.standard_normal((10, 6)).astype(np.float32)
    rel0 = rng.standard_normal((3, 6)).astype(np.float32)
    cent0 = rng.standard_normal((10, 6)).astype(np.float32)
    crel0 = rng.standard_normal((3, 6)).astype(np.float32)
    triples = np.stack(
        [rng.integers(0, 10, 8), rng.integers(0, 3, 8), rng.integers(0, 10, 8)], axis=1
    )
    ref = _kge_program(torch, ent0, rel0, cent0, crel0, triples)
    out = _kge_program(ember, ent0, rel0, cent0, crel0, triples)
    for k, v in ref.items():
        if k.startswith("neg"):
            np.testing.assert_array_equal(out[k], v)  # the same draws from the same seed
        else:
            np.testing.assert_allclose(out[k], v, rtol=1e-5, err_msg=k)


def test_randint_high_keyword_only():
    for T in LIBS:
        T.manual_seed(0)
    got = ember.randint(high=5, size=(6,))
    assert got.dtype == ember.int64
    assert got.tolist() == torch.randint(high=5, size=(6,)).tolist()
    assert ember.randint(2, 5, (3,)).min().item() >= 2


def test_optim_adamw_module():
    from ember.optim.adamw import AdamW

    assert AdamW is ember.optim.AdamW


def test_porting_examples_snippet_runs(capsys):
    import pathlib

    doc = pathlib.Path(__file__).resolve().parents[1] / "docs" / "porting_examples.md"
    section = doc.read_text().split("\n## neuraloperator, deepxde, pykeen, torch-harmonics\n", 1)[1]
    snippet = section.split("\n## ", 1)[0].split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(snippet, "docs/porting_examples.md", "exec"), {})
    lines = snippet.strip().splitlines()
    expected = [ln[2:] for ln in lines[-2:]]
    assert capsys.readouterr().out.strip().splitlines() == expected
