"""Idioms torchsde (0.2.6), nflows (0.14) / normflows (1.7), ema-pytorch (0.8),
vector-quantize-pytorch (1.32) and jaxtyping (0.3) reach in torch when they run on ember, each a
small program of our own checked against torch (none of these libraries is a test dependency;
docs/porting_examples.md records the programs run through them):

- a custom ``autograd.Function`` whose ``forward`` gets the caller's own tensors (the module's
  parameters): normflows' memory-efficient residual-flow log-det estimator runs
  ``torch.autograd.grad`` on those parameters inside ``forward`` under ``enable_grad`` and adds
  the saved gradients in ``backward``; nested applications keep their own arguments;
- an SDE solved by Euler-Maruyama with Brownian increments drawn from per-interval seeded
  ``torch.Generator`` streams (torchsde's ``BrownianInterval``), the drift reading a context
  through ``torch.searchsorted(ts, t, right=True)``, gradients to the parameters;
- a masked autoregressive affine flow (MADE masks, reversed permutations, standard-normal base)
  trained 20 Adam steps on NumPy two-moons data, and a monotone piecewise-linear CDF transform
  (softmax bin widths, ``cumsum`` + ``F.pad`` knots, ``searchsorted``-by-comparison, ``gather``);
- EMA updates with ``torch._foreach_lerp_`` / ``lerp_`` / ``_foreach_copy_`` on a deep-copied
  model, the post-hoc EMA least-squares weights from ``torch.linalg.solve`` and float16
  checkpoints through ``torch.save``;
- k-means codebook init (``scatter_add_`` into ``new_zeros(dtype=...)``, ``argmax`` of negative
  distances), a straight-through quantizer with commitment loss and an EMA codebook kept in
  buffers through ``.data.copy_`` (they stay outside the graph);
- what jaxtyping reads off a tensor: ``repr(dtype)``'s last dotted part and ``shape``.
"""

from __future__ import annotations

import copy
import io
import os

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
LIBS = {"ember": ember, "torch": torch}


def _np(t):
    return t.detach().cpu().numpy()


