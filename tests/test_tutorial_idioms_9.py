"""Idioms of a ninth batch of pytorch/tutorials programs (attention building blocks, masked
tensors, compile examples, profiler traces), each a small program of our own with the same
idiom, checked against torch where torch can run it: MaskedTensor construction, printing,
indexing, reductions, safe softmax, ``where`` and masked gradients (the MaskedTensor
overview / advanced semantics / sparsity / Adagrad pages), ``Tensor.sparse_mask`` (Adagrad's
sparse update), a compiled module called with nested (jagged) tensors of two raggednesses
(transformer building blocks), ``flex_attention``'s refusal of nested inputs, and the
TensorBoard trace files of ``tensorboard_trace_handler`` (keys, memory events, DataLoader and
optimizer ranges)."""

from __future__ import annotations

import glob
import json
import math
import os
import warnings

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
LIBS = {"ember": ember, "torch": torch}


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def _masked(lib):
    return lib.masked.masked_tensor, lib.masked.as_masked_tensor


def _both(fn):
    return {name: fn(lib) for name, lib in LIBS.items()}


# ---- MaskedTensor ----------------------------------------------------------------------


def test_masked_tensor_repr_indexing_and_reductions_match_torch():
    def prog(lib):
        masked_tensor, _ = _masked(lib)
        data = lib.arange(12, dtype=lib.float32).reshape(3, 4)
        mask = lib.tensor(
            [[True, False, True, True], [False, False, False, False], [True, True, False, True]]
        )
        mt = masked_tensor(data, mask)
        out = [repr(mt), repr(mt[0]), repr(mt[:, 1:3])]
        for fn in ("sum", "mean", "prod", "amin", "amax"):
            out.append(repr(getattr(lib, fn)(mt, 1)))
        out.append(repr(mt.sum()))
        out.append(repr(lib.argmin(masked_tensor(data, data != 0))))
        ints = masked_tensor(
            lib.tensor([[3, 0, 0], [0, 4, 5]]), lib.tensor([[1, 0, 0], [0, 1, 1]]).bool()
        )
        out.append(repr(ints))
        out.append(repr(ints.sum(dim=1)))
        return out

    got = _both(prog)
    assert got["ember"] == got["torch"]


def test_masked_tensor_safe_softmax_nanmean_and_binary_rules():
    def prog(lib):
        masked_tensor, _ = _masked(lib)
        data = lib.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75], [0.1, 0.2, 0.3]])
        mask = lib.tensor([[True, False, False], [True, False, True], [False, False, False]])
        mt = masked_tensor(data, mask)
        x = lib.empty(4).fill_(float("nan"))
        out = [repr(mt.softmax(0)), repr(lib.mean(masked_tensor(x, ~lib.isnan(x))))]
        y = lib.arange(16).float()
        y = y * y.fmod(4)
        out.append(repr(lib.mean(masked_tensor(y, y != 0))))
        a = masked_tensor(lib.arange(5.0), lib.tensor([True, True, False, True, False]))
        b = masked_tensor(lib.arange(5.0), lib.tensor([False, False, True, False, True]))
        try:
            a + b
        except ValueError as e:
            out.append(str(e))
        out.append(repr(a * 2 + a))
        out.append(repr(a.to_tensor(0)))
        out.append(repr(a.get_mask()))
        return out

    got = _both(prog)
    assert got["ember"] == got["torch"]


def test_masked_tensor_gradients():
    def prog(lib):
        masked_tensor, as_masked_tensor = _masked(lib)
        x = lib.tensor([-10.0, -5, 0, 5, 10, 50, 60, 70, 80, 90, 100])
        mask = x < 0
        mx = masked_tensor(x, mask, requires_grad=True)
        my = masked_tensor(lib.ones_like(x), ~mask, requires_grad=True)
        y = lib.where(mask, lib.exp(mx), my)
        y.sum().backward()
        # nan in an unspecified element does not reach the gradient (nansum's issue)
        a = lib.tensor([1.0, 2.0, float("nan")])
        b = lib.tensor(1.0, requires_grad=True)
        c = masked_tensor(a, ~lib.isnan(a)) * b
        (gb,) = lib.autograd.grad(lib.sum(c), b)
        gb = gb.get_data() if hasattr(gb, "get_data") else gb
        z = lib.tensor([1.0, 2.0], requires_grad=True)
        as_masked_tensor(z * 3, lib.tensor([True, False])).sum().backward()
        return repr(mx.grad), repr(my.grad), float(gb), z.grad

    got = _both(prog)
    e, t = got["ember"], got["torch"]
    assert e[:3] == t[:3]
    # torch's gradient of a plain tensor through a MaskedTensor is a MaskedTensor; ember's is
    # plain, zero where unspecified
    assert e[3].tolist() == [3.0, 0.0] and t[3].get_data()[0].item() == 3.0


