"""A small GPT block in ember.nn and the same block in torch, with shared weights, for the
tensor-parallel tests (spawned ranks import this module by name)."""

from __future__ import annotations

import math

import numpy as np

D, HEADS, HIDDEN, BATCH, SEQ = 8, 4, 16, 2, 6


def weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(seed)
    shapes = {
        "ln1.weight": (D,), "ln1.bias": (D,),
        "attn.q.weight": (D, D), "attn.q.bias": (D,),
        "attn.k.weight": (D, D), "attn.k.bias": (D,),
        "attn.v.weight": (D, D), "attn.v.bias": (D,),
        "attn.o.weight": (D, D), "attn.o.bias": (D,),
        "ln2.weight": (D,), "ln2.bias": (D,),
        "mlp.fc1.weight": (HIDDEN, D), "mlp.fc1.bias": (HIDDEN,),
        "mlp.fc2.weight": (D, HIDDEN), "mlp.fc2.bias": (D,),
    }  # fmt: skip
    out = {k: rng.standard_normal(s) * 0.5 for k, s in shapes.items()}
    out["ln1.weight"] += 1.0
    out["ln2.weight"] += 1.0
    return out


def inputs(seed: int = 1) -> np.ndarray:
    return np.random.RandomState(seed).standard_normal((BATCH, SEQ, D))


def ember_block():
    """The block in ember.nn (float64), loaded with ``weights()``."""
    import ember
    from ember import nn

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(D, D, dtype=ember.float64) for _ in "qkvo")
            self.head_dim = D // HEADS

        def forward(self, x):
            b, s, _ = x.shape

            # -1 heads: under tensor parallelism each rank holds HEADS / tp of them
            def heads(t):
                return t.reshape(b, s, -1, self.head_dim).transpose(1, 2)

            q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
            att = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
            mask = ember.triu(ember.ones(s, s, dtype=ember.bool), diagonal=1)
            att = att.masked_fill(mask, float("-inf")).softmax(-1)
            y = (att @ v).transpose(1, 2).reshape(b, s, -1)
            return self.o(y)

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(D, HIDDEN, dtype=ember.float64)
            self.fc2 = nn.Linear(HIDDEN, D, dtype=ember.float64)

        def forward(self, x):
            return self.fc2(nn.functional.gelu(self.fc1(x)))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(D, dtype=ember.float64)
            self.attn = Attention()
            self.ln2 = nn.LayerNorm(D, dtype=ember.float64)
            self.mlp = MLP()

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))

    block = Block()
    with ember.no_grad():
        for name, p in block.named_parameters():
            p.copy_(ember.tensor(weights()[name]))
    return block


def torch_block_output(torch, x: np.ndarray) -> np.ndarray:
    """The same block's forward in torch (float64)."""
    F = torch.nn.functional
    w = {k: torch.from_numpy(v) for k, v in weights().items()}
    t = torch.from_numpy(x)
    b, s, _ = t.shape

    def lin(name, a):
        return F.linear(a, w[f"{name}.weight"], w[f"{name}.bias"])

    def heads(a):
        return a.reshape(b, s, HEADS, D // HEADS).transpose(1, 2)

    h = F.layer_norm(t, (D,), w["ln1.weight"], w["ln1.bias"])
    q, k, v = heads(lin("attn.q", h)), heads(lin("attn.k", h)), heads(lin("attn.v", h))
    att = (q @ k.transpose(-2, -1)) / math.sqrt(D // HEADS)
    att = att.masked_fill(torch.triu(torch.ones(s, s, dtype=torch.bool), 1), float("-inf"))
    y = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, s, D)
    t = t + lin("attn.o", y)
    h = F.layer_norm(t, (D,), w["ln2.weight"], w["ln2.bias"])
    return (t + lin("mlp.fc2", F.gelu(lin("mlp.fc1", h)))).numpy()


VOCAB = 10


def ember_gpt():
    """Token embedding -> the block -> final norm -> LM head (no bias), float64."""
    import ember
    from ember import nn

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(VOCAB, D, dtype=ember.float64)
            self.block = ember_block()
            self.norm = nn.LayerNorm(D, dtype=ember.float64)
            self.head = nn.Linear(D, VOCAB, bias=False, dtype=ember.float64)

        def forward(self, idx):
            return self.head(self.norm(self.block(self.tok(idx))))

    ember.manual_seed(3)
    return GPT()


def tokens(seed: int = 4) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, VOCAB, size=(BATCH, SEQ + 1))
