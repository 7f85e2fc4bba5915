"""A character GPT written the way nanoGPT-style training scripts write it, run on ember
(session 28): tied input/output embeddings, ``scaled_dot_product_attention(is_causal=True)``,
an optimizer set up by probing ``inspect.signature(AdamW)`` for ``fused``, batches read from
an ``np.memmap`` of uint16 token ids, ``compile``, gradient accumulation through a disabled
``GradScaler`` with ``unscale_`` and norm clipping, a cosine learning-rate schedule written
into ``param_groups``, a checkpoint whose compiled state dict carries the ``_orig_mod.``
prefix, and sampling with top-k and ``multinomial``. The model's forward is checked against
PyTorch's with the same weights.
"""

from __future__ import annotations

import inspect
import math
import os

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

TEXT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "tinyshakespeare.txt")


def make_gpt(lib, vocab: int, block: int = 16, width: int = 32, heads: int = 4, layers: int = 2):
    """The model, written once for ``lib`` = ember or torch."""
    nn, F = lib.nn, lib.nn.functional

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(width, 3 * width, bias=False)
            self.proj = nn.Linear(width, width, bias=False)

        def forward(self, x):
            B, T, C = x.size()
            q, k, v = self.qkv(x).split(C, dim=2)
            q, k, v = (t.view(B, T, heads, C // heads).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=True)
            return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(width, bias=False), nn.LayerNorm(width)
            self.attn = Attention()
            self.mlp = nn.Sequential(
                nn.Linear(width, 4 * width),
                nn.GELU(approximate="tanh"),
                nn.Linear(4 * width, width),
            )

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = nn.ModuleDict(
                dict(
                    wte=nn.Embedding(vocab, width),
                    wpe=nn.Embedding(block, width),
                    h=nn.ModuleList([Block() for _ in range(layers)]),
                    ln_f=nn.LayerNorm(width),
                )
            )
            self.lm_head = nn.Linear(width, vocab, bias=False)
            self.transformer.wte.weight = self.lm_head.weight  # tied
            self.apply(self._init)
            for name, p in self.named_parameters():
                if name.endswith("proj.weight"):
                    lib.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * layers))

        def _init(self, m):
            if isinstance(m, (nn.Linear, nn.Embedding)):
                lib.nn.init.normal_(m.weight, mean=0.0, std=0.02)

        def forward(self, idx, targets=None):
            t = idx.size(1)
            pos = lib.arange(0, t, dtype=lib.long, device=idx.device)
            x = self.transformer.wte(idx) + self.transformer.wpe(pos)
            for blk in self.transformer.h:
                x = blk(x)
            x = self.transformer.ln_f(x)
            if targets is None:
                return self.lm_head(x[:, [-1], :]), None
            logits = self.lm_head(x)
            flat = logits.view(-1, logits.size(-1))
            return logits, F.cross_entropy(flat, targets.view(-1), ignore_index=-1)

        def configure_optimizers(self, weight_decay, lr, device_type):
            params = [p for p in self.parameters() if p.requires_grad]
            groups = [
                {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
            ]
            fused = "fused" in inspect.signature(lib.optim.AdamW).parameters
            extra = dict(fused=True) if fused and device_type == "cuda" else dict()
            return lib.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), **extra)

        @lib.no_grad()
        def generate(self, idx, n, temperature=1.0, top_k=None):
            for _ in range(n):
                logits, _ = self(idx[:, -block:])
                logits = logits[:, -1, :] / temperature
                if top_k is not None:
                    v, _ = lib.topk(logits, min(top_k, logits.size(-1)))
                    logits[logits < v[:, [-1]]] = -float("Inf")
                probs = F.softmax(logits, dim=-1)
                idx = lib.cat((idx, lib.multinomial(probs, num_samples=1)), dim=1)
            return idx

    return GPT()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """``(path of a uint16 token file, vocabulary size)`` from tinyshakespeare (a made-up text
    where ../shared is absent)."""
    if os.path.exists(TEXT):
        with open(TEXT) as fh:
            text = fh.read()[:60000]
    else:
        text = "to be or not to be, that is the question. " * 1500
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text], dtype=np.uint16)
    path = tmp_path_factory.mktemp("gpt") / "train.bin"
    ids.tofile(path)
    return str(path), len(chars)


