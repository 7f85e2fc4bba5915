"""An LSTM word-level language model with truncated backpropagation through time.

Idioms: a Corpus/Dictionary class, ``batchify`` with ``narrow``/``view().t().contiguous()``,
``init_hidden`` from ``next(self.parameters())``, repackaging hidden state by ``detach``,
``clip_grad_norm_``, manual learning-rate annealing, ``math.exp`` of the loss, saving the
best model's state_dict, and ``torch.save``/``torch.load`` of a whole checkpoint dict.
"""

import argparse
import math
import os
import sys
import time

import ember as torch
import ember.nn as nn


class Dictionary:
    def __init__(self):
        self.word2idx, self.idx2word = {}, []

    def add_word(self, word):
        if word not in self.word2idx:
            self.idx2word.append(word)
            self.word2idx[word] = len(self.idx2word) - 1
        return self.word2idx[word]

    def __len__(self):
        return len(self.idx2word)


def tokenize(lines, dictionary):
    ids = []
    for line in lines:
        words = line.split() + ["<eos>"]
        ids.append(torch.tensor([dictionary.add_word(w) for w in words], dtype=torch.int64))
    return torch.cat(ids)


def batchify(data, bsz):
    nbatch = data.size(0) // bsz
    data = data.narrow(0, 0, nbatch * bsz)
    return data.view(bsz, -1).t().contiguous()


def get_batch(source, i, bptt):
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i : i + seq_len], source[i + 1 : i + 1 + seq_len].view(-1)


class RNNModel(nn.Module):
    def __init__(self, ntoken, ninp, nhid, nlayers, dropout=0.2, tie_weights=True):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        self.nhid, self.nlayers = nhid, nlayers
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.decoder.out_features)
        return nn.functional.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        return (
            weight.new_zeros(self.nlayers, bsz, self.nhid),
            weight.new_zeros(self.nlayers, bsz, self.nhid),
        )


def repackage_hidden(h):
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def evaluate(model, data, bptt, ntokens, bsz):
    model.eval()
    total = 0.0
    hidden = model.init_hidden(bsz)
    with torch.no_grad():
        for i in range(0, data.size(0) - 1, bptt):
            x, y = get_batch(data, i, bptt)
            out, hidden = model(x, hidden)
            hidden = repackage_hidden(hidden)
            total += len(x) * nn.functional.nll_loss(out, y).item()
    return total / (len(data) - 1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=20)
    p.add_argument("--bptt", type=int, default=12)
    p.add_argument("--save", default="word_lm.pt")
    args = p.parse_args()
    if not os.path.exists(args.data):
        sys.exit(f"error: no text file at {args.data!r} (pass --data PATH)")
    torch.manual_seed(1111)
    lines = open(args.data, encoding="utf-8").read().splitlines()[:600]
    d = Dictionary()
    train = batchify(tokenize(lines[:500], d), 10)
    val = batchify(tokenize(lines[500:], d), 5)
    ntokens = len(d)
    model = RNNModel(ntokens, 32, 32, 2)
    criterion = nn.NLLLoss()
    lr, best = args.lr, None
    for epoch in range(1, args.epochs + 1):
        model.train()
        start = time.time()
        hidden = model.init_hidden(10)
        for i in range(0, train.size(0) - 1, args.bptt):
            x, y = get_batch(train, i, args.bptt)
            model.zero_grad()
            hidden = repackage_hidden(hidden)
            out, hidden = model(x, hidden)
            loss = criterion(out, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            for q in model.parameters():
                q.data.add_(q.grad, alpha=-lr)
        val_loss = evaluate(model, val, args.bptt, ntokens, 5)
        print(
            f"| epoch {epoch:3d} | time {time.time() - start:5.2f}s | valid loss {val_loss:5.2f}"
            f" | valid ppl {math.exp(val_loss):8.2f}"
        )
        if best is None or val_loss < best:
            torch.save(
                {"state": model.state_dict(), "epoch": epoch, "vocab": d.idx2word}, args.save
            )
            best = val_loss
        else:
            lr /= 4.0
    ckpt = torch.load(args.save)
    model.load_state_dict(ckpt["state"])
    print(
        f"best epoch {ckpt['epoch']} vocab {len(ckpt['vocab'])} reloaded ppl "
        f"{math.exp(evaluate(model, val, args.bptt, ntokens, 5)):.2f}"
    )
    print("done")


if __name__ == "__main__":
    main()
