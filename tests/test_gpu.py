"""The CuPy backend against the NumPy one: every module family, loss, optimizer and a few
whole training steps run on CUDA and on the CPU from the same weights and inputs, in float64,
and must agree (outputs, input and parameter gradients, buffers after the step).

The CPU side is checked against PyTorch elsewhere; here the GPU only has to match it. float64
keeps the comparison tight (rtol 1e-7): what differs is summation order, not precision.
Every test is marked ``gpu`` and skipped on a machine without CUDA and CuPy.
"""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F

pytestmark = pytest.mark.gpu
TOL = dict(rtol=1e-7, atol=1e-9)


def _rand(*shape, seed=0, low=None):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    return np.abs(a) + low if low is not None else a


def _labels(n, classes, seed=1):
    return np.random.default_rng(seed).integers(0, classes, n)


# Each case: a module factory and the inputs as NumPy arrays (float arrays get gradients).
MODULES = {
    "linear": (lambda: nn.Linear(6, 4), lambda: [_rand(3, 6)]),
    "bilinear": (lambda: nn.Bilinear(3, 4, 2), lambda: [_rand(5, 3), _rand(5, 4, seed=1)]),
    "conv1d": (lambda: nn.Conv1d(3, 4, 3, padding=1, stride=2), lambda: [_rand(2, 3, 9)]),
    "conv2d": (lambda: nn.Conv2d(3, 5, 3, padding=1), lambda: [_rand(2, 3, 8, 8)]),
    "conv2d_groups_dilation": (
        lambda: nn.Conv2d(4, 4, 3, groups=2, dilation=2, bias=False),
        lambda: [_rand(2, 4, 9, 9)],
    ),
    "conv3d": (lambda: nn.Conv3d(2, 3, 2), lambda: [_rand(1, 2, 4, 4, 4)]),
    "conv_transpose1d": (lambda: nn.ConvTranspose1d(3, 2, 3, stride=2), lambda: [_rand(2, 3, 5)]),
    "conv_transpose2d": (
        lambda: nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1),
        lambda: [_rand(2, 3, 4, 4)],
    ),
    "maxpool2d_tiling": (lambda: nn.MaxPool2d(2), lambda: [_rand(2, 3, 8, 8)]),
    "maxpool2d_overlap": (
        lambda: nn.MaxPool2d(3, stride=2, padding=1),
        lambda: [_rand(2, 3, 9, 9)],
    ),
    "maxpool1d": (lambda: nn.MaxPool1d(3, stride=2), lambda: [_rand(2, 3, 11)]),
    "avgpool2d": (
        lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
        lambda: [_rand(2, 3, 9, 9)],
    ),
    "adaptive_avg2d": (lambda: nn.AdaptiveAvgPool2d((3, 2)), lambda: [_rand(2, 3, 7, 5)]),
    "adaptive_max2d": (lambda: nn.AdaptiveMaxPool2d(3), lambda: [_rand(2, 3, 7, 7)]),
    "batchnorm1d": (lambda: nn.BatchNorm1d(4), lambda: [_rand(6, 4)]),
    "batchnorm2d": (lambda: nn.BatchNorm2d(3), lambda: [_rand(4, 3, 5, 5)]),
    "layernorm": (lambda: nn.LayerNorm(6), lambda: [_rand(3, 4, 6)]),
    "groupnorm": (lambda: nn.GroupNorm(2, 4), lambda: [_rand(3, 4, 5)]),
    "instancenorm2d": (lambda: nn.InstanceNorm2d(3, affine=True), lambda: [_rand(2, 3, 4, 4)]),
    "rmsnorm": (lambda: nn.RMSNorm(6), lambda: [_rand(3, 6)]),
    "embedding": (
        lambda: nn.Embedding(10, 4, padding_idx=0),
        lambda: [_labels(7, 10).reshape(7, 1)],
    ),
    "embedding_bag_mean": (
        lambda: nn.EmbeddingBag(10, 3, mode="mean"),
        lambda: [_labels(12, 10).reshape(4, 3)],
    ),
    "embedding_bag_max": (
        lambda: nn.EmbeddingBag(10, 3, mode="max"),
        lambda: [_labels(12, 10).reshape(4, 3)],
    ),
    "prelu": (lambda: nn.PReLU(3), lambda: [_rand(2, 3, 4)]),
    "gelu_tanh": (lambda: nn.GELU("tanh"), lambda: [_rand(3, 5)]),
    "gelu": (lambda: nn.GELU(), lambda: [_rand(3, 5)]),
    "silu": (lambda: nn.SiLU(), lambda: [_rand(3, 5)]),
    "mish": (lambda: nn.Mish(), lambda: [_rand(3, 5)]),
    "elu": (lambda: nn.ELU(0.7), lambda: [_rand(3, 5)]),
    "selu": (lambda: nn.SELU(), lambda: [_rand(3, 5)]),
    "softplus": (lambda: nn.Softplus(beta=2.0), lambda: [_rand(3, 5)]),
    "hardswish": (lambda: nn.Hardswish(), lambda: [_rand(3, 5)]),
    "leaky_relu": (lambda: nn.LeakyReLU(0.1), lambda: [_rand(3, 5)]),
    "glu": (lambda: nn.GLU(), lambda: [_rand(3, 6)]),
    "softmax": (lambda: nn.Softmax(dim=1), lambda: [_rand(3, 5)]),
    "log_softmax": (lambda: nn.LogSoftmax(dim=-1), lambda: [_rand(3, 5)]),
    "pixel_shuffle": (lambda: nn.PixelShuffle(2), lambda: [_rand(1, 8, 3, 3)]),
    "upsample_nearest": (lambda: nn.Upsample(scale_factor=2), lambda: [_rand(1, 2, 3, 3)]),
    "upsample_bilinear": (
        lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        lambda: [_rand(1, 2, 3, 3)],
    ),
    "reflection_pad2d": (lambda: nn.ReflectionPad2d(1), lambda: [_rand(1, 2, 3, 3)]),
    "replication_pad1d": (lambda: nn.ReplicationPad1d((1, 2)), lambda: [_rand(1, 2, 4)]),
    "circular_pad2d": (lambda: nn.CircularPad2d(1), lambda: [_rand(1, 2, 3, 3)]),
    "unfold": (lambda: nn.Unfold(2, stride=1), lambda: [_rand(1, 2, 4, 4)]),
    "fold": (lambda: nn.Fold((3, 3), 2), lambda: [_rand(1, 8, 4)]),
    "flatten": (lambda: nn.Flatten(), lambda: [_rand(2, 3, 4)]),
    "rnn_tanh": (lambda: nn.RNN(4, 5, num_layers=2), lambda: [_rand(6, 2, 4)]),
    "lstm_bidirectional": (
        lambda: nn.LSTM(4, 5, batch_first=True, bidirectional=True),
        lambda: [_rand(2, 6, 4)],
    ),
    "gru": (lambda: nn.GRU(4, 3), lambda: [_rand(5, 2, 4)]),
    "lstm_cell": (lambda: nn.LSTMCell(4, 3), lambda: [_rand(2, 4)]),
    "multihead_attention": (
        lambda: nn.MultiheadAttention(8, 2, batch_first=True),
        lambda: [_rand(2, 5, 8), _rand(2, 4, 8, seed=1), _rand(2, 4, 8, seed=2)],
    ),
    "transformer_encoder_layer": (
        lambda: nn.TransformerEncoderLayer(
            8, 2, 16, dropout=0.0, batch_first=True, norm_first=True
        ),
        lambda: [_rand(2, 5, 8)],
    ),
}

