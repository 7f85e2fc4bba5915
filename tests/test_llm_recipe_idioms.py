"""The PyTorch idioms of LLM fine-tuning stacks (torchtune 0.6 with torchao 0.11) in small
programs of our own, checked against PyTorch (the libraries are not imported).

torchao's import reaches torch internals (``torch._dynamo.utils.warn_once``, the Triton
block-sparse module names, ``torch._prims_common``, ``torch._higher_order_ops.out_dtype``,
``torch._library.infer_schema``, ``torch._inductor.decomposition``, ``torch._C.Tag``,
``torch._ops.OpOverload``, the sub-byte dtypes ``torch.uint1`` ... ``int7``, custom ops whose
schemas hold ``Optional[Union[int, float, bool]]`` and dtype defaults, and dispatch tables keyed
by ``aten.new_zeros`` and ``_c10d_functional.wait_tensor``); torchtune's by
``FakeTensorMode`` / ``FakeTensorConverter``, ``torch._C._profiler._ExperimentalConfig`` and
``DTensorSpec`` / ``TensorMeta``. The programs are a Llama-style decoder as torchtune builds it
(interleaved-pair RoPE, RMSNorm in float32, grouped-query attention, a KV cache written at
``input_pos``), LoRA adapters on frozen weights, the chunked cross-entropy of its recipes, and
the cosine-with-warmup schedule.
"""

from __future__ import annotations

import math
import typing

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
LIBS = [torch, ember]


def _np(t):
    return t.detach().double().numpy()


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(_np(a), _np(b), rtol=tol, atol=tol)


# ---- the import surface ---------------------------------------------------------------------


def test_torchao_import_names():
    from ember._C import Tag
    from ember._dynamo.utils import warn_once
    from ember.sparse import _triton_ops, _triton_ops_meta
    from ember.utils._triton import has_triton

    assert not has_triton()
    assert _triton_ops_meta.get_meta("bsr_dense_addmm", (1, 2)) is None
    with pytest.raises(RuntimeError, match="Triton"):
        _triton_ops.launch_kernel()
    with pytest.warns(UserWarning, match="once only"):
        warn_once("once only")
    assert [t.name for t in Tag] == sorted(
        n for n in dir(torch._C.Tag) if not n.startswith("_") and n not in ("name", "value")
    )
    for b in range(1, 8):  # the sub-byte dtypes are named (torchao indexes tables by them)
        for kind in ("uint", "int"):
            e, t = getattr(ember, f"{kind}{b}"), getattr(torch, f"{kind}{b}")
            assert e.is_signed == t.is_signed and repr(e).split(".")[1] == str(t).split(".")[1]


def test_prims_common_strides_and_memory_format():
    from torch._prims_common import make_contiguous_strides_for as t_strides
    from torch._prims_common import suggest_memory_format as t_fmt

    from ember._prims_common import infer_size, make_contiguous_strides_for, suggest_memory_format

    for shape in [(2, 3, 4), (2, 0, 4), (), (5,), (1, 3, 1, 1)]:
        for row_major in (True, False):
            assert make_contiguous_strides_for(shape, row_major) == t_strides(shape, row_major)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    cases = [lambda m, a: m.tensor(a), lambda m, a: m.tensor(a).permute(0, 2, 3, 1).contiguous()]
    cases.append(lambda m, a: m.tensor(a).permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2))
    cases.append(lambda m, a: m.tensor(a[:1, :, :1, :1]))
    for make in cases:
        assert (
            str(suggest_memory_format(make(ember, x))).split(".")[1]
            == str(t_fmt(make(torch, x))).split(".")[1]
        )
    assert infer_size((2, -1), 8) == (2, 4)


