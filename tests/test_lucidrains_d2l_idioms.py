"""Idioms x-transformers (2.31), vit-pytorch (1.26), denoising-diffusion-pytorch (2.3) and d2l
(1.0.3) reach in torch when they run on ember, each a small program of our own checked against
torch (none of the libraries is a dependency; docs/porting_examples.md "x-transformers,
vit-pytorch, denoising-diffusion-pytorch, d2l" records the programs run through them):

- a masked mean whose denominator is ``mask.sum(dim).clamp(min=eps)``: an integer tensor
  clamped by a float bound is a default-float tensor (x-transformers' ``average_pool_embed``
  classifier fed it to a float32 ``Linear``);
- ``sigmoid`` in its negative tail (``sqrt(sigmoid(log_snr))`` at ``log_snr = -34`` in the
  v-parameterised continuous-time sampler divides by it): full relative precision, as torch,
  for ``sigmoid``, ``silu`` and the BCE-with-logits gradient;
- a rotary + ALiBi causal attention block pooled by that masked mean, trained by Adam;
- a cosine log-SNR v-parameterised sampling loop.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
LIBS = {"ember": ember, "torch": torch}


def _np(t):
    return t.detach().cpu().numpy()


def _rand(seed, *shape):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# ---- clamp of an integer tensor by a float bound ------------------------------------------
@pytest.mark.parametrize(
    "call",
    [
        lambda t: t.clamp(min=1e-5),
        lambda t: t.clamp(max=2.5),
        lambda t: t.clamp(0.5, 2.5),
        lambda t: t.clamp_min(1e-5),
        lambda t: t.clamp_max(2.5),
        lambda t: t.clip(min=0.5),
        lambda t: t.clamp(min=1),  # an int bound keeps int64
    ],
)
def test_int_clamp_by_float_bound_dtype(call):
    got = {}
    for name, lib in LIBS.items():
        counts = lib.tensor([[True, False, True], [False, False, False]]).sum(dim=-1)
        out = call(counts)
        got[name] = (str(out.dtype).split(".")[-1], out.tolist())
    assert got["ember"] == got["torch"]


def test_masked_mean_pool_is_float32():
    x, keep = _rand(0, 2, 5, 4), np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    out = {}
    for name, lib in LIBS.items():
        t, m = lib.tensor(x), lib.tensor(keep)
        m3 = m.unsqueeze(-1).expand_as(t)
        pooled = (t * m3).sum(dim=1) / m3.sum(dim=1).clamp(min=1e-5)
        assert pooled.dtype == lib.float32
        out[name] = _np(lib.nn.functional.linear(pooled, lib.ones(3, 4)))
    np.testing.assert_allclose(out["ember"], out["torch"], rtol=1e-6)


# ---- sigmoid's negative tail -------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_tail_relative_precision(dtype):
    x = np.array([-104.0, -88.0, -33.9, -20.0, -3.0, 0.0, 3.0, 20.0, 40.0], dtype)
    out = {}
    for name, lib in LIBS.items():
        t = lib.tensor(x, requires_grad=True)
        y = lib.sigmoid(t)
        (y * lib.arange(9, dtype=t.dtype)).sum().backward()
        out[name] = (_np(y), _np(t.grad), _np(lib.nn.functional.silu(t)))
    for e, r in zip(out["ember"], out["torch"]):
        tiny = np.finfo(dtype).tiny
        np.testing.assert_allclose(e, r, rtol=2e-6 if dtype == "float32" else 1e-14, atol=tiny)
    assert out["ember"][0][2] > 0  # sigmoid(-33.9) ~ 1.9e-15, not 0


@pytest.mark.parametrize("pos_weight", [None, 3.0])
def test_bce_with_logits_gradient_tail(pos_weight):
    x = np.array([-40.0, -18.0, 0.5, 18.0, 40.0], np.float32)
    y = np.array([1.0, 0.0, 1.0, 0.0, 1.0], np.float32)
    grads = {}
    for name, lib in LIBS.items():
        t = lib.tensor(x, requires_grad=True)
        pw = None if pos_weight is None else lib.full((5,), pos_weight)
        loss = lib.nn.functional.binary_cross_entropy_with_logits(t, lib.tensor(y), pos_weight=pw)
        loss.backward()
        grads[name] = (loss.item(), _np(t.grad))
    assert abs(grads["ember"][0] - grads["torch"][0]) < 1e-6 * grads["torch"][0]
    np.testing.assert_allclose(grads["ember"][1], grads["torch"][1], rtol=2e-6, atol=1e-30)


def _cosine_log_snr(lib, t, s=0.008):
    value = lib.cos((t + s) / (1 + s) * math.pi * 0.5) ** -2 - 1
    return -lib.log(value.clamp(min=1e-5))


def test_vparam_sampling_loop_stays_finite():
    """A v-parameterised, cosine log-SNR ancestral sampler whose first step has
    ``alpha = sqrt(sigmoid(-33.9)) ~ 4e-8`` in the denominator (ember gave NaN there)."""
    x0, w = _rand(1, 2, 6), _rand(2, 6, 6) * 0.3
    noises = [_rand(10 + i, 2, 6) for i in range(5)]
    out = {}
    for name, lib in LIBS.items():
        x, weight = lib.tensor(x0), lib.tensor(w)
        steps = lib.linspace(1.0, 0.0, 6)
        for i in range(5):
            ls, ls_next = _cosine_log_snr(lib, steps[i]), _cosine_log_snr(lib, steps[i + 1])
            c = -lib.special.expm1(ls - ls_next)
            alpha, sigma = lib.sqrt(ls.sigmoid()), lib.sqrt((-ls).sigmoid())
            alpha_next = lib.sqrt(ls_next.sigmoid())
            pred_v = lib.tanh(x @ weight)
            x_start = (alpha * x - sigma * pred_v).clamp(-1.0, 1.0)
            mean = alpha_next * (x * (1 - c) / alpha + c * x_start)
            var = (-ls_next).sigmoid() * c
            x = mean if i == 4 else mean + lib.sqrt(var) * lib.tensor(noises[i])
        out[name] = _np(x)
    assert np.isfinite(out["ember"]).all()
    np.testing.assert_allclose(out["ember"], out["torch"], rtol=1e-5, atol=1e-6)


# ---- rotary + ALiBi causal attention, masked-mean classifier -----------------------------
def _rotate_half(lib, x):
    x1, x2 = x.chunk(2, dim=-1)
    return lib.cat((-x2, x1), dim=-1)


def _block_loss(lib, p, ids, keep, labels, heads=2):
    x = p["emb"][ids]  # (b, n, d)
    b, n, d = x.shape
    dh = d // heads
    q, k, v = (x @ p["qkv"]).chunk(3, dim=-1)
    q, k, v = (t.reshape(b, n, heads, dh).transpose(1, 2) for t in (q, k, v))
    inv_freq = 1.0 / (10000 ** (lib.arange(0, dh, 2).float() / dh))
    freqs = lib.einsum("i,j->ij", lib.arange(n).float(), inv_freq)
    freqs = lib.cat((freqs, freqs), dim=-1)
    q = q * freqs.cos() + _rotate_half(lib, q) * freqs.sin()
    k = k * freqs.cos() + _rotate_half(lib, k) * freqs.sin()
    pos = lib.arange(n)
    slopes = lib.tensor([2.0**-4, 2.0**-8]).view(heads, 1, 1)
    alibi = -(pos[None, :] - pos[:, None]).abs().float() * slopes
    dots = q @ k.transpose(-1, -2) * dh**-0.5 + alibi
    causal = lib.ones(n, n, dtype=lib.bool).triu(1)
    dots = dots.masked_fill(causal, -lib.finfo(dots.dtype).max)
    h = (dots.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, d)
    h = lib.nn.functional.layer_norm(h + x, (d,))
    m = keep.unsqueeze(-1).expand_as(h)
    pooled = (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-5)
    logits = pooled @ p["head"]
    return lib.nn.functional.cross_entropy(logits, labels)


def test_rotary_alibi_block_adam_steps():
    init = {"emb": _rand(3, 16, 8), "qkv": _rand(4, 8, 24) * 0.3, "head": _rand(5, 8, 3) * 0.3}
    ids = np.random.default_rng(6).integers(0, 16, (2, 7))
    keep = np.ones((2, 7), bool)
    keep[1, 4:] = False
    losses = {}
    for name, lib in LIBS.items():
        p = {k: lib.tensor(v, requires_grad=True) for k, v in init.items()}
        opt = lib.optim.Adam(p.values(), lr=1e-2)
        seen = []
        for _ in range(3):
            loss = _block_loss(lib, p, lib.tensor(ids), lib.tensor(keep), lib.tensor([0, 2]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen.append(float(loss))
        losses[name] = seen
    np.testing.assert_allclose(losses["ember"], losses["torch"], rtol=2e-6)