LOSSES = {
    "cross_entropy": (
        lambda: nn.CrossEntropyLoss(label_smoothing=0.1),
        lambda: [_rand(6, 4), _labels(6, 4)],
    ),
    "cross_entropy_weight_ignore": (
        lambda: nn.CrossEntropyLoss(weight=ember.tensor([1.0, 2.0, 0.5, 1.0]), ignore_index=1),
        lambda: [_rand(6, 4), _labels(6, 4)],
    ),
    "cross_entropy_2d": (
        lambda: nn.CrossEntropyLoss(),
        lambda: [_rand(2, 3, 4, 4), _labels(32, 3).reshape(2, 4, 4)],
    ),
    "nll": (lambda: nn.NLLLoss(reduction="sum"), lambda: [_rand(6, 4), _labels(6, 4)]),
    "mse": (lambda: nn.MSELoss(), lambda: [_rand(3, 4), _rand(3, 4, seed=1)]),
    "l1": (lambda: nn.L1Loss(), lambda: [_rand(3, 4), _rand(3, 4, seed=1)]),
    "smooth_l1": (lambda: nn.SmoothL1Loss(beta=0.5), lambda: [_rand(3, 4), _rand(3, 4, seed=1)]),
    "huber": (lambda: nn.HuberLoss(delta=0.7), lambda: [_rand(3, 4), _rand(3, 4, seed=1)]),
    "bce_with_logits": (
        lambda: nn.BCEWithLogitsLoss(pos_weight=ember.tensor([1.0, 2.0, 0.5])),
        lambda: [_rand(4, 3), np.random.default_rng(3).random((4, 3))],
    ),
    "bce": (
        lambda: nn.BCELoss(),
        lambda: [1 / (1 + np.exp(-_rand(4, 3))), np.random.default_rng(3).random((4, 3))],
    ),
    "kl_div": (
        lambda: nn.KLDivLoss(reduction="batchmean", log_target=True),
        lambda: [_rand(3, 4), _rand(3, 4, seed=1)],
    ),
    "gaussian_nll": (
        lambda: nn.GaussianNLLLoss(),
        lambda: [_rand(3, 4), _rand(3, 4, seed=1), _rand(3, 4, seed=2, low=0.1)],
    ),
    "poisson_nll": (lambda: nn.PoissonNLLLoss(), lambda: [_rand(3, 4), _rand(3, 4, low=0.0)]),
    "margin_ranking": (
        lambda: nn.MarginRankingLoss(0.2),
        lambda: [_rand(5), _rand(5, seed=1), np.sign(_rand(5, seed=2))],
    ),
    "triplet_margin": (
        lambda: nn.TripletMarginLoss(),
        lambda: [_rand(4, 5), _rand(4, 5, seed=1), _rand(4, 5, seed=2)],
    ),
    "cosine_embedding": (
        lambda: nn.CosineEmbeddingLoss(),
        lambda: [_rand(4, 5), _rand(4, 5, seed=1), np.sign(_rand(4, seed=2))],
    ),
}