def test_out_dtype_int8_matmul():
    from torch._higher_order_ops.out_dtype import out_dtype as t_out

    from ember._higher_order_ops.out_dtype import out_dtype

    rng = np.random.default_rng(1)
    a = rng.integers(-128, 128, (5, 7)).astype(np.int8)
    b = rng.integers(-128, 128, (7, 3)).astype(np.int8)
    e = out_dtype(ember.ops.aten.mm.default, ember.int32, ember.tensor(a), ember.tensor(b))
    t = t_out(torch.ops.aten.mm.default, torch.int32, torch.tensor(a), torch.tensor(b))
    assert e.dtype == ember.int32
    np.testing.assert_array_equal(e.numpy(), t.numpy())


def test_custom_op_schema_inference_and_registration():
    from torch._library.infer_schema import infer_schema as t_infer

    from ember._inductor.decomposition import register_decomposition, select_decomp_table
    from ember._library.infer_schema import infer_schema

    def make(lib):
        def _h6_affine(x, scale, quant_min=None, out_dtype=lib.float32):
            y = x * scale
            return (y if quant_min is None else y.clamp(min=quant_min)).to(out_dtype)

        # real objects (this file's annotations are strings under ``from __future__``)
        _h6_affine.__annotations__ = {
            "x": lib.Tensor,
            "scale": float,
            # torchao's spelling, kept on purpose
            "quant_min": typing.Optional[typing.Union[int, float, bool]],  # noqa: UP007, UP045
            "out_dtype": lib.dtype,
            "return": lib.Tensor,
        }
        return _h6_affine

    schema = infer_schema(make(ember), mutates_args={})
    assert schema == t_infer(make(torch), mutates_args={})
    lib = ember.library.Library("h6_llm", "FRAGMENT")
    lib.define("affine" + schema)
    lib.impl("affine", make(ember), "CompositeImplicitAutograd")
    op = ember.ops.h6_llm.affine
    register_decomposition([op])(make(ember))
    assert op in select_decomp_table()
    out = op(ember.tensor([-1.0, 2.0]), 2.0, 0)  # out_dtype's default parsed as float32
    assert out.dtype == ember.float32 and out.tolist() == [0.0, 4.0]
    assert isinstance(op.default, ember._ops.OpOverload)
    assert isinstance(ember.ops.aten.mm, ember._ops.OpOverloadPacket)
    assert not isinstance(ember.ops.aten.mm, ember._ops.OpOverload)


def test_dispatch_table_keys():
    # torchao's tensor subclasses key their tables by these at import
    table = {
        ember.ops.aten.new_zeros.default: 1,
        ember.ops._c10d_functional.wait_tensor.default: 2,
        ember.ops.c10d_functional.all_gather_into_tensor.default: 3,
    }
    assert table[ember.ops._c10d_functional.wait_tensor.default] == 2
    x = ember.ones(2, dtype=ember.float64)
    z = ember.ops.aten.new_zeros(x, [3])
    assert z.dtype == ember.float64 and z.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(NotImplementedError, match="collectives"):
        ember.ops._c10d_functional.wait_tensor(x)


def test_torchtune_import_names():
    from ember._C._profiler import _ExperimentalConfig
    from ember._subclasses.fake_tensor import FakeTensorConverter, FakeTensorMode
    from ember._utils import ExceptionWrapper
    from ember.distributed._tensor.placement_types import DTensorSpec, TensorMeta

    assert _ExperimentalConfig(verbose=True).verbose
    w = ember.randn(3, 4, requires_grad=True)
    with FakeTensorMode() as mode:
        fake = FakeTensorConverter().from_real_tensor(mode, w)
    assert fake.device.type == "meta" and fake.shape == w.shape and fake.requires_grad
    try:
        raise KeyError("k")
    except KeyError:
        wrapped = ExceptionWrapper(where="in a worker")
    with pytest.raises(KeyError):
        wrapped.reraise()
    spec = DTensorSpec(mesh=None, placements=[], tensor_meta=TensorMeta((4, 2), (2, 1), None))
    assert spec.shape == (4, 2) and spec.placements == ()


# ---- a torchtune-style decoder --------------------------------------------------------------

