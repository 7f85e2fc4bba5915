"""Idioms from third-party programs (session 25, batch 2: performer-pytorch's reversible
layers, rtdl's numerical embeddings, soft-moe-pytorch), in programs of our own.

Each test mirrors what one program does and checks ember against torch 2.13.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def test_cuda_initialized_flag_reads_as_torch():
    # performer-pytorch's Deterministic layer: ``if torch.cuda._initialized:`` before recording
    # the CUDA RNG state
    assert ember.cuda._initialized is torch.cuda._initialized is False


# --- performer-pytorch reversible.py: a reversible block recomputed in backward --------------


def _reversible_program(mod, x_np, w_np):
    from_np = mod.from_numpy
    w = from_np(w_np).requires_grad_()

    def f(x):
        return mod.nn.functional.dropout(mod.tanh(x @ w), p=0.3, training=True)

    class Deterministic:
        """Runs ``f`` and replays it later with the same random numbers."""

        def record_run(self, x):
            self.cpu_state = mod.get_rng_state()
            if mod.cuda._initialized:  # never on CPU: the branch stays untaken
                self.cuda_in_fwd = True
            return f(x)

        def replay(self, x):
            with mod.random.fork_rng(devices=[]):
                mod.set_rng_state(self.cpu_state)
                return f(x)

    class Reversible(mod.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            x1, x2 = x.chunk(2, dim=-1)
            ctx.det = Deterministic()
            with mod.no_grad():
                y1 = x1 + ctx.det.record_run(x2)
            y = mod.cat([y1, x2], dim=-1)
            ctx.save_for_backward(y.detach())
            return y

        @staticmethod
        def backward(ctx, dy):
            (y,) = ctx.saved_tensors
            y1, x2 = y.chunk(2, dim=-1)
            dy1, dy2 = dy.chunk(2, dim=-1)
            with mod.enable_grad():
                x2 = x2.detach().requires_grad_()
                fx2 = ctx.det.replay(x2)  # the same dropout mask as in forward
                fx2.backward(dy1)
            with mod.no_grad():
                x1 = y1 - fx2  # inverted, not stored
                del x1
                return mod.cat([dy1, dy2 + x2.grad], dim=-1)

    mod.manual_seed(7)
    x = from_np(x_np).requires_grad_()
    y = Reversible.apply(x)
    (y.square() * from_np(np.linspace(0.5, 1.5, y.numel()).reshape(y.shape))).sum().backward()
    # the same block through plain autograd, from the same RNG state
    mod.manual_seed(7)
    x_ref = from_np(x_np).requires_grad_()
    w_grad_rev = w.grad.clone()
    w.grad = None
    x1, x2 = x_ref.chunk(2, dim=-1)
    y_ref = mod.cat([x1 + f(x2), x2], dim=-1)
    (y_ref.square() * from_np(np.linspace(0.5, 1.5, y.numel()).reshape(y.shape))).sum().backward()
    return y.detach(), x.grad, w_grad_rev, y_ref.detach(), x_ref.grad, w.grad


def test_reversible_block_replays_dropout_as_torch():
    rng = np.random.default_rng(0)
    x_np, w_np = rng.standard_normal((3, 8)), rng.standard_normal((4, 4)) * 0.5
    ours, ref = _reversible_program(ember, x_np, w_np), _reversible_program(torch, x_np, w_np)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-12)
    # the recomputed backward equals plain autograd's (the replayed mask is the recorded one)
    for a, b in zip(ours[:3], ours[3:]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-12)


# --- rtdl num_embeddings / soft-moe: quantile bins, periodic features, soft slot routing -----


def _tabular_moe_program(mod, x_np, seed):
    x = mod.from_numpy(x_np).requires_grad_()
    # quantile bins per feature, then a piecewise-linear encoding (rtdl's compute_bins / PLE)
    q = mod.linspace(0.0, 1.0, 5, dtype=x.dtype)
    bins = [mod.quantile(col, q).unique() for col in x.detach().T]
    parts = []
    for j, edges in enumerate(bins):
        left, width = edges[:-1], edges[1:] - edges[:-1]
        t = (x[:, j : j + 1] - left) / width
        t = mod.cat(
            [t[:, :1].clamp_max(1.0), t[:, 1:-1].clamp(0.0, 1.0), t[:, -1:].clamp_min(0)], 1
        )
        parts.append(t)
    ple = mod.cat(parts, dim=1)
    # periodic embeddings: 2 pi c x through cos / sin, then a per-feature linear layer
    mod.manual_seed(seed)
    coef = mod.nn.Parameter(mod.empty(x.shape[1], 3, dtype=x.dtype).normal_(0.0, 0.1))
    lin = mod.empty(x.shape[1], 6, 4, dtype=x.dtype).uniform_(-0.3, 0.3)
    z = 2 * math.pi * coef[None] * x[..., None]
    per = mod.relu(mod.einsum("bfi,fio->bfo", mod.cat([mod.cos(z), mod.sin(z)], -1), lin))
    # soft MoE: every slot is a softmax mix of tokens, every token a softmax mix of slots
    tokens = per.reshape(x.shape[0], -1, 4)  # (batch, features, dim)
    slots = mod.empty(4, 2, 4, dtype=x.dtype).normal_()  # 4 experts x 2 slots
    logits = mod.einsum("bnd,esd->bnes", mod.nn.functional.normalize(tokens, dim=-1), slots)
    dispatch = logits.softmax(dim=1)
    combine = logits.flatten(2).softmax(dim=-1)
    slot_in = mod.einsum("bnd,bnes->besd", tokens, dispatch)
    experts = mod.empty(4, 4, 4, dtype=x.dtype).normal_(0, 0.5)
    slot_out = mod.nn.functional.gelu(mod.einsum("besd,edo->beso", slot_in, experts))
    out = mod.einsum("bso,bns->bno", slot_out.flatten(1, 2), combine)
    loss = out.square().mean() + ple.square().mean()
    loss.backward()
    return ple.detach(), out.detach(), x.grad, coef.grad


def test_piecewise_periodic_embeddings_and_soft_moe_as_torch():
    x_np = np.random.default_rng(3).standard_normal((16, 3))
    ours, ref = _tabular_moe_program(ember, x_np, 5), _tabular_moe_program(torch, x_np, 5)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)


# --- karpathy/makemore: an infinite sampler, -1-masked targets, a GRU cell, a causal BoW ----


def _makemore_program(mod, words):
    nn, F_ = mod.nn, mod.nn.functional
    chars = sorted(set("".join(words)))
    stoi = {ch: i + 1 for i, ch in enumerate(chars)}
    t_max = max(len(w) for w in words)

    class Names(mod.utils.data.Dataset):
        def __len__(self):
            return len(words)

        def __getitem__(self, idx):
            ix = mod.tensor([stoi[c] for c in words[idx]], dtype=mod.long)
            x = mod.zeros(t_max + 1, dtype=mod.long)
            y = mod.zeros(t_max + 1, dtype=mod.long)
            x[1 : 1 + len(ix)] = ix
            y[: len(ix)] = ix
            y[len(ix) + 1 :] = -1  # masked out of the loss
            return x, y

    class Model(nn.Module):
        def __init__(self, vocab, emb=8, hid=12):
            super().__init__()
            self.wte = nn.Embedding(vocab, emb)
            self.start = nn.Parameter(mod.zeros(1, hid))
            self.z = nn.Linear(emb + hid, hid)
            self.r = nn.Linear(emb + hid, hid)
            self.hbar = nn.Linear(emb + hid, hid)
            self.register_buffer(
                "bias", mod.tril(mod.ones(t_max + 1, t_max + 1)).view(1, t_max + 1, -1)
            )
            self.head = nn.Linear(2 * hid, vocab)

        def forward(self, idx, targets=None):
            b, t = idx.size()
            emb = self.wte(idx)
            h = self.start.expand((b, -1))
            hs = []
            for i in range(t):  # the GRU cell of makemore, one step at a time
                xh = mod.cat([emb[:, i, :], h], dim=1)
                r = F_.sigmoid(self.r(xh))
                hbar = F_.tanh(self.hbar(mod.cat([emb[:, i, :], r * h], dim=1)))
                z = F_.sigmoid(self.z(xh))
                h = (1 - z) * h + z * hbar
                hs.append(h)
            hidden = mod.stack(hs, 1)
            att = mod.zeros((b, t, t)).masked_fill(self.bias[:, :t, :t] == 0, float("-inf"))
            bow = F_.softmax(att, dim=-1) @ hidden  # causal average of the states
            logits = self.head(mod.cat([hidden, bow], dim=-1))
            loss = F_.cross_entropy(
                logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1
            )
            return logits, loss

    mod.manual_seed(3407)
    ds = Names()
    model = Model(len(chars) + 1)
    # makemore builds its InfiniteDataLoader after the model. (Not checked: ember draws the
    # sampler's seed at ``iter(loader)``, torch at the first ``next``; random draws made between
    # the two would differ.)
    sampler = mod.utils.data.RandomSampler(ds, replacement=True, num_samples=int(1e10))
    it = iter(mod.utils.data.DataLoader(ds, sampler=sampler, batch_size=4))
    opt = mod.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.01, betas=(0.9, 0.99))
    losses = []
    for _ in range(4):
        x, y = next(it)
        _, loss = model(x, y)
        model.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    with mod.no_grad():  # evaluate(): a shuffled loader over the data set
        loader = mod.utils.data.DataLoader(ds, shuffle=True, batch_size=3)
        ev = [model(x, y)[1].item() for x, y in loader]
    return losses, ev


def test_makemore_sampler_masked_targets_gru_bow_as_torch():
    words = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper"]
    ours, ref = _makemore_program(ember, words), _makemore_program(torch, words)
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-5)
    np.testing.assert_allclose(ours[1], ref[1], rtol=1e-5)