def _forward(module, arrays, device):
    """Run ``module`` on ``device``; returns its outputs, input grads, param grads, buffers."""
    inputs = []
    for a in arrays:
        t = ember.tensor(a, device=device)
        if t.dtype.is_floating_point:
            t.requires_grad_(True)
        inputs.append(t)
    out = module(*inputs)
    flat = []  # outputs, one level of nested tuples (an RNN's state) flattened
    for o in out if isinstance(out, tuple) else (out,):
        flat.extend(x for x in (o if isinstance(o, tuple) else (o,)) if x is not None)
    rng = np.random.default_rng(7)
    total = None
    for o in flat:
        if o.dtype.is_floating_point and o.requires_grad:
            g = ember.tensor(rng.standard_normal(tuple(o.shape)), device=device)
            term = (o * g).sum()
            total = term if total is None else total + term
    total.backward()
    return (
        [o.detach().cpu().numpy() for o in flat],
        [t.grad if t.grad is None else t.grad.cpu().numpy() for t in inputs if t.requires_grad],
        {k: p.grad.cpu().numpy() for k, p in module.named_parameters() if p.grad is not None},
        {k: b.cpu().numpy() for k, b in module.named_buffers()},
    )


def _cpu_and_gpu(factory, inputs):
    ember.manual_seed(0)
    cpu = factory().double()
    gpu = factory().double()
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda")
    assert all(p.device.type == "cuda" for p in gpu.parameters())
    arrays = inputs()
    return _forward(cpu, arrays, "cpu"), _forward(gpu, arrays, "cuda")


def _assert_same(cpu, gpu):
    for what, a, b in zip(("outputs", "input grads"), cpu[:2], gpu[:2]):
        assert len(a) == len(b), what
        for k, (x, y) in enumerate(zip(a, b)):
            if x is None or y is None:  # an input the result does not depend on
                assert x is None and y is None, f"{what} {k}"
                continue
            np.testing.assert_allclose(y, x, err_msg=f"{what} {k}", **TOL)
    for what, a, b in zip(("param grads", "buffers"), cpu[2:], gpu[2:]):
        assert a.keys() == b.keys(), what
        for k in a:
            np.testing.assert_allclose(b[k], a[k], err_msg=f"{what} {k}", **TOL)


@pytest.mark.parametrize("name", list(MODULES))
def test_module_matches_cpu(name):
    _assert_same(*_cpu_and_gpu(*MODULES[name]))


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_matches_cpu(name):
    _assert_same(*_cpu_and_gpu(*LOSSES[name]))


