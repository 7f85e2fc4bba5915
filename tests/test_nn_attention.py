"""ember.nn.attention: SDPBackend / sdpa_kernel, causal biases, flex_attention and BlockMask.

Forward results are compared with PyTorch's own flex_attention (eager on CPU); PyTorch has no
flex_attention backward on CPU, so gradients are compared with the same attention written out
in PyTorch ops (explicit bias + mask, softmax, matmul) under torch autograd.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember.nn.attention import SDPBackend, sdpa_kernel
from ember.nn.attention.bias import CausalBias, causal_lower_right, causal_upper_left
from ember.nn.attention.flex_attention import (
    AuxRequest,
    BlockMask,
    and_masks,
    create_block_mask,
    create_mask,
    flex_attention,
    noop_mask,
    or_masks,
)

torch = pytest.importorskip("torch")
tflex = pytest.importorskip("torch.nn.attention.flex_attention")
import torch.nn.attention.bias as tbias  # noqa: E402

warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")


def _arrays(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


# ---- sdpa_kernel ----------------------------------------------------------------------------


def test_sdp_backend_values_match_torch():
    from torch.nn.attention import SDPBackend as TB

    assert {k: int(v) for k, v in SDPBackend.__members__.items()} == {
        k: int(v) for k, v in TB.__members__.items()
    }


def test_sdpa_kernel_restricts_backends_and_restores():
    cuda = ember.backends.cuda
    q = ember.randn(1, 2, 8, 4)
    ref = F.scaled_dot_product_attention(q, q, q)
    for ok in (SDPBackend.MATH, [SDPBackend.FLASH_ATTENTION], [SDPBackend.FLASH_ATTENTION]):
        with sdpa_kernel(ok):
            assert ember.allclose(F.scaled_dot_product_attention(q, q, q), ref)
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]):
        assert not cuda.math_sdp_enabled() and not cuda.flash_sdp_enabled()
        assert cuda.mem_efficient_sdp_enabled() and cuda.cudnn_sdp_enabled()
        with pytest.raises(RuntimeError, match="No viable backend.*EFFICIENT_ATTENTION"):
            F.scaled_dot_product_attention(q, q, q)
        with sdpa_kernel(SDPBackend.MATH):  # nests
            F.scaled_dot_product_attention(q, q, q)
        assert not cuda.math_sdp_enabled()
    assert cuda.math_sdp_enabled() and cuda.flash_sdp_enabled()

    @sdpa_kernel(SDPBackend.MATH)
    def decorated():
        return cuda.flash_sdp_enabled(), cuda.math_sdp_enabled()

    assert decorated() == (False, True)
    with pytest.raises(AssertionError, match="instance of SDPBackend"):
        with sdpa_kernel("math"):
            pass


def test_legacy_switches_share_state_with_sdpa_kernel():
    from ember.nn.attention import _cur_sdpa_kernel_backends

    cuda = ember.backends.cuda
    q = ember.randn(1, 1, 4, 4)
    cuda.enable_math_sdp(False)
    cuda.enable_flash_sdp(False)
    try:
        assert SDPBackend.MATH not in _cur_sdpa_kernel_backends()
        with pytest.raises(RuntimeError, match="No viable backend"):
            F.scaled_dot_product_attention(q, q, q)
        with sdpa_kernel(SDPBackend.MATH):
            F.scaled_dot_product_attention(q, q, q)
        assert not cuda.math_sdp_enabled()  # restored to the legacy setting
    finally:
        cuda.enable_math_sdp(True)
        cuda.enable_flash_sdp(True)
    with pytest.warns(FutureWarning):
        with cuda.sdp_kernel(enable_math=False, enable_flash=False):
            with pytest.raises(RuntimeError, match="No viable backend"):
                F.scaled_dot_product_attention(q, q, q)


@pytest.mark.parametrize("L,S", [(3, 5), (4, 4)])
def test_causal_bias_matches_torch(L, S):
    qa, ka, va = _arrays((1, 2, L, 8), (1, 2, S, 8), (1, 2, S, 8))
    for mine, theirs in (
        (causal_lower_right, tbias.causal_lower_right),
        (causal_upper_left, tbias.causal_upper_left),
    ):
        bias = mine(L, S)
        assert isinstance(bias, CausalBias)
        got = F.scaled_dot_product_attention(*map(ember.tensor, (qa, ka, va)), attn_mask=bias)
        want = torch.nn.functional.scaled_dot_product_attention(
            *map(torch.tensor, (qa, ka, va)), attn_mask=theirs(L, S)
        )
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)
        assert (bias._materialize().numpy() == theirs(L, S)._materialize().numpy()).all()
    with pytest.raises(ValueError, match="causal=True"):
        F.scaled_dot_product_attention(
            ember.tensor(qa),
            ember.tensor(ka),
            ember.tensor(va),
            causal_lower_right(L, S),
            0.0,
            True,
        )


# ---- BlockMask ------------------------------------------------------------------------------


def _causal(b, h, q, kv):
    return q >= kv


def _window(b, h, q, kv):
    return (q >= kv) & (q - kv <= 40)


@pytest.mark.parametrize("mod,L,bs", [(_causal, 300, 128), (_window, 96, 32)])
def test_create_block_mask_matches_torch(mod, L, bs):
    mine = create_block_mask(mod, 2, 1, L, L, BLOCK_SIZE=bs)
    theirs = tflex.create_block_mask(mod, 2, 1, L, L, device="cpu", BLOCK_SIZE=bs)
    for name in (
        "kv_num_blocks",
        "kv_indices",
        "full_kv_num_blocks",
        "full_kv_indices",
        "q_num_blocks",
        "q_indices",
    ):
        np.testing.assert_array_equal(
            getattr(mine, name).numpy(), getattr(theirs, name).numpy(), err_msg=name
        )
    assert mine.shape == theirs.shape and mine.BLOCK_SIZE == theirs.BLOCK_SIZE
    assert mine.sparsity() == pytest.approx(theirs.sparsity())
    np.testing.assert_array_equal(mine.to_dense().numpy(), theirs.to_dense().numpy())
    assert str(mine) == str(theirs)
    again = BlockMask.from_kv_blocks(
        mine.kv_num_blocks, mine.kv_indices, mine.full_kv_num_blocks, mine.full_kv_indices, bs
    )
    np.testing.assert_array_equal(again.to_dense().numpy(), mine.to_dense().numpy())


def test_block_mask_slicing_and_adjust():
    bm = create_block_mask(_causal, 2, 2, 256, 256, BLOCK_SIZE=64)
    assert bm[1].shape == (1, 2, 256, 256)
    assert bm[0, 1].kv_num_blocks.shape == (1, 1, 4)
    with pytest.raises(RuntimeError, match="sliced BlockMask"):
        q = ember.randn(1, 1, 256, 8)
        flex_attention(q, q, q, block_mask=bm[0, 1])
    small = bm._adjust(128, 128)
    assert small.shape == (2, 2, 128, 128)
    assert small.to_dense().shape == (2, 2, 2, 2)


def test_create_mask_and_combinators_match_torch():
    prefix = 5

    def make(lib):
        def pre(b, h, q, kv):
            return kv < prefix

        return or_masks(pre, _causal) if lib is ember else tflex.or_masks(pre, _causal)

    np.testing.assert_array_equal(
        create_mask(make(ember), 1, 1, 12, 12).numpy(),
        tflex.create_mask(make(torch), 1, 1, 12, 12, device="cpu").numpy(),
    )
    both = and_masks(_causal, _window)
    np.testing.assert_array_equal(
        create_mask(both, None, None, 50, 50).numpy(),
        create_mask(_window, None, None, 50, 50).numpy(),
    )
    assert create_mask(noop_mask, 2, 1, 3, 4).numpy().all()

    def softcap(s, b, h, q, kv):  # a score_mod: False where it gives -inf
        return ember.where(q >= kv, s, float("-inf"))

    np.testing.assert_array_equal(
        create_mask(softcap, 1, 1, 6, 6).numpy(), create_mask(_causal, 1, 1, 6, 6).numpy()
    )
    with pytest.raises(RuntimeError, match="callable"):
        and_masks(_causal, 3)


# ---- flex_attention forward vs torch --------------------------------------------------------

B, H, L, D = 2, 4, 160, 16


def _patterns(lib):
    """(mask_mod, score_mod) pairs of the flex-attention tutorial, written for ``lib``."""
    slopes = lib.exp2(-8.0 * (lib.arange(H) + 1) / H)
    doc_id = lib.tensor(np.repeat(np.arange(4), [30, 50, 40, 40]))
    prefix_len = lib.tensor([17, 60])

    def doc_causal(b, h, q, kv):
        return (doc_id[q] == doc_id[kv]) & (q >= kv)

    def prefix_lm(b, h, q, kv):
        return (kv <= prefix_len[b]) | (q >= kv)

    return {
        "causal": (_causal, None),
        "sliding_window": (_window, None),
        "prefix_lm": (prefix_lm, None),
        "document": (doc_causal, None),
        "alibi": (_causal, lambda s, b, h, q, kv: s + slopes[h] * (kv - q)),
        "softcap": (None, lambda s, b, h, q, kv: 20 * lib.tanh(s / 20)),
        "relative": (None, lambda s, b, h, q, kv: s + (q - kv) * 0.01),
        "causal_via_score_mod": (None, lambda s, b, h, q, kv: lib.where(q >= kv, s, -float("inf"))),
    }


def _torch_broadcast_reference(qa, ka, va, mask_mod, score_mod):
    """The same attention as plain PyTorch ops: mods evaluated on broadcast index tensors."""
    q, k, v = (torch.tensor(a) for a in (qa, ka, va))
    Bq, Hq, Lq, E = q.shape
    idx = [torch.arange(n).view(*[-1 if i == d else 1 for i in range(4)]) for d, n in
           enumerate((Bq, Hq, Lq, k.shape[-2]))]  # fmt: skip
    s = q @ k.transpose(-2, -1) / E**0.5
    if score_mod is not None:
        s = score_mod(s, *idx)
    if mask_mod is not None:
        s = s.masked_fill(~mask_mod(*idx), float("-inf"))
    lse = torch.logsumexp(s, -1)
    return torch.softmax(s, -1) @ v, lse


# the flex-attention tutorial's patterns; PyTorch's own (slow, eager) flex_attention is the
# reference for three of them, plain PyTorch math for the rest
@pytest.mark.parametrize(
    "name,against_flex",
    [
        ("causal", False),
        ("sliding_window", False),
        ("prefix_lm", False),
        ("document", True),
        ("alibi", True),
        ("softcap", True),
        ("relative", False),
        ("causal_via_score_mod", False),
    ],
)
def test_flex_forward_matches_torch(name, against_flex):
    qa, ka, va = _arrays((B, H, L, D), (B, H, L, D), (B, H, L, D))
    mask_mod, score_mod = _patterns(ember)[name]
    bm = None if mask_mod is None else create_block_mask(mask_mod, B, None, L, L, BLOCK_SIZE=64)
    q, k, v = (ember.tensor(a) for a in (qa, ka, va))
    o1, lse1 = flex_attention(q, k, v, score_mod=score_mod, block_mask=bm, return_lse=True)
    mask_mod, score_mod = _patterns(torch)[name]
    if against_flex:
        bm = None
        if mask_mod is not None:
            bm = tflex.create_block_mask(mask_mod, B, None, L, L, device="cpu", BLOCK_SIZE=64)
        o2, lse2 = tflex.flex_attention(
            *map(torch.tensor, (qa, ka, va)), score_mod=score_mod, block_mask=bm, return_lse=True
        )
    else:
        o2, lse2 = _torch_broadcast_reference(qa, ka, va, mask_mod, score_mod)
    np.testing.assert_allclose(o1.numpy(), o2.numpy(), atol=2e-5)
    np.testing.assert_allclose(lse1.numpy(), lse2.numpy(), atol=2e-4)


def test_flex_gqa_and_aux_match_torch():
    qa, ka, va = _arrays((1, 8, 64, 16), (1, 2, 64, 16), (1, 2, 64, 8))
    args = dict(score_mod=lambda s, b, h, q, kv: s * (1 + 0.1 * h), enable_gqa=True)
    o1, aux = flex_attention(
        *map(ember.tensor, (qa, ka, va)), return_aux=AuxRequest(lse=True), **args
    )
    o2, lse2 = tflex.flex_attention(*map(torch.tensor, (qa, ka, va)), return_lse=True, **args)
    np.testing.assert_allclose(o1.numpy(), o2.numpy(), atol=2e-5)
    np.testing.assert_allclose(aux.lse.numpy(), lse2.numpy(), atol=1e-4)
    assert aux.max_scores is None
    with pytest.raises(ValueError, match="enable_gqa=True"):
        flex_attention(*map(ember.tensor, (qa, ka, va)))


def test_fully_masked_rows_give_zeros_and_finite_grads():
    qa, ka, va = _arrays((1, 2, 64, 8), (1, 2, 64, 8), (1, 2, 64, 8))

    def mod(b, h, q, kv):
        return (q >= kv) & (q < 40)

    bm = create_block_mask(mod, 1, 1, 64, 64, BLOCK_SIZE=16)
    q = ember.tensor(qa, requires_grad=True)
    out, lse = flex_attention(q, ember.tensor(ka), ember.tensor(va), block_mask=bm, return_lse=True)
    want, want_lse = tflex.flex_attention(
        *map(torch.tensor, (qa, ka, va)),
        block_mask=tflex.create_block_mask(mod, 1, 1, 64, 64, device="cpu", BLOCK_SIZE=16),
        return_lse=True,
    )
    got, got_lse = out.detach().numpy(), lse.detach().numpy()
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
    assert (got[:, :, 40:] == 0).all() and np.isneginf(got_lse[:, :, 40:]).all()
    np.testing.assert_allclose(got_lse, want_lse.numpy(), atol=1e-4)
    out.sum().backward()
    assert np.isfinite(q.grad.numpy()).all()
    # without lse the fused per-band op runs: same output and gradient
    grad = q.grad.numpy().copy()
    q.grad = None
    fused = flex_attention(q, ember.tensor(ka), ember.tensor(va), block_mask=bm)
    fused.sum().backward()
    np.testing.assert_allclose(fused.detach().numpy(), got, atol=1e-5)
    np.testing.assert_allclose(q.grad.numpy(), grad, atol=1e-5)


# ---- gradients ------------------------------------------------------------------------------


def _torch_reference(q, k, v, bias, allowed):
    s = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5 + bias
    s = s.masked_fill(~allowed, float("-inf"))
    return torch.softmax(s, -1) @ v


def test_flex_gradients_and_learned_bias_match_torch_math():
    n = 96
    qa, ka, va = _arrays((2, 2, n, 8), (2, 2, n, 8), (2, 2, n, 8))
    (ba,) = _arrays((2, n, n), seed=1)
    doc = np.repeat(np.arange(3), [20, 40, 36])

    def grads(lib, flexible):
        q, k, v = (lib.tensor(a, requires_grad=True) for a in (qa, ka, va))
        bias = lib.tensor(ba, requires_grad=True)
        doc_id = lib.tensor(doc)
        if flexible:

            def score_mod(s, b, h, qi, kvi):
                return s + bias[h, qi, kvi]

            def mask_mod(b, h, qi, kvi):
                return (doc_id[qi] == doc_id[kvi]) & (qi >= kvi)

            bm = create_block_mask(mask_mod, None, None, n, n, BLOCK_SIZE=32)
            out = flex_attention(q, k, v, score_mod=score_mod, block_mask=bm)
        else:
            allowed = (doc_id[:, None] == doc_id[None, :]) & torch.ones(n, n).tril().bool()
            out = _torch_reference(q, k, v, bias[None], allowed)
        (out * lib.tensor(va)).sum().backward()
        return [t.grad.numpy() for t in (q, k, v, bias)] + [out.detach().numpy()]

    for got, want in zip(grads(ember, True), grads(torch, False)):
        np.testing.assert_allclose(got, want, atol=5e-5)


@pytest.mark.parametrize("per_element", [False, True])
def test_flex_training_node_recomputes_bands_with_captured_grads(per_element):
    # one autograd node over the bands (backward recomputes the scores); a non-leaf captured
    # bias (p * 2), a captured leaf r, GQA and a causal block mask of two bands of queries
    n, h = (64, 2) if per_element else (256, 4)
    qa, ka, va, ra = _arrays((1, h, n, 8), (1, h // 2, n, 8), (1, h // 2, n, 8), (1, h, n, 4))
    (pa,) = _arrays((h, n, n), seed=1)

    def run(lib):
        q, k, v, p, r = (lib.tensor(a, requires_grad=True) for a in (qa, ka, va, pa, ra))
        bias = p * 2
        if lib is ember:

            def score_mod(s, b, hh, qi, kvi):
                if per_element:  # dot() of gathered rows: the vmap fallback
                    return s + 0.5 * ember.dot(r[b, hh, qi], r[b, hh, kvi])
                return s + bias[hh, qi, kvi] + 0.5 * (r[b, hh, qi] * r[b, hh, kvi]).sum(-1)

            bm = create_block_mask(
                lambda b, hh, qi, kvi: qi >= kvi, None, None, n, n, BLOCK_SIZE=64
            )
            out = flex_attention(q, k, v, score_mod=score_mod, block_mask=bm, enable_gqa=True)
            assert type(out.grad_fn).__name__ == "FlexAttentionFn"
        else:
            extra = 0.5 * r @ r.transpose(-1, -2) + (0 if per_element else bias[None])
            kk, vv = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
            out = _torch_reference(q, kk, vv, extra, torch.ones(n, n).tril().bool())
        (out * lib.tensor(np.cos(np.arange(out.numel())).reshape(out.shape))).sum().backward()
        grads = [t.grad for t in (q, k, v, r) + (() if per_element else (p,))]
        return [out.detach().numpy()] + [g.numpy() for g in grads]

    for got, want in zip(run(ember), run(torch)):
        np.testing.assert_allclose(got, want, atol=2e-5)


def test_flex_training_memory_grows_with_bands_not_scores():
    # L=2048, one head: the score matrix is 16 MiB; autograd over the bands kept ~64 MiB live
    # (measured), the recomputing node ~21 MiB (one band of scores at a time)
    import tracemalloc

    (qa,) = _arrays((1, 1, 2048, 16))
    q = ember.tensor(qa, requires_grad=True)
    tracemalloc.start()
    try:
        flex_attention(q, q, q).sum().backward()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MiB"


def test_score_mod_needing_per_element_semantics_falls_back_to_vmap():
    # dot() of gathered rows only works element by element (PyTorch vmaps score_mod)
    qa, ra = _arrays((1, 2, 32, 8), (1, 2, 32, 4))

    def run(lib):
        q, r = lib.tensor(qa), lib.tensor(ra, requires_grad=True)

        def score_mod(s, b, h, qi, kvi):
            return s + 0.5 * lib.dot(r[b, h, qi], r[b, h, kvi])

        if lib is ember:
            out = flex_attention(q, q, q, score_mod=score_mod)
        else:
            out = _torch_reference(q, q, q, 0.5 * r @ r.transpose(-1, -2), torch.tensor(True))
        out.sum().backward()
        return out.detach().numpy(), r.grad.numpy()

    for got, want in zip(run(ember), run(torch)):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_block_mask_skips_empty_blocks():
    # a sliding window: each band of queries computes only the keys its blocks reach
    widths = []

    def score_mod(s, b, h, q, kv):
        widths.append(kv.shape[-1])
        return s

    def local(b, h, q, kv):
        return (q - kv).abs() < 16

    q = ember.randn(1, 1, 1024, 8)
    bm = create_block_mask(local, None, None, 1024, 1024, BLOCK_SIZE=128)
    out = flex_attention(q, q, q, score_mod=score_mod, block_mask=bm)
    assert max(widths) <= 3 * 128 and len(widths) == 8
    want = F.scaled_dot_product_attention(q, q, q, attn_mask=create_mask(local, 1, 1, 1024, 1024))
    np.testing.assert_allclose(out.numpy(), want.numpy(), atol=1e-5)


def test_flex_attention_is_one_call_of_a_fullgraph_compiled_model():
    class Block(ember.nn.Module):
        def __init__(self, dynamic_bias=False):
            super().__init__()
            self.proj = ember.nn.Linear(16, 16)
            self.slope = ember.nn.Parameter(ember.tensor([0.3, -0.2]))
            self.bm = create_block_mask(_causal, None, None, 8, 8, BLOCK_SIZE=4)
            self.dynamic_bias = dynamic_bias

        def forward(self, x):
            q = self.proj(x).view(1, 8, 2, 8).transpose(1, 2)
            extra = q.mean() if self.dynamic_bias else 0.0  # a traced value in the closure

            def score_mod(s, b, h, qi, kvi):
                return s + self.slope[h] * (qi - kvi) + extra

            return flex_attention(q, q, q, score_mod=score_mod, block_mask=self.bm)

    x = ember.randn(1, 8, 16)
    for dynamic_bias in (False, True):
        ember.manual_seed(0)
        m = Block(dynamic_bias)
        want = m(x)
        want.sum().backward()
        grads = [p.grad.clone() for p in m.parameters()]
        m.zero_grad()
        # score_mod/BlockMask are constants of the graph; a closure over a traced value
        # breaks the graph instead (fullgraph=True names it)
        got = ember.compile(m, fullgraph=not dynamic_bias)(x)
        got.sum().backward()
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), atol=1e-6)
        for g, p in zip(grads, m.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), g.numpy(), atol=1e-6)
    with pytest.raises(Exception, match="closes over a traced value"):
        ember.compile(Block(True), fullgraph=True)(x)


def test_compile_returns_flex_itself_and_errors_are_clear():
    assert ember.compile(flex_attention) is flex_attention
    q = ember.randn(1, 2, 64, 8)
    bm = create_block_mask(_causal, 1, 1, 128, 128)
    with pytest.raises(ValueError, match="block_mask was created for"):
        flex_attention(q, q, q, block_mask=bm)
    with pytest.raises(NotImplementedError, match="4D"):
        flex_attention(q[0], q[0], q[0])
    with pytest.raises(ValueError, match="return_lse and return_aux"):
        flex_attention(q, q, q, return_lse=True, return_aux=AuxRequest(lse=True))
