"""The idioms of pytorch-msssim, torchsummary / torchinfo and mambapy, each run on ember and
on PyTorch with the same data and seeds (the first half, tianshou / avalanche / metric
learning, is tests/test_rl_continual_metric_idioms.py).

Those libraries run on ember with ``torch`` resolved to ember (docs/porting_examples.md,
"tianshou, avalanche, mambapy"). Small programs of our own with their idioms, not importing
the libraries: a separable Gaussian SSIM / MS-SSIM and an SSIM-trained autoencoder, a
hook-based summary table, a selective scan (parallel and sequential) with a step-mode conv
cache, and a top-k mixture of experts with its load-balancing loss.
"""

from __future__ import annotations

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


def _obs(n=16, d=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


# ---- pytorch-msssim and summaries ------------------------------------------------------------
def _gauss_filter(lib, x, win):
    """A separable Gaussian blur: two grouped convolutions with 1-D windows."""
    c = x.shape[1]
    w = win.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    x = lib.nn.functional.conv2d(x, w, groups=c)
    return lib.nn.functional.conv2d(x, w.transpose(2, 3), groups=c)


def _ssim_parts(lib, x, y, win):
    c1, c2 = 0.01**2, 0.03**2
    mu1, mu2 = _gauss_filter(lib, x, win), _gauss_filter(lib, y, win)
    s11 = _gauss_filter(lib, x * x, win) - mu1.pow(2)
    s22 = _gauss_filter(lib, y * y, win) - mu2.pow(2)
    s12 = _gauss_filter(lib, x * y, win) - mu1 * mu2
    cs = (2 * s12 + c2) / (s11 + s22 + c2)
    return ((2 * mu1 * mu2 + c1) / (mu1.pow(2) + mu2.pow(2) + c1) * cs).flatten(2).mean(
        -1
    ), cs.flatten(2).mean(-1)


def _ssim_training(lib):
    g = lib.arange(11, dtype=lib.float32) - 5
    win = lib.exp(-(g**2) / (2 * 1.5**2))
    win = win / win.sum()
    rng = np.random.default_rng(4)
    x = lib.tensor(rng.random((2, 3, 96, 96), dtype=np.float32))
    y = (x * 0.7 + 0.1).requires_grad_(True)
    weights = lib.tensor([0.0448, 0.2856, 0.3001, 0.2363])
    mcs, xi, yi = [], x, y
    for i in range(4):  # MS-SSIM: contrast terms at coarse scales, full SSIM at the last
        s, cs = _ssim_parts(lib, xi, yi, win)
        mcs.append(lib.relu(cs if i < 3 else s))
        xi, yi = lib.nn.functional.avg_pool2d(xi, 2), lib.nn.functional.avg_pool2d(yi, 2)
    ms = lib.prod(lib.stack(mcs, 0) ** weights.view(-1, 1, 1), dim=0).mean()
    ms.backward()
    ae = lib.nn.Sequential(
        lib.nn.Conv2d(3, 4, 3, 2, 1),
        lib.nn.ReLU(),
        lib.nn.ConvTranspose2d(4, 3, 4, 2, 1),
        lib.nn.Sigmoid(),
    )
    opt = lib.optim.Adam(ae.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        loss = 1 - _ssim_parts(lib, ae(x[:, :, :32, :32]), x[:, :, :32, :32], win)[0].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return [ms.item()] + losses, y.grad.numpy()


def _summary_table(lib):
    """torchsummary's idiom: forward hooks on the leaf modules record output shapes and
    parameter counts (tuple outputs of recurrent layers included)."""

    class Net(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = lib.nn.Conv2d(1, 4, 3)
            self.bn = lib.nn.BatchNorm2d(4)
            self.gru = lib.nn.GRU(8, 5, batch_first=True)
            self.fc = lib.nn.Linear(5, 3)

        def forward(self, x):
            h = self.bn(self.conv(x)).mean(1).flatten(1)[:, :48].view(-1, 6, 8)
            return self.fc(self.gru(h)[0][:, -1])

    rows, hooks = [], []
    net = Net()
    for name, m in net.named_modules():
        if not list(m.children()):

            def hook(mod, inp, out, name=name):
                o = out[0] if isinstance(out, tuple) else out
                n_par = sum(p.numel() for p in mod.parameters())
                train = sum(p.numel() for p in mod.parameters() if p.requires_grad)
                rows.append((name, type(mod).__name__, list(o.shape), n_par, train))

            hooks.append(m.register_forward_hook(hook))
    net(lib.zeros(2, 1, 10, 10))
    for h in hooks:
        h.remove()
    size_mb = sum(p.numel() * p.element_size() for p in net.parameters()) / 2**20
    return rows, round(size_mb, 6), len(net._forward_hooks)


def test_ssim_ms_ssim_and_autoencoder_match_torch():
    (ve, ge), (vt, gt) = _both(_ssim_training)
    _close([ve, ge], [vt, gt], rtol=2e-5, atol=1e-6)


def test_hook_summary_table_matches_torch():
    assert _summary_table(ember) == _summary_table(torch)


# ---- mambapy ---------------------------------------------------------------------------------
def _selective_scan(lib, parallel):
    """Mamba's SSM: dt = softplus, discretised A/B, the scan (sequential, or a log-depth
    Hillis-Steele doubling), a causal depthwise conv1d before, and step mode with a cache."""
    b, length, d, n = 2, 6, 4, 3
    rng = np.random.default_rng(5)
    x = lib.tensor(rng.standard_normal((b, length, d)).astype(np.float32), requires_grad=True)
    conv = lib.nn.Conv1d(d, d, 4, groups=d, padding=3)
    a_log = lib.nn.Parameter(lib.log(lib.arange(1, n + 1, dtype=lib.float32)).repeat(d, 1))
    proj = lib.nn.Linear(d, 1 + 2 * n)
    xc = lib.nn.functional.silu(conv(x.transpose(1, 2))[:, :, :length].transpose(1, 2))
    dt, bm, cm = lib.split(proj(xc), [1, n, n], dim=-1)
    delta = lib.nn.functional.softplus(dt)  # (b, l, 1)
    da = lib.exp(delta.unsqueeze(-1) * -lib.exp(a_log))  # (b, l, d, n)
    bx = delta.unsqueeze(-1) * bm.unsqueeze(2) * xc.unsqueeze(-1)
    if parallel:
        aa, hh, step = da, bx, 1
        while step < length:  # h_t = a_t h_{t-1} + b_t, by doubling
            hh = lib.cat([hh[:, :step], aa[:, step:] * hh[:, :-step] + hh[:, step:]], 1)
            aa = lib.cat([aa[:, :step], aa[:, step:] * aa[:, :-step]], 1)
            step *= 2
        hs = hh
    else:
        h, hs = lib.zeros(b, d, n), []
        for t in range(length):
            h = da[:, t] * h + bx[:, t]
            hs.append(h)
        hs = lib.stack(hs, 1)
    y = (hs @ cm.unsqueeze(-1)).squeeze(-1)
    y.square().mean().backward()
    # step mode: a rolling conv cache gives the same first output channel sequence
    cache = lib.zeros(b, d, 3)
    steps = []
    with lib.no_grad():
        for t in range(length):
            window = lib.cat([cache, x[:, t].unsqueeze(-1)], -1)
            steps.append((window * conv.weight.squeeze(1)).sum(-1) + conv.bias)
            cache = window[:, :, 1:]
        full = conv(x.transpose(1, 2))[:, :, :length].transpose(1, 2)
    return (
        y.detach().numpy(),
        x.grad.numpy(),
        a_log.grad.numpy(),
        float((lib.stack(steps, 1) - full).abs().max()),
    )


def _moe(lib):
    """Jamba's sparse MoE: softmax router, top-k experts by index_add, load-balancing loss."""
    experts = lib.nn.ModuleList([lib.nn.Linear(4, 4) for _ in range(4)])
    router = lib.nn.Linear(4, 4, bias=False)
    x = lib.tensor(_obs(10, 4, seed=6))
    probs = router(x).softmax(-1)
    w, idx = probs.topk(2, dim=-1)
    w = w / w.sum(-1, keepdim=True)
    out = lib.zeros_like(x)
    for e, expert in enumerate(experts):
        rows, slot = lib.where(idx == e)
        if rows.numel():
            out = out.index_add(0, rows, expert(x[rows]) * w[rows, slot, None])
    mask = lib.nn.functional.one_hot(idx, 4).float().sum(1)
    aux = 4 * (mask.mean(0) / 2 * probs.mean(0)).sum()
    (out.square().mean() + 0.01 * aux).backward()
    return out.detach().numpy(), aux.item(), router.weight.grad.numpy()


@pytest.mark.parametrize("parallel", [False, True])
def test_selective_scan_and_step_cache_match_torch(parallel):
    (ye, ge, ae, se), (yt, gt, at, st) = _both(_selective_scan, parallel)
    _close([ye, ge, ae], [yt, gt, at], rtol=1e-5, atol=1e-6)
    assert se < 1e-6 and st < 1e-6
    ember.manual_seed(0)
    ys, _, _, _ = _selective_scan(ember, not parallel)
    np.testing.assert_allclose(ye, ys, rtol=1e-5, atol=1e-6)  # parallel == sequential


def test_top_k_mixture_of_experts_matches_torch():
    _close(*_both(_moe))
