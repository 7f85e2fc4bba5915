"""Session 25 (issue 23): a training step gives the same bits whether the compiled kernels'
machine code was compiled in the process or loaded from numba's on-disk cache (a CNN, a
transformer block and an LSTM at one and two threads), and LSTM's compiled whole-sequence loop
the same bits as its Python step loop.

Session 24 had to turn the loop off: a run restarted with the cache warm diverged from the run
that compiled it. The compiled loop links its own copy of the cell kernels, which LLVM
optimized a second time; with fastmath's reassociation allowed, the copy regrouped a product
chain of the backward cell. The cells are now compiled without reassociation
(``ops/_numba_rnn.py``). Each process here starts from an empty cache directory of its own
(the first compiles, the second loads), as a restarted training run does.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from ember.ops import rnn_support

_SCRIPT = r"""
import hashlib
import numpy as np
import ember
import ember.nn as nn
import ember.nn.functional as F
from ember.backend import threads
from ember.ops import rnn_support


def digest(model, x, loss, n_threads, channels_last=False):
    threads._cached = n_threads
    if channels_last:
        model = model.to(memory_format=ember.channels_last)
        x = x.contiguous(memory_format=ember.channels_last)
    out = model(x)
    out = out[0] if isinstance(out, tuple) else out
    loss(out).backward()
    d = hashlib.sha1()
    for a in [out.detach()] + [p.grad for p in model.parameters()]:
        d.update(np.ascontiguousarray(a.numpy()).tobytes())
    return d.hexdigest()


def cnn():  # the compiled conv, depthwise, pooling, norm and activation kernels
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.SiLU(), nn.Conv2d(32, 32, 3, padding=1, groups=32),
        nn.Conv2d(32, 64, 1), nn.GroupNorm(8, 64), nn.GELU(), nn.AvgPool2d(2),
        nn.Conv2d(64, 64, 5, stride=2, padding=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, 10),
    )


class Gpt(nn.Module):  # embedding, causal attention, layer norm, cross-entropy
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(500, 64)
        self.block = nn.TransformerEncoderLayer(64, 4, 128, 0.1, "gelu", batch_first=True,
                                                norm_first=True)
        self.head = nn.Linear(64, 500)

    def forward(self, x):
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
        return self.head(self.block(self.emb(x), src_mask=mask, is_causal=True))


def run(name, n_threads, **kw):
    ember.manual_seed(0)
    if name == "cnn":
        y = ember.arange(16) % 10
        return digest(cnn(), ember.randn(16, 3, 32, 32), lambda o: F.cross_entropy(o, y),
                      n_threads, **kw)
    if name == "gpt":
        x = ember.randint(0, 500, (8, 48))
        return digest(Gpt(), x, lambda o: F.cross_entropy(o.flatten(0, 1), x.flatten()),
                      n_threads)
    lstm = nn.LSTM(24, 48, num_layers=2, batch_first=True)
    return digest(lstm, ember.randn(32, 9, 24), lambda o: o.square().sum(), n_threads)


out = [f"{m}{n}={run(m, n)}" for m in ("cnn", "gpt", "lstm") for n in (1, 2)]
out.append("cnn_channels_last2=" + run("cnn", 2, channels_last=True))
rnn_support._rows = False  # LSTM's Python step loop
out += [f"lstm_python_loop{n}={run('lstm', n)}" for n in (1, 2)]
print(" ".join(out))
"""


def _run(cache_dir) -> list[str]:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), EMBER_LSTM_COMPILED_LOOP="1")
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


def test_steps_are_bitwise_the_same_cold_and_warm(tmp_path, monkeypatch):
    monkeypatch.setattr(rnn_support, "_rows", None)
    if rnn_support.row_kernels(np, np.float32)[0] is None:
        pytest.skip("numba or NumPy's OpenBLAS symbols unavailable: no compiled row loops")
    cold = _run(tmp_path)  # compiles and writes the cache
    assert any(p.suffix == ".nbc" for p in tmp_path.rglob("*_numba_rnn_blas*")), "nothing cached"
    warm = _run(tmp_path)  # loads the loop's machine code from it
    assert cold == warm
    got = dict(kv.split("=") for kv in cold)
    for n in (1, 2):
        assert got[f"lstm{n}"] == got[f"lstm_python_loop{n}"]
