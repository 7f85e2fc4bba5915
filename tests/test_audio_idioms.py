"""The PyTorch idioms torchaudio's Python code builds on, in small programs of our own, checked
against PyTorch (torchaudio itself is not imported).

torchaudio's ``Spectrogram`` / ``InverseSpectrogram`` / ``GriffinLim`` are ``torch.stft`` /
``torch.istft`` with ``center`` padding in reflect mode (``F.pad`` of a long signal); its mel
filterbanks and DCT are built by hand from ``linspace``, ``clamp`` and ``min``; ``GriffinLim``
starts from ``torch.rand`` of a complex dtype; ``TimeStretch`` is a phase vocoder (``angle``,
``round``, ``cumsum``, ``polar``); without its C++ extension ``lfilter`` is a Python loop that
writes each output sample in place; kaldi's ``fbank`` frames the signal with ``as_strided``;
HuBERT's masks draw ``torch.randperm`` of a 0-dim tensor; Conformer and wav2vec2 blocks are
``GLU``, depthwise ``conv1d``, ``GroupNorm``, a weight-normed positional convolution and
``MultiheadAttention`` with a key padding mask.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ember

LIBS = [torch, ember]


def _np(t):
    t = t.detach()
    return (t.resolve_conj() if t.is_complex() else t).numpy()


def _close(a, b, tol=2e-5):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(1.0, float(np.abs(a).max(initial=0.0)))
    assert np.abs(a - b).max(initial=0.0) <= tol * scale, np.abs(a - b).max()


def _wave(shape=(2, 3000), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 0.3


# ---- STFT round trips ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        dict(n_fft=256, hop_length=64),
        dict(n_fft=200, hop_length=50, win_length=120),
        dict(n_fft=128, hop_length=32, center=False),
        dict(n_fft=64, hop_length=16, onesided=False),
        dict(n_fft=100, hop_length=30, normalized=True, pad_mode="constant"),
        dict(n_fft=64, hop_length=24, pad_mode="replicate"),
    ],
)
def test_stft_istft_round_trip_and_grads(kw):
    a = _wave()
    res = []
    for lib in LIBS:
        x = lib.tensor(a, requires_grad=True)
        wl = kw.get("win_length", kw["n_fft"])
        win = lib.hann_window(wl) if kw.get("center", True) else lib.hamming_window(wl)
        spec = lib.stft(x, window=win, return_complex=True, **kw)
        ikw = {k: v for k, v in kw.items() if k != "pad_mode"}
        y = lib.istft(
            spec, window=win, length=a.shape[-1] if kw.get("center", True) else None, **ikw
        )
        power = spec.abs().pow(2.0)
        (y * lib.linspace(0, 1, y.shape[-1])).sum().add(power.mean()).backward()
        res.append((_np(lib.view_as_real(spec)), _np(y), _np(x.grad)))
    for r_t, r_e in zip(*res):
        _close(r_t, r_e, 2e-4)


def test_stft_center_padding_errors_as_torch():
    for lib in LIBS:
        x = lib.randn(2, 10)
        with pytest.raises(RuntimeError, match="Padding size should be less than"):
            lib.stft(x, 30, 5, window=lib.ones(30), return_complex=True)
        assert lib.stft(
            x, 30, 5, window=lib.ones(30), return_complex=True, pad_mode="replicate"
        ).shape == (2, 16, 3)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_pad_long_signal_and_grad(mode):
    # the center padding of a 16 000-sample batch (index runs found with NumPy)
    a = _wave((2, 1, 16000))
    res = []
    for lib in LIBS:
        x = lib.tensor(a, requires_grad=True)
        y = lib.nn.functional.pad(x, (200, 173), mode=mode)
        (y * lib.linspace(-1, 1, y.shape[-1])).sum().backward()
        res.append((_np(y), _np(x.grad)))
    _close(res[0][0], res[1][0], 0)
    _close(res[0][1], res[1][1], 1e-5)


@pytest.mark.parametrize(
    "shape, dim, size, step",
    [
        ((2, 50), -1, 7, 3),
        ((2, 50), 1, 4, 9),
        ((3, 40, 2), 1, 6, 2),
        ((2, 33), 1, 8, 1),
        ((50,), 0, 50, 1),
    ],
)
def test_unfold_overlap_add_grad(shape, dim, size, step):
    a = _wave(shape)
    g = None
    res = []
    for lib in LIBS:
        x = lib.tensor(a, requires_grad=True)
        y = x.unfold(dim, size, step)
        g = np.random.default_rng(1).standard_normal(tuple(y.shape)).astype(np.float32)
        (y * lib.tensor(g)).sum().backward()
        res.append((_np(y), _np(x.grad)))
    _close(res[0][0], res[1][0], 0)
    _close(res[0][1], res[1][1], 1e-5)


# ---- mel filterbanks, dB, DCT: torchaudio's hand-built matrices ------------------------------


def _mel_fbanks(lib, n_freqs, f_min, f_max, n_mels, sample_rate):
    all_freqs = lib.linspace(0, sample_rate // 2, n_freqs)
    m_min = 2595.0 * math.log10(1.0 + f_min / 700.0)
    m_max = 2595.0 * math.log10(1.0 + f_max / 700.0)
    m_pts = lib.linspace(m_min, m_max, n_mels + 2)
    f_pts = 700.0 * (10 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return lib.max(lib.zeros(1), lib.min(down, up))


def _create_dct(lib, n_mfcc, n_mels):
    n = lib.arange(float(n_mels))
    k = lib.arange(float(n_mfcc)).unsqueeze(1)
    dct = lib.cos(math.pi / float(n_mels) * (n + 0.5) * k)
    dct[0] *= 1.0 / math.sqrt(2.0)
    dct *= math.sqrt(2.0 / float(n_mels))
    return dct.t()


def _mfcc(lib, x):
    spec = lib.stft(x, 400, 200, window=lib.hann_window(400), return_complex=True)
    power = spec.abs().pow(2.0)
    mel = lib.matmul(power.transpose(-1, -2), _mel_fbanks(lib, 201, 0.0, 8000.0, 40, 16000))
    mel = mel.transpose(-1, -2)
    db = 10.0 * lib.log10(lib.clamp(mel, min=1e-10))
    db = lib.max(db, (db.amax(dim=(-2, -1)) - 80.0).view(-1, 1, 1))
    return lib.matmul(db.transpose(-1, -2), _create_dct(lib, 13, 40)).transpose(-1, -2)


def test_mel_filterbank_mfcc_and_grads():
    a = _wave((2, 4000))
    res = []
    for lib in LIBS:
        x = lib.tensor(a, requires_grad=True)
        y = _mfcc(lib, x)
        (y * lib.cos(lib.arange(float(y.numel())).reshape(y.shape))).sum().backward()
        res.append((_np(_mel_fbanks(lib, 201, 0.0, 8000.0, 40, 16000)), _np(y), _np(x.grad)))
    for r_t, r_e in zip(*res):
        _close(r_t, r_e, 1e-4)


# ---- complex random draws, randperm of a 0-dim tensor ----------------------------------------


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
@pytest.mark.parametrize("fn, n", [("rand", 5), ("randn", 5), ("randn", 20), ("rand", 40)])
def test_complex_random_draws_as_torch(fn, n, dtype):
    # GriffinLim(rand_init=True): torch.rand(specgram.size(), dtype=complex)
    res = []
    for lib in LIBS:
        lib.manual_seed(0)
        z = getattr(lib, fn)(2, n, dtype=getattr(lib, dtype))
        res.append((_np(lib.view_as_real(z)), _np(lib.rand(3))))
    _close(res[0][0], res[1][0], 1e-6 if dtype == "complex64" else 1e-12)
    _close(res[0][1], res[1][1], 0)  # the stream moved on as torch's


def test_randperm_of_a_zero_dim_tensor():
    # HuBERT's _compute_mask_indices: torch.randperm(sz - min_len) with sz a tensor
    res = []
    for lib in LIBS:
        lib.manual_seed(3)
        res.append(lib.randperm(lib.tensor(9) - 2).tolist())
    assert res[0] == res[1]
    with pytest.raises(TypeError):
        ember.randperm(ember.tensor(2.5))


# ---- phase vocoder -------------------------------------------------------------------------


def test_phase_vocoder_idiom():
    r = np.random.default_rng(2)
    spec = (r.standard_normal((2, 33, 20)) + 1j * r.standard_normal((2, 33, 20))).astype(
        np.complex64
    )
    res = []
    for lib in LIBS:
        s = lib.tensor(spec)
        phase_advance = lib.linspace(0, math.pi * 8, 33)[..., None]
        steps = lib.arange(0, s.size(-1), 1.25, dtype=phase_advance.dtype)
        alphas = steps % 1.0
        phase_0 = s[..., :1].angle()
        s = lib.nn.functional.pad(s, [0, 2])
        s0, s1 = s.index_select(-1, steps.long()), s.index_select(-1, (steps + 1).long())
        phase = s1.angle() - s0.angle() - phase_advance
        phase = phase - 2 * math.pi * lib.round(phase / (2 * math.pi)) + phase_advance
        acc = lib.cumsum(lib.cat([phase_0, phase[..., :-1]], dim=-1), -1)
        mag = alphas * s1.abs() + (1 - alphas) * s0.abs()
        res.append(_np(lib.view_as_real(lib.polar(mag, acc))))
    _close(res[0], res[1], 1e-4)


# ---- IIR filtering: lfilter's generic loop, biquad coefficients, kaldi framing ----------------


def _lfilter(lib, waveform, a_coeffs, b_coeffs):
    # torchaudio's lfilter without its extension: an FIR Function (conv1d, saving its output)
    # and an IIR Function whose forward loops sample by sample, in place on the FIR output
    class FIR(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x, b):
            out = lib.nn.functional.conv1d(x, b.flip(0).view(1, 1, -1))
            ctx.save_for_backward(x, b, out)
            return out

        @staticmethod
        def backward(ctx, grad):
            x, b, out = ctx.saved_tensors
            return None, None

    class IIR(lib.autograd.Function):
        @staticmethod
        def forward(ctx, windows, a):
            n_batch, _, n_sample = windows.shape
            n_order = a.size(0)
            a_flipped = a.flip(0).view(1, -1, 1)
            out = lib.zeros(n_batch, 1, n_sample + n_order - 1, dtype=windows.dtype)
            for i, o0 in enumerate(windows.permute(2, 0, 1)):
                window = out[:, :, i : i + n_order]
                o0 -= (window.transpose(0, 1) @ a_flipped)[..., 0].t()
                out[:, :, i + n_order - 1] = o0
            return out[:, :, n_order - 1 :]

        @staticmethod
        def backward(ctx, grad):
            return grad, None

    n_order = a_coeffs.size(0)
    padded = lib.nn.functional.pad(waveform, [n_order - 1, 0]).unsqueeze(1)
    windows = FIR.apply(padded, b_coeffs / a_coeffs[0])
    return lib.clamp(IIR.apply(windows, a_coeffs / a_coeffs[0])[:, 0], -1.0, 1.0)


def _lowpass_coeffs(lib, sample_rate, cutoff, q=0.707):
    w0 = 2 * math.pi * cutoff / sample_rate
    alpha = math.sin(w0) / 2 / q
    b0 = (1 - math.cos(w0)) / 2
    b = lib.tensor([b0, 1 - math.cos(w0), b0])
    a = lib.tensor([1 + alpha, -2 * math.cos(w0), 1 - alpha])
    return a, b


def test_lfilter_generic_loop_and_its_inplace_error():
    a_np = _wave((2, 400))
    res = []
    for lib in LIBS:
        a, b = _lowpass_coeffs(lib, 16000, 1000.0)
        res.append(_np(_lfilter(lib, lib.tensor(a_np), a, b)))
        # the loop writes into the FIR output that conv1d saved: torch refuses the backward
        x = lib.tensor(a_np, requires_grad=True)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            _lfilter(lib, x, a, b).sum().backward()
    _close(res[0], res[1], 1e-5)


def _kaldi_fbank(lib, wav):
    # kaldi.fbank's framing by as_strided, DC removal, pre-emphasis with replicate padding,
    # the povey window, a power spectrum, mel energies and the log with an epsilon floor
    window_size, window_shift, padded = 400, 160, 512
    strided = wav.as_strided(
        ((wav.size(0) - window_size) // window_shift + 1, window_size), (window_shift, 1)
    )
    strided = strided - lib.mean(strided, dim=1).unsqueeze(1)
    offset = lib.nn.functional.pad(strided.unsqueeze(0), (1, 0), mode="replicate").squeeze(0)
    strided = strided - 0.97 * offset[:, :-1]
    strided = strided * lib.hann_window(window_size, periodic=False).pow(0.85).unsqueeze(0)
    strided = lib.nn.functional.pad(strided.unsqueeze(0), (0, padded - window_size)).squeeze(0)
    spectrum = lib.fft.rfft(strided).abs().pow(2.0)
    fb = _mel_fbanks(lib, padded // 2 + 1, 20.0, 8000.0, 23, 16000)
    mel = lib.mm(spectrum, fb)
    return lib.max(mel, lib.tensor(lib.finfo(lib.float).eps)).log()


def test_kaldi_fbank_framing_idiom():
    a = _wave((4000,))
    res = []
    for lib in LIBS:
        x = lib.tensor(a, requires_grad=True)
        y = _kaldi_fbank(lib, x)
        y.sum().backward()
        res.append((_np(y), _np(x.grad)))
    for r_t, r_e in zip(*res):
        _close(r_t, r_e, 1e-4)


# ---- a conformer-ish and a wav2vec2-ish block, torch's weights --------------------------------


def _conformer_block(lib, d=32, heads=4, kernel=7):
    nn = lib.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ffn = nn.Sequential(
                nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.SiLU(), nn.Linear(2 * d, d)
            )
            self.attn_norm = nn.LayerNorm(d)
            self.attn = nn.MultiheadAttention(d, heads, dropout=0.0)
            self.conv_norm = nn.LayerNorm(d)
            self.conv = nn.Sequential(
                nn.Conv1d(d, 2 * d, 1),
                nn.GLU(dim=1),
                nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d),
                nn.BatchNorm1d(d),
                nn.SiLU(),
                nn.Conv1d(d, d, 1),
            )
            self.final = nn.LayerNorm(d)

        def forward(self, x, lengths):  # x: (time, batch, d)
            mask = lib.arange(x.size(0)).expand(x.size(1), x.size(0)) >= lengths.unsqueeze(1)
            x = x + 0.5 * self.ffn(x)
            h = self.attn_norm(x)
            h, _ = self.attn(h, h, h, key_padding_mask=mask, need_weights=False)
            x = x + h
            h = self.conv_norm(x).transpose(0, 1).transpose(1, 2)
            x = x + self.conv(h).transpose(1, 2).transpose(0, 1)
            return self.final(x)

    return Block()


def _wav2vec2_block(lib, d=32):
    nn = lib.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(
                [nn.Conv1d(1, 16, 10, 5, bias=False), nn.Conv1d(16, 16, 3, 2, bias=False)]
            )
            self.gn = nn.GroupNorm(16, 16, affine=True)
            self.proj = nn.Sequential(nn.LayerNorm(16), nn.Linear(16, d))
            conv = nn.Conv1d(d, d, 16, padding=8, groups=4)
            self.pos = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
            self.layer = nn.TransformerEncoderLayer(
                d, 4, 64, dropout=0.0, activation="gelu", batch_first=True
            )

        def forward(self, wav, lengths):
            x = wav.unsqueeze(1)
            x = nn.functional.gelu(self.gn(self.convs[0](x)))
            x = nn.functional.gelu(self.convs[1](x)).transpose(1, 2)
            for conv in self.convs:  # the lengths through each convolution
                lengths = (
                    lib.div(lengths - conv.kernel_size[0], conv.stride[0], rounding_mode="floor")
                    + 1
                )
            pad = lib.arange(x.shape[1]).expand(x.shape[0], -1) >= lengths[:, None]
            x = self.proj(x)
            x[pad] = 0.0
            x = x + nn.functional.gelu(self.pos(x.transpose(1, 2))[..., :-1]).transpose(1, 2)
            return self.layer(x, src_key_padding_mask=pad), lengths

    return Block()


@pytest.mark.parametrize("name", ["conformer", "wav2vec2"])
def test_speech_blocks_with_torch_weights(name):
    torch.manual_seed(0)
    build = _conformer_block if name == "conformer" else _wav2vec2_block
    state = {k: v.numpy() for k, v in build(torch).state_dict().items()}
    if name == "conformer":
        inputs = (_wave((20, 2, 32), 4), np.array([20, 14]))
    else:
        inputs = (_wave((2, 800), 5), np.array([800, 600]))
    res = []
    for lib in LIBS:
        m = build(lib)
        m.load_state_dict({k: lib.tensor(v) for k, v in state.items()})
        m.train()
        x = lib.tensor(inputs[0], requires_grad=True)
        out = m(x, lib.tensor(inputs[1]))
        y = out[0] if isinstance(out, tuple) else out
        valid = y.detach().abs().sum(-1) > 0
        (y * lib.cos(lib.arange(float(y.numel())).reshape(y.shape))).sum().backward()
        grads = {k: _np(p.grad) for k, p in m.named_parameters() if "attn.in_proj_bias" not in k}
        res.append((_np(y), _np(valid), _np(x.grad), grads))
    _close(res[0][0], res[1][0], 1e-4)
    _close(res[0][2], res[1][2], 1e-4)
    assert res[0][3].keys() == res[1][3].keys()
    for k in res[0][3]:
        if not k.endswith(("bias", "original0")) or np.abs(res[0][3][k]).max() > 1e-3:
            _close(res[0][3][k], res[1][3][k], 1e-4)


def test_porting_examples_torchaudio_snippet_runs(capsys):
    import pathlib

    doc = pathlib.Path(__file__).resolve().parents[1] / "docs" / "porting_examples.md"
    section = doc.read_text().split("\n## torchaudio (Python parts)\n", 1)[1].split("\n## ", 1)[0]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(snippet, "docs/porting_examples.md", "exec"), {})
    expected = snippet.rsplit("# ", 1)[1].strip()
    assert capsys.readouterr().out.strip() == expected
