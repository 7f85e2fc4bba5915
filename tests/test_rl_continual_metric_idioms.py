"""The idioms of tianshou, avalanche and pytorch-metric-learning, each run on ember and on
PyTorch with the same data and seeds (pytorch-msssim, torchsummary and mambapy's are in
tests/test_msssim_mamba_idioms.py).

Those libraries run on ember with ``torch`` resolved to ember (docs/porting_examples.md,
"tianshou, avalanche, mambapy"). These are small programs of our own with their idioms, not
importing the libraries: distributional and quantile Q-learning targets, noisy layers, a
conjugate-gradient natural-gradient step (tianshou); EWC / SI / LwF / A-GEM regularisers over
a class-incremental stream (avalanche); masked pair / triplet mining, NT-Xent and ArcFace
losses and a kNN precision (metric learning).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _parity import both, close, torch_one_thread_fixture

import ember

torch = pytest.importorskip("torch")

LIBS = (ember, torch)


_torch_one_thread = torch_one_thread_fixture(torch)


def _both(fn, *args):
    return both(LIBS, fn, *args)


_close = close


def _mlp(lib, sizes):
    layers = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        layers += [lib.nn.Linear(i, o), lib.nn.ReLU()]
    return lib.nn.Sequential(*layers[:-1])


def _obs(n=16, d=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


# ---- tianshou --------------------------------------------------------------------------------
def _c51_step(lib, atoms=11, v_min=-5.0, v_max=5.0, gamma=0.9):
    """C51: project the target distribution onto the support, then a cross-entropy step."""
    net = _mlp(lib, [4, 32, 2 * atoms])
    opt = lib.optim.Adam(net.parameters(), lr=1e-3)
    obs, nxt = lib.tensor(_obs()), lib.tensor(_obs(seed=1))
    act = lib.tensor(np.arange(16) % 2)
    rew = lib.tensor(np.linspace(-1, 1, 16, dtype=np.float32))
    done = lib.tensor((np.arange(16) % 5 == 0).astype(np.float32))
    support = lib.linspace(v_min, v_max, atoms)
    losses = []
    for _ in range(3):
        with lib.no_grad():
            nd = net(nxt).view(-1, 2, atoms).softmax(-1)
            a_star = (nd * support).sum(-1).argmax(-1)
            nd = nd[lib.arange(16), a_star]
            tz = (rew[:, None] + gamma * (1 - done[:, None]) * support).clamp(v_min, v_max)
            # torch's projection idiom: a triangular kernel over the support
            w = (1 - (tz.unsqueeze(1) - support.view(1, -1, 1)).abs() / 1.0).clamp(0, 1)
            target = (w * nd.unsqueeze(1)).sum(-1)
        logp = net(obs).view(-1, 2, atoms).log_softmax(-1)[lib.arange(16), act]
        loss = -(target * logp).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _quantile_huber(lib, tau_kind):
    """QR-DQN / IQN: the quantile Huber loss, fixed or sampled fractions and cosine features."""
    n = 8
    feat = _mlp(lib, [4, 16])
    head = lib.nn.Linear(16, 2)
    cos_emb = lib.nn.Linear(16, 16)
    x = feat(lib.tensor(_obs(seed=2)))
    if tau_kind == "fixed":
        taus = (lib.arange(n, dtype=lib.float32) + 0.5) / n
        q = head(x).unsqueeze(-1).expand(-1, -1, n) * taus
        taus = taus.view(1, -1).expand(16, -1)
    else:
        taus = lib.rand(16, n)
        i = lib.arange(1, 17, dtype=lib.float32)
        phi = lib.relu(cos_emb(lib.cos(math.pi * i * taus.unsqueeze(-1))))
        q = head(x.unsqueeze(1) * phi).transpose(1, 2)
    pred = q[:, 0].unsqueeze(2)
    target = (q[:, 1].detach() * 0.9 + 0.1).unsqueeze(1)
    u = target - pred
    huber = lib.nn.functional.smooth_l1_loss(
        pred.expand_as(u), target.expand_as(u), reduction="none"
    )
    loss = (huber * (taus.unsqueeze(2) - (u.detach() < 0).float()).abs()).sum(-1).mean(1).mean()
    loss.backward()
    return loss.item(), head.weight.grad.numpy().copy()


def _noisy_linear(lib):
    """Rainbow's factorised-Gaussian NoisyLinear: f(x) = sign(x) * sqrt(|x|) noise."""

    def f(x):
        return x.sign().mul(x.abs().sqrt())

    mu_w = lib.nn.Parameter(lib.empty(3, 5).uniform_(-0.4, 0.4))
    sigma_w = lib.nn.Parameter(lib.full((3, 5), 0.5 / math.sqrt(5)))
    eps_in, eps_out = f(lib.randn(5)), f(lib.randn(3))
    w = mu_w + sigma_w * eps_out.ger(eps_in)
    y = lib.nn.functional.linear(lib.tensor(_obs(4, 5)), w, mu_w[:, 0] * 0)
    y.square().sum().backward()
    return y.detach().numpy(), sigma_w.grad.numpy()


