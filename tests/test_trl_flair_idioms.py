"""Idioms trl (1.16) and flair (0.15) reach in torch when they run on ember, each a small
program of our own checked against torch (neither library is a dependency;
docs/porting_examples.md "trl and flair" records the trainers run through them):

- a custom ``autograd.Function`` returning ``None`` among its outputs (trl's chunked
  log-prob kernel returns ``None`` for the statistics not asked for): ``apply`` returns
  ``None`` there and ``backward`` gets ``None`` for it;
- that kernel's shape: online log-sum-exp over vocabulary tiles written with
  ``torch.mm(..., out=buffer_view)``, ``set_materialize_grads(False)``,
  ``mark_non_differentiable``, a backward that recomputes each tile;
- selective activation checkpointing: ``checkpoint(..., context_fn=partial(
  create_selective_checkpoint_contexts, policy_fn))``;
- the DPO and reward losses (masked per-token log-probs gathered from the labels,
  ``-logsigmoid`` of margins);
- the online trainers' losses: GRPO's group-normalised advantages and clipped importance
  ratio with the k3 KL to a reference, RLOO's leave-one-out baseline, token entropies;
- flair's tagger: an LSTM over packed padded sentences and a CRF forward score
  (``logsumexp`` over transitions), trained for a few SGD steps.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
LIBS = {"ember": ember, "torch": torch}


def _np(t):
    return None if t is None else t.detach().cpu().numpy()


def _rand(seed, *shape):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# ---- a Function with None outputs ---------------------------------------------------------
def _none_outputs_program(lib):
    seen = []

    class Twice(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.set_materialize_grads(False)
            return x * 2, None, x > 0

        @staticmethod
        def backward(ctx, g, g_none, g_bool):
            seen.append((g is None, g_none is None, g_bool is None))
            return g * 2

    x = lib.tensor([1.0, -2.0, 3.0], requires_grad=True)
    a, b, c = Twice.apply(x)
    a.sum().backward()
    with lib.no_grad():
        nograd = Twice.apply(x)
    return b, nograd[1], _np(c), c.requires_grad, _np(x.grad), seen


def test_function_none_outputs():
    e, t = (_none_outputs_program(lib) for lib in LIBS.values())
    assert e[0] is None and e[1] is None and t[0] is None and t[1] is None
    np.testing.assert_array_equal(e[2], t[2])
    assert e[3] == t[3] is False
    np.testing.assert_array_equal(e[4], t[4])
    assert e[5] == t[5] == [(False, True, True)]


# ---- trl's chunked log-prob kernel, our own version -------------------------------------
def _chunked_program(lib, chunk, want_entropy):
    class ChunkedLogProb(lib.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, weight, targets):
            ctx.set_materialize_grads(False)
            n, vocab = hidden.shape[0], weight.shape[0]
            run_max = lib.full((n,), float("-inf"))
            sum_exp = lib.zeros(n)
            x_sum = lib.zeros(n)
            target_logit = lib.zeros(n)
            buf = lib.empty((n, chunk))
            for start in range(0, vocab, chunk):
                end = min(start + chunk, vocab)
                tile = buf[:, : end - start]
                lib.mm(hidden, weight[start:end].t(), out=tile)
                new_m = lib.maximum(run_max, tile.amax(-1))
                rescale = lib.exp(run_max - new_m)
                e = lib.exp(tile - new_m.unsqueeze(-1))
                sum_exp.mul_(rescale).add_(e.sum(-1))
                x_sum.mul_(rescale).add_((e * tile).sum(-1))
                run_max.copy_(new_m)
                local = targets - start
                inside = (local >= 0) & (local < end - start)
                z = tile.gather(-1, local.clamp(0, end - start - 1).unsqueeze(-1)).squeeze(-1)
                target_logit.copy_(lib.where(inside, z, target_logit))
            log_z = run_max + lib.log(sum_exp)
            entropy = log_z - x_sum / sum_exp if want_entropy else None
            is_top = target_logit >= run_max
            ctx.save_for_backward(hidden, weight, targets, log_z)
            ctx.chunk = chunk
            ctx.mark_non_differentiable(is_top)
            return target_logit - log_z, entropy, None, is_top

        @staticmethod
        def backward(ctx, g_logp, g_ent, *_):
            hidden, weight, targets, log_z = ctx.saved_tensors
            g_hidden = lib.zeros(hidden.shape)
            g_weight = lib.zeros(weight.shape)
            for start in range(0, weight.shape[0], ctx.chunk):
                end = min(start + ctx.chunk, weight.shape[0])
                z = hidden @ weight[start:end].t()
                p = lib.exp(z - log_z.unsqueeze(-1))
                is_t = lib.arange(start, end) == targets.unsqueeze(-1)
                grad = g_logp.unsqueeze(-1) * (is_t.float() - p)
                g_hidden += grad @ weight[start:end]
                g_weight[start:end] += grad.t() @ hidden
            return g_hidden, g_weight, None

    hidden = lib.tensor(_rand(0, 10, 8), requires_grad=True)
    weight = lib.tensor(_rand(1, 29, 8), requires_grad=True)
    targets = lib.tensor(np.random.default_rng(2).integers(0, 29, 10))
    mask = targets != 3  # a masked label, as -100 in trl
    logp, ent, none, top = ChunkedLogProb.apply(hidden, weight, targets)
    per_token = logp.view(mask.shape).masked_fill(~mask, 0)
    loss = -per_token.sum() / mask.sum().clamp(min=1)
    loss.backward()
    return [_np(loss), _np(logp), _np(ent), none, _np(top), _np(hidden.grad), _np(weight.grad)]


@pytest.mark.parametrize("chunk,want_entropy", [(8, True), (64, False)])
def test_chunked_logprob_function(chunk, want_entropy):
    e, t = (_chunked_program(lib, chunk, want_entropy) for lib in LIBS.values())
    for a, b in zip(e, t):
        if b is None:
            assert a is None
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ---- selective activation checkpointing ------------------------------------------------
def _sac_program(lib):
    cp = lib.utils.checkpoint

    def policy(ctx, op, *args, **kwargs):
        return cp.CheckpointPolicy.PREFER_RECOMPUTE

    lin = lib.nn.Linear(6, 6)
    with lib.no_grad():
        lin.weight.copy_(lib.tensor(_rand(3, 6, 6)))
        lin.bias.zero_()
    x = lib.tensor(_rand(4, 3, 6), requires_grad=True)
    ctx_fn = functools.partial(cp.create_selective_checkpoint_contexts, policy)
    y = cp.checkpoint(lambda v: lib.tanh(lin(v)).pow(2), x, use_reentrant=False, context_fn=ctx_fn)
    y.sum().backward()
    return _np(y), _np(x.grad), _np(lin.weight.grad)


def test_selective_checkpoint_contexts():
    e, t = (_sac_program(lib) for lib in LIBS.values())
    for a, b in zip(e, t):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="policy_fn_or_list"):
        ember.utils.checkpoint.create_selective_checkpoint_contexts(3)


# ---- DPO and reward losses -----------------------------------------------------------------
def _seq_logps(lib, logits, labels):
    # each sequence's summed label log-probs, -100 masked (DPO's concatenated forward)
    labels = labels[:, 1:].clone()
    logits = logits[:, :-1]
    mask = labels != -100
    labels[~mask] = 0
    per_token = lib.gather(logits.log_softmax(-1), 2, labels.unsqueeze(2)).squeeze(2)
    return (per_token * mask).sum(-1)


def _preference_program(lib):
    f = lib.nn.functional
    logits = lib.tensor(_rand(5, 4, 6, 11), requires_grad=True)
    ref_logits = lib.tensor(_rand(6, 4, 6, 11))
    labels_np = np.random.default_rng(7).integers(0, 11, (4, 6))
    labels_np[:, :2] = -100  # the prompt
    labels_np[3, 5] = -100  # padding
    labels = lib.tensor(labels_np)
    logps = _seq_logps(lib, logits, labels)
    with lib.no_grad():
        ref = _seq_logps(lib, ref_logits, labels)
    chosen, rejected = logps.chunk(2)
    ref_c, ref_r = ref.chunk(2)
    margin = 0.1 * ((chosen - ref_c) - (rejected - ref_r))
    dpo = -f.logsigmoid(margin).mean()
    reward = -f.logsigmoid(chosen - rejected).mean()
    (dpo + reward).backward()
    accuracy = (chosen > rejected).float().mean()
    return _np(dpo), _np(reward), _np(accuracy), _np(logits.grad)


def test_dpo_and_reward_losses():
    e, t = (_preference_program(lib) for lib in LIBS.values())
    for a, b in zip(e, t):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ---- GRPO and RLOO losses (trl's online trainers) ------------------------------------------
def _online_program(lib, rloo: bool):
    g = 4  # generations per prompt
    logits = lib.tensor(_rand(11, 8, 5, 13), requires_grad=True)
    ref_logits = lib.tensor(_rand(12, 8, 5, 13))
    ids = lib.tensor(np.random.default_rng(13).integers(0, 13, (8, 5)))
    mask_np = np.ones((8, 5), np.float32)
    mask_np[1, 3:] = mask_np[6, 4:] = 0  # completions ended by EOS
    mask = lib.tensor(mask_np)
    rewards = lib.tensor(_rand(14, 8))
    logps = lib.gather(logits.log_softmax(-1), 2, ids.unsqueeze(-1)).squeeze(-1)
    with lib.no_grad():
        ref = lib.gather(ref_logits.log_softmax(-1), 2, ids.unsqueeze(-1)).squeeze(-1)
        old = logps.detach() - 0.05  # a stale policy: ratios away from 1
    grouped = rewards.view(-1, g)
    if rloo:  # each completion's baseline: the mean of the others in its group
        baseline = (grouped.sum(1, keepdim=True) - grouped) / (g - 1)
        adv = (grouped - baseline).flatten()
    else:
        mean = grouped.mean(dim=1).repeat_interleave(g, dim=0)
        std = grouped.std(dim=1).repeat_interleave(g, dim=0)
        adv = lib.nan_to_num((rewards - mean) / (std + 1e-4), nan=0.0)
    adv = adv.unsqueeze(1)
    kl = lib.exp(ref - logps) - (ref - logps) - 1
    ratio = lib.exp(logps - old)
    clipped = lib.clamp(ratio, 1 - 0.2, 1 + 0.28)
    per_token = -lib.min(ratio * adv, clipped * adv) + 0.04 * kl
    loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    loss.backward()
    with lib.no_grad():
        p = logits.softmax(-1)
        entropy = -(p * logits.log_softmax(-1)).sum(-1)
        clip_frac = ((ratio > 1.28).float() * mask).sum() / mask.sum()
    return _np(loss), _np(logits.grad), _np(entropy), _np(kl), _np(clip_frac)


@pytest.mark.parametrize("rloo", [False, True])
def test_grpo_and_rloo_losses(rloo):
    e, t = (_online_program(lib, rloo) for lib in LIBS.values())
    for a, b in zip(e, t):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def _sampling_program(lib):
    # generate()'s sampling step: softmax of temperature-scaled logits, one multinomial draw
    # per row, squeezed to a token per sequence (the values depend on the generator)
    lib.manual_seed(0)
    probs = (lib.tensor(_rand(15, 3, 13)) / 0.7).softmax(-1)
    tokens = lib.multinomial(probs, num_samples=1).squeeze(1)
    return tokens.shape, tokens.dtype == lib.long, bool(((tokens >= 0) & (tokens < 13)).all())


def test_sampling_step_shapes():
    assert _sampling_program(ember) == _sampling_program(torch)


# ---- flair's tagger: packed LSTM and a CRF forward score --------------------------------
def _tagger_program(lib):
    nn = lib.nn
    n_tags, emb, hid = 4, 5, 6
    lengths = [5, 3, 2]
    embed = nn.Embedding(12, emb)
    lstm = nn.LSTM(emb, hid, batch_first=True, bidirectional=True)
    lin = nn.Linear(2 * hid, n_tags)
    trans = nn.Parameter(lib.tensor(_rand(8, n_tags, n_tags)))
    params = [*embed.parameters(), *lstm.parameters(), *lin.parameters(), trans]
    with lib.no_grad():
        for i, p in enumerate(params[:-1]):
            p.copy_(lib.tensor(0.3 * _rand(10 + i, *p.shape)))
    rng = np.random.default_rng(9)
    ids = lib.tensor(rng.integers(1, 12, (3, 5)))
    tags = lib.tensor(rng.integers(0, n_tags, (3, 5)))
    opt = lib.optim.SGD(params, lr=0.1)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        packed = nn.utils.rnn.pack_padded_sequence(
            embed(ids), lengths, batch_first=True, enforce_sorted=False
        )
        out, _ = lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
        feats = lin(out)  # (batch, time, tags)
        mask = lib.arange(5).unsqueeze(0) < lib.tensor(lengths).unsqueeze(1)
        # the CRF's log partition: alpha_t = logsumexp(alpha_{t-1} + trans) + feats_t
        alpha = feats[:, 0]
        for t in range(1, 5):
            nxt = lib.logsumexp(alpha.unsqueeze(2) + trans.unsqueeze(0), dim=1) + feats[:, t]
            alpha = lib.where(mask[:, t].unsqueeze(1), nxt, alpha)
        log_z = lib.logsumexp(alpha, dim=1)
        emit = (feats.gather(2, tags.unsqueeze(2)).squeeze(2) * mask).sum(1)
        pair = trans[tags[:, :-1], tags[:, 1:]] * mask[:, 1:]
        loss = (log_z - emit - pair.sum(1)).mean()
        loss.backward()
        lib.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        losses.append(loss.item())
    return losses, _np(trans)


def test_flair_tagger_crf_training():
    e, t = (_tagger_program(lib) for lib in LIBS.values())
    np.testing.assert_allclose(e[0], t[0], rtol=1e-5)
    np.testing.assert_allclose(e[1], t[1], rtol=1e-5, atol=1e-6)


# ---- a buffer made by expand with new leading size-1 dims, written later ---------------
def _expand_buffer_program(lib):
    # transformers 5's BERT: register_buffer("position_ids", arange(n).expand((1, -1))), then
    # its weight init copies into that buffer
    m = lib.nn.Module()
    m.register_buffer("position_ids", lib.arange(6).expand((1, -1)), persistent=False)
    m.position_ids.copy_(lib.arange(6).expand((1, -1)) * 2)
    x = lib.zeros(3)
    x.expand(1, 1, 3).add_(1)  # writes through to x
    return _np(m.position_ids), _np(x)


def test_expand_new_leading_dims_is_writable():
    e, t = (_expand_buffer_program(lib) for lib in LIBS.values())
    for a, b in zip(e, t):
        np.testing.assert_array_equal(a, b)
    with pytest.raises((RuntimeError, ValueError)):
        ember.zeros(1, 3).expand(2, 3).add_(1)  # repeated elements: still refused


def test_docs_snippet_runs(capsys):
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "porting_examples.md").read_text()
    section = text.split("## trl and flair", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "porting_examples.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "None tensor([1., 1., 1.])"
