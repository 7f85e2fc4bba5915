"""Idioms of third-party PyTorch programs (graykode/nlp-tutorial, rasbt/LLMs-from-scratch,
karpathy/llama2.c and nanochat, CleanRL's ppo.py) that an ``import ember as torch`` port met,
each a small program of our own with the same idiom, checked against torch: NumPy scalars stay
weak in arithmetic (``scores / np.sqrt(d_k)``), ``torch.Tensor(ndarray)`` is float32 whatever
the array's dtype (``torch.Tensor(next_done)`` of a bool array), the ``torch._foreach_*`` list
ops (nanochat's ``_foreach_copy_``), and the model/optimizer idioms of those programs (RoPE
through complex numbers, grouped-query ``repeat_kv``, a causal mask buffer, meta-device
construction, Newton-Schulz orthogonalisation, a PPO update)."""

from __future__ import annotations

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
LIBS = {"ember": ember, "torch": torch}


def _np(t):
    return t.detach().cpu().numpy()


def _rand(lib, seed: int, *shape):
    rng = np.random.default_rng(seed)
    return lib.tensor(rng.standard_normal(shape).astype(np.float32))


def _same_weights(src, dst):
    """Load torch module ``src``'s weights into the ember module ``dst``."""
    dst.load_state_dict({k: ember.tensor(_np(v)) for k, v in src.state_dict().items()})


# ---- NumPy scalars are weak, like Python numbers ---------------------------------------------
@pytest.mark.parametrize(
    "expr",
    [
        lambda lib, x: x / np.sqrt(4),  # graykode's ScaledDotProductAttention
        lambda lib, x: x + np.int64(1),
        lambda lib, x: np.float64(2.0) * x,
        lambda lib, x: x - np.float32(0.5),
        lambda lib, x: x.long() * np.float64(1.5),
        lambda lib, x: x.long() + np.int32(2),
        lambda lib, x: x.double() * np.float32(2.0),
        lambda lib, x: x > np.float64(0.0),
    ],
)
def test_numpy_scalars_do_not_promote(expr):
    got = {name: expr(lib, _rand(lib, 0, 3)) for name, lib in LIBS.items()}
    assert str(got["ember"].dtype) == str(got["torch"].dtype).replace("torch", "ember")
    np.testing.assert_allclose(_np(got["ember"]), _np(got["torch"]), rtol=1e-6)