def test_functional_without_modules():
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((2, 2, 5, 4)) for _ in range(3))
    x = rng.standard_normal((2, 3, 6, 6))
    results = []
    for dev in ("cpu", "cuda"):
        qt, kt, vt, xt = (ember.tensor(a, device=dev, requires_grad=True) for a in (q, k, v, x))
        outs = [
            F.scaled_dot_product_attention(qt, kt, vt, is_causal=True),
            F.interpolate(xt, size=(4, 5), mode="bicubic", align_corners=True),
            F.normalize(xt, dim=1),
            F.cosine_similarity(qt, kt, dim=-1),
            F.one_hot(ember.tensor([0, 2, 1], device=dev), 4).to(ember.float64),
            F.pdist(xt.reshape(6, -1)),
        ]
        loss = sum((o * o).sum() for o in outs)
        loss.backward()
        results.append(
            [o.detach().cpu().numpy() for o in outs]
            + [t.grad.cpu().numpy() for t in (qt, kt, vt, xt)]
        )
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, **TOL)


# ---- training steps: a whole loop on CUDA equals the same loop on the CPU ------------------------
def _train(device, opt_name, model_fn, batches, steps=4):
    ember.manual_seed(0)
    model = model_fn().double()
    model.to(device)
    opt = getattr(ember.optim, opt_name)(model.parameters(), lr=0.05)
    sched = ember.optim.lr_scheduler.StepLR(opt, 2, gamma=0.5)
    losses = []
    for x, y in batches[:steps]:
        xb, yb = ember.tensor(x, device=device), ember.tensor(y, device=device)
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        ember.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses, {k: v.cpu().numpy() for k, v in model.state_dict().items()}


def _cnn():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.0),
        nn.Linear(64, 10),
    )


def _mlp():
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, 10)
    )


@pytest.mark.parametrize("model_fn", [_cnn, _mlp], ids=["cnn", "mlp"])
@pytest.mark.parametrize("opt_name", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_training_loop_matches_cpu(model_fn, opt_name):
    rng = np.random.default_rng(2)
    batches = [(rng.standard_normal((8, 1, 8, 8)), rng.integers(0, 10, 8)) for _ in range(4)]
    cpu_losses, cpu_state = _train("cpu", opt_name, model_fn, batches)
    gpu_losses, gpu_state = _train("cuda", opt_name, model_fn, batches)
    np.testing.assert_allclose(gpu_losses, cpu_losses, **TOL)
    assert cpu_state.keys() == gpu_state.keys()
    for k in cpu_state:
        np.testing.assert_allclose(gpu_state[k], cpu_state[k], err_msg=k, **TOL)


def test_float32_training_and_state_dict_round_trip(tmp_path):
    model = _mlp().to("cuda")
    opt = ember.optim.Adam(model.parameters(), lr=1e-3)
    x = ember.randn(16, 1, 8, 8, device="cuda")
    y = ember.randint(0, 10, (16,), device="cuda")
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    assert next(model.parameters()).dtype == ember.float32
    ember.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "ck.pt")
    ck = ember.load(tmp_path / "ck.pt")
    assert next(iter(ck["model"].values())).device.type == "cuda"
    cpu_ck = ember.load(tmp_path / "ck.pt", map_location="cpu")
    assert all(v.device.type == "cpu" for v in cpu_ck["model"].values())
    fresh = _mlp().to("cuda")
    fresh.load_state_dict(ck["model"])
    np.testing.assert_array_equal(fresh(x).detach().cpu().numpy(), model(x).detach().cpu().numpy())


def test_cuda_rng_is_reproducible_and_dropout_runs_on_the_device():
    ember.manual_seed(3)
    a = ember.randn(1000, device="cuda")
    d = F.dropout(ember.ones(10000, device="cuda"), 0.25)
    ember.manual_seed(3)
    b = ember.randn(1000, device="cuda")
    assert a.device.type == d.device.type == "cuda"
    np.testing.assert_array_equal(a.cpu().numpy(), b.cpu().numpy())
    kept = (d.cpu().numpy() != 0).mean()
    assert 0.72 < kept < 0.78
    assert np.allclose(d.cpu().numpy()[d.cpu().numpy() != 0], 1 / 0.75)


def test_mixed_devices_raise_a_clear_error():
    with pytest.raises(RuntimeError, match="cuda"):
        ember.ones(3, device="cuda") + ember.ones(3)


