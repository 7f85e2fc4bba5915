"""The PyTorch idioms of time-series forecasting libraries (pytorch-forecasting 1.8,
neuralforecast 3.3, darts) in small programs of our own, checked against PyTorch (the
libraries are not imported).

pytorch-forecasting imports ``torch.distributions.transforms._clipped_sigmoid`` and annotates
with ``torch.DeviceObjType``; its TimeXer (like PatchTST-style encoders) applies dropout to a
transposed convolution output and trains attention through ``scaled_dot_product_attention``
with ``dropout_p``: seeded runs match torch only where those dropouts draw torch's masks.
The rest are the building blocks: gated residual networks and variable selection (TFT),
quantile and distribution losses, dilated causal convolutions (TCN), N-BEATS blocks with
trend/seasonality bases and multi-layer LSTMs with dropout between layers (DeepAR).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ember

LIBS = [torch, ember]


def _np(t):
    return t.detach().double().numpy()


def _copy(src, dst):
    """Load a torch module's weights into the same ember module."""
    dst.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in src.state_dict().items()})


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(_np(a), _np(b), rtol=tol, atol=tol)


# ---- imports and annotations --------------------------------------------------------------


def test_clipped_sigmoid_and_device_obj_type():
    from torch.distributions.transforms import _clipped_sigmoid as t_cs

    from ember.distributions.transforms import _clipped_sigmoid as e_cs

    x = np.array([-200.0, -3.0, 0.0, 2.5, 50.0], dtype=np.float32)
    _close(e_cs(ember.tensor(x)), t_cs(torch.tensor(x)), 1e-6)
    ann = str | ember.DeviceObjType  # a class, usable in a union as torch's is
    assert ember.DeviceObjType in ann.__args__


# ---- dropout: the masks torch draws ---------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (64, 4, 64, 16)], ids=["whole", "chunked"])
def test_sdpa_dropout_draws_torchs_mask(shape):
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal(shape).astype(np.float32) for _ in range(3))
    outs = []
    for lib in LIBS:
        lib.manual_seed(1)
        o = lib.nn.functional.scaled_dot_product_attention(
            *(lib.tensor(a) for a in (q, k, v)), dropout_p=0.3
        )
        outs.append(o)
        outs.append(lib.rand(3))  # the stream after it
    _close(outs[2], outs[0])
    _close(outs[3], outs[1], 0)


@pytest.mark.parametrize("need_weights", [False, True])
def test_multihead_attention_dropout_matches(need_weights):
    outs = []
    for lib in LIBS:
        lib.manual_seed(0)
        mha = lib.nn.MultiheadAttention(8, 2, dropout=0.25)
        x = lib.randn(5, 3, 8)
        lib.manual_seed(2)
        outs.append(mha(x, x, x, need_weights=need_weights)[0])
    _close(outs[1], outs[0])


@pytest.mark.parametrize("norm_first", [False, True])
def test_batch_first_encoder_layer_dropout_matches(norm_first):
    # torch's batch_first attention output is (L, B, E) in memory: the dropout after it
    # draws in that order
    outs = []
    for lib in LIBS:
        lib.manual_seed(0)
        enc = lib.nn.TransformerEncoderLayer(
            8, 2, 16, dropout=0.3, batch_first=True, norm_first=norm_first
        )
        x = lib.randn(3, 5, 8)
        lib.manual_seed(3)
        a = enc.self_attn(x, x, x, need_weights=False)[0]
        outs.append((a.stride(), enc(x), lib.rand(2)))
    assert outs[1][0] == outs[0][0]
    for t, e in zip(outs[0][1:], outs[1][1:]):
        _close(e, t)


