"""Idioms from third-party programs (session 25: karpathy/nanoGPT, rotary-embedding-torch,
local-attention, torcheval, torch-ema, geomloss), in programs of our own.

Each test mirrors what one program does and checks ember against torch 2.13.
"""

# torcheval's scripted functions annotate with typing's List / Optional / Tuple: kept as written
# ruff: noqa: UP006, UP035, UP045

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import numpy as np
import pytest

import ember
import ember.nn.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

# --- nanoGPT train.py / model.py / sample.py: a char GPT, trained, saved, resumed, sampled ----


def _gpt(mod, vocab=11, block=8, dim=16, heads=2):
    nn = mod.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.qkv = nn.Linear(dim, 3 * dim)
            self.proj = nn.Linear(dim, dim)
            self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

        def forward(self, x):
            b, t, c = x.size()
            q, k, v = self.qkv(self.ln1(x)).split(dim, dim=2)
            q, k, v = (z.view(b, t, heads, c // heads).transpose(1, 2) for z in (q, k, v))
            y = mod.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(y.transpose(1, 2).contiguous().view(b, t, c))
            return x + self.mlp(self.ln2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, dim), nn.Embedding(block, dim)
            self.h = nn.ModuleList([Block()])
            self.ln_f = nn.LayerNorm(dim)
            self.lm_head = nn.Linear(dim, vocab, bias=False)
            self.wte.weight = self.lm_head.weight  # weight tying
            self.apply(self._init)
            for pn, p in self.named_parameters():  # the scaled init of residual projections
                if pn.endswith("proj.weight"):
                    mod.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2))

        def _init(self, m):
            if isinstance(m, nn.Linear):
                mod.nn.init.normal_(m.weight, mean=0.0, std=0.02)
                if m.bias is not None:
                    mod.nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                mod.nn.init.normal_(m.weight, mean=0.0, std=0.02)

        def forward(self, idx, targets=None):
            pos = mod.arange(0, idx.size(1), dtype=mod.long)
            x = self.wte(idx) + self.wpe(pos)
            for blk in self.h:
                x = blk(x)
            x = self.ln_f(x)
            if targets is None:
                return self.lm_head(x[:, [-1], :]), None
            logits = self.lm_head(x)
            loss = mod.nn.functional.cross_entropy(
                logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1
            )
            return logits, loss

    return GPT()


