"""Idioms from third-party programs (session 25, batch 3: segment-anything, litgpt, rwkv,
labml-nn), in programs of our own.

Each program is written once against a module ``mod`` (ember or torch) and run on both with
the same seeds and NumPy data; the results are compared.
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _np(t):
    return t.detach().numpy()


# --- litgpt: import paths, LoRA's zero padding by index_copy_ with keyword arguments ---------


def test_import_paths_litgpt_and_lightning_need():
    # litgpt imports these at import time (utils, generate/base); Lightning's fabric DDP the last
    importlib.import_module("ember.utils._device")
    importlib.import_module("ember._dynamo.config")
    importlib.import_module("ember._inductor.config")
    from ember.nn.parallel.distributed import DistributedDataParallel  # noqa: F401
    from ember.serialization import location_tag, normalize_storage_type

    st = ember.ones(2).untyped_storage()
    assert normalize_storage_type(type(st)) is ember.UntypedStorage
    assert location_tag(st) == "cpu"


def test_device_context_sets_and_restores_default_device():
    from ember.utils import _device

    with _device.DeviceContext("meta"):
        assert ember.zeros(2).device.type == "meta"
        assert str(_device.CURRENT_DEVICE) == "meta"
    assert ember.zeros(2).device.type == "cpu" and _device.CURRENT_DEVICE is None
    assert _device.set_device("meta")(lambda: ember.ones(1))().device.type == "meta"


def _lora_qkv_program(mod, x_np, a_np, b_np):
    # LoRA on fused QKV with keys left out: the update (for q and v only) is scattered into
    # zeros of the full width by ``index_copy_(dim=-1, index=..., source=...)``, all keywords
    a = mod.from_numpy(a_np).requires_grad_()
    b = mod.from_numpy(b_np).requires_grad_()
    x = mod.from_numpy(x_np)
    upd = (x @ a.T) @ b.T  # (batch, seq, 8): q and v columns
    ind = mod.tensor([0, 1, 2, 3, 8, 9, 10, 11])
    full = upd.new_zeros(*upd.shape[:-1], 12).index_copy_(dim=-1, index=ind, source=upd)
    loss = (full * mod.arange(12.0)).square().mean()
    loss.backward()
    return _np(loss), _np(a.grad), _np(b.grad), full.requires_grad


def test_index_copy_keyword_source_is_differentiated():
    rng = np.random.default_rng(0)
    x, a, b = (rng.standard_normal(s).astype(np.float32) for s in [(2, 3, 5), (2, 5), (8, 2)])
    got = _lora_qkv_program(ember, x, a, b)
    want = _lora_qkv_program(torch, x, a, b)
    assert got[3] is True and want[3] is True
    for g, w in zip(got[:3], want[:3]):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


# --- litgpt: KV cache written at input_pos, grouped-query attention, top-p sampling ----------


def _kv_cache_program(mod, x_np, w_np, steps_np):
    # one attention layer (4 query heads over 2 key/value groups, rotary positions); the
    # cached token-by-token pass must equal the full causal pass
    F = mod.nn.functional
    x, w = mod.from_numpy(x_np), mod.from_numpy(w_np)
    n_head, n_group, hs, T = 4, 2, 4, x.shape[1]
    inv = 1.0 / (10000 ** (mod.arange(0, hs, 2).float() / hs))
    ang = mod.outer(mod.arange(T).float(), inv).repeat(1, 2)
    cos, sin = ang.cos(), ang.sin()

    def rope(t, pos):
        c, s = cos[pos], sin[pos]
        half = t.shape[-1] // 2
        rot = mod.cat((-t[..., half:], t[..., :half]), dim=-1)
        return t * c + rot * s

    def split(y):
        q, k, v = y.split((n_head * hs, n_group * hs, n_group * hs), dim=-1)
        b, t = y.shape[:2]
        q = q.view(b, t, n_head, hs).transpose(1, 2)
        k = k.view(b, t, n_group, hs).transpose(1, 2)
        v = v.view(b, t, n_group, hs).transpose(1, 2)
        return q, k, v

    def expand(t):  # GQA: each key/value group serves two query heads
        b, g, s, d = t.shape
        return t[:, :, None].expand(b, g, n_head // g, s, d).reshape(b, n_head, s, d)

    q, k, v = split(x @ w)
    pos = mod.arange(T)
    full = F.scaled_dot_product_attention(
        rope(q, pos), expand(rope(k, pos)), expand(v), is_causal=True
    )
    k_cache = mod.zeros(1, n_group, T, hs)
    v_cache = mod.zeros(1, n_group, T, hs)
    mask = mod.ones(T, T, dtype=mod.bool).tril()
    outs = []
    for i in range(T):
        ip = mod.tensor([i])
        q1, k1, v1 = split(x[:, i : i + 1] @ w)
        k_cache = k_cache.index_copy_(2, ip, rope(k1, ip))
        v_cache = v_cache.index_copy_(2, ip, v1)
        m = mask[ip][None, :, : i + 1]
        outs.append(
            F.scaled_dot_product_attention(
                rope(q1, ip),
                expand(k_cache[:, :, : i + 1]),
                expand(v_cache[:, :, : i + 1]),
                attn_mask=m,
            )
        )
    cached = mod.cat(outs, dim=2)
    # top-k then top-p sampling from the last position's scores (litgpt's order)
    logits = (full[0, :, -1].reshape(-1) * 3.0).float()
    vals, idx = mod.topk(logits, 6)
    logits = mod.full_like(logits, float("-inf")).scatter_(-1, idx, vals) / 0.8
    s_logits, s_idx = mod.sort(logits, descending=False)
    remove = s_logits.softmax(-1).cumsum(-1) <= (1 - 0.9)
    remove[-1:] = 0
    logits = logits.masked_fill(remove.scatter(0, s_idx, remove), float("-inf"))
    mod.manual_seed(int(steps_np))
    draws = [int(mod.multinomial(logits.softmax(-1), 1)) for _ in range(5)]
    return _np(full), _np(cached), draws


def test_kv_cache_gqa_rope_and_top_p_sampling():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 7, 16)).astype(np.float32)
    w = (0.3 * rng.standard_normal((16, 32))).astype(np.float32)
    full, cached, draws = _kv_cache_program(ember, x, w, 3)
    t_full, t_cached, t_draws = _kv_cache_program(torch, x, w, 3)
    np.testing.assert_allclose(cached, full, atol=2e-6)
    np.testing.assert_allclose(full, t_full, atol=2e-6)
    np.testing.assert_allclose(cached, t_cached, atol=2e-6)
    assert draws == t_draws


# --- labml-nn DDPM U-Net: an attention block's output as a channels-last view ----------------


def _cl_program(mod, x_np, w_np):
    # the attention block lays its (b, h*w, c) result back out as (b, c, h, w): a channels-last
    # view, which group norm, a 3x3 conv and the skip-connection cat then read
    x = mod.from_numpy(x_np).requires_grad_()
    y = x.permute(0, 2, 1).view(2, 8, 4, 4)
    g = mod.nn.functional.group_norm(y, 4, mod.from_numpy(w_np), None)
    c = mod.cat((mod.nn.functional.silu(g), y * 2), dim=1)
    k = mod.ones(3, 16, 3, 3) / 16.0
    out = mod.nn.functional.conv2d(c, k, padding=1)
    (out * mod.arange(float(out.numel())).view(out.shape)).sum().backward()
    return _np(out), _np(x.grad), g.is_contiguous(), c.is_contiguous()


def test_unet_channels_last_view_through_norm_cat_conv():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 16, 8)).astype(np.float32)
    w = (1 + 0.1 * rng.standard_normal(8)).astype(np.float32)
    got, want = _cl_program(ember, x, w), _cl_program(torch, x, w)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=1e-4)
    # ember's group norm and cat return row-major results (torch: channels-last), as
    # docs/architecture.md records; a dropout after them draws its mask in another order
    assert got[2:] == (True, True) and want[2:] == (False, False)


# --- segment-anything: windowed attention with decomposed relative positions ---------------


def _sam_attention_program(mod, x_np, qkv_np, rel_np):
    F = mod.nn.functional
    x = mod.from_numpy(x_np).requires_grad_()  # (B, H, W, C), channels last as SAM's ViT
    qkv_w = mod.from_numpy(qkv_np)
    rel_h = mod.from_numpy(rel_np).requires_grad_()  # a shorter table than 2 * win - 1
    B, H, W, C = x.shape
    win, heads = 3, 2
    pad_h, pad_w = (win - H % win) % win, (win - W % win) % win
    xp = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    wins = (
        xp.view(B, Hp // win, win, Wp // win, win, C)
        .permute(0, 1, 3, 2, 4, 5)
        .contiguous()
        .view(-1, win, win, C)
    )

    def rel_pos(size, table):
        n = 2 * size - 1
        # the table is resized to 2 * size - 1 entries by linear interpolation
        t = F.interpolate(table.reshape(1, table.shape[0], -1).permute(0, 2, 1), size=n)
        t = t.reshape(-1, n).permute(1, 0)
        coords = mod.arange(size)[:, None] - mod.arange(size)[None, :] + (size - 1)
        return t[coords.long()]

    n = wins.shape[0]
    qkv = (wins.reshape(n, win * win, C) @ qkv_w).reshape(n, win * win, 3, heads, -1)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).reshape(3, n * heads, win * win, -1).unbind(0)
    attn = (q * (q.shape[-1] ** -0.5)) @ k.transpose(-2, -1)
    Rh = rel_pos(win, rel_h)
    r_q = q.reshape(n * heads, win, win, -1)
    bias_h = mod.einsum("bhwc,hkc->bhwk", r_q, Rh)
    bias_w = mod.einsum("bhwc,wkc->bhwk", r_q, Rh)
    attn = (
        attn.view(n * heads, win, win, win, win) + bias_h[..., None] + bias_w[:, :, :, None, :]
    ).view(n * heads, win * win, win * win)
    out = (attn.softmax(-1) @ v).view(n, heads, win, win, -1).permute(0, 2, 3, 1, 4)
    out = out.reshape(B, Hp // win, Wp // win, win, win, -1).permute(0, 1, 3, 2, 4, 5)
    out = out.reshape(B, Hp, Wp, -1)[:, :H, :W].contiguous()
    # mask post-processing: upsample to the padded input size, crop, resize to the original
    m = F.interpolate(out.permute(0, 3, 1, 2), (16, 16), mode="bilinear", align_corners=False)
    m = F.interpolate(m[..., :14, :16], (20, 23), mode="bilinear", align_corners=False)
    (m.square().mean() + out.sum()).backward()
    return _np(m), _np(x.grad), _np(rel_h.grad)


def test_sam_window_attention_with_rel_pos_and_mask_resize():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 5, 7, 8)).astype(np.float32)
    qkv = (0.3 * rng.standard_normal((8, 24))).astype(np.float32)
    rel = (0.2 * rng.standard_normal((3, 4))).astype(np.float32)
    got = _sam_attention_program(ember, x, qkv, rel)
    want = _sam_attention_program(torch, x, qkv, rel)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5)


# --- rwkv: a script-method recurrence carrying its state --------------------------------------


def _rwkv_program(mod, x_np, decay_np, first_np):
    class Cell(mod.jit.ScriptModule):
        def __init__(self):
            super().__init__()
            self.decay = mod.from_numpy(decay_np)
            self.first = mod.from_numpy(first_np)

        @mod.jit.script_method
        def step(self, k, v, aa, bb, pp):
            # RWKV-4's numerically safe WKV with a running maximum pp
            ww = self.first + k
            p = mod.maximum(pp, ww)
            e1, e2 = mod.exp(pp - p), mod.exp(ww - p)
            wkv = (e1 * aa + e2 * v) / (e1 * bb + e2)
            ww = pp + self.decay
            p = mod.maximum(ww, k)
            e1, e2 = mod.exp(ww - p), mod.exp(k - p)
            return wkv, e1 * aa + e2 * v, e1 * bb + e2, p

    cell = Cell()
    x = mod.from_numpy(x_np)
    c = x.shape[1]
    aa, bb, pp = mod.zeros(c), mod.zeros(c), mod.full((c,), -1e38)
    outs = []
    for t in range(x.shape[0]):
        wkv, aa, bb, pp = cell.step(x[t] * 3.0, x[t], aa, bb, pp)
        outs.append(wkv)
    return _np(mod.stack(outs)), _np(pp)


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_rwkv_script_method_recurrence():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((9, 6)).astype(np.float32)
    decay = -np.exp(rng.standard_normal(6)).astype(np.float32)
    first = rng.standard_normal(6).astype(np.float32)
    got, want = _rwkv_program(ember, x, decay, first), _rwkv_program(torch, x, decay, first)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


# --- labml-nn: switch routing with a capacity, WGAN-GP double backward ---------------------


def _switch_program(mod, x_np, wr_np, we_np):
    x = mod.from_numpy(x_np).requires_grad_()
    wr = mod.from_numpy(wr_np).requires_grad_()
    we = mod.from_numpy(we_np).requires_grad_()
    n_exp, capacity = we.shape[0], 3
    prob = mod.softmax(x @ wr, dim=-1)
    p_max, routes = mod.max(prob, dim=-1)
    idx = [mod.eq(routes, i).nonzero(as_tuple=True)[0] for i in range(n_exp)]
    final = x.new_zeros(x.shape)
    counts = x.new_tensor([len(i) for i in idx])
    dropped = []
    for i in range(n_exp):
        if len(idx[i]) > capacity:  # over capacity: a random subset passes unchanged
            perm = idx[i][mod.randperm(len(idx[i]))]
            dropped.append(perm[capacity:])
            idx[i] = perm[:capacity]
    outs = [mod.tanh(x[idx[i]] @ we[i]) for i in range(n_exp)]
    for i in range(n_exp):
        final[idx[i], :] = outs[i]
    if dropped:
        d = mod.cat(dropped)
        final[d, :] = x[d, :]
    final = final * p_max.view(-1, 1)
    balance = n_exp * ((counts / counts.sum()) * prob.sum(0) / counts.sum()).sum()
    loss = final.square().mean() + 0.01 * balance
    loss.backward()
    return _np(loss), _np(x.grad), _np(wr.grad), _np(we.grad)


def test_switch_routing_with_capacity_and_dropped_tokens():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((12, 4)).astype(np.float32)
    wr = rng.standard_normal((4, 3)).astype(np.float32)
    we = (0.5 * rng.standard_normal((3, 4, 4))).astype(np.float32)
    ember.manual_seed(0)
    got = _switch_program(ember, x, wr, we)
    torch.manual_seed(0)
    want = _switch_program(torch, x, wr, we)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def _gp_program(mod, x_np, w_np):
    x = mod.from_numpy(x_np).requires_grad_()
    w = mod.from_numpy(w_np).requires_grad_()
    # weight-standardised conv (labml-nn's Conv2d), then a critic value per sample
    ws = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / mod.sqrt(
        w.var(dim=(1, 2, 3), keepdim=True, unbiased=False) + 1e-5
    )
    f = mod.nn.functional.conv2d(x, ws, padding=1).tanh().flatten(1).sum(1)
    (g,) = mod.autograd.grad(f, x, grad_outputs=f.new_ones(f.shape), create_graph=True)
    gp = ((g.reshape(x.shape[0], -1).norm(2, dim=-1) - 1) ** 2).mean()
    (f.mean() + 10 * gp).backward()
    return _np(gp), _np(w.grad), _np(x.grad)


def test_wgan_gradient_penalty_through_standardised_conv():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    got, want = _gp_program(ember, x, w), _gp_program(torch, x, w)
    for g, w_ in zip(got, want):  # (x's gradient: float32 cancellation, to its largest value)
        np.testing.assert_allclose(g, w_, rtol=2e-4, atol=2e-6 * np.abs(w_).max() + 1e-6)


def test_capsule_squash_and_margin_loss():
    rng = np.random.default_rng(7)
    s_np = rng.standard_normal((4, 3, 5)).astype(np.float32)

    def program(mod):
        s = mod.from_numpy(s_np).requires_grad_()
        sq = (s**2).sum(dim=-1, keepdim=True)
        v = (sq / (1 + sq)) * (s / mod.sqrt(sq + 1e-8))
        lengths = v.norm(dim=-1)
        labels = mod.eye(3)[mod.tensor([0, 2, 1, 2])]
        loss = (
            labels * mod.relu(0.9 - lengths) ** 2
            + 0.5 * (1 - labels) * mod.relu(lengths - 0.1) ** 2
        )
        loss.sum(-1).mean().backward()
        return _np(v), _np(s.grad)

    for g, w in zip(program(ember), program(torch)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    assert math.isfinite(float(np.abs(program(ember)[1]).sum()))
