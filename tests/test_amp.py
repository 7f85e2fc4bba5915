"""Mixed precision (ember.amp): autocast's cast policy and GradScaler, checked against torch."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ember
import ember.nn.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

rng = np.random.default_rng(0)
_ARR = {
    "x": rng.standard_normal((4, 8)),
    "w": rng.standard_normal((6, 8)),
    "b": rng.standard_normal(6),
    "m": rng.standard_normal((8, 8)),
    "bx": rng.standard_normal((2, 4, 8)),
    "by": rng.standard_normal((2, 8, 4)),
    "b44": rng.standard_normal((2, 4, 4)),
    "c44": rng.standard_normal((4, 4)),
    "img": rng.standard_normal((1, 2, 5, 5)),
    "cw": rng.standard_normal((3, 2, 3, 3)),
    "ctw": rng.standard_normal((2, 3, 3, 3)),
    "x3": rng.standard_normal((1, 2, 6)),
    "cw1": rng.standard_normal((3, 2, 3)),
    "q": rng.standard_normal((1, 2, 4, 8)),
    "a": rng.standard_normal(1),
    "p": 1 / (1 + np.exp(-rng.standard_normal((4, 8)))),
    "v": rng.standard_normal(8),
    "y": rng.standard_normal((4, 8)),
}
_TGT = np.array([1, 0, 2, 3])

# name -> f(lib, F, T): T(name) is a float32 tensor of the library, idx the class targets
CASES = {
    "linear": lambda L, f, T: f.linear(T("x"), T("w"), T("b")),
    "matmul": lambda L, f, T: L.matmul(T("x"), T("m")),
    "matmul_op": lambda L, f, T: T("x") @ T("m"),
    "mm": lambda L, f, T: L.mm(T("x"), T("m")),
    "bmm": lambda L, f, T: L.bmm(T("bx"), T("by")),
    "baddbmm": lambda L, f, T: L.baddbmm(T("b44"), T("bx"), T("by")),
    "addmm": lambda L, f, T: L.addmm(T("x"), T("x"), T("m")),
    "addbmm": lambda L, f, T: L.addbmm(T("c44"), T("bx"), T("by")),
    "conv1d": lambda L, f, T: f.conv1d(T("x3"), T("cw1")),
    "conv2d": lambda L, f, T: f.conv2d(T("img"), T("cw")),
    "conv_transpose2d": lambda L, f, T: f.conv_transpose2d(T("img"), T("ctw")),
    "prelu": lambda L, f, T: f.prelu(T("x"), T("a")),
    "sdpa": lambda L, f, T: f.scaled_dot_product_attention(T("q"), T("q"), T("q")),
    "softmax": lambda L, f, T: f.softmax(T("x"), -1),
    "log_softmax": lambda L, f, T: f.log_softmax(T("x"), -1),
    "layer_norm": lambda L, f, T: f.layer_norm(T("x"), (8,)),
    "cross_entropy": lambda L, f, T: f.cross_entropy(T("x"), L.tensor(_TGT)),
    "nll_loss": lambda L, f, T: f.nll_loss(T("x"), L.tensor(_TGT)),
    "mse_loss": lambda L, f, T: f.mse_loss(T("x"), T("y")),
    "l1_loss": lambda L, f, T: f.l1_loss(T("x"), T("y")),
    "smooth_l1_loss": lambda L, f, T: f.smooth_l1_loss(T("x"), T("y")),
    "huber_loss": lambda L, f, T: f.huber_loss(T("x"), T("y")),
    "bce": lambda L, f, T: f.binary_cross_entropy(T("p"), T("p")),
    "bce_logits": lambda L, f, T: f.binary_cross_entropy_with_logits(T("x"), T("p")),
    "soft_margin_loss": lambda L, f, T: f.soft_margin_loss(T("x"), T("y")),
    "cdist": lambda L, f, T: L.cdist(T("x"), T("y")),
    "relu": lambda L, f, T: f.relu(T("x")),
    "add": lambda L, f, T: T("x") + T("y"),
    "mv": lambda L, f, T: L.mv(T("m"), T("v")),
    "dot": lambda L, f, T: L.dot(T("v"), T("v")),
    "outer": lambda L, f, T: L.outer(T("v"), T("v")),
    "einsum": lambda L, f, T: L.einsum("ij,jk->ik", T("x"), T("m")),
    "tensordot": lambda L, f, T: L.tensordot(T("x"), T("m"), dims=1),
    "chain_matmul": lambda L, f, T: L.linalg.multi_dot([T("m"), T("m"), T("m")]),
    "layer_norm_module": lambda L, f, T: L.nn.LayerNorm(8)(T("x")),
    "mha": lambda L, f, T: L.nn.MultiheadAttention(8, 2, batch_first=True)(
        T("bx"), T("bx"), T("bx")
    )[0],
}


def _run(lib, case, in_dtype, amp_dtype, enabled=True):
    fn = F if lib is ember else TF

    def T(k):
        t = lib.tensor(_ARR[k], dtype=lib.float32)
        return t.to(getattr(lib, in_dtype))

    with lib.autocast("cpu", dtype=getattr(lib, amp_dtype), enabled=enabled):
        out = CASES[case](lib, fn, T)
    return str(out.dtype).split(".")[-1]


@pytest.mark.parametrize("amp_dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("in_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_cpu_policy_output_dtype_matches_torch(case, in_dtype, amp_dtype):
    assert _run(ember, case, in_dtype, amp_dtype) == _run(torch, case, in_dtype, amp_dtype)


def test_disabled_region_and_nesting():
    x = ember.randn(4, 8)
    with ember.autocast("cpu"):
        assert ember.is_autocast_enabled("cpu")
        assert (x @ x.T).dtype == ember.bfloat16
        with ember.autocast("cpu", enabled=False):
            assert not ember.is_autocast_enabled("cpu")
            assert (x @ x.T).dtype == ember.float32
            with ember.autocast("cpu", dtype=ember.float16):
                assert (x @ x.T).dtype == ember.float16
                assert ember.get_autocast_dtype("cpu") == ember.float16
        assert ember.get_autocast_dtype("cpu") == ember.bfloat16
        assert (x @ x.T).dtype == ember.bfloat16
    assert not ember.is_autocast_enabled("cpu")
    assert (x @ x.T).dtype == ember.float32


def test_decorator_and_float64_untouched():
    @ember.autocast("cpu")
    def f(a, b):
        return a @ b

    assert f(ember.randn(3, 3), ember.randn(3, 3)).dtype == ember.bfloat16
    d = ember.randn(3, 3, dtype=ember.float64)
    assert f(d, d).dtype == ember.float64  # torch never casts float64


def _mlp_grads(lib, cache_enabled):
    lib.manual_seed(0)
    w1 = lib.tensor(_ARR["w"], dtype=lib.float32, requires_grad=True)
    x = lib.tensor(_ARR["x"], dtype=lib.float32)
    with lib.autocast("cpu", cache_enabled=cache_enabled):
        h = (x @ w1.T).relu()
        out = h @ w1  # the same weight twice: one cached cast, two uses
        loss = lib.nn.functional.mse_loss(out, x)
    assert str(out.dtype).endswith("bfloat16") and str(loss.dtype).endswith("float32")
    loss.backward()
    return loss.item(), w1.grad


@pytest.mark.parametrize("cache_enabled", [True, False])
def test_gradients_dtype_and_values_match_torch(cache_enabled):
    le, ge = _mlp_grads(ember, cache_enabled)
    lt, gt = _mlp_grads(torch, cache_enabled)
    assert ge.dtype == ember.float32 and gt.dtype == torch.float32
    np.testing.assert_allclose(le, lt, rtol=2e-2)
    np.testing.assert_allclose(ge.numpy(), gt.numpy(), rtol=5e-2, atol=5e-2)


def test_weight_cast_cache():
    from ember.amp import _state

    w = ember.randn(4, 4, requires_grad=True)
    x = ember.randn(2, 4)
    with ember.autocast("cpu"):
        F.linear(x, w)
        F.linear(x, w)
        assert len(_state.CACHE) == 1  # one cast of the leaf weight, reused
        with ember.autocast("cpu"):
            F.linear(x, w)
        assert len(_state.CACHE) == 1  # an inner region keeps the outer cache
    assert len(_state.CACHE) == 0  # cleared when the outermost region exits
    with ember.autocast("cpu", cache_enabled=False):
        F.linear(x, w)
        assert len(_state.CACHE) == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="device_type"):
        ember.autocast(0)
    with pytest.raises(RuntimeError, match="unsupported autocast device_type 'tpu'"):
        ember.autocast("tpu")
    with pytest.warns(UserWarning, match="target dtype is not supported"):
        a = ember.autocast("cpu", dtype=ember.float64)
    with a:
        assert not ember.is_autocast_enabled("cpu")


@pytest.mark.skipif(ember.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_cuda_without_cuda_warns_and_disables():
    with pytest.warns(UserWarning, match="CUDA is not available"):
        ctx = ember.autocast("cuda")
    with ctx:
        assert not ember.is_autocast_enabled("cuda")
    with pytest.warns(UserWarning, match="GradScaler is enabled, but CUDA is not available"):
        s = ember.amp.GradScaler()
    assert not s.is_enabled() and s.get_scale() == 1.0 and s.state_dict() == {}
    loss = ember.tensor(2.0)
    assert s.scale(loss) is loss


def test_legacy_spellings():
    with pytest.warns(FutureWarning, match=r"torch.amp.autocast\('cpu'"):
        ctx = ember.cpu.amp.autocast()
    with ctx:
        assert (ember.randn(2, 2) @ ember.randn(2, 2)).dtype == ember.bfloat16
    from ember.cpu.amp import autocast  # noqa: F401  (the import path resolves)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert ember.cuda.amp.GradScaler(enabled=False).get_scale() == 1.0
        assert callable(ember.cuda.amp.custom_fwd) and callable(ember.cuda.amp.custom_bwd)


def test_custom_fwd_casts_inputs_and_runs_without_autocast():
    seen = {}

    class Square(ember.autograd.Function):
        @staticmethod
        @ember.amp.custom_fwd(device_type="cpu", cast_inputs=ember.float32)
        def forward(ctx, x):
            seen["dtype"] = x.dtype
            seen["inside"] = ember.is_autocast_enabled("cpu")
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        @ember.amp.custom_bwd(device_type="cpu")
        def backward(ctx, grad):
            seen["bwd_autocast"] = ember.is_autocast_enabled("cpu")
            (x,) = ctx.saved_tensors
            return 2 * x * grad

    x = ember.randn(3).to(ember.bfloat16).requires_grad_()
    with ember.autocast("cpu"):
        y = Square.apply(x)
    assert seen["dtype"] == ember.float32 and not seen["inside"]  # a tensor, as in torch
    assert y.dtype == ember.float32
    y.sum().backward()
    assert x.grad.dtype == ember.bfloat16 and not seen["bwd_autocast"]


# ---- GradScaler --------------------------------------------------------------------------------
def _scaler_run(lib, overflow_steps, steps=8, **kw):
    """A tiny model trained with a CPU GradScaler; inf injected into the gradient at some steps."""
    w = lib.tensor([[0.5, -0.25], [0.125, 1.0]], requires_grad=True)
    opt = lib.optim.SGD([w], lr=0.1)
    scaler = lib.amp.GradScaler("cpu", **kw)
    scales, weights = [], []
    x = lib.tensor([[1.0, 2.0]])
    for step in range(steps):
        opt.zero_grad()
        loss = (x @ w).pow(2).sum()
        scaler.scale(loss).backward()
        if step in overflow_steps:
            with lib.no_grad():
                w.grad[0, 0] = float("inf") if step % 2 else float("nan")
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
        weights.append(w.detach().numpy().copy())
    return scales, weights, scaler.state_dict()


@pytest.mark.parametrize("overflow", [(), (0, 1, 4), (2, 3, 5, 6)])
def test_grad_scaler_trajectory_matches_torch(overflow):
    kw = dict(init_scale=2.0**10, growth_interval=2)
    se, we, de = _scaler_run(ember, overflow, **kw)
    st, wt, dt = _scaler_run(torch, overflow, **kw)
    assert se == st
    assert de == dt
    np.testing.assert_allclose(np.array(we), np.array(wt), rtol=1e-6)


def test_grad_scaler_state_dict_roundtrip_and_errors():
    s = ember.amp.GradScaler("cpu", init_scale=8.0, growth_interval=3)
    w = ember.randn(2, requires_grad=True)
    opt = ember.optim.SGD([w], lr=0.1)
    s.scale(w.sum()).backward()
    s.unscale_(opt)
    np.testing.assert_allclose(w.grad.numpy(), np.ones(2))
    with pytest.raises(RuntimeError, match="unscale_\\(\\) has already been called"):
        s.unscale_(opt)
    s.step(opt)
    with pytest.raises(RuntimeError, match="step\\(\\) has already been called"):
        s.step(opt)
    s.update()
    t = ember.amp.GradScaler("cpu")
    t.load_state_dict(s.state_dict())
    assert (
        t.state_dict()
        == s.state_dict()
        == {
            "scale": 8.0,
            "growth_factor": 2.0,
            "backoff_factor": 0.5,
            "growth_interval": 3,
            "_growth_tracker": 1,
        }
    )
    with pytest.raises(RuntimeError, match="source state dict is empty"):
        t.load_state_dict({})
    with pytest.raises(AssertionError, match="growth factor must be > 1.0"):
        ember.amp.GradScaler("cpu", growth_factor=0.5)
    fresh = ember.amp.GradScaler("cpu")
    with pytest.raises(AssertionError, match="_scale is None"):
        fresh.step(opt)
    with pytest.raises(RuntimeError, match="Closure use is not currently supported"):
        s.step(opt, closure=lambda: 0)


def _train_amp(lib, steps=5):
    """Linear-ReLU-Linear trained under CPU autocast (bf16) + GradScaler, weights from numpy."""
    model = lib.nn.Sequential(lib.nn.Linear(8, 16), lib.nn.ReLU(), lib.nn.Linear(16, 4))
    r = np.random.default_rng(1)
    with lib.no_grad():
        for p in model.parameters():
            p.copy_(lib.tensor(r.standard_normal(tuple(p.shape)) * 0.3, dtype=lib.float32))
    opt = lib.optim.Adam(model.parameters(), lr=1e-2)
    scaler = lib.amp.GradScaler("cpu", init_scale=256.0)
    x = lib.tensor(r.standard_normal((32, 8)), dtype=lib.float32)
    y = lib.tensor(r.integers(0, 4, 32))
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        with lib.autocast("cpu", dtype=lib.bfloat16):
            loss = lib.nn.functional.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(loss.item())
    return losses, [p.detach().numpy() for p in model.parameters()]


def test_training_under_autocast_and_scaler_matches_torch():
    le, pe = _train_amp(ember)
    lt, pt = _train_amp(torch)
    np.testing.assert_allclose(le, lt, rtol=2e-2, atol=2e-2)
    assert le[-1] < le[0]
    for a, b in zip(pe, pt):
        np.testing.assert_allclose(a, b, rtol=0.05, atol=0.02)


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_checkpoint_recomputes_under_the_forward_autocast_state(use_reentrant):
    from ember.utils.checkpoint import checkpoint

    ember.manual_seed(0)
    m = ember.nn.Sequential(ember.nn.Linear(8, 16), ember.nn.GELU(), ember.nn.Linear(16, 8))
    x = ember.randn(4, 8, requires_grad=True)

    def grad(ck):
        m.zero_grad()
        with ember.autocast("cpu"):
            y = checkpoint(m, x, use_reentrant=use_reentrant) if ck else m(x)
            loss = y.float().pow(2).mean()
        assert y.dtype == ember.bfloat16
        loss.backward()  # outside the region: the recomputation must re-enter it
        return m[0].weight.grad.numpy().copy()

    np.testing.assert_array_equal(grad(True), grad(False))


def test_cuda_policy_table(monkeypatch):
    """torch's CUDA lists (not runnable against torch here): fp32 ops upcast, matmul-family
    downcasts, mixed-dtype ops promote. Exercised on CPU arrays by treating them as CUDA's."""
    from ember.amp import _state

    monkeypatch.setattr(_state, "_device_type", lambda data: "cuda")
    h = ember.randn(4, 8).half()
    ember.set_autocast_enabled("cuda", True)
    try:
        assert ember.mv(ember.randn(8, 8), ember.randn(8)).dtype == ember.float16  # CUDA-only
        assert F.softmax(h, -1).dtype == ember.float32
        assert F.layer_norm(h, (8,)).dtype == ember.float32
        assert F.mse_loss(h, h).dtype == ember.float32
        assert ember.dot(ember.randn(3).half(), ember.randn(3)).dtype == ember.float32
        assert F.relu(h).dtype == ember.float16
    finally:
        ember.set_autocast_enabled("cuda", False)
    assert not ember.is_autocast_enabled("cuda")


def test_docs_snippets_run():
    import pathlib
    import re

    text = (pathlib.Path(__file__).parent.parent / "docs" / "amp.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 2
    namespace: dict = {}  # the second snippet goes on from the first
    for code in blocks:
        exec(compile(code, "docs/amp.md", "exec"), namespace)


def test_char_gpt_amp_example_trains(tmp_path):
    import pathlib
    import subprocess
    import sys

    repo = pathlib.Path(__file__).parent.parent
    data = repo.parent / "shared" / "data" / "tinyshakespeare.txt"
    if not data.is_file():
        pytest.skip("tinyshakespeare.txt not present")
    proc = subprocess.run(
        [
            sys.executable,
            str(repo / "examples" / "char_gpt_amp.py"),
            "--amp",
            "fp16",
            "--checkpoint",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "3",
            "--batch-size",
            "4",
            "--d-model",
            "16",
            "--block-size",
            "16",
            "--eval-batches",
            "1",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "CheckpointedCharGPT" in proc.stdout and "amp fp16" in proc.stdout
    val = float(proc.stdout.split("val loss ")[-1].split()[0])
    assert 0 < val < 4.5  # ln(65) = 4.17 at random: finite, and a few steps barely move it