def test_dropout_of_a_transposed_tensor_draws_in_memory_order():
    # TimeXer / Informer-style FFN: dropout(conv2(y).transpose(-1, 1))
    outs = []
    for lib in LIBS:
        lib.manual_seed(0)
        conv = lib.nn.Conv1d(8, 6, 1)
        y = lib.randn(4, 8, 5)
        lib.manual_seed(3)
        a = lib.nn.functional.dropout(conv(y).transpose(-1, 1), 0.4)
        b = lib.nn.functional.dropout(lib.randn(3, 4, 5).permute(2, 0, 1), 0.5)
        c = lib.nn.functional.dropout(lib.randn(4, 6)[:, ::2], 0.5)  # not dense: row order
        outs.append((a, b, c, lib.rand(2)))
    for t, e in zip(*outs):
        _close(e, t)


def test_multilayer_lstm_dropout_between_layers():
    # DeepAR's encoder: a 2-layer LSTM with dropout, trained
    outs = []
    for lib in LIBS:
        lib.manual_seed(0)
        rnn = lib.nn.LSTM(3, 8, num_layers=2, dropout=0.2, batch_first=True)
        x = lib.randn(4, 6, 3)
        lib.manual_seed(7)
        out, (h, c) = rnn(x)
        out.pow(2).mean().backward()
        outs.append((out, h, c, rnn.weight_ih_l0.grad))
    for t, e in zip(*outs):
        _close(e, t)


# ---- TFT: gated residual network, variable selection -------------------------------------


def _tft_parts(lib):
    nn, F = lib.nn, lib.nn.functional

    class GLU(nn.Module):
        def __init__(self, d_in, d_out, dropout):
            super().__init__()
            self.dropout = nn.Dropout(dropout)
            self.fc = nn.Linear(d_in, d_out * 2)

        def forward(self, x):
            return F.glu(self.fc(self.dropout(x)), dim=-1)

    class GRN(nn.Module):
        def __init__(self, d_in, d_hidden, d_out, d_context=None, dropout=0.1):
            super().__init__()
            self.skip = nn.Linear(d_in, d_out) if d_in != d_out else None
            self.fc1 = nn.Linear(d_in, d_hidden)
            self.context = nn.Linear(d_context, d_hidden, bias=False) if d_context else None
            self.elu = nn.ELU()
            self.fc2 = nn.Linear(d_hidden, d_hidden)
            self.gate = GLU(d_hidden, d_out, dropout)
            self.norm = nn.LayerNorm(d_out)

        def forward(self, x, context=None):
            residual = x if self.skip is None else self.skip(x)
            h = self.fc1(x)
            if context is not None:
                h = h + self.context(context)
            h = self.fc2(self.elu(h))
            return self.norm(self.gate(h) + residual)

    class VariableSelection(nn.Module):
        def __init__(self, sizes, d_hidden, d_context):
            super().__init__()
            self.flat = GRN(sum(sizes), d_hidden, len(sizes), d_context)
            self.single = nn.ModuleList(GRN(s, d_hidden, d_hidden) for s in sizes)
            self.sizes = sizes

        def forward(self, x, context):
            weights = lib.softmax(self.flat(x, context), dim=-1).unsqueeze(-2)
            parts = lib.split(x, self.sizes, dim=-1)
            outs = lib.stack([g(p) for g, p in zip(self.single, parts)], dim=-1)
            return (outs * weights).sum(dim=-1), weights

    return VariableSelection


def test_gated_residual_variable_selection():
    outs = []
    ref = None
    for lib in LIBS:
        lib.manual_seed(0)
        vsn = _tft_parts(lib)([1, 3, 2], 8, 4)
        if ref is None:
            ref = vsn
        else:
            _copy(ref, vsn)
        x = lib.tensor(np.linspace(-2, 2, 5 * 7 * 6, dtype=np.float32).reshape(5, 7, 6))
        ctx = lib.tensor(np.cos(np.arange(5 * 7 * 4, dtype=np.float32)).reshape(5, 7, 4))
        x.requires_grad_(True)
        lib.manual_seed(4)
        y, w = vsn(x, ctx)
        (y.pow(2).sum() + w.max()).backward()
        outs.append((y, w, x.grad, vsn.flat.context.weight.grad, vsn.single[1].norm.weight.grad))
    for t, e in zip(*outs):
        _close(e, t)


