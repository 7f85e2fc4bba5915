"""Every float dtype end to end: module families and losses in bfloat16 / float16 / float64
against torch (output dtype, values, parameter-gradient dtype and values), and a bfloat16 model
that trains with Adam.

Low-precision tolerances are those of torch's own ``assert_close`` defaults (bfloat16: rtol
1.6e-2; float16: rtol 1e-3), widened to a few units in the last place because two correct
float32-accumulating kernels may round a sum differently.
"""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F

torch = pytest.importorskip("torch")

TOL = {"bfloat16": (4e-2, 4e-2), "float16": (4e-3, 4e-3), "float64": (1e-10, 1e-12)}
DTYPES = list(TOL)


def _pair(name, *args, **kwargs):
    tmod = getattr(torch.nn, name)(*args, **kwargs)
    emod = getattr(nn, name)(*args, **kwargs)
    emod.load_state_dict(tmod.state_dict())
    return tmod, emod


def _close(e, t, dt, what):
    rtol, atol = TOL[dt]
    assert str(e.dtype).split(".")[-1] == str(t.dtype).split(".")[-1], (
        f"{what}: dtype {e.dtype} vs {t.dtype}"
    )
    got = e.detach().float().numpy() if dt != "float64" else e.detach().numpy()
    want = t.detach().float().numpy() if dt != "float64" else t.detach().numpy()
    # scale the tolerance by the magnitude (sums of many rounded terms)
    scale = max(1.0, float(np.abs(want).max(initial=0)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale, err_msg=what)


def _run(tmod, emod, x, dt, call=lambda m, x: m(x)):
    tdt, edt = getattr(torch, dt), getattr(ember, dt)
    tmod, emod = tmod.to(tdt), emod.to(edt)
    tx = torch.tensor(x).to(tdt) if x.dtype.kind == "f" else torch.tensor(x)
    ex = ember.tensor(x).to(edt) if x.dtype.kind == "f" else ember.tensor(x)
    tout, eout = call(tmod, tx), call(emod, ex)
    _close(eout, tout, dt, "output")
    g = np.random.default_rng(1).standard_normal(tuple(tout.shape)).astype(np.float32)
    tout.backward(torch.tensor(g).to(tdt))
    eout.backward(ember.tensor(g).to(edt))
    tparams = dict(tmod.named_parameters())
    for n, p in emod.named_parameters():
        assert p.dtype == edt, f"parameter {n} is {p.dtype}"
        if tparams[n].grad is not None:
            _close(p.grad, tparams[n].grad, dt, f"grad of {n}")


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


FAMILIES = {
    "Linear": (lambda: _pair("Linear", 8, 5), lambda: _x(3, 8)),
    "Conv1d": (lambda: _pair("Conv1d", 3, 4, 3, padding=1), lambda: _x(2, 3, 7)),
    "Conv2d": (lambda: _pair("Conv2d", 2, 3, 3, stride=2), lambda: _x(2, 2, 7, 7)),
    "ConvTranspose2d": (lambda: _pair("ConvTranspose2d", 2, 3, 3), lambda: _x(1, 2, 4, 4)),
    "BatchNorm2d": (lambda: _pair("BatchNorm2d", 3), lambda: _x(4, 3, 3, 3)),
    "LayerNorm": (lambda: _pair("LayerNorm", 6), lambda: _x(4, 6)),
    "GroupNorm": (lambda: _pair("GroupNorm", 2, 4), lambda: _x(2, 4, 5)),
    "RMSNorm": (lambda: _pair("RMSNorm", 6), lambda: _x(4, 6)),
    "Embedding": (
        lambda: _pair("Embedding", 10, 4),
        lambda: np.array([[1, 2, 3], [4, 5, 9]], dtype=np.int64),
    ),
    "LSTM": (lambda: _pair("LSTM", 4, 5, batch_first=True), lambda: _x(2, 3, 4)),
    "GRU": (lambda: _pair("GRU", 4, 5), lambda: _x(3, 2, 4)),
    "MaxPool2d": (lambda: _pair("MaxPool2d", 2), lambda: _x(1, 2, 4, 4)),
    "AvgPool2d": (lambda: _pair("AvgPool2d", 2), lambda: _x(1, 2, 4, 4)),
    "GELU": (lambda: _pair("GELU"), lambda: _x(3, 4)),
    "SiLU": (lambda: _pair("SiLU"), lambda: _x(3, 4)),
    "Softmax": (lambda: _pair("Softmax", -1), lambda: _x(3, 4)),
    "Tanh": (lambda: _pair("Tanh"), lambda: _x(3, 4)),
}


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_module_family_in_dtype(family, dt):
    make, data = FAMILIES[family]
    tmod, emod = make()
    x = data()
    if family in ("LSTM", "GRU"):
        _run(tmod, emod, x, dt, call=lambda m, x: m(x)[0])
    elif x.dtype.kind == "f":
        # inputs that need a gradient for the pooling/activation families
        _run(tmod, emod, x, dt, call=lambda m, x: m(x.requires_grad_()))
    else:
        _run(tmod, emod, x, dt)


@pytest.mark.parametrize("dt", DTYPES)
def test_attention_families_in_dtype(dt):
    ember.manual_seed(0)
    torch.manual_seed(0)
    tmod, emod = _pair("TransformerEncoderLayer", 8, 2, 16, dropout=0.0, batch_first=True)
    _run(tmod, emod, _x(2, 3, 8), dt)
    tmod, emod = _pair("MultiheadAttention", 8, 2, batch_first=True)
    _run(tmod, emod, _x(2, 3, 8), dt, call=lambda m, x: m(x, x, x)[0])


LOSSES = {
    "cross_entropy": lambda m, x, y: m.nn.functional.cross_entropy(x, y),
    "nll_loss": lambda m, x, y: m.nn.functional.nll_loss(x.log_softmax(-1), y),
    "mse_loss": lambda m, x, y: m.nn.functional.mse_loss(x, x.detach() * 0.5),
    "l1_loss": lambda m, x, y: m.nn.functional.l1_loss(x, x.detach() * 0.5 + 0.1),
    "smooth_l1_loss": lambda m, x, y: m.nn.functional.smooth_l1_loss(x, x.detach() * 2),
    "bce_with_logits": lambda m, x, y: m.nn.functional.binary_cross_entropy_with_logits(
        x, (x.detach() > 0).to(x.dtype)
    ),
    "kl_div": lambda m, x, y: m.nn.functional.kl_div(
        x.log_softmax(-1), x.detach().softmax(-1), reduction="batchmean"
    ),
}


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("loss", list(LOSSES))
def test_loss_in_dtype(loss, dt):
    x, y = _x(4, 5, seed=3), np.array([0, 3, 1, 4])
    tx = torch.tensor(x).to(getattr(torch, dt)).requires_grad_()
    ex = ember.tensor(x).to(getattr(ember, dt)).requires_grad_()
    tl = LOSSES[loss](torch, tx, torch.tensor(y))
    el = LOSSES[loss](ember, ex, ember.tensor(y))
    _close(el, tl, dt, f"{loss} value")
    tl.backward()
    el.backward()
    _close(ex.grad, tx.grad, dt, f"{loss} input grad")


def test_bfloat16_model_trains_with_adam():
    """A bf16 MLP stays bf16 through Adam and tracks torch's bf16 trajectory."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 10)).astype(np.float32)
    y = (x[:, :3].sum(1) > 0).astype(np.int64)
    tm = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    em = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 2))
    em.load_state_dict(tm.state_dict())
    tm, em = tm.to(torch.bfloat16), em.to(ember.bfloat16)
    topt = torch.optim.Adam(tm.parameters(), lr=1e-2)
    eopt = ember.optim.Adam(em.parameters(), lr=1e-2)
    tx, ex = torch.tensor(x).bfloat16(), ember.tensor(x).bfloat16()
    losses = []
    for _ in range(30):
        topt.zero_grad()
        eopt.zero_grad()
        tl = torch.nn.functional.cross_entropy(tm(tx), torch.tensor(y))
        el = F.cross_entropy(em(ex), ember.tensor(y))
        tl.backward()
        el.backward()
        topt.step()
        eopt.step()
        assert el.dtype == ember.bfloat16
        losses.append((el.item(), tl.item()))
    assert all(p.dtype == ember.bfloat16 for p in em.parameters())
    assert all(eopt.state[p]["exp_avg"].dtype == ember.bfloat16 for p in em.parameters())
    first, last = losses[0][0], losses[-1][0]
    assert last < 0.7 * first, losses
    # same trajectory within bf16 noise
    assert abs(losses[-1][0] - losses[-1][1]) < 0.1 * max(losses[-1][1], 0.05), losses


def test_mixed_dtype_linear_raises_like_torch():
    lin = nn.Linear(3, 2)
    with pytest.raises(RuntimeError, match="mat1 and mat2 must have the same dtype"):
        lin(ember.randn(2, 3).bfloat16())
    with pytest.raises(RuntimeError, match="mat1 and mat2 must have the same dtype"):
        lin(ember.ones(2, 3, dtype=ember.int64))


@pytest.mark.parametrize("dt", ["complex64", "complex128"])
def test_complex_linear_gradients_follow_torch(dt):
    """Complex Linear: values and the conjugate-Wirtinger gradients of a real loss, as torch."""
    rng = np.random.default_rng(0)

    def c(*s):
        return (rng.standard_normal(s) + 1j * rng.standard_normal(s)).astype(dt)

    w, x, b = c(2, 3), c(4, 5, 3), c(2)
    grads = []
    for m in (torch, ember):
        tw, tx, tb = (m.tensor(a, requires_grad=True) for a in (w, x, b))
        y = m.nn.functional.linear(tx, tw, tb)
        (y.abs().sum() + y.real.sum()).backward()
        grads.append([y.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()])
    tol = 1e-5 if dt == "complex64" else 1e-12
    for got, want in zip(grads[1], grads[0]):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize(
    "fn,wshape,xshape,kw",
    [
        ("conv1d", (3, 2, 3), (2, 2, 7), {"padding": 1}),
        ("conv2d", (4, 1, 3, 3), (2, 2, 6, 6), {"groups": 2, "stride": 2}),
        ("conv_transpose2d", (2, 3, 3, 3), (2, 2, 4, 4), {"stride": 2}),
    ],
)
def test_complex_convolution_follows_torch(fn, wshape, xshape, kw):
    rng = np.random.default_rng(1)

    def c(*s):
        return (rng.standard_normal(s) + 1j * rng.standard_normal(s)).astype(np.complex128)

    w, x = c(*wshape), c(*xshape)
    b = c(wshape[1] * kw.get("groups", 1) if "transpose" in fn else wshape[0])
    results = []
    for m in (torch, ember):
        tw, tx, tb = (m.tensor(a, requires_grad=True) for a in (w, x, b))
        y = getattr(m.nn.functional, fn)(tx, tw, tb, **kw)
        (y.abs().sum() + y.imag.sum()).backward()
        results.append([y.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()])
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
