"""The reference workloads of DESIGN.md §7 (and a tiny one for tests), written once for both
ember and PyTorch: ``lib`` is the ``ember`` or ``torch`` module.

``build(lib, name)`` gives the model, one batch and the loss, as benchmarks/engine.py uses them;
``make_model``, ``make_batch`` and ``make_loss`` give the pieces separately, so that an experiment
can draw a whole data set of ``n`` samples.
"""

from __future__ import annotations

from collections.abc import Callable

# name -> the batch size DESIGN.md §7 measures it with
DEFAULT_BATCH = {"mlp": 128, "cnn": 64, "lstm": 32, "transformer": 32, "tiny": 16}
WORKLOADS = tuple(DEFAULT_BATCH)
_SEQ = 64  # tokens per sample for the sequence workloads


def _check(name: str) -> None:
    if name not in DEFAULT_BATCH:
        raise ValueError(f"unknown workload {name!r}; choose from {WORKLOADS}")


def make_model(lib, name: str):
    """A fresh model of workload ``name`` (initialised from ``lib``'s global generator)."""
    _check(name)
    nn = lib.nn
    if name == "tiny":
        return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    if name == "mlp":
        return nn.Sequential(
            nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10)
        )
    if name == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(3136, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )
    if name == "lstm":

        class CharLSTM(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = nn.Embedding(96, 128)
                self.lstm = nn.LSTM(128, 256, batch_first=True)
                self.head = nn.Linear(256, 96)

            def forward(self, t):
                h, _ = self.lstm(self.emb(t))
                return self.head(h)

        return CharLSTM()

    class TinyLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(1000, 128)
            self.pos = nn.Parameter(lib.zeros(_SEQ, 128))
            layer = nn.TransformerEncoderLayer(
                128, nhead=4, dim_feedforward=512, dropout=0.1, batch_first=True
            )
            self.enc = nn.TransformerEncoder(layer, num_layers=2)
            self.head = nn.Linear(128, 1000)

        def forward(self, t):
            return self.head(self.enc(self.emb(t) + self.pos))

    return TinyLM()


def make_batch(lib, name: str, n: int | None = None) -> tuple:
    """``n`` random samples (inputs, targets) of workload ``name`` (default: its §7 batch)."""
    _check(name)
    n = DEFAULT_BATCH[name] if n is None else n
    if name == "tiny":
        return lib.randn(n, 16), lib.randint(0, 4, (n,))
    if name == "mlp":
        return lib.randn(n, 784), lib.randint(0, 10, (n,))
    if name == "cnn":
        return lib.randn(n, 1, 28, 28), lib.randint(0, 10, (n,))
    vocab = 96 if name == "lstm" else 1000
    return lib.randint(0, vocab, (n, _SEQ)), lib.randint(0, vocab, (n, _SEQ))


def make_loss(lib, name: str) -> Callable:
    """``loss(output, target)``: cross-entropy, over every position for the sequence models."""
    _check(name)
    f = lib.nn.functional
    if name in ("lstm", "transformer"):
        vocab = 96 if name == "lstm" else 1000
        return lambda out, y: f.cross_entropy(out.reshape(-1, vocab), y.reshape(-1))
    return lambda out, y: f.cross_entropy(out, y)


def build(lib, name: str, batch_size: int | None = None) -> tuple:
    """``(model, x, y, loss_fn)`` of workload ``name`` for ``lib`` = ember or torch (the same
    code for both), with one batch of ``batch_size`` samples (default: the §7 batch)."""
    model = make_model(lib, name)
    x, y = make_batch(lib, name, batch_size)
    return model, x, y, make_loss(lib, name)