def test_graykode_transformer_attention_stays_float32():
    """Scaled dot-product attention with a NumPy sinusoid table and ``/ np.sqrt(d_k)``."""

    def attend(lib):
        table = np.array(
            [[p / np.power(10000, 2 * (i // 2) / 8) for i in range(8)] for p in range(5)]
        )
        table[:, 0::2], table[:, 1::2] = np.sin(table[:, 0::2]), np.cos(table[:, 1::2])
        pos = lib.nn.Embedding.from_pretrained(lib.FloatTensor(table), freeze=True)
        q = _rand(lib, 1, 2, 5, 8) + pos(lib.LongTensor([[0, 1, 2, 3, 4]]))
        scores = lib.matmul(q, q.transpose(-1, -2)) / np.sqrt(8)
        pad = lib.tensor([[0, 0, 0, 1, 1]]).eq(1).unsqueeze(1).expand(2, 5, 5)
        scores.masked_fill_(pad, -1e9)
        return lib.matmul(lib.nn.Softmax(dim=-1)(scores), q)

    out_e, out_t = attend(ember), attend(torch)
    assert out_e.dtype == ember.float32
    np.testing.assert_allclose(_np(out_e), _np(out_t), rtol=1e-5, atol=1e-5)


# ---- the legacy constructor: torch.Tensor(ndarray) is float32 ---------------------------------
@pytest.mark.parametrize(
    "arr",
    [np.array([True, False]), np.eye(3), np.array([1, 2, 3]), np.zeros((2, 2), np.float16)],
    ids=["bool", "float64", "int64", "float16"],
)
def test_legacy_tensor_of_ndarray_is_float32(arr):
    e, t = ember.Tensor(arr), torch.Tensor(arr)
    assert e.dtype == ember.float32 and t.dtype == torch.float32
    np.testing.assert_array_equal(_np(e), _np(t))
    # a list of arrays (graykode's random_batch of np.eye rows) and a tensor (dtype kept)
    assert ember.Tensor([arr, arr]).dtype == ember.float32
    assert ember.Tensor(ember.ones(2, dtype=ember.float64)).dtype == ember.float64


# ---- torch._foreach_* ---------------------------------------------------------------------
def _foreach_program(lib):
    ps = [_rand(lib, 0, 3), _rand(lib, 1, 2, 2)]
    gs = [_rand(lib, 2, 3), _rand(lib, 3, 2, 2)]
    ms = [lib.zeros_like(p) for p in ps]
    lib._foreach_mul_(ms, 0.9)
    lib._foreach_add_(ms, gs, alpha=0.1)
    lib._foreach_lerp_(ms, gs, 0.5)
    vs = lib._foreach_mul(gs, gs)
    lib._foreach_addcmul_(vs, gs, gs, value=0.01)
    denom = lib._foreach_sqrt(vs)
    lib._foreach_add_(denom, 1e-8)
    lib._foreach_addcdiv_(ps, ms, denom, value=-0.01)
    lib._foreach_mul_(ps, [0.5, 2.0])
    norms = lib._foreach_norm(ps)
    clipped = lib._foreach_maximum(ps, 0.0)
    out = [lib.empty_like(p) for p in ps]
    lib._foreach_copy_(out, clipped)
    return [*ps, *norms, *out, *lib._foreach_neg(out)]


def test_foreach_ops_match_torch():
    for e, t in zip(_foreach_program(ember), _foreach_program(torch), strict=True):
        np.testing.assert_allclose(_np(e), _np(t), rtol=1e-5, atol=1e-6)
    zs = [ember.ones(2), ember.ones(3)]
    assert ember._foreach_zero_(zs) is None and all(z.sum().item() == 0 for z in zs)


def test_foreach_bad_input_names_the_problem():
    with pytest.raises(TypeError, match="list or tuple of Tensors"):
        ember._foreach_add_(ember.ones(2), 1.0)
    with pytest.raises(RuntimeError, match="same number of tensors"):
        ember._foreach_add([ember.ones(2)], [ember.ones(2), ember.ones(2)])
    with pytest.raises(AttributeError, match="_foreach_nothing"):
        ember._foreach_nothing  # noqa: B018


# ---- llama2.c: RoPE through complex numbers, repeat_kv, causal sdpa --------------------------
def _llama_attention(lib):
    bsz, seqlen, n_heads, n_kv, hd = 2, 6, 4, 2, 8
    freqs = 1.0 / (10000.0 ** (lib.arange(0, hd, 2)[: hd // 2].float() / hd))
    freqs = lib.outer(lib.arange(seqlen), freqs).float()
    cis = lib.polar(lib.ones_like(freqs), freqs)
    xq = _rand(lib, 0, bsz, seqlen, n_heads, hd)
    xk = _rand(lib, 1, bsz, seqlen, n_kv, hd)
    xv = _rand(lib, 2, bsz, seqlen, n_kv, hd)
    xq_ = lib.view_as_complex(xq.float().reshape(*xq.shape[:-1], -1, 2))
    xk_ = lib.view_as_complex(xk.float().reshape(*xk.shape[:-1], -1, 2))
    shape = [d if i in (1, xq_.ndim - 1) else 1 for i, d in enumerate(xq_.shape)]
    xq = lib.view_as_real(xq_ * cis.view(shape)).flatten(3).type_as(xq)
    xk = lib.view_as_real(xk_ * cis.view(shape)).flatten(3).type_as(xk)

    def repeat_kv(x, n_rep):
        b, s, k, d = x.shape
        return x[:, :, :, None, :].expand(b, s, k, n_rep, d).reshape(b, s, k * n_rep, d)

    xk, xv = repeat_kv(xk, n_heads // n_kv), repeat_kv(xv, n_heads // n_kv)
    q, k, v = (x.transpose(1, 2) for x in (xq, xk, xv))
    flash = lib.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    mask = lib.triu(lib.full((1, 1, seqlen, seqlen), float("-inf")), diagonal=1)
    scores = lib.matmul(q, k.transpose(2, 3)) / np.sqrt(hd) + mask
    manual = lib.matmul(lib.nn.functional.softmax(scores.float(), dim=-1).type_as(q), v)
    return flash, manual


def test_llama2c_rope_gqa_attention():
    (fe, me), (ft, mt) = _llama_attention(ember), _llama_attention(torch)
    np.testing.assert_allclose(_np(fe), _np(ft), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_np(me), _np(mt), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_np(me), _np(fe), rtol=1e-4, atol=1e-5)


# ---- rasbt/LLMs-from-scratch: causal mask buffer sliced to the sequence ----------------------
def _rasbt_block(lib):
    class CausalAttention(lib.nn.Module):
        def __init__(self, d, ctx):
            super().__init__()
            self.W_qkv = lib.nn.Linear(d, 3 * d, bias=False)
            self.register_buffer("mask", lib.triu(lib.ones(ctx, ctx), diagonal=1))

        def forward(self, x):
            b, n, d = x.shape
            q, k, v = self.W_qkv(x).split(d, dim=-1)
            att = q @ k.transpose(1, 2)
            att.masked_fill_(self.mask.bool()[:n, :n], -lib.inf)
            w = lib.softmax(att / k.shape[-1] ** 0.5, dim=-1)
            gelu = (
                0.5 * x * (1 + lib.tanh(lib.sqrt(lib.tensor(2.0 / lib.pi)) * (x + 0.044715 * x**3)))
            )
            return w @ v + gelu

    return CausalAttention(8, 16)


def test_rasbt_causal_attention_and_gelu():
    mt = _rasbt_block(torch)
    me = _rasbt_block(ember)
    _same_weights(mt, me)
    x = np.random.default_rng(0).standard_normal((2, 5, 8)).astype(np.float32)
    ye, yt = me(ember.tensor(x)), mt(torch.tensor(x))
    np.testing.assert_allclose(_np(ye), _np(yt), rtol=1e-5, atol=1e-5)


# ---- nanochat: meta-device construction, rms_norm, Newton-Schulz + _foreach_copy_ -----------
def _nanochat_step(lib):
    with lib.device("meta"):
        lin = lib.nn.Linear(8, 6, bias=False)
    assert lin.weight.is_meta
    lin.to_empty(device="cpu")
    with lib.no_grad():
        lin.weight.copy_(_rand(lib, 0, 6, 8))
    x = lib.nn.functional.rms_norm(_rand(lib, 1, 4, 8), (8,))
    lin(x).square().mean().backward()
    g = lin.weight.grad
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = g / (g.norm(dim=(-2, -1), keepdim=True) * 1.02 + 1e-6)
    if g.size(-2) > g.size(-1):  # tall matrix: work on the transpose
        X = X.mT
    for _ in range(5):
        A = X @ X.mT
        X = a * X + (b * A + c * (A @ A)) @ X
    if g.size(-2) > g.size(-1):
        X = X.mT
    stacked = lib.stack([lin.weight.detach() - 0.02 * X])
    lib._foreach_copy_([lin.weight.data], list(stacked.unbind(0)))
    return lin.weight


def test_nanochat_muon_style_update():
    np.testing.assert_allclose(
        _np(_nanochat_step(ember)), _np(_nanochat_step(torch)), rtol=1e-4, atol=1e-5
    )


# ---- CleanRL ppo.py: orthogonal init, Categorical, GAE, clipped objective -------------------
def _ppo_update(lib):
    lib.manual_seed(0)

    def layer_init(layer, std=np.sqrt(2), bias_const=0.0):  # noqa: B008 (CleanRL's)
        lib.nn.init.orthogonal_(layer.weight, std)
        lib.nn.init.constant_(layer.bias, bias_const)
        return layer

    actor = lib.nn.Sequential(layer_init(lib.nn.Linear(4, 16)), lib.nn.Tanh(),
                              layer_init(lib.nn.Linear(16, 2), std=0.01))  # fmt: skip
    critic = lib.nn.Sequential(layer_init(lib.nn.Linear(4, 16)), lib.nn.Tanh(),
                               layer_init(lib.nn.Linear(16, 1), std=1.0))  # fmt: skip
    return actor, critic


def _ppo_loss(lib, actor, critic):
    rng = np.random.default_rng(0)
    steps, envs = 8, 2
    obs = lib.Tensor(rng.standard_normal((steps, envs, 4)).astype(np.float32))
    dones = lib.Tensor(rng.random((steps, envs)) < 0.2)  # a bool array: float32 in torch
    rewards = lib.tensor(rng.random((steps, envs)).astype(np.float32)).view(steps, envs)
    actions = lib.tensor(rng.integers(0, 2, (steps, envs)))
    with lib.no_grad():
        values = critic(obs).squeeze(-1)
        old_logp = lib.distributions.Categorical(logits=actor(obs)).log_prob(actions)
        advantages, lastgaelam = lib.zeros_like(rewards), 0
        for t in reversed(range(steps)):
            nextnonterminal = 1.0 - (dones[t + 1] if t + 1 < steps else dones[t])
            nextvalues = values[t + 1] if t + 1 < steps else values[t]
            delta = rewards[t] + 0.99 * nextvalues * nextnonterminal - values[t]
            advantages[t] = lastgaelam = delta + 0.99 * 0.95 * nextnonterminal * lastgaelam
        returns = advantages + values
    dist = lib.distributions.Categorical(logits=actor(obs.reshape(-1, 4)))
    ratio = (dist.log_prob(actions.reshape(-1)) - old_logp.reshape(-1)).exp()
    adv = advantages.reshape(-1)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    pg = lib.max(-adv * ratio, -adv * lib.clamp(ratio, 0.8, 1.2)).mean()
    v_loss = 0.5 * ((critic(obs).view(-1) - returns.view(-1)) ** 2).mean()
    loss = pg - 0.01 * dist.entropy().mean() + 0.5 * v_loss
    loss.backward()
    total = lib.nn.utils.clip_grad_norm_([*actor.parameters(), *critic.parameters()], 0.5)
    return loss, total, dones


def test_cleanrl_ppo_update_matches_torch():
    at, ct = _ppo_update(torch)
    ae, ce = _ppo_update(ember)
    _same_weights(at, ae)
    _same_weights(ct, ce)
    le, ne, de = _ppo_loss(ember, ae, ce)
    lt, nt, dt = _ppo_loss(torch, at, ct)
    assert de.dtype == ember.float32 and dt.dtype == torch.float32
    np.testing.assert_allclose(le.item(), lt.item(), rtol=1e-5)
    np.testing.assert_allclose(float(ne), float(nt), rtol=1e-4)
    for pe, pt in zip(ae.parameters(), at.parameters(), strict=True):
        np.testing.assert_allclose(_np(pe.grad), _np(pt.grad), rtol=1e-4, atol=1e-6)


def test_third_party_doc_snippet_runs():
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "porting_examples.md"), encoding="utf-8") as f:
        section = f.read().split("## Third-party programs", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(snippet, "docs/porting_examples.md", "exec"), {})