def get_batch(path, block=16, batch=8):
    data = np.memmap(path, dtype=np.uint16, mode="r")
    ix = ember.randint(len(data) - block, (batch,))
    x = ember.stack([ember.from_numpy(data[i : i + block].astype(np.int64)) for i in ix])
    y = ember.stack([ember.from_numpy(data[i + 1 : i + 1 + block].astype(np.int64)) for i in ix])
    return x.to("cpu"), y.to("cpu")


def test_forward_matches_torch(corpus):
    _, vocab = corpus
    ember.manual_seed(0)
    em = make_gpt(ember, vocab)
    tm = make_gpt(torch, vocab)
    # the tied weight appears once among the parameters, in both
    assert sum(p.numel() for p in em.parameters()) == sum(p.numel() for p in tm.parameters())
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in em.state_dict().items()})
    idx = np.random.default_rng(0).integers(0, vocab, (3, 16))
    targets = np.roll(idx, -1, axis=1)
    le, lossE = em(ember.tensor(idx), ember.tensor(targets))
    lt, lossT = tm(torch.tensor(idx), torch.tensor(targets))
    np.testing.assert_allclose(le.detach().numpy(), lt.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert abs(lossE.item() - lossT.item()) < 1e-5


def test_training_script(corpus, tmp_path):
    path, vocab = corpus
    ember.manual_seed(1337)
    raw = make_gpt(ember, vocab)
    opt = raw.configure_optimizers(0.1, 3e-3, "cpu")
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    scaler = ember.amp.GradScaler("cpu", enabled=False)
    model = ember.compile(raw)

    def lr_at(it, warm=5, decay=60, lr=3e-3, min_lr=3e-4):
        if it < warm:
            return lr * (it + 1) / (warm + 1)
        ratio = min(1.0, (it - warm) / (decay - warm))
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)

    losses = []
    x, y = get_batch(path)
    for it in range(60):
        for group in opt.param_groups:
            group["lr"] = lr_at(it)
        for _ in range(2):  # gradient accumulation
            _, loss = model(x, y)
            losses.append(loss.item())
            x, y = get_batch(path)
            scaler.scale(loss / 2).backward()
        scaler.unscale_(opt)
        ember.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
    assert losses[0] == pytest.approx(math.log(vocab), rel=0.05)  # uniform at the start
    assert np.mean(losses[-10:]) < 0.85 * losses[0]  # 4.06 -> 3.03 here

    # the compiled model's state dict carries "_orig_mod."; a plain model loads it stripped
    ckpt = tmp_path / "ckpt.pt"
    ember.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "iter": 60}, ckpt)
    state = ember.load(ckpt, map_location="cpu")
    prefix = "_orig_mod."
    sd = state["model"]
    assert all(k.startswith(prefix) for k in sd)
    for k in list(sd):
        sd[k[len(prefix) :]] = sd.pop(k)
    fresh = make_gpt(ember, vocab)
    fresh.load_state_dict(sd)
    fresh.eval()
    model.eval()
    with ember.no_grad():
        probe = x[:2]
        np.testing.assert_array_equal(fresh(probe)[0].numpy(), raw(probe)[0].numpy())

    # sampling: top-k then multinomial, reproducible under a seed
    start = ember.zeros((1, 1), dtype=ember.long)
    ember.manual_seed(7)
    a = fresh.generate(start, 20, temperature=0.8, top_k=5)
    ember.manual_seed(7)
    b = fresh.generate(start, 20, temperature=0.8, top_k=5)
    assert a.shape == (1, 21) and ember.equal(a, b)
    assert int(a.max()) < vocab