# ---- losses: quantiles, SMAPE, distribution heads ----------------------------------------


def _losses(lib, pred, target, dist_params, counts):
    quantiles = [0.02, 0.1, 0.5, 0.9, 0.98]
    errors = target.unsqueeze(-1) - pred
    q = lib.tensor(quantiles)
    quantile = lib.max((q - 1) * errors, q * errors).mean()
    mid = pred[..., 2]
    smape = (2 * (mid - target).abs() / (mid.abs() + target.abs() + 1e-8)).mean()
    loc, raw_scale = dist_params[..., 0], dist_params[..., 1]
    normal = lib.distributions.Normal(loc, lib.nn.functional.softplus(raw_scale))
    nll = -normal.log_prob(target).mean()
    mean = lib.nn.functional.softplus(dist_params[..., 0]) + 1e-3
    alpha = lib.nn.functional.softplus(dist_params[..., 1]) + 1e-3
    r = 1.0 / alpha
    negbin = lib.distributions.NegativeBinomial(total_count=r, logits=(alpha * mean).log())
    nb = -negbin.log_prob(counts).mean()
    logn = lib.distributions.LogNormal(loc, lib.nn.functional.softplus(raw_scale))
    ln = -logn.log_prob(target.abs() + 0.1).mean()
    return quantile, smape, nll, nb, ln, normal.icdf(lib.tensor(0.9)).sum()


def test_quantile_smape_and_distribution_losses():
    rng = np.random.default_rng(1)
    pred = np.sort(rng.standard_normal((4, 6, 5)), -1).astype(np.float32)
    target = rng.standard_normal((4, 6)).astype(np.float32)
    params = rng.standard_normal((4, 6, 2)).astype(np.float32)
    counts = rng.poisson(3, (4, 6)).astype(np.float32)
    res = []
    for lib in LIBS:
        p, d = lib.tensor(pred, requires_grad=True), lib.tensor(params, requires_grad=True)
        vals = _losses(lib, p, lib.tensor(target), d, lib.tensor(counts))
        sum(vals).backward()
        res.append((*vals, p.grad, d.grad))
    for t, e in zip(*res):
        _close(e, t)


def test_distribution_head_samples_seeded():
    # DeepAR's prediction: sample the output distribution under a seed
    res = []
    for lib in LIBS:
        lib.manual_seed(3)
        loc = lib.linspace(-1, 1, 6)
        s = lib.distributions.Normal(loc, lib.full((6,), 0.5)).sample((4,))
        res.append((s, lib.quantile(s, lib.tensor([0.1, 0.5, 0.9]), dim=0)))
    for t, e in zip(*res):
        _close(e, t)


# ---- TCN: dilated causal convolutions -----------------------------------------------------


def _tcn(lib, channels=(4, 6, 6), kernel=3):
    nn = lib.nn

    class Block(nn.Module):
        def __init__(self, c_in, c_out, dilation):
            super().__init__()
            self.pad = (kernel - 1) * dilation
            conv = nn.Conv1d(c_in, c_out, kernel, dilation=dilation, padding=self.pad)
            self.conv = nn.utils.parametrizations.weight_norm(conv)
            self.down = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else None

        def forward(self, x):
            y = self.conv(x)[..., : -self.pad]  # chomp: keep the causal part
            y = lib.relu(y)
            return y + (x if self.down is None else self.down(x))

    return nn.Sequential(
        *(Block(a, b, 2**i) for i, (a, b) in enumerate(zip(channels, channels[1:])))
    )


def test_tcn_dilated_causal_convolutions():
    outs, ref = [], None
    x = np.sin(np.arange(2 * 4 * 20, dtype=np.float32) / 3).reshape(2, 4, 20)
    for lib in LIBS:
        lib.manual_seed(0)
        net = _tcn(lib)
        if ref is None:
            ref = net
        else:
            _copy(ref, net)
        xt = lib.tensor(x, requires_grad=True)
        y = net(xt)
        y[..., -1].pow(2).sum().backward()
        outs.append((y, xt.grad, net[0].conv.parametrizations.weight.original1.grad))
    for t, e in zip(*outs):
        _close(e, t)
    grad = _np(outs[0][1])
    assert np.all(grad[..., :5] == 0)  # receptive field 1 + 2 * (1 + 2) = 7 steps