def test_masked_tensor_sparse_coo_and_errors():
    def prog(lib):
        masked_tensor, _ = _masked(lib)
        i = [[0, 1, 1], [2, 0, 2]]
        s1 = lib.sparse_coo_tensor(i, [3, 4, 5], (2, 3))
        s2 = lib.sparse_coo_tensor(i, [20, 30, 40], (2, 3))
        mask = lib.sparse_coo_tensor(i, lib.tensor([True, False, True]), (2, 3))
        mt1, mt2 = masked_tensor(s1, mask), masked_tensor(s2, mask)
        dense = masked_tensor(
            lib.tensor([[0, 0, 3], [4, 0, 5]]), lib.tensor([[0, 0, 1], [0, 0, 1]]).bool()
        )
        coo = dense.to_sparse_coo()
        d = coo.get_data()
        return (
            repr(mt1),
            repr(lib.div(mt2, mt1)),
            repr(lib.mul(mt1, mt2)),
            (
                mt1.get_data().coalesce().indices().tolist(),
                mt1.get_data().coalesce().values().tolist(),
            ),
            (d.indices().tolist(), d.values().tolist()),
            coo.is_sparse_coo(),
            dense.is_sparse_coo(),
        )

    got = _both(prog)
    assert got["ember"] == got["torch"]
    with pytest.raises(TypeError, match="mask must have dtype bool"):
        ember.masked.masked_tensor(ember.ones(2), ember.ones(2))
    with pytest.raises(ValueError, match="size"):
        ember.masked.masked_tensor(ember.ones(2), ember.ones(3).bool())
    with pytest.raises(TypeError, match="not implemented for MaskedTensor"):
        ember.masked.masked_tensor(ember.ones(2, 2), ember.ones(2, 2).bool()).cumsum(0)


def test_sparse_mask_adagrad_update_matches_torch():
    def prog(lib):
        param = lib.arange(8).reshape(2, 4).float()
        grad = lib.sparse_coo_tensor(
            lib.tensor([[0, 1, 1], [2, 0, 2]]), lib.tensor([3.0, 4, 5]), [2, 4]
        )
        state_sum = lib.full_like(param, 0.5)
        grad = grad.coalesce()
        idx, vals = grad._indices(), grad._values()
        state_sum.add_(lib.sparse_coo_tensor(idx, vals.pow(2), grad.size()))
        std = state_sum.sparse_mask(grad)
        std_values = std._values().sqrt_().add_(1e-10)
        param.add_(lib.sparse_coo_tensor(idx, vals / std_values, grad.size()), alpha=-0.1)
        return param.tolist(), std.to_dense().tolist()

    got = _both(prog)
    np.testing.assert_allclose(got["ember"][0], got["torch"][0], rtol=1e-6)
    np.testing.assert_allclose(got["ember"][1], got["torch"][1], rtol=1e-6)
    with pytest.raises(RuntimeError, match="sparse"):
        ember.ones(2).sparse_mask(ember.ones(2))


# ---- nested tensors through compile, flex_attention -----------------------------------


def test_compiled_module_takes_nested_tensors_of_new_raggedness():
    ember.manual_seed(0)
    lin = ember.nn.Linear(8, 8)
    sdpa = ember.nn.functional.scaled_dot_product_attention

    def f(x):
        q = lin(x).unflatten(-1, [2, 4]).transpose(1, 2)
        return sdpa(q, q, q, is_causal=True).transpose(1, 2).flatten(-2)

    compiled = ember.compile(f)
    for lengths in ([3, 5], [2, 7, 4]):  # a second raggedness: a recompile, not an error
        x = ember.nested.nested_tensor([ember.randn(n, 8) for n in lengths], layout=ember.jagged)
        with ember.no_grad():
            got = compiled(x).to_padded_tensor(0.0)
            want = f(x).to_padded_tensor(0.0)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