def _natural_gradient(lib, iters=10):
    """NPG / TRPO: Fisher-vector products by double backward and a conjugate-gradient solve."""
    actor = _mlp(lib, [4, 16, 2])
    obs, act = lib.tensor(_obs()), lib.tensor(np.arange(16) % 2)
    adv = lib.tensor(np.linspace(-1, 1, 16, dtype=np.float32))
    dist = lib.distributions.Categorical(logits=actor(obs))
    old = lib.distributions.Categorical(logits=dist.logits.detach())
    params = list(actor.parameters())
    g = lib.autograd.grad((dist.log_prob(act) * adv).mean(), params, retain_graph=True)
    g = lib.cat([x.reshape(-1) for x in g])
    kl = lib.distributions.kl_divergence(old, dist).mean()
    gkl = lib.cat([x.reshape(-1) for x in lib.autograd.grad(kl, params, create_graph=True)])

    def fvp(v):
        h = lib.autograd.grad((gkl * v).sum(), params, retain_graph=True)
        return lib.cat([x.reshape(-1) for x in h]) + 0.1 * v

    x, r = lib.zeros_like(g), g.clone()
    p, rr = r.clone(), r.dot(r)
    for _ in range(iters):
        z = fvp(p)
        alpha = rr / p.dot(z)
        x, r = x + alpha * p, r - alpha * z
        new_rr = r.dot(r)
        p, rr = r + new_rr / rr * p, new_rr
    return x.detach().numpy()


def test_c51_projection_and_update_match_torch():
    _close(*_both(_c51_step), rtol=1e-5)


@pytest.mark.parametrize("tau_kind", ["fixed", "sampled"])
def test_quantile_huber_losses_match_torch(tau_kind):
    (le, ge), (lt, gt) = _both(_quantile_huber, tau_kind)
    _close([le, ge], [lt, gt], rtol=1e-5)


def test_noisy_linear_and_natural_gradient_match_torch():
    (ye, ge), (yt, gt) = _both(_noisy_linear)
    _close([ye, ge], [yt, gt])
    _close(*_both(_natural_gradient), rtol=1e-4, atol=1e-5)


# ---- avalanche -------------------------------------------------------------------------------
def _continual(lib, strategy):
    """Three class-incremental experiences (2 classes each), one regulariser per strategy."""
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((6, 8)) * 2
    y = np.arange(120) % 6
    x = (centers[y] + rng.standard_normal((120, 8))).astype(np.float32)
    model = _mlp(lib, [8, 16, 6])
    opt = lib.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ce = lib.nn.CrossEntropyLoss()
    fisher, anchor, omega, prev_model, w_start, path, ref = {}, {}, {}, None, None, {}, None
    accs = []
    for exp in range(3):
        keep = (y // 2) == exp
        ds = lib.utils.data.TensorDataset(lib.tensor(x[keep]), lib.tensor(y[keep]))
        dl = lib.utils.data.DataLoader(
            ds, batch_size=16, shuffle=True, generator=lib.Generator().manual_seed(exp)
        )
        if strategy == "si":
            w_start = {n: p.detach().clone() for n, p in model.named_parameters()}
            path = {n: lib.zeros_like(p) for n, p in model.named_parameters()}
        for xb, yb in dl:
            if strategy == "agem" and ref is not None:
                opt.zero_grad()
                ce(model(ref[0]), ref[1]).backward()
                g_ref = lib.cat([p.grad.view(-1) for p in model.parameters()])
            opt.zero_grad()
            out = model(xb)
            loss = ce(out, yb)
            if strategy == "ewc" and fisher:
                loss = loss + 5.0 * sum(
                    (fisher[n] * (p - anchor[n]).pow(2)).sum() for n, p in model.named_parameters()
                )
            if strategy == "si" and omega:
                loss = loss + 1.0 * sum(
                    (omega[n] * (p - anchor[n]).pow(2)).sum() for n, p in model.named_parameters()
                )
            if strategy == "lwf" and prev_model is not None:
                with lib.no_grad():
                    old = prev_model(xb)[:, : 2 * exp]
                t = 2.0
                kd = lib.nn.functional.kl_div(
                    lib.log_softmax(out[:, : 2 * exp] / t, 1),
                    lib.softmax(old / t, 1),
                    reduction="batchmean",
                )
                loss = loss + kd * t * t
            loss.backward()
            if strategy == "agem" and ref is not None:
                g = lib.cat([p.grad.view(-1) for p in model.parameters()])
                dot = lib.dot(g, g_ref)
                if dot < 0:
                    g = g - g_ref * (dot / lib.dot(g_ref, g_ref))
                    i = 0
                    for p in model.parameters():
                        p.grad.copy_(g[i : i + p.numel()].view_as(p))
                        i += p.numel()
            if strategy == "si":
                before = {n: p.detach().clone() for n, p in model.named_parameters()}
            opt.step()
            if strategy == "si":
                for n, p in model.named_parameters():
                    path[n] -= p.grad * (p.detach() - before[n])
        if strategy == "ewc":  # empirical Fisher: mean squared per-sample-batch gradients
            fisher = {n: lib.zeros_like(p) for n, p in model.named_parameters()}
            for xb, yb in lib.utils.data.DataLoader(ds, batch_size=8):
                model.zero_grad()
                ce(model(xb), yb).backward()
                for n, p in model.named_parameters():
                    fisher[n] += p.grad.pow(2) / 5
        if strategy == "si":
            for n, p in model.named_parameters():
                delta = p.detach() - w_start[n]
                omega[n] = omega.get(n, 0) + path[n] / (delta.pow(2) + 1e-3)
        anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
        if strategy == "lwf":
            import copy

            prev_model = copy.deepcopy(model).eval()
        if strategy == "agem":
            ref = (ds.tensors[0][::3], ds.tensors[1][::3])
        with lib.no_grad():
            accs.append((model(lib.tensor(x)).argmax(1) == lib.tensor(y)).float().mean().item())
    params = lib.cat([p.detach().reshape(-1) for p in model.parameters()])
    return accs, params.numpy()


@pytest.mark.parametrize("strategy", ["naive", "ewc", "si", "lwf", "agem"])
def test_continual_strategies_match_torch(strategy):
    (ae, pe), (at, pt) = _both(_continual, strategy)
    assert ae == at
    _close([pe], [pt], rtol=1e-4, atol=1e-5)


# ---- pytorch-metric-learning -----------------------------------------------------------------
def _embeddings(n=24, d=8, classes=4):
    rng = np.random.default_rng(3)
    return rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, classes, n)