# ---- N-BEATS: generic, trend and seasonality blocks ---------------------------------------


def _nbeats(lib, backcast=12, forecast=4, width=16):
    nn = lib.nn
    t_b = lib.arange(backcast, dtype=lib.float32) / (backcast + forecast)
    t_f = lib.arange(backcast, backcast + forecast, dtype=lib.float32) / (backcast + forecast)

    class Block(nn.Module):
        def __init__(self, kind, n_theta):
            super().__init__()
            self.kind = kind
            self.fc = nn.Sequential(
                nn.Linear(backcast, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU()
            )
            self.theta = nn.Linear(width, n_theta, bias=False)
            if kind == "trend":
                p = lib.arange(n_theta // 2, dtype=lib.float32)
                self.register_buffer("basis_b", t_b.unsqueeze(0) ** p.unsqueeze(1))
                self.register_buffer("basis_f", t_f.unsqueeze(0) ** p.unsqueeze(1))
            elif kind == "seasonality":
                f = lib.arange(1, n_theta // 4 + 1, dtype=lib.float32).unsqueeze(1) * 2 * math.pi
                self.register_buffer("basis_b", lib.cat([lib.cos(f * t_b), lib.sin(f * t_b)]))
                self.register_buffer("basis_f", lib.cat([lib.cos(f * t_f), lib.sin(f * t_f)]))
            else:
                self.back = nn.Linear(n_theta // 2, backcast)
                self.fore = nn.Linear(n_theta // 2, forecast)

        def forward(self, x):
            theta = self.theta(self.fc(x))
            tb, tf = theta.chunk(2, dim=-1)
            if self.kind == "generic":
                return self.back(tb), self.fore(tf)
            return tb @ self.basis_b, tf @ self.basis_f

    class NBeats(nn.Module):
        def __init__(self):
            super().__init__()
            kinds = [("trend", 6), ("seasonality", 8), ("generic", 8)]
            self.blocks = nn.ModuleList(Block(k, n) for k, n in kinds)

        def forward(self, x):
            forecast = lib.zeros(x.shape[0], forecast_len, dtype=x.dtype)
            for block in self.blocks:
                b, f = block(x)
                x = x - b
                forecast = forecast + f
            return x, forecast

    forecast_len = forecast
    return NBeats()


def test_nbeats_blocks():
    outs = []
    x = (10 + 3 * np.sin(np.arange(5 * 12) / 4)).astype(np.float32).reshape(5, 12)
    nets = [_nbeats(lib) for lib in LIBS]
    _copy(nets[0], nets[1])  # (before torch's training)
    for lib, net in zip(LIBS, nets):
        opt = lib.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(3):
            opt.zero_grad()
            residual, f = net(lib.tensor(x))
            loss = f.sub(lib.tensor(x[:, -4:])).abs().mean() + 0.1 * residual.pow(2).mean()
            loss.backward()
            lib.nn.utils.clip_grad_norm_(net.parameters(), 0.1)
            opt.step()
        outs.append((loss, f, net.blocks[1].theta.weight))
    for t, e in zip(*outs):
        _close(e, t, 1e-4)


def test_porting_examples_snippet_runs(capsys):
    import pathlib

    doc = pathlib.Path(__file__).resolve().parents[1] / "docs" / "porting_examples.md"
    section = doc.read_text().split("\n## pytorch-forecasting, neuralforecast, darts\n", 1)[1]
    snippet = section.split("\n## ", 1)[0].split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(snippet, "docs/porting_examples.md", "exec"), {})
    expected = snippet.strip().splitlines()[-1][2:]
    assert capsys.readouterr().out.strip() == expected