def _moons(n, rng):
    """Two interleaving half circles with Gaussian noise (sklearn's recipe, NumPy only)."""
    a = np.linspace(0, np.pi, n // 2)
    x = np.concatenate(
        [np.stack([np.cos(a), np.sin(a)], 1), np.stack([1 - np.cos(a), 0.5 - np.sin(a)], 1)]
    )
    return (x + rng.normal(scale=0.1, size=x.shape)).astype(np.float32)


# ---- user Functions get the caller's tensors ----------------------------------------------------
def _mem_eff_logdet(lib):
    class LogDet(lib.autograd.Function):
        @staticmethod
        def forward(ctx, net, x, *params):
            ctx.same = params[0] is net[0].weight
            with lib.enable_grad():
                x = x.detach().requires_grad_(True)
                g = net(x)
                logdet = (g * g).sum(1).log1p()  # a stand-in for the power-series estimator
                grad_x, *grad_p = lib.autograd.grad(
                    logdet.sum(), (x,) + params, retain_graph=True, allow_unused=True
                )
                ctx.g, ctx.x = g, x
                ctx.save_for_backward(grad_x, *params, *grad_p)
            return g.detach(), logdet.detach()

        @staticmethod
        def backward(ctx, grad_g, grad_logdet):
            grad_x, *rest = ctx.saved_tensors
            params, grad_p = rest[: len(rest) // 2], rest[len(rest) // 2 :]
            with lib.enable_grad():
                dx, *dp = lib.autograd.grad(ctx.g, [ctx.x] + list(params), grad_g)
            scale = grad_logdet[0]  # the estimator's grads are per-sum: scale by dL/dlogdet
            return (None, dx + grad_x * scale) + tuple(d + p * scale for d, p in zip(dp, grad_p))

    return LogDet


def test_user_function_forward_gets_the_callers_parameters():
    rng = np.random.RandomState(0)
    w1, w2 = rng.randn(8, 3).astype(np.float32), rng.randn(3, 8).astype(np.float32)
    x0 = rng.randn(5, 3).astype(np.float32)
    res = {}
    for name, lib in LIBS.items():
        net = lib.nn.Sequential(lib.nn.Linear(3, 8), lib.nn.Tanh(), lib.nn.Linear(8, 3))
        with lib.no_grad():
            net[0].weight.copy_(lib.tensor(w1))
            net[2].weight.copy_(lib.tensor(w2))
            net[0].bias.zero_()
            net[2].bias.fill_(0.1)
        fn = _mem_eff_logdet(lib)
        x = lib.tensor(x0, requires_grad=True)
        g, logdet = fn.apply(net, x, *net.parameters())
        (g.sum() + logdet.sum()).backward()
        res[name] = [_np(g), _np(logdet), _np(x.grad)] + [_np(p.grad) for p in net.parameters()]
        assert g.grad_fn.same  # forward saw the module's own Parameter objects
    for a, b in zip(res["ember"], res["torch"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _nested(lib):
    inner_seen = []
    xs = lib.tensor([1.0, 2.0], requires_grad=True)
    ws = lib.tensor([3.0, 4.0], requires_grad=True)

    class Inner(lib.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            inner_seen.append((a is ws, b is xs))
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return g * b, g * a

    class Outer(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            ctx.flags = (x is xs, w is ws)
            y = Inner.apply(w, x)  # swapped positions: Inner sees its own arguments
            ctx.save_for_backward(x, w)
            return y + 1

        @staticmethod
        def backward(ctx, g):
            x, w = ctx.saved_tensors
            return g * w, g * x

    y = Outer.apply(xs, ws)
    y.sum().backward()
    return y.grad_fn.flags, inner_seen, _np(y), _np(xs.grad), _np(ws.grad)


def test_nested_user_functions_keep_their_own_arguments():
    e, t = _nested(ember), _nested(torch)
    assert e[0] == t[0] == (True, True)
    assert e[1] == t[1] == [(True, True)]
    for a, b in zip(e[2:], t[2:]):
        np.testing.assert_allclose(a, b)


# ---- torchsde: Euler-Maruyama with seeded Brownian increments ---------------------------------
def _sde_run(lib, seed):
    lib.manual_seed(seed)
    B, S = 6, 3
    drift = lib.nn.Sequential(lib.nn.Linear(S + 2, 16), lib.nn.Softplus(), lib.nn.Linear(16, S))
    sigma = lib.nn.Parameter(lib.full((S,), 0.3))
    ts = lib.linspace(0.0, 1.0, 5)
    ctx = lib.randn(len(ts), B, 2)
    ss = np.random.SeedSequence(entropy=1234)  # one child seed per Brownian interval
    seeds = [int(s.generate_state(1)[0]) for s in ss.spawn(len(ts) - 1)]
    y = lib.full((B, S), 0.1)
    y.requires_grad_(True)
    ys = [y]
    for k in range(len(ts) - 1):
        t, dt = ts[k], float(ts[k + 1] - ts[k])
        i = min(int(lib.searchsorted(ts, t, right=True)), len(ts) - 1)
        gen = lib.Generator("cpu").manual_seed(seeds[k])
        dw = lib.randn((B, S), generator=gen) * dt**0.5
        f = drift(lib.cat([y, ctx[i]], dim=1))
        g = lib.sigmoid(sigma * y)
        y = y + f * dt + g * dw
        ys.append(y)
    ys = lib.stack(ys)
    loss = ys[-1].pow(2).mean() + ys.abs().mean()
    loss.backward()
    return [_np(ys), _np(drift[0].weight.grad), _np(sigma.grad), _np(ys)[0]]


def test_euler_maruyama_with_seeded_brownian_increments_matches_torch():
    a, b = _sde_run(ember, 3), _sde_run(torch, 3)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6)


# ---- nflows / normflows: a masked autoregressive flow on two-moons ----------------------------
def _made_masks(d, h):
    deg_in = np.arange(1, d + 1)
    deg_h = (np.arange(h) % (d - 1)) + 1
    m1 = (deg_h[:, None] >= deg_in[None, :]).astype(np.float32)
    m2 = (np.repeat(deg_in, 2)[:, None] > deg_h[None, :]).astype(np.float32)
    return m1, m2


def _maf_losses(lib, weights, steps=20):
    d, h = 2, 16
    m1, m2 = (lib.tensor(m) for m in _made_masks(d, h))
    layers = []
    for w1, b1, w2, b2 in weights:
        l1, l2 = lib.nn.Linear(d, h), lib.nn.Linear(h, 2 * d)
        with lib.no_grad():
            for p, v in ((l1.weight, w1), (l1.bias, b1), (l2.weight, w2), (l2.bias, b2)):
                p.copy_(lib.tensor(v))
        layers += [l1, l2]
    params = [p for layer in layers for p in layer.parameters()]
    opt = lib.optim.Adam(params, lr=3e-3)
    rng = np.random.RandomState(0)
    losses = []
    for _ in range(steps):
        x = lib.tensor(_moons(64, rng))
        z, logdet = x, lib.zeros(len(x))
        for k in range(0, len(layers), 2):
            l1, l2 = layers[k], layers[k + 1]
            hid = lib.relu(lib.nn.functional.linear(z, l1.weight * m1, l1.bias))
            out = lib.nn.functional.linear(hid, l2.weight * m2, l2.bias).view(-1, d, 2)
            shift, unc_scale = out[..., 0], out[..., 1]
            scale = lib.sigmoid(unc_scale + 2.0) + 1e-3
            z = (z * scale + shift).flip(-1)  # MaskedAffineAutoregressive + ReversePermutation
            logdet = logdet + lib.log(scale).sum(-1)
        log_prob = -0.5 * (z**2).sum(-1) - d / 2 * np.log(2 * np.pi) + logdet
        loss = -log_prob.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses)


def test_masked_autoregressive_flow_trains_like_torch_on_two_moons():
    rng = np.random.RandomState(1)
    weights = [
        (
            rng.randn(16, 2).astype(np.float32) * 0.5,
            rng.randn(16).astype(np.float32) * 0.1,
            rng.randn(4, 16).astype(np.float32) * 0.1,
            np.zeros(4, np.float32),
        )
        for _ in range(3)
    ]
    a, b = _maf_losses(ember, weights), _maf_losses(torch, weights)
    np.testing.assert_allclose(a, b, rtol=1e-4)
    assert a[-1] < a[0]


def _pl_cdf(lib, x, logits):
    """A monotone piecewise-linear CDF on [0, 1] (nflows' PiecewiseLinearCDF)."""
    F = lib.nn.functional
    pdf = lib.softmax(logits, dim=-1)  # (n, d, bins), each bin 1/bins wide
    bins = pdf.shape[-1]
    cdf = F.pad(lib.cumsum(pdf, dim=-1), pad=(1, 0), mode="constant", value=0.0)
    locs = lib.linspace(0, 1, bins + 1)
    # nflows' searchsorted: count the knots below each input
    idx = lib.sum(x[..., None] >= locs[:-1], dim=-1, keepdim=True) - 1
    alpha = x[..., None] * bins - idx.to(x.dtype)
    c0 = cdf.gather(-1, idx)[..., 0]
    p = pdf.gather(-1, idx)[..., 0]
    y = c0 + alpha[..., 0] * p
    logabsdet = lib.log(p * bins).sum(-1)
    return y, logabsdet


def test_piecewise_linear_cdf_transform_matches_torch():
    rng = np.random.RandomState(2)
    x0 = rng.uniform(0.01, 0.99, (7, 3)).astype(np.float32)
    l0 = rng.randn(7, 3, 5).astype(np.float32)
    outs = {}
    for name, lib in LIBS.items():
        x = lib.tensor(x0, requires_grad=True)
        logits = lib.tensor(l0, requires_grad=True)
        y, ld = _pl_cdf(lib, x, logits)
        (y.sum() + ld.sum()).backward()
        outs[name] = [_np(y), _np(ld), _np(x.grad), _np(logits.grad)]
    for a, b in zip(outs["ember"], outs["torch"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert (np.diff(np.sort(x0[:, 0])) >= 0).all()


# ---- ema-pytorch ---------------------------------------------------------------------------------
def _ema_run(lib):
    lib.manual_seed(0)
    net = lib.nn.Sequential(lib.nn.Linear(4, 8), lib.nn.BatchNorm1d(8), lib.nn.Linear(8, 2))
    ema = copy.deepcopy(net)
    ema.requires_grad_(False)
    opt = lib.optim.SGD(net.parameters(), lr=0.1)
    x, y = lib.randn(16, 4), lib.randn(16, 2)
    for step in range(1, 8):
        loss = lib.nn.functional.mse_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        # warmup: 1 - (1 + step / inv_gamma) ** -power, clamped (EMA.get_current_decay)
        decay = min(0.99, max(0.0, 1 - (1 + step) ** -(2 / 3)))
        with lib.no_grad():
            ema_p = [p for p in ema.parameters() if p.is_floating_point()]
            net_p = [p for p in net.parameters() if p.is_floating_point()]
            lib._foreach_lerp_(ema_p, net_p, 1.0 - decay)
            for b_ema, b in zip(ema.buffers(), net.buffers()):
                if b.is_floating_point():
                    b_ema.lerp_(b, 1.0 - decay)
                else:
                    b_ema.copy_(b)
    with lib.no_grad():  # copy_params_from_ema_to_model
        lib._foreach_copy_(list(net.parameters()), list(ema.parameters()))

    # post-hoc EMA (Karras et al.): inner products of power-function EMA profiles, solved in
    # float64 for the weights that combine checkpoints (t_i, gamma_i) into (t_r, gamma_r)
    def inner(ta, ga, tb, gb):
        expo = lib.where(ta < tb, gb, -ga)
        return (ga + 1) * (gb + 1) * (ta / tb) ** expo / ((ga + gb + 1) * lib.maximum(ta, tb))

    t_i = lib.tensor([5.0, 5.0, 10.0, 10.0], dtype=lib.float64)
    g_i = lib.tensor([6.94, 16.97, 6.94, 16.97], dtype=lib.float64)
    t_r, g_r = lib.tensor([10.0], dtype=lib.float64), lib.tensor([10.0], dtype=lib.float64)
    a = inner(t_i.reshape(-1, 1), g_i.reshape(-1, 1), t_i.reshape(1, -1), g_i.reshape(1, -1))
    b = inner(t_i.reshape(-1, 1), g_i.reshape(-1, 1), t_r.reshape(1, -1), g_r.reshape(1, -1))
    weights = lib.linalg.solve(a, b)
    buf = io.BytesIO()
    lib.save({k: v.to(dtype=lib.float16, copy=True) for k, v in ema.state_dict().items()}, buf)
    buf.seek(0)
    half = lib.load(buf, weights_only=True)
    return [_np(net[0].weight), _np(ema[1].running_mean), _np(weights), _np(half["0.weight"])]


def test_ema_foreach_lerp_and_posthoc_weights_match_torch():
    a, b = _ema_run(ember), _ema_run(torch)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert a[3].dtype == np.float16


# ---- vector-quantize-pytorch ---------------------------------------------------------------------
def _vq_run(lib, x0):
    F = lib.nn.functional
    samples = lib.tensor(x0, requires_grad=True)  # (1 codebook, n, d)
    k = 4
    lib.manual_seed(0)
    means = samples[:, lib.randperm(samples.shape[1])[:k]]
    for _ in range(3):
        dists = -lib.cdist(samples, means)
        buckets = dists.argmax(dim=-1)
        bins = lib.zeros(1, k, dtype=lib.long).scatter_add_(1, buckets, lib.ones_like(buckets))
        zero = bins == 0
        new = buckets.new_zeros(1, k, samples.shape[-1], dtype=samples.dtype)
        new.scatter_add_(1, buckets[..., None].expand(-1, -1, samples.shape[-1]), samples)
        new = new / bins.masked_fill(zero, 1)[..., None]
        means = lib.where(zero[..., None], means, new)
    codebook = lib.nn.Module()
    codebook.register_buffer("embed", lib.zeros(1, k, samples.shape[-1]))
    codebook.embed.data.copy_(means)  # k-means init: the buffer stays out of the graph
    assert not codebook.embed.requires_grad and codebook.embed.grad_fn is None
    x = samples[0]
    idx = (-lib.cdist(x, codebook.embed[0])).argmax(-1)
    quantize = F.embedding(idx, codebook.embed[0])
    commit = F.mse_loss(quantize.detach(), x)
    quantize = x + (quantize - x).detach()  # straight through
    (quantize.square().mean() + commit).backward()
    onehot = F.one_hot(idx, k).float()
    new_avg = onehot.t() @ x.detach()
    codebook.embed.data.lerp_(new_avg[None] / onehot.sum(0).clamp(min=1)[None, :, None], 0.2)
    return [_np(idx), _np(quantize), _np(commit), _np(samples.grad), _np(codebook.embed)]


def test_kmeans_init_and_straight_through_quantizer_match_torch():
    x0 = np.random.RandomState(3).randn(1, 40, 6).astype(np.float32)
    a, b = _vq_run(ember, x0), _vq_run(torch, x0)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


# ---- jaxtyping ---------------------------------------------------------------------------------
def test_what_jaxtyping_reads_off_a_tensor():
    for dt in ("float32", "float64", "float16", "bfloat16", "int64", "int32", "bool", "uint8"):
        e, t = (
            ember.zeros(2, 3, dtype=getattr(ember, dt)),
            torch.zeros(2, 3, dtype=getattr(torch, dt)),
        )
        assert repr(e.dtype).rsplit(".", 1)[-1] == repr(t.dtype).rsplit(".", 1)[-1] == dt
        assert hasattr(e.dtype, "type") == hasattr(t.dtype, "type")
        assert tuple(e.shape) == tuple(t.shape) and all(type(n) is int for n in e.shape)
        assert isinstance(e, ember.Tensor)


def test_the_porting_examples_snippet_runs(capsys):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "porting_examples.md"), encoding="utf-8") as f:
        text = f.read()
    title = "## torchsde, nflows, normflows, ema-pytorch, vector-quantize-pytorch"
    section = text.split(title, 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(snippet, "docs/porting_examples.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "(4, 2) tensor(True)"