def test_flex_attention_refuses_nested_inputs_as_torch():
    from ember.nn.attention.flex_attention import flex_attention

    q = ember.nested.nested_tensor(
        [ember.randn(3, 2, 4), ember.randn(5, 2, 4)], layout=ember.jagged
    )
    q = q.transpose(1, 2)
    with pytest.raises(NotImplementedError, match="NestedTensor"):
        flex_attention(q, q, q)


# ---- the TensorBoard profiler page ----------------------------------------------------


def _profile_run(lib, logdir):
    lib.manual_seed(0)
    data = lib.utils.data.TensorDataset(lib.randn(24, 4), lib.randint(0, 3, (24,)))
    loader = lib.utils.data.DataLoader(data, batch_size=4)
    model = lib.nn.Linear(4, 3)
    opt = lib.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with lib.profiler.profile(
        schedule=lib.profiler.schedule(wait=1, warmup=1, active=2, repeat=1),
        on_trace_ready=lib.profiler.tensorboard_trace_handler(logdir),
        record_shapes=True,
        profile_memory=True,
        with_stack=True,
    ) as prof:
        for step, (x, y) in enumerate(loader):
            if step >= 4:
                break
            loss = lib.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            prof.step()
    files = glob.glob(os.path.join(logdir, "*"))
    assert len(files) == 1
    return files[0], json.load(open(files[0]))


def test_tensorboard_trace_files_as_torch(tmp_path):
    path_e, doc_e = _profile_run(ember, str(tmp_path / "ember"))
    path_t, doc_t = _profile_run(torch, str(tmp_path / "torch"))
    # "<host>_<pid>.<ns>.pt.trace.json", the name TensorBoard's plugin lists
    for p in (path_e, path_t):
        assert p.endswith(".pt.trace.json") and os.path.basename(p).count(".") == 4
    assert set(doc_t) <= set(doc_e) | {"distributedInfo"}
    assert len(doc_e["trace_id"]) == 32 and doc_e["with_stack"] == 1
    names = [e["name"] for e in doc_e["traceEvents"] if e.get("cat") == "user_annotation"]
    for want in (
        "enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__",
        "Optimizer.zero_grad#SGD.zero_grad",
        "Optimizer.step#SGD.step",
    ):
        assert want in names
    mem = [e for e in doc_e["traceEvents"] if e.get("name") == "[memory]"]
    want_keys = {"Total Reserved", "Total Allocated", "Bytes", "Device Id", "Device Type", "Addr"}
    assert mem and want_keys <= set(mem[0]["args"])
    totals = [e["args"]["Total Allocated"] for e in mem]
    assert totals == sorted(totals) and totals[-1] == sum(e["args"]["Bytes"] for e in mem)
    # the recording hooks are gone once the profiler stops
    from ember.optim import Optimizer
    from ember.utils.data import dataloader

    assert "enumerate" not in repr(dataloader._BaseDataLoaderIter.__next__)
    assert Optimizer.zero_grad.__qualname__ == "Optimizer.zero_grad"
    assert math.isfinite(doc_e["baseTimeNanoseconds"])


# ---- the conv/batch-norm fuser with the pattern matcher -------------------------------


