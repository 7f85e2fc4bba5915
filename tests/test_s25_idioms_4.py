"""Idioms from third-party programs (session 25, batch 4: julius, demucs, encodec, gluonts),
in programs of our own.

Each program is written once against a module ``mod`` (ember or torch) and run on both with
the same seeds and NumPy data; the results are compared.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

MODS = [ember, torch]


def _np(t):
    return t.detach().numpy()


def _close(a, b, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(_np(a), _np(b), rtol=rtol, atol=atol)


# --- julius: windowed-sinc filters by conv1d, strided frames, FFT convolution ----------------


def _sinc(mod, x):
    # sin(x) / x with the removable singularity filled in by where
    return mod.where(x == 0, mod.tensor(1.0, dtype=x.dtype), mod.sin(x) / x)


def _lowpass_program(mod, x_np, cutoff, zeros=8):
    x = mod.from_numpy(x_np).requires_grad_()
    half = int(zeros / cutoff / 2)
    window = mod.hann_window(2 * half + 1, periodic=False)
    t = mod.arange(-half, half + 1, dtype=mod.float32)
    filt = 2 * cutoff * window * _sinc(mod, 2 * cutoff * math.pi * t)
    filt = (filt / filt.sum())[None, None]
    flat = x.reshape(-1, 1, x.shape[-1])
    y = mod.nn.functional.conv1d(mod.nn.functional.pad(flat, (half, half), mode="replicate"), filt)
    y = y.view_as(x)
    (y.square().mean()).backward()
    return y, x.grad


def _frames_program(mod, x_np, kernel, stride):
    # frames as views: pad to cover every sample, then as_strided with the last stride scaled
    x = mod.from_numpy(x_np)
    length = x.shape[-1]
    n = math.ceil((max(length, kernel) - kernel) / stride) + 1
    padded = mod.nn.functional.pad(x, (0, (n - 1) * stride + kernel - length)).contiguous()
    strides = list(padded.stride())
    strides = strides[:-1] + [stride * strides[-1], strides[-1]]
    return padded.as_strided(list(padded.shape[:-1]) + [n, kernel], strides)


def _fft_conv_program(mod, x_np, w_np, stride, block=256):
    # overlap-save: rfft of frames, multiply by the conjugate kernel spectrum, irfft, crop
    x = mod.from_numpy(x_np).requires_grad_()
    w = mod.from_numpy(w_np).requires_grad_()
    k = w.shape[-1]
    wf = mod.fft.rfft(mod.nn.functional.pad(w, (0, block - k)), dim=-1)
    length = x.shape[-1]
    n = math.ceil((max(length, block) - block) / (block - k + 1)) + 1
    padded = mod.nn.functional.pad(x, (0, (n - 1) * (block - k + 1) + block - length))
    fr = padded.unfold(-1, block, block - k + 1)  # (B, C, n, block)
    xf = mod.fft.rfft(fr, dim=-1)
    out = mod.einsum("bcft,dct->bdft", xf, wf.conj())
    out = mod.fft.irfft(out, n=block, dim=-1)[..., : block - k + 1 : stride]
    out = out.reshape(*out.shape[:2], -1)[..., : (length - k) // stride + 1]
    out.square().sum().backward()
    return out, x.grad, w.grad


def _resample_program(mod, x_np, old, new, zeros=12, rolloff=0.945):
    # a bank of `new` shifted sinc kernels applied with stride `old`, interleaved by stack
    x = mod.from_numpy(x_np).requires_grad_()
    sr = min(new, old) * rolloff
    width = math.ceil(zeros * old / sr)
    idx = mod.arange(-width, width + old, dtype=mod.float32)
    kernels = []
    for i in range(new):
        t = (-i / new + idx / old) * sr
        t = t.clamp(-zeros, zeros) * math.pi
        win = mod.cos(t / zeros / 2) ** 2
        kern = _sinc(mod, t) * win
        kernels.append(kern / kern.sum())
    kern = mod.stack(kernels).view(new, 1, -1)
    flat = x.reshape(-1, 1, x.shape[-1])
    y = mod.nn.functional.conv1d(
        mod.nn.functional.pad(flat, (width, width + old), mode="replicate"), kern, stride=old
    )
    y = y.transpose(1, 2).reshape(*x.shape[:-1], -1)
    y = y[..., : int(math.ceil(new * x.shape[-1] / old))]
    y.abs().sum().backward()
    return y, x.grad


@pytest.mark.parametrize("cutoff", [0.05, 0.3])
def test_julius_windowed_sinc_lowpass(cutoff):
    x = np.random.default_rng(0).standard_normal((2, 2, 500)).astype(np.float32)
    (ye, ge), (yt, gt) = (_lowpass_program(m, x, cutoff) for m in MODS)
    _close(ye, yt)
    _close(ge, gt, atol=1e-8)


def test_julius_strided_frames_are_views():
    x = np.arange(2 * 3 * 23, dtype=np.float32).reshape(2, 3, 23)
    fe, ft = (_frames_program(m, x, 8, 5) for m in MODS)
    assert tuple(fe.shape) == tuple(ft.shape) == (2, 3, 4, 8)
    assert fe.stride() == ft.stride()
    np.testing.assert_array_equal(_np(fe), _np(ft))


def test_julius_fft_conv_matches_direct_conv():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 700)).astype(np.float32)
    w = rng.standard_normal((4, 3, 33)).astype(np.float32)
    (oe, gxe, gwe), (ot, gxt, gwt) = (_fft_conv_program(m, x, w, 2) for m in MODS)
    direct = torch.nn.functional.conv1d(torch.from_numpy(x), torch.from_numpy(w), stride=2)
    assert tuple(oe.shape) == tuple(direct.shape)
    _close(oe, ot, atol=2e-5)
    np.testing.assert_allclose(_np(oe), direct.numpy(), atol=5e-5)
    _close(gxe, gxt, atol=5e-4)
    _close(gwe, gwt, atol=5e-4)


@pytest.mark.parametrize("old,new", [(5, 4), (2, 3)])
def test_julius_fractional_resample(old, new):
    x = np.random.default_rng(2).standard_normal((2, 2, 300)).astype(np.float32)
    (ye, ge), (yt, gt) = (_resample_program(m, x, old, new) for m in MODS)
    assert tuple(ye.shape) == tuple(yt.shape)
    _close(ye, yt)
    _close(ge, gt)


# --- demucs: complex-as-channels spectrogram, a cross-attention block, shifted overlap-add ----


def _spec_program(mod, x_np, nfft=64):
    x = mod.from_numpy(x_np).requires_grad_()
    hop = nfft // 4
    le = int(math.ceil(x.shape[-1] / hop))
    pad = hop // 2 * 3
    xp = mod.nn.functional.pad(x, (pad, pad + le * hop - x.shape[-1]), mode="reflect")
    flat = xp.reshape(-1, xp.shape[-1])
    win = mod.hann_window(nfft).to(x)
    z = mod.stft(
        flat,
        nfft,
        hop,
        window=win,
        win_length=nfft,
        normalized=True,
        center=True,
        return_complex=True,
        pad_mode="reflect",
    )
    z = z.view(*x.shape[:-1], *z.shape[-2:])[..., :-1, :][..., 2 : 2 + le]
    # complex as channels: (B, C, F, T) complex -> (B, 2C, F, T) real
    b, c, f, t = z.shape
    cac = mod.view_as_real(z).permute(0, 1, 4, 2, 3).reshape(b, 2 * c, f, t)
    cac = cac * mod.linspace(0.5, 1.5, f)[:, None]  # a stand-in "network"
    back = mod.view_as_complex(cac.view(b, c, 2, f, t).permute(0, 1, 3, 4, 2).contiguous())
    back = mod.nn.functional.pad(back, (0, 0, 0, 1))
    back = mod.nn.functional.pad(back, (2, 2))
    length = hop * int(math.ceil(x.shape[-1] / hop))
    flatz = back.reshape(-1, *back.shape[-2:])
    y = mod.istft(
        flatz,
        nfft,
        hop,
        window=win,
        win_length=nfft,
        normalized=True,
        length=length + 2 * pad,
        center=True,
    )
    y = y.view(*x.shape[:-1], -1)[..., pad : pad + x.shape[-1]]
    (y * mod.arange(y.shape[-1], dtype=y.dtype)).sum().backward()
    return cac, y, x.grad


def test_demucs_cac_spectrogram_round_trip():
    x = np.random.default_rng(3).standard_normal((2, 2, 400)).astype(np.float32)
    (ce, ye, ge), (ct, yt, gt) = (_spec_program(m, x) for m in MODS)
    assert tuple(ce.shape) == tuple(ct.shape) == (2, 4, 32, 25)
    _close(ce, ct, atol=1e-5)
    _close(ye, yt, atol=1e-5)
    _close(ge, gt, atol=1e-3, rtol=1e-4)


def _cross_block_program(mod, seed, a_np, b_np):
    mod.manual_seed(seed)
    dim = 16
    attn = mod.nn.MultiheadAttention(dim, 2, batch_first=True)
    norm_a, norm_b = mod.nn.LayerNorm(dim), mod.nn.LayerNorm(dim)
    gn = mod.nn.GroupNorm(1, dim)
    scale = mod.nn.Parameter(mod.full((dim,), 1e-4))  # layer scale
    a, b = mod.from_numpy(a_np).requires_grad_(), mod.from_numpy(b_np)
    # sine positional embedding (max period 10000), added to both streams
    pos = mod.arange(a.shape[1], dtype=mod.float32)[:, None]
    freqs = mod.exp(-math.log(10000.0) * mod.arange(dim // 2, dtype=mod.float32) / (dim // 2 - 1))
    emb = mod.cat([mod.cos(pos * freqs), mod.sin(pos * freqs)], dim=-1)
    q = norm_a(a + emb)
    kv = norm_b(b)
    out, _ = attn(q, kv, kv, need_weights=False)
    y = a + scale * out
    y = gn(y.transpose(1, 2)).transpose(1, 2)
    y = mod.nn.functional.glu(mod.cat([y, y.sigmoid()], -1), dim=-1)
    y.sum().backward()
    return y, a.grad, attn.in_proj_weight.grad


def test_demucs_cross_attention_block():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((2, 12, 16)).astype(np.float32)
    b = rng.standard_normal((2, 9, 16)).astype(np.float32)
    re, rt = (_cross_block_program(m, 0, a, b) for m in MODS)
    for e, t in zip(re, rt):
        _close(e, t, atol=1e-6)


def _overlap_add_program(mod, x_np, shifts, segment, overlap=0.25):
    # apply a model over shifted, weighted (triangular) overlapping chunks; the model is a
    # fixed causal filter so that the sum of weights is checked as well
    mod.manual_seed(5)
    x = mod.from_numpy(x_np)
    length = x.shape[-1]

    def model(chunk):
        return mod.nn.functional.conv1d(
            mod.nn.functional.pad(chunk, (2, 0)),
            mod.tensor([[[0.25, 0.25, 0.5]]]).expand(2, 1, 3),
            groups=2,
        )

    def chunked(inp):
        stride = int((1 - overlap) * segment)
        out = mod.zeros_like(inp)
        sum_w = mod.zeros(inp.shape[-1])
        weight = mod.cat(
            [mod.arange(1, segment // 2 + 1), mod.arange(segment - segment // 2, 0, -1)]
        )
        weight = (weight / weight.max()).to(inp)
        for offset in range(0, inp.shape[-1], stride):
            chunk = inp[..., offset : offset + segment]
            got = model(chunk)
            n = got.shape[-1]
            out[..., offset : offset + segment] += weight[:n] * got
            sum_w[offset : offset + segment] += weight[:n]
        return out / sum_w

    max_shift = 20
    padded = mod.nn.functional.pad(x, (max_shift, max_shift))
    total = mod.zeros_like(x)
    for _ in range(shifts):
        off = int(mod.randint(0, max_shift, ()).item())
        shifted = padded[..., off : off + length + max_shift - off]
        total += chunked(shifted)[..., max_shift - off : max_shift - off + length]
    return total / shifts


def test_demucs_shifted_overlap_add():
    x = np.random.default_rng(6).standard_normal((1, 2, 333)).astype(np.float32)
    ye, yt = (_overlap_add_program(m, x, 3, 80) for m in MODS)
    _close(ye, yt, atol=1e-6)


# --- encodec: causal weight-normed conv, residual VQ with k-means init and EMA, coding CDF ---


def _seanet_program(mod, x_np):
    mod.manual_seed(7)
    conv = mod.nn.utils.weight_norm(mod.nn.Conv1d(1, 4, 4, stride=2))
    up = mod.nn.utils.weight_norm(mod.nn.ConvTranspose1d(4, 1, 4, stride=2))
    lstm = mod.nn.LSTM(4, 4, 2)
    x = mod.from_numpy(x_np).requires_grad_()
    # causal: all the padding on the left, plus the extra needed for a whole number of frames
    k, s = 4, 2
    n_frames = (x.shape[-1] - k + (k - s)) / s + 1
    extra = (math.ceil(n_frames) - 1) * s + k - (k - s) - x.shape[-1]
    h = conv(mod.nn.functional.pad(x, (k - s, extra), mode="reflect"))
    h = mod.nn.functional.elu(h)
    y, _ = lstm(h.permute(2, 0, 1))
    h = (y + h.permute(2, 0, 1)).permute(1, 2, 0)  # LSTM with a skip
    out = up(h)[..., : -(k - s)]  # trim the right for causality
    out.square().mean().backward()
    return out, x.grad, conv.weight_g.grad, conv.weight_v.grad


@pytest.mark.filterwarnings("ignore::FutureWarning")  # the old weight_norm, as encodec uses
def test_encodec_causal_weight_norm_conv_lstm():
    x = np.random.default_rng(8).standard_normal((2, 1, 41)).astype(np.float32)
    re, rt = (_seanet_program(m, x) for m in MODS)
    assert tuple(re[0].shape) == tuple(rt[0].shape)
    for e, t in zip(re, rt):
        _close(e, t, atol=1e-6)


def _rvq_program(mod, x_np, n_q=3, bins=16, iters=4, decay=0.9, eps=1e-5):
    mod.manual_seed(9)
    x = mod.from_numpy(x_np)  # (N, D)
    residual, codes, quant = x, [], mod.zeros_like(x)
    books = []
    for _ in range(n_q):
        # k-means init: sample rows by randperm, assign by (negative) squared distance, average
        # by scatter_add_ / bincount, keep empty clusters
        means = residual[mod.randperm(residual.shape[0])[:bins]]
        for _ in range(iters):
            dists = -((residual[:, None] - means[None]) ** 2).sum(-1)
            buckets = dists.max(dim=-1).indices
            counts = mod.bincount(buckets, minlength=bins)
            empty = counts == 0
            new = buckets.new_zeros(bins, x.shape[1], dtype=x.dtype)
            new.scatter_add_(0, buckets[:, None].expand(-1, x.shape[1]), residual)
            new = new / counts.masked_fill(empty, 1)[:, None]
            means = mod.where(empty[:, None], means, new)
        embed = means.clone()
        size = counts.to(x.dtype).clone()
        avg = embed.clone()
        # one EMA step of the codebook (in place, as a buffer update)
        dist = -(
            residual.pow(2).sum(1, keepdim=True)
            - 2 * residual @ embed.t()
            + embed.pow(2).sum(1)[None]
        )
        ind = dist.max(dim=-1).indices
        onehot = mod.nn.functional.one_hot(ind, bins).type(x.dtype)
        size.data.mul_(decay).add_(onehot.sum(0), alpha=1 - decay)
        avg.data.mul_(decay).add_(onehot.t() @ residual, alpha=1 - decay)
        smoothed = (size + eps) / (size.sum() + bins * eps) * size.sum()
        embed.data.copy_(avg / smoothed[:, None])
        q = mod.nn.functional.embedding(ind, embed)
        codes.append(ind)
        books.append(embed)
        quant = quant + q
        residual = residual - q
    return mod.stack(codes), mod.stack(books), quant


def test_encodec_residual_vq_kmeans_ema():
    x = np.random.default_rng(10).standard_normal((120, 6)).astype(np.float32)
    (ce, be, qe), (ct, bt, qt) = (_rvq_program(m, x) for m in MODS)
    np.testing.assert_array_equal(_np(ce), _np(ct))
    _close(be, bt, atol=1e-6)
    _close(qe, qt, atol=1e-6)


def _straight_through_program(mod, x_np, book_np):
    x = mod.from_numpy(x_np).requires_grad_()
    book = mod.from_numpy(book_np)
    ind = mod.cdist(x, book).argmin(-1)
    q = book[ind]
    commit = mod.nn.functional.mse_loss(q.detach(), x)
    out = x + (q - x).detach()  # straight-through
    (out.sum() + commit).backward()
    return ind, out, x.grad


def test_encodec_straight_through_commitment():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((30, 4)).astype(np.float32)
    book = rng.standard_normal((8, 4)).astype(np.float32)
    (ie, oe, ge), (it, ot, gt) = (_straight_through_program(m, x, book) for m in MODS)
    np.testing.assert_array_equal(_np(ie), _np(it))
    _close(oe, ot)
    _close(ge, gt)


def _quantized_cdf_program(mod, logits_np, bits=24, min_range=2, roundoff=1e-8):
    pdf = mod.softmax(mod.from_numpy(logits_np), dim=-1)
    pdf = (pdf / roundoff).floor() * roundoff
    total = 2**bits
    alpha = min_range * pdf.shape[-1] / total
    ranges = (((1 - alpha) * total) * pdf).floor().long() + min_range
    return mod.cumsum(ranges, dim=-1)


def test_encodec_quantized_cdf_from_float64_pdf():
    # in float64 the floors are far from their edges, so the integer CDFs agree exactly; in
    # float32 a one-ulp difference of the softmax moves a floor (see docs/porting_examples.md)
    logits = np.random.default_rng(12).standard_normal((5, 64))
    ce, ct = (_quantized_cdf_program(m, logits) for m in MODS)
    assert ce.dtype == ember.int64
    np.testing.assert_array_equal(_np(ce), _np(ct))
    assert int(ce[:, -1].max()) < 2**24 + 64 * 2


# --- gluonts: mean scaling, lag features, distribution heads, sample paths -------------------


def _lagged(mod, seq, lags, length):
    # gather lagged windows: for each lag, the `length` steps ending `lag` steps earlier
    begin = seq.shape[1] - length
    return mod.stack([seq[:, begin - lag : seq.shape[1] - lag] for lag in lags], dim=-1)


def _deepar_like_program(mod, target_np, seed, n_samples=5):
    mod.manual_seed(seed)
    lags = [1, 2, 7]
    ctx, pred = 12, 4
    rnn = mod.nn.LSTM(len(lags) + 1, 8, 2, batch_first=True, dropout=0.1)
    head = mod.nn.Linear(8, 3)
    target = mod.from_numpy(target_np)
    observed = mod.ones_like(target)
    # mean scaler: mean |x| over observed values, a floor for all-zero series
    scale = (target.abs() * observed).sum(1, keepdim=True) / observed.sum(1, keepdim=True)
    scale = mod.clamp(scale, min=1e-10)
    scaled = target / scale
    feats = mod.cat(
        [_lagged(mod, scaled, lags, ctx), mod.log1p(scale)[:, None].expand(-1, ctx, 1)], -1
    )
    out, state = rnn(feats)
    df, loc, sc = head(out).unbind(-1)
    dist = mod.distributions.StudentT(
        2 + mod.nn.functional.softplus(df), loc, mod.nn.functional.softplus(sc)
    )
    dist = mod.distributions.TransformedDistribution(
        dist, [mod.distributions.AffineTransform(0.0, scale)]
    )
    loss = -dist.log_prob(target[:, -ctx:]).mean()
    loss.backward()
    # sample paths: repeat the state per sample, unroll one step at a time
    rnn.eval()
    with mod.no_grad():
        hist = scaled.repeat_interleave(n_samples, 0)
        h = tuple(s.repeat_interleave(n_samples, 1) for s in state)
        sc_r = scale.repeat_interleave(n_samples, 0)
        paths = []
        for _ in range(pred):
            x = mod.cat([_lagged(mod, hist, lags, 1), mod.log1p(sc_r)[:, None]], -1)
            o, h = rnn(x, h)
            df, loc, s = head(o[:, -1]).unbind(-1)
            d = mod.distributions.StudentT(
                2 + mod.nn.functional.softplus(df), loc, mod.nn.functional.softplus(s)
            )
            y = d.sample()
            paths.append(y * sc_r[:, 0])
            hist = mod.cat([hist, y[:, None]], 1)
    return loss, rnn.weight_hh_l0.grad, mod.stack(paths, -1).view(-1, n_samples, pred)


def test_gluonts_deepar_like_scaler_lags_studentt_paths():
    t = np.arange(40, dtype=np.float32)
    target = np.stack([10 + 3 * np.sin(t * 0.5 + p) for p in range(3)]).astype(np.float32)
    (le, ge, pe), (lt, gt, pt) = (_deepar_like_program(m, target, 0) for m in MODS)
    assert abs(float(le.detach()) - float(lt.detach())) < 1e-5
    _close(ge, gt, atol=1e-6)
    _close(pe, pt, atol=1e-4, rtol=1e-4)


def test_gluonts_negative_binomial_head_and_list_of_slices_index():
    rng = np.random.default_rng(13)
    counts = rng.poisson(4.0, (3, 6)).astype(np.float32)
    raw = rng.standard_normal((3, 6, 2)).astype(np.float32)
    res = []
    for mod in MODS:
        mod.manual_seed(1)
        r = mod.from_numpy(raw).requires_grad_()
        total, logits = mod.nn.functional.softplus(r[..., 0]), r[..., 1]
        nb = mod.distributions.NegativeBinomial(total_count=total, logits=logits)
        lp = nb.log_prob(mod.from_numpy(counts))
        lp.sum().backward()
        with pytest.warns(UserWarning, match="non-tuple sequence"):
            part = r[[slice(None), 0, slice(0, 1)]]  # a list of slices, read as a tuple
        res.append((lp, r.grad, nb.sample((2,)), nb.mean, part))
    for e, t in zip(*res):
        _close(e, t, atol=1e-5)