# ---- DDP with CUDA tensors over the host backend (one GPU serves both ranks) ------------------
def _two_ranks(fn, *args, timeout: float) -> dict:
    """``fn(rank, *args)`` on two fresh processes; each rank's return value."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "distributed"))
    from dist_harness import run_ranks

    out = run_ranks(fn, 2, *args, timeout=timeout)
    for rank, o in out.items():
        assert o is not None and o.ok, f"rank {rank}: {o and o.traceback}"
    return {rank: o.value for rank, o in out.items()}


def _ddp_gpu_rank(rank, x, y):
    import ember.distributed as dist

    dist.init_process_group("shm")  # NCCL refuses two ranks on one device
    try:
        ember.manual_seed(0)
        model = _mlp().double().to("cuda")
        ddp = ember.nn.parallel.DistributedDataParallel(model)
        half = len(x) // 2
        xb = ember.tensor(x[rank * half : (rank + 1) * half], device="cuda")
        yb = ember.tensor(y[rank * half : (rank + 1) * half], device="cuda")
        F.cross_entropy(ddp(xb), yb).backward()
        return {k: p.grad.cpu().numpy() for k, p in model.named_parameters()}
    finally:
        dist.destroy_process_group()


def test_ddp_with_cuda_tensors_matches_one_process():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((8, 1, 8, 8)), rng.integers(0, 10, 8)
    ember.manual_seed(0)
    ref = _mlp().double()
    F.cross_entropy(ref(ember.tensor(x)), ember.tensor(y)).backward()
    for grads in _two_ranks(_ddp_gpu_rank, x, y, timeout=120).values():
        for k, p in ref.named_parameters():
            np.testing.assert_allclose(grads[k], p.grad.numpy(), err_msg=k, **TOL)


# ---- the fused kernels against the NumPy code they replace ------------------------------------
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("beta1", [0.9, 0.3])  # both sides of PyTorch's two-sided lerp
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_adam_matches_numpy(amsgrad, beta1, dtype):
    import cupy

    from ember.backend import cuda_fused
    from ember.optim.adam import _adam_update

    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(1000).astype(dtype) for _ in range(2)]
    arrays += [np.abs(rng.standard_normal(1000)).astype(dtype) * s for s in (0.1, 0.01, 0.02)]
    arrays[1][3] = np.nan  # a NaN gradient reaches every state as NumPy's arithmetic has it
    if not amsgrad:
        arrays = arrays[:4]
    kw = dict(
        beta1=beta1,
        beta2=0.99,
        eps=1e-8,
        step_size=0.01 / (1 - beta1**3),
        bias_correction2_sqrt=(1 - 0.99**3) ** 0.5,
    )
    gpu = [cupy.asarray(a) for a in arrays]
    _adam_update(*arrays, **kw)
    cuda_fused.adam_(*gpu, **kw)
    tol = (
        dict(rtol=1e-6, atol=1e-7)
        if dtype == np.float32  # the GPU may fuse multiply-adds
        else dict(rtol=1e-14, atol=1e-15)
    )
    for k, (a, b) in enumerate(zip(arrays, gpu)):
        if k == 1:
            continue  # the gradient is an input
        np.testing.assert_allclose(cupy.asnumpy(b), a, equal_nan=True, err_msg=f"array {k}", **tol)


# ---- ZeRO and FSDP with CUDA parameters (two ranks on one GPU, over the host backend) ----------
def _sharded_gpu_rank(rank):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "sharding"))
    import sharding_worker as sw

    import ember.distributed as dist
    from ember.distributed.optim import ZeroRedundancyOptimizer

    dist.init_process_group("shm")  # NCCL refuses two ranks on one device
    try:
        world = dist.get_world_size()
        out = {}
        for device in ("cpu", "cuda"):
            for sname, wrap in [("ddp", sw.DDP), *sw.STRATEGIES.items()]:
                if device == "cpu" and sname != "ddp":
                    continue  # the CPU's DDP is the reference for every GPU run
                model = wrap(sw.make_model().to(device))
                cls, kw = sw.OPTIMIZERS["adam"]
                opt = (
                    ZeroRedundancyOptimizer(model.parameters(), cls, **kw)
                    if sname == "zero1"
                    else cls(model.parameters(), **kw)
                )
                for s in range(4):
                    x, y = sw.batch(s, rank, world)
                    loss = F.cross_entropy(model(x.to(device)), y.to(device))
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                assert all(p.device.type == device for p in model.parameters()), sname
                out[f"{device}/{sname}"] = {
                    k: v.cpu().numpy().copy() for k, v in model.state_dict().items()
                }
        return out
    finally:
        dist.destroy_process_group()


def test_zero_and_fsdp_with_cuda_parameters_match_cpu_ddp():
    for rank, states in _two_ranks(_sharded_gpu_rank, timeout=240).items():
        ref = states.pop("cpu/ddp")
        assert len(states) == 8
        for name, state in states.items():
            assert state.keys() == ref.keys(), name
            for k in ref:
                np.testing.assert_allclose(
                    state[k], ref[k], rtol=1e-4, atol=1e-5, err_msg=f"rank {rank} {name} {k}"
                )