def test_pattern_matcher_fuses_conv_bn_as_torch_counts():
    import ember._inductor.pattern_matcher as pm
    from ember._dynamo.utils import counters
    from ember._inductor import config

    nn, F = ember.nn, ember.nn.functional

    def fuse(conv_w, conv_b, rm, rv, eps, w, b):
        conv_b = ember.zeros_like(rm) if conv_b is None else conv_b
        rsqrt = ember.rsqrt(rv + eps)
        conv_w = conv_w * (w * rsqrt).reshape([-1] + [1] * (conv_w.dim() - 1))
        return conv_w, (conv_b - rm) * rsqrt * w + b

    def pattern(x, cw, cb, rm, rv, w, b):
        return F.batch_norm(F.conv2d(x, cw, cb), rm, rv, w, b, training=False, eps=1e-5)

    def replacement(x, cw, cb, rm, rv, w, b):
        fw, fb = fuse(cw, cb, rm, rv, 1e-5, w, b)
        return F.conv2d(x, fw, fb)

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.mod = nn.BatchNorm2d(2)

        def forward(self, x):
            return self.mod(x)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2)
            self.conv2 = nn.Conv2d(2, 2, 1)
            self.nested = nn.Sequential(nn.BatchNorm2d(2), nn.Conv2d(2, 2, 1))
            self.wrapped = Wrapped()

        def forward(self, x):
            return self.wrapped(self.nested(self.conv2(self.bn1(self.conv1(x)))))

    ember.manual_seed(0)
    patterns = pm.PatternMatcherPass()
    examples = [ember.randn(1, 1, 4, 4), ember.randn(1, 1, 1, 1)] + [ember.randn(1)] * 5
    pm.register_replacement(pattern, replacement, examples, pm.fwd_only, patterns)
    config.post_grad_custom_post_pass = patterns.apply
    try:
        for model, x, want in (
            (M(), ember.randn(5, 2, 3, 3), 3),  # torch 2.13 counts 3 here, then 2
            (
                nn.Sequential(
                    nn.Conv2d(3, 4, 3),
                    nn.BatchNorm2d(4),
                    nn.ReLU(),
                    nn.Conv2d(4, 4, 3),
                    nn.BatchNorm2d(4),
                ),
                ember.randn(1, 3, 12, 12),
                2,
            ),
            # a strided conv is not the pattern (stride 1 is one of its constants)
            (
                nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.BatchNorm2d(4)),
                ember.randn(1, 3, 9, 9),
                0,
            ),
        ):
            for m in model.modules():  # non-trivial running statistics
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-1, 1)
                    m.running_var.uniform_(0.5, 2)
            model.eval()
            counters.clear()
            compiled = ember.compile(model, backend="inductor")
            with ember.no_grad():
                got, expected = compiled(x), model(x)
            ember.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
            assert counters["inductor"]["pattern_matcher_count"] == want
    finally:
        del config.post_grad_custom_post_pass


# ---- variable length attention ---------------------------------------------------------


def test_varlen_attn_matches_torch_sdpa_per_document():
    from ember.nn.attention.varlen import AuxRequest, varlen_attn

    rng = np.random.default_rng(0)
    cu = [0, 5, 6, 13]
    qkv = [rng.standard_normal((13, 4, 8)).astype(np.float32) for _ in range(3)]
    for window in ((-1, -1), (-1, 0), (2, 0)):
        q, k, v = (ember.tensor(a, requires_grad=True) for a in qkv)
        out, lse = varlen_attn(
            q, k, v, ember.tensor(cu, dtype=ember.int32), None, 7, 7,
            window_size=window, return_aux=AuxRequest(lse=True),
        )  # fmt: skip
        out.square().sum().backward()
        tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in qkv)
        want, want_lse = [], []
        for s, e in zip(cu, cu[1:]):
            a, b, c = (t[s:e].transpose(0, 1) for t in (tq, tk, tv))
            n = e - s
            i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
            ok = torch.ones(n, n, dtype=torch.bool)
            if window[1] >= 0:
                ok &= j <= i + window[1]
            if window[0] >= 0:
                ok &= j >= i - window[0]
            want.append(
                torch.nn.functional.scaled_dot_product_attention(a, b, c, attn_mask=ok).transpose(
                    0, 1
                )
            )
            scores = (a @ b.transpose(-2, -1) / math.sqrt(8)).masked_fill(~ok, -math.inf)
            want_lse.append(scores.logsumexp(-1).transpose(0, 1))
        want = torch.cat(want)
        want.square().sum().backward()
        np.testing.assert_allclose(out.detach().numpy(), want.detach().numpy(), atol=1e-5)
        np.testing.assert_allclose(
            lse.detach().numpy(), torch.cat(want_lse).detach().numpy(), atol=1e-5
        )
        for g, t in zip((q, k, v), (tq, tk, tv)):
            np.testing.assert_allclose(g.grad.numpy(), t.grad.numpy(), atol=1e-4)
    # the tutorial's older form, and a packed output that views as (tokens, dim) again
    q = ember.randn(13, 4, 8)
    cu_t = ember.tensor(cu, dtype=ember.int32)
    causal = varlen_attn(q, q, q, cu_t, cu_t, 7, 7, is_causal=True)
    assert causal.view(-1, 32).shape == (13, 32)
    with pytest.raises(ValueError, match="same number of heads"):
        varlen_attn(q, q[:, :2], q[:, :2], cu_t, cu_t, 7, 7)


def test_cat_and_stack_of_transposed_pieces_are_contiguous_as_torch():
    for lib in (ember, torch):
        a = lib.arange(12.0).reshape(3, 4).t()
        assert lib.cat([a, a]).is_contiguous() and lib.stack([a, a]).is_contiguous()
        assert lib.cat([a, a]).view(-1).shape == (24,)