def _nanogpt_run(mod, data, tmp_path, steps=6, resume=False):
    mod.manual_seed(1337)
    model = _gpt(mod)
    params = {pn: p for pn, p in model.named_parameters() if p.requires_grad}
    groups = [
        {"params": [p for p in params.values() if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in params.values() if p.dim() < 2], "weight_decay": 0.0},
    ]
    opt = mod.optim.AdamW(groups, lr=1e-2, betas=(0.9, 0.99))
    scaler = mod.amp.GradScaler("cpu", enabled=False)
    start = 0
    ckpt = tmp_path / f"ckpt_{mod.__name__}.pt"
    if resume:
        state = mod.load(ckpt, map_location="cpu")
        sd = state["model"]
        for k in list(sd):  # nanoGPT strips torch.compile's prefix
            if k.startswith("_orig_mod."):
                sd[k[len("_orig_mod.") :]] = sd.pop(k)
        model.load_state_dict(sd)
        opt.load_state_dict(state["optimizer"])
        start = state["iter_num"]
    losses = []
    for it in range(start, start + steps):
        lr = 1e-2 * 0.5 * (1 + math.cos(math.pi * it / 20))  # cosine decay
        for g in opt.param_groups:
            g["lr"] = lr
        ix = mod.randint(len(data) - 8, (4,))
        x = mod.stack([mod.from_numpy(data[i : i + 8].astype(np.int64)) for i in ix])
        y = mod.stack([mod.from_numpy(data[i + 1 : i + 9].astype(np.int64)) for i in ix])
        _, loss = model(x, y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        mod.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    mod.save(
        {"model": model.state_dict(), "optimizer": opt.state_dict(), "iter_num": start + steps},
        ckpt,
    )
    model.eval()
    idx = mod.zeros((1, 1), dtype=mod.long)
    with mod.no_grad():
        for _ in range(6):  # sample.py: temperature, top-k, multinomial
            logits, _ = model(idx[:, -8:])
            logits = logits[:, -1, :] / 0.8
            v, _ = mod.topk(logits, 3)
            logits[logits < v[:, [-1]]] = -float("Inf")
            nxt = mod.multinomial(mod.nn.functional.softmax(logits, dim=-1), num_samples=1)
            idx = mod.cat((idx, nxt), dim=1)
    return losses, idx[0].tolist()


def test_nanogpt_train_resume_sample_as_torch(tmp_path):
    data = np.random.default_rng(0).integers(0, 11, 200).astype(np.uint16)
    ours = _nanogpt_run(ember, data, tmp_path)
    ref = _nanogpt_run(torch, data, tmp_path)
    np.testing.assert_allclose(ours[0], ref[0], rtol=2e-5)
    assert ours[1] == ref[1]
    ours = _nanogpt_run(ember, data, tmp_path, steps=3, resume=True)
    ref = _nanogpt_run(torch, data, tmp_path, steps=3, resume=True)
    np.testing.assert_allclose(ours[0], ref[0], rtol=2e-5)


# --- torcheval: functions under @torch.jit.script that need run-time values ------------------


def _sizes_ember(mask: ember.Tensor) -> List[int]:
    sizes: List[int] = mask.sum(1).tolist()
    return sizes


def _sizes_torch(mask: torch.Tensor) -> List[int]:
    sizes: List[int] = mask.sum(1).tolist()
    return sizes


def _update_ember(
    pred: ember.Tensor, target: ember.Tensor, num_classes: Optional[int], average: Optional[str]
) -> Tuple[ember.Tensor, ember.Tensor]:
    if isinstance(average, str) and average == "micro":
        return (pred == target).sum(), ember.tensor(target.shape[0])
    assert isinstance(num_classes, int)
    hits = ember.zeros(num_classes).scatter_(0, target[pred == target], 1, reduce="add")
    return hits, ember.zeros(num_classes).scatter_(0, target, 1, reduce="add")


def _update_torch(
    pred: torch.Tensor, target: torch.Tensor, num_classes: Optional[int], average: Optional[str]
) -> Tuple[torch.Tensor, torch.Tensor]:
    if isinstance(average, str) and average == "micro":
        return (pred == target).sum(), torch.tensor(target.shape[0])
    assert isinstance(num_classes, int)
    hits = torch.zeros(num_classes).scatter_(0, target[pred == target], 1, reduce="add")
    return hits, torch.zeros(num_classes).scatter_(0, target, 1, reduce="add")


def _scale(x: ember.Tensor, k: int, name: str) -> ember.Tensor:
    if isinstance(k, int) and isinstance(name, str):  # plain annotations: decided statically
        return x * k
    return x


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_scripted_functions_needing_run_time_values_run_as_python():
    mask = np.array([[1, 0, 1], [0, 0, 1]], bool)
    sizes = ember.jit.script(_sizes_ember)
    assert sizes(ember.tensor(mask)) == torch.jit.script(_sizes_torch)(torch.tensor(mask)) == [2, 1]
    with pytest.raises(RuntimeError, match=r"runs as Python(.|\n)*tolist"):
        sizes.graph  # noqa: B018
    assert isinstance(sizes, ember.jit.ScriptFunction)

    rng = np.random.default_rng(0)
    pred, target = rng.integers(0, 3, 10), rng.integers(0, 3, 10)
    ours, ref = ember.jit.script(_update_ember), torch.jit.script(_update_torch)
    for nc, avg in ((3, "macro"), (3, None), (None, "micro"), (3, "micro")):
        a = ours(ember.tensor(pred), ember.tensor(target), nc, avg)
        b = ref(torch.tensor(pred), torch.tensor(target), nc, avg)
        for x, y in zip(a, b):
            assert x.tolist() == y.tolist()
    with pytest.raises(AssertionError):  # the assert fails at run time
        ours(ember.tensor(pred), ember.tensor(target), None, None)
    with pytest.raises(torch.jit.Error, match="AssertionError"):
        ref(torch.tensor(pred), torch.tensor(target), None, None)
    # what the graph can hold still compiles: ``x: int`` is an int, as TorchScript types it
    scaled = ember.jit.script(_scale)
    assert "mul" in scaled.code and scaled(ember.ones(2), 3, "a").tolist() == [3.0, 3.0]


def test_load_library_failure_is_an_oserror():
    # torcheval guards its optional fbgemm kernels with ``except OSError``
    for mod in (ember, torch):
        with pytest.raises(OSError):
            mod.ops.load_library("//deeplearning/fbgemm/fbgemm_gpu:metric_ops")


# --- rotary-embedding-torch / local-attention: rotations and windowed attention --------------


def _rotary(mod, t, freqs, scale):
    x = t.reshape(*t.shape[:-1], -1, 2)  # rotate_half over interleaved pairs
    x1, x2 = x.unbind(dim=-1)
    rot = mod.stack((-x2, x1), dim=-1).reshape(t.shape)
    return t * freqs.cos() * scale + rot * freqs.sin() * scale


def _rope_program(mod, q_np, learned):
    theta = 10000.0
    inv = 1.0 / (theta ** (mod.arange(0, 8, 2)[:4].float() / 8))
    freqs_p = mod.nn.Parameter(inv, requires_grad=learned)
    q = mod.from_numpy(q_np).requires_grad_()
    seq = mod.arange(q.shape[-2], dtype=q.dtype) + 3  # an offset, as with cached keys
    f = mod.einsum("..., f -> ... f", seq.type(freqs_p.dtype), freqs_p)
    f = f.repeat_interleave(2, dim=-1)
    power = (seq - len(seq) // 2) / 8.0  # xpos scale
    scale = ((mod.arange(0, 8, 2) + 0.4 * 8) / (1.4 * 8)) ** power[:, None]
    scale = scale.repeat_interleave(2, dim=-1)
    out = mod.cat((_rotary(mod, q[..., :8], f, scale), q[..., 8:]), dim=-1)
    out.square().sum().backward()
    return out, q.grad, freqs_p.grad


def _local_attention(mod, q, k, v, w):
    # windows of w look one window back: pad, unfold, mask the padding and the future
    b, n, d = q.shape
    bq = q.reshape(b, n // w, w, d)
    bk = mod.nn.functional.pad(k.reshape(b, n // w, w, d), (0, 0, 0, 0, 1, 0), value=-1.0)
    bv = mod.nn.functional.pad(v.reshape(b, n // w, w, d), (0, 0, 0, 0, 1, 0), value=-1.0)
    bk = mod.cat((bk[:, :-1], bk[:, 1:]), dim=2)
    bv = mod.cat((bv[:, :-1], bv[:, 1:]), dim=2)
    pos = mod.arange(n + w).reshape(1, n // w + 1, w) - w
    kpos = mod.cat((pos[:, :-1], pos[:, 1:]), dim=2)
    qpos = mod.arange(n).reshape(1, n // w, w)
    sim = mod.einsum("bwid,bwjd->bwij", bq, bk) * d**-0.5
    mask = (qpos[..., :, None] < kpos[..., None, :]) | (kpos[..., None, :] < 0)
    sim = sim.masked_fill(mask, -mod.finfo(sim.dtype).max)
    return mod.einsum("bwij,bwjd->bwid", sim.softmax(dim=-1), bv).reshape(b, n, d)


@pytest.mark.parametrize("learned", [False, True])
def test_rotary_xpos_and_local_attention_as_torch(learned):
    rng = np.random.default_rng(1)
    q_np = rng.standard_normal((2, 6, 12)).astype(np.float32)
    ours, ref = _rope_program(ember, q_np, learned), _rope_program(torch, q_np, learned)
    for a, b in zip(ours[:2], ref[:2]):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-5)
    if learned:  # a rotation keeps norms: the frequencies' gradient is rounding noise
        assert float(ours[2].abs().max()) < 1e-3 and float(ref[2].abs().max()) < 1e-3
    qkv = [rng.standard_normal((2, 16, 8)) for _ in range(3)]
    a = _local_attention(ember, *[ember.tensor(x) for x in qkv], 4)
    b = _local_attention(torch, *[torch.tensor(x) for x in qkv], 4)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)


# --- torcheval / torch-ema / geomloss: metric states, parameter averages, Sinkhorn ----------


def _metric_ema_sinkhorn(mod, seed):
    rng = np.random.default_rng(seed)
    # a binned binary PR curve from merged states (sum of per-chunk histograms)
    p, t = rng.random(40).astype(np.float32), rng.integers(0, 2, 40)
    th = mod.linspace(0, 1, 5)
    states = []
    for lo in (0, 20):
        pi, ti = mod.from_numpy(p[lo : lo + 20]), mod.from_numpy(t[lo : lo + 20])
        hit = pi[:, None] >= th[None, :]
        states.append(((hit & (ti[:, None] == 1)).sum(0), (hit & (ti[:, None] == 0)).sum(0)))
    tp = states[0][0] + states[1][0]
    fp = states[0][1] + states[1][1]
    prec = mod.nan_to_num(tp / (tp + fp), nan=1.0)
    rec = tp / tp[0]
    # an EMA of parameters with the num_updates warm-up, then store / copy_to / restore
    mod.manual_seed(seed)
    net = mod.nn.Linear(3, 2)
    shadow = [p_.clone().detach() for p_ in net.parameters()]
    x = mod.from_numpy(rng.standard_normal((8, 3)).astype(np.float32))
    opt = mod.optim.SGD(net.parameters(), lr=0.1)
    for n in range(1, 4):
        net(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
        decay = min(0.9, (1 + n) / (10 + n))
        with mod.no_grad():
            for s, p_ in zip(shadow, net.parameters()):
                s.sub_((1 - decay) * (s - p_))
    stored = [p_.clone() for p_ in net.parameters()]
    with mod.no_grad():
        for s, p_ in zip(shadow, net.parameters()):
            p_.copy_(s)
    ema_out = net(x).detach()
    with mod.no_grad():
        for s, p_ in zip(stored, net.parameters()):
            p_.copy_(s)
    # debiased log-domain Sinkhorn between point clouds, gradient through autograd
    xs = mod.from_numpy(rng.standard_normal((12, 2))).requires_grad_()
    ys = mod.from_numpy(rng.standard_normal((9, 2)) + 1.0)

    def ot(a_pts, b_pts, eps=0.1, iters=50):
        c = ((a_pts[:, None, :] - b_pts[None, :, :]) ** 2).sum(-1) / 2
        la = mod.full((a_pts.shape[0],), -math.log(a_pts.shape[0]), dtype=c.dtype)
        lb = mod.full((b_pts.shape[0],), -math.log(b_pts.shape[0]), dtype=c.dtype)
        f, g = mod.zeros_like(la), mod.zeros_like(lb)
        for _ in range(iters):
            f = -eps * mod.logsumexp(lb[None, :] + (g[None, :] - c) / eps, dim=1)
            g = -eps * mod.logsumexp(la[:, None] + (f[:, None] - c) / eps, dim=0)
        return (la.exp() * f).sum() + (lb.exp() * g).sum()

    loss = ot(xs, ys) - 0.5 * ot(xs, xs) - 0.5 * ot(ys, ys)
    (grad,) = mod.autograd.grad(loss, [xs])
    return prec, rec, ema_out, net.weight.detach(), loss.detach(), grad


def test_metric_states_ema_and_sinkhorn_as_torch():
    ours, ref = _metric_ema_sinkhorn(ember, 3), _metric_ema_sinkhorn(torch, 3)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-6, atol=1e-7)


def test_scaled_dot_product_attention_is_causal_matches_mask():
    # nanoGPT's flash path and its manual masked-softmax fallback agree, as in torch
    rng = np.random.default_rng(2)
    q, k, v = (ember.tensor(rng.standard_normal((1, 2, 5, 4)).astype(np.float32)) for _ in "qkv")
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(4))
    att = att.masked_fill(ember.tril(ember.ones(5, 5)).view(1, 1, 5, 5) == 0, float("-inf"))
    np.testing.assert_allclose(
        y.numpy(), (F.softmax(att, dim=-1) @ v).numpy(), rtol=1e-5, atol=1e-6
    )


def test_session_25_doc_snippet_runs():
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "porting_examples.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Session 25: nanoGPT", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(snippet, "docs/porting_examples.md", "exec"), {})