V, D, H, KV, HD, L, FF, RANK, ALPHA = 48, 32, 4, 2, 8, 2, 48, 4, 8.0


def _weights(seed=0):
    rs = np.random.RandomState(seed)

    def w(*s):
        return (rs.randn(*s) * 0.2).astype(np.float32)

    p = {"tok": w(V, D), "norm": 1 + w(D), "out": w(V, D)}
    for i in range(L):
        p.update(
            {
                f"{i}.q": w(H * HD, D),
                f"{i}.k": w(KV * HD, D),
                f"{i}.v": w(KV * HD, D),
                f"{i}.o": w(D, H * HD),
                f"{i}.n1": 1 + w(D),
                f"{i}.n2": 1 + w(D),
                f"{i}.w1": w(FF, D),
                f"{i}.w3": w(FF, D),
                f"{i}.w2": w(D, FF),
                f"{i}.qa": w(RANK, D),
                f"{i}.qb": w(H * HD, RANK),  # nonzero B: the adapter contributes from step 0
                f"{i}.va": w(RANK, D),
                f"{i}.vb": w(KV * HD, RANK),
            }
        )
    return p


class _Decoder:
    """The decoder as torchtune's ``llama3`` builds it, written against one library ``T``."""

    def __init__(self, T, weights, lora=True):
        self.T = T
        self.p = {k: T.tensor(v) for k, v in weights.items()}
        self.lora = lora
        for k, v in self.p.items():
            v.requires_grad_(k.endswith(("qa", "qb", "va", "vb")))
        theta = 1.0 / (500000.0 ** (T.arange(0, HD, 2)[: HD // 2].float() / HD))
        idx = T.outer(T.arange(64, dtype=theta.dtype), theta).float()
        self.rope_cache = T.stack([T.cos(idx), T.sin(idx)], dim=-1)  # (max_seq, HD/2, 2)
        self.cache = None

    def adapters(self):
        return [v for k, v in self.p.items() if k.endswith(("qa", "qb", "va", "vb"))]

    def rms(self, x, w):  # RMSNorm: computed in float32, cast back
        xf = x.float()
        return (xf * self.T.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).type_as(x) * w

    def rope(self, x, pos):  # interleaved pairs, as torchtune's RotaryPositionalEmbeddings
        T = self.T
        rc = self.rope_cache[pos].view(-1, x.size(1), 1, HD // 2, 2)
        xs = x.float().reshape(*x.shape[:-1], -1, 2)
        out = T.stack(
            [
                xs[..., 0] * rc[..., 0] - xs[..., 1] * rc[..., 1],
                xs[..., 1] * rc[..., 0] + xs[..., 0] * rc[..., 1],
            ],
            -1,
        )
        return out.flatten(3).type_as(x)

    def proj(self, x, i, n):  # a LoRA linear: frozen base + (alpha / rank) * B A x
        F = self.T.nn.functional
        y = F.linear(x, self.p[f"{i}.{n}"])
        if self.lora and n in "qv":
            y = y + (ALPHA / RANK) * F.linear(F.linear(x, self.p[f"{i}.{n}a"]), self.p[f"{i}.{n}b"])
        return y

    def setup_caches(self, b):
        T = self.T
        self.cache = [[T.zeros(b, KV, 64, HD) for _ in range(2)] for _ in range(L)]

    def __call__(self, tokens, input_pos=None):
        T, F = self.T, self.T.nn.functional
        b, s = tokens.shape
        pos = T.arange(s).expand(b, s) if input_pos is None else input_pos
        h = F.embedding(tokens, self.p["tok"])
        for i in range(L):
            x = self.rms(h, self.p[f"{i}.n1"])
            q = self.rope(self.proj(x, i, "q").view(b, s, H, HD), pos).transpose(1, 2)
            k = self.rope(self.proj(x, i, "k").view(b, s, KV, HD), pos).transpose(1, 2)
            v = self.proj(x, i, "v").view(b, s, KV, HD).transpose(1, 2)
            if self.cache is not None:  # torchtune's KVCache.update: write at input_pos
                kc, vc = self.cache[i]
                kc[:, :, pos[0]] = k
                vc[:, :, pos[0]] = v
                k, v = kc, vc
                mask = T.arange(64)[None, :] <= pos[0][:, None]  # (s, 64)
                attn_kw = {"attn_mask": mask[None, None]}
            else:
                attn_kw = {"is_causal": True}
            k = k.repeat_interleave(H // KV, dim=1)  # grouped-query attention
            v = v.repeat_interleave(H // KV, dim=1)
            a = F.scaled_dot_product_attention(q, k, v, **attn_kw)
            h = h + F.linear(a.transpose(1, 2).reshape(b, s, H * HD), self.p[f"{i}.o"])
            x = self.rms(h, self.p[f"{i}.n2"])
            mlp = F.silu(F.linear(x, self.p[f"{i}.w1"])) * F.linear(x, self.p[f"{i}.w3"])
            h = h + F.linear(mlp, self.p[f"{i}.w2"])
        h = self.rms(h, self.p["norm"])
        return [F.linear(c, self.p["out"]) for c in h.chunk(4, dim=1)]  # output chunks


def _chunked_ce(T, logit_chunks, labels, ignore_index=-100):
    """CEWithChunkedOutputLoss: per-chunk summed cross-entropy in float32 over the count of
    labels that are not ignored."""
    F = T.nn.functional
    total = (labels != ignore_index).sum()
    loss = 0.0
    for lg, lb in zip(logit_chunks, labels.chunk(len(logit_chunks), dim=1)):
        lg = lg.reshape(-1, lg.size(-1)).float()
        loss = loss + F.cross_entropy(lg, lb.reshape(-1), reduction="sum", ignore_index=-100)
    return loss / total


def _cosine_with_warmup(T, opt, warmup, total):
    def lr_lambda(step):
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 2 * 0.5 * progress)))

    return T.optim.lr_scheduler.LambdaLR(opt, lr_lambda)


def _batches(n):
    rs = np.random.RandomState(3)
    return [rs.randint(0, V, (2, 16)) for _ in range(n)]


def test_lora_recipe_loop_matches_torch():
    weights, batches = _weights(), _batches(5)
    runs = []
    for T in LIBS:
        m = _Decoder(T, weights)
        opt = T.optim.AdamW(m.adapters(), lr=1e-2, weight_decay=0.01)
        sched = _cosine_with_warmup(T, opt, 2, 5)
        ignore = T.full((2, 1), -100, dtype=T.long)
        rec = []
        for b in batches:
            tokens = T.tensor(b)
            labels = tokens.clone()
            labels[0, :3] = -100
            labels = T.hstack((labels[..., 1:], ignore))  # the recipe's shift
            loss = _chunked_ce(T, m(tokens), labels)
            loss.backward()
            gn = T.nn.utils.clip_grad_norm_(m.adapters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
            rec.append((loss.item(), float(gn), opt.param_groups[0]["lr"]))
        runs.append(np.array(rec))
    np.testing.assert_allclose(runs[1], runs[0], rtol=2e-6, atol=1e-7)


def test_kv_cache_decoding_matches_full_forward_and_torch():
    weights, (b,) = _weights(1), _batches(1)
    outs = []
    for T in LIBS:
        m = _Decoder(T, weights, lora=False)
        tokens = T.tensor(b)
        with T.no_grad():
            full = T.cat(m(tokens), dim=1)
            m.setup_caches(2)
            steps = [T.cat(m(tokens[:, :12], input_pos=T.arange(12).expand(2, 12)), dim=1)]
            for i in range(12, 16):
                steps.append(m(tokens[:, i : i + 1], input_pos=T.tensor([[i], [i]]))[0])
            inc = T.cat(steps, dim=1)
        _close(inc, full, 2e-5)
        outs.append(inc)
    _close(outs[1], outs[0], 2e-5)