def _metric_losses(lib):
    """Masked mining (hard / semi-hard triplets, pairs) and the losses built on the masks."""
    e, y = _embeddings()
    emb = lib.tensor(e, requires_grad=True)
    lab = lib.tensor(y)
    f = lib.nn.functional
    z = f.normalize(emb, p=2, dim=1)
    dist = lib.cdist(z, z)
    same = lab[:, None] == lab[None, :]
    eye = lib.eye(len(y), dtype=lib.bool)
    pos, neg = same & ~eye, ~same
    a, p, n = lib.where(pos.unsqueeze(2) & neg.unsqueeze(1))
    ap, an = dist[a, p], dist[a, n]
    semihard = (an > ap) & (an < ap + 0.2)
    trip = f.relu(ap - an + 0.2)[semihard].mean()
    hard_pos = (dist * pos).max(1).values
    hard_neg = dist.masked_fill(~neg, float("inf")).min(1).values
    batch_hard = f.relu(hard_pos - hard_neg + 0.2).mean()
    sim = z @ z.T / 0.1  # NT-Xent / SupCon over the positive pairs
    logits = sim.masked_fill(eye, float("-inf"))
    ntxent = -(logits.log_softmax(1)[pos]).mean()
    # ArcFace: an additive angular margin on the target class
    w = f.normalize(lib.tensor(np.linspace(-1, 1, 32, dtype=np.float32).reshape(8, 4)), dim=0)
    cos = (z @ w).clamp(-1 + 1e-7, 1 - 1e-7)
    theta = lib.acos(cos)
    onehot = f.one_hot(lab, 4).bool()
    arc = f.cross_entropy(64 * lib.where(onehot, lib.cos(theta + 0.5), cos), lab)
    # multi-similarity style logsumexp over the masks
    s = z @ z.T
    ms = (
        lib.log1p(lib.exp(-2 * (s - 0.5)).masked_fill(~pos, 0).sum(1)) / 2
        + lib.log1p(lib.exp(50 * (s - 0.5)).masked_fill(~neg, 0).sum(1)) / 50
    ).mean()
    total = trip + batch_hard + ntxent + arc + ms
    total.backward()
    vals = [x.item() for x in (trip, batch_hard, ntxent, arc, ms)]
    return vals, int(semihard.sum()), emb.grad.numpy()


def _precision_at_k(lib, k=3):
    """The accuracy calculator's kNN: precision@1, R-precision and MAP@R from topk."""
    e, y = _embeddings(40, 6, 5)
    q = lib.tensor(e)
    lab = lib.tensor(y)
    d = lib.cdist(q, q)
    d.fill_diagonal_(float("inf"))
    idx = d.topk(k, dim=1, largest=False).indices
    hit = (lab[idx] == lab[:, None]).float()
    p1 = hit[:, 0].mean()
    prec = hit.cumsum(1) / lib.arange(1, k + 1)
    map_r = ((prec * hit).sum(1) / k).mean()
    return [p1.item(), hit.mean().item(), map_r.item()], idx.numpy()


def test_metric_learning_mining_and_losses_match_torch():
    (ve, ne, ge), (vt, nt, gt) = _both(_metric_losses)
    assert ne == nt
    _close([ve, ge], [vt, gt], rtol=1e-5, atol=1e-6)


def test_knn_precision_matches_torch():
    (ae, ie), (at, it) = _both(_precision_at_k)
    np.testing.assert_array_equal(ie, it)
    _close([ae], [at])
