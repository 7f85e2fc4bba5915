"""Dynamic quantization of a character-level LSTM: int8 LSTM and Linear weights.

Trains a small char LSTM on tinyshakespeare (or any text; a built-in snippet when the file is
missing) for a few hundred steps, then ``quantize_dynamic`` turns its LSTM and output Linear
into int8-weight layers whose activations are quantized per call. Prints next-character
accuracy and loss, size on disk and latency for both::

    python examples/quantization/char_lstm_dynamic.py      # ~1 minute on 2 cores
"""

from __future__ import annotations

import argparse
from pathlib import Path

import _measure

import ember
from ember import nn
from ember.ao import quantization as tq
from ember.nn import functional as F

TEXT = Path(__file__).resolve().parents[3] / "shared" / "data" / "tinyshakespeare.txt"
FALLBACK = (
    "To be, or not to be, that is the question: Whether 'tis nobler in the mind to "
    "suffer the slings and arrows of outrageous fortune, or to take arms against a sea "
    "of troubles and by opposing end them. "
) * 200


class CharLSTM(nn.Module):
    def __init__(self, vocab: int, embed: int = 64, hidden: int = 256) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x):
        out, _ = self.lstm(self.embed(x))
        return self.head(out)


def load_text(limit: int = 400_000) -> str:
    return TEXT.read_text(encoding="utf-8")[:limit] if TEXT.exists() else FALLBACK


def batches(ids, n: int, block: int, gen):
    starts = ember.randint(0, len(ids) - block - 1, (n,), generator=gen).tolist()
    x = ember.tensor([ids[s : s + block] for s in starts])
    y = ember.tensor([ids[s + 1 : s + block + 1] for s in starts])
    return x, y


def evaluate(model, x, y) -> tuple[float, float]:
    with ember.no_grad():
        logits = model(x)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten()).item()
        acc = (logits.argmax(-1) == y).float().mean().item()
    return loss, acc


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error(f"--steps must be >= 1, got {args.steps}")
    ember.manual_seed(args.seed)
    text = load_text()
    vocab = {c: i for i, c in enumerate(sorted(set(text)))}
    ids = [vocab[c] for c in text]
    split = int(0.9 * len(ids))
    gen = ember.Generator().manual_seed(args.seed)
    model = CharLSTM(len(vocab))
    opt = ember.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(args.steps):
        x, y = batches(ids[:split], 32, 64, gen)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    qmodel = tq.quantize_dynamic(model, {nn.LSTM, nn.Linear}, dtype=ember.qint8)
    vx, vy = batches(ids[split:], 64, 64, ember.Generator().manual_seed(1))
    print(
        f"{'model':<22} {'val loss':>8} {'accuracy':>9} {'size':>13} {'batch 1':>12} "
        f"{'batch 64':>12}"
    )
    out = {}
    for name, m in (("float32", model), ("int8 dynamic", qmodel)):
        loss, acc = evaluate(m, vx, vy)
        size = _measure.size_on_disk(m)
        lat1 = _measure.latency_ms(m, vx[:1], 10)
        lat64 = _measure.latency_ms(m, vx, 5)
        out[name] = (loss, acc, size, lat1, lat64)
        print(
            f"{name:<22} {loss:8.3f} {100 * acc:8.2f}% {size / 1024:9.1f} KiB {lat1:9.2f} ms "
            f"{lat64:9.2f} ms"
        )
    print(qmodel)
    return out


if __name__ == "__main__":
    main()
