"""ember.utils.checkpoint: gradients match PyTorch's and the un-checkpointed run, dropout
recomputes identically, activations are not kept, bad input is refused; FSDP/DDP wrappers."""

from __future__ import annotations

import gc
import os
import secrets
import socket
import weakref

import numpy as np
import pytest

import ember
from ember.utils.checkpoint import CheckpointError, checkpoint, checkpoint_sequential


def _mlp(lib, dropout=0.0):
    layers = [lib.nn.Linear(6, 12), lib.nn.Tanh()]
    if dropout:
        layers.append(lib.nn.Dropout(dropout))
    layers += [lib.nn.Linear(12, 12), lib.nn.GELU(), lib.nn.Linear(12, 3)]
    return lib.nn.Sequential(*layers)


def _copy_to_torch(torch, src, dst):
    with torch.no_grad():
        for (_, p), (_, q) in zip(src.named_parameters(), dst.named_parameters()):
            q.copy_(torch.from_numpy(p.detach().numpy().copy()))


def _grads(model):
    return [p.grad.numpy().copy() for p in model.parameters()]


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_checkpoint_matches_torch(use_reentrant):
    torch = pytest.importorskip("torch")
    import torch.utils.checkpoint as tcp

    ember.manual_seed(0)
    em = _mlp(ember)
    tm = _mlp(torch)
    _copy_to_torch(torch, em, tm)
    xn = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    xe = ember.tensor(xn, requires_grad=True)
    xt = torch.tensor(xn, requires_grad=True)
    oe = checkpoint(em, xe, use_reentrant=use_reentrant)
    ot = tcp.checkpoint(tm, xt, use_reentrant=use_reentrant)
    (oe**2).sum().backward()
    (ot**2).sum().backward()
    np.testing.assert_allclose(oe.detach().numpy(), ot.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    for p, q in zip(em.parameters(), tm.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("segments", [1, 2, 3])
def test_checkpoint_sequential_matches_torch(segments):
    torch = pytest.importorskip("torch")
    import torch.utils.checkpoint as tcp

    ember.manual_seed(1)
    em = _mlp(ember)
    tm = _mlp(torch)
    _copy_to_torch(torch, em, tm)
    xn = np.random.default_rng(1).standard_normal((3, 6)).astype(np.float32)
    xe = ember.tensor(xn, requires_grad=True)
    xt = torch.tensor(xn, requires_grad=True)
    checkpoint_sequential(em, segments, xe, use_reentrant=False).sum().backward()
    tcp.checkpoint_sequential(tm, segments, xt, use_reentrant=False).sum().backward()
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    for p, q in zip(em.parameters(), tm.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_dropout_recomputes_identically(use_reentrant):
    ember.manual_seed(0)
    model = _mlp(ember, dropout=0.5)
    x = ember.randn(8, 6, requires_grad=True)

    ember.manual_seed(5)
    plain = model(x)
    plain.sum().backward()
    after_plain = ember.rand(3).numpy()  # where the generator stands after the forward
    ref = _grads(model) + [x.grad.numpy().copy()]
    model.zero_grad()
    x.grad = None

    ember.manual_seed(5)
    out = checkpoint(model, x, use_reentrant=use_reentrant)
    out.sum().backward()
    np.testing.assert_array_equal(out.detach().numpy(), plain.detach().numpy())
    for a, b in zip(ref, _grads(model) + [x.grad.numpy()]):
        np.testing.assert_array_equal(a, b)
    # the recomputation replays the draws without moving the generator outside the region
    np.testing.assert_array_equal(ember.rand(3).numpy(), after_plain)


def test_without_preserved_rng_the_masks_differ():
    ember.manual_seed(0)
    model = _mlp(ember, dropout=0.5)
    x = ember.randn(16, 6, requires_grad=True)
    ember.manual_seed(5)
    model(x).sum().backward()
    ref = x.grad.numpy().copy()
    x.grad = None
    ember.manual_seed(5)
    checkpoint(model, x, use_reentrant=False, preserve_rng_state=False).sum().backward()
    assert not np.allclose(ref, x.grad.numpy())


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_activations_are_not_kept(use_reentrant):
    kept = []

    def block(x):
        h = ember.tanh(x @ x.T)
        kept.append(weakref.ref(h._data))
        return ember.sigmoid(h).sum(1)

    x = ember.randn(64, 64, requires_grad=True)
    out = block(x)  # plain: tanh's output is saved by tanh and by sigmoid... kept alive
    gc.collect()
    assert kept[0]() is not None
    out = checkpoint(block, x, use_reentrant=use_reentrant)
    gc.collect()
    assert kept[1]() is None
    out.sum().backward()
    np.testing.assert_allclose(
        x.grad.numpy(), _reference_grad(block, x.detach().numpy()), rtol=1e-4, atol=1e-5
    )


def _reference_grad(block, xn):
    x = ember.tensor(xn, requires_grad=True)
    block(x).sum().backward()
    return x.grad.numpy()


def test_non_reentrant_kwargs_grad_and_nesting():
    w = ember.randn(5, 5, requires_grad=True)

    def inner(x, scale=1.0):
        return ember.relu(x @ w) * scale

    def outer(x, *, scale):
        return checkpoint(inner, x, scale=scale, use_reentrant=False).exp()

    x = ember.randn(3, 5, requires_grad=True)
    out = checkpoint(outer, x, scale=2.0, use_reentrant=False)
    gx, gw = ember.autograd.grad(out.sum(), (x, w))
    x2 = x.detach().requires_grad_()
    w2 = w.detach().requires_grad_()
    ref = (ember.relu(x2 @ w2) * 2.0).exp().sum()
    rx, rw = ember.autograd.grad(ref, (x2, w2))
    np.testing.assert_allclose(gx.numpy(), rx.numpy(), rtol=1e-5)
    np.testing.assert_allclose(gw.numpy(), rw.numpy(), rtol=1e-5)


def test_retain_graph_recomputes_again():
    x = ember.randn(4, 4, requires_grad=True)
    out = checkpoint(lambda t: (t.sin() * t).sum(), x, use_reentrant=False)
    out.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    out.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first, rtol=1e-6)


def test_determinism_check_catches_a_different_recomputation():
    calls = []

    def fn(x):
        calls.append(1)
        n = 4 if len(calls) == 1 else 2  # saves a differently shaped tensor the second time
        return (x[:n] * x[:n]).sum()

    x = ember.randn(4, 3, requires_grad=True)
    out = checkpoint(fn, x, use_reentrant=False)
    with pytest.raises(CheckpointError, match="different metadata"):
        out.backward()


def test_bad_arguments():
    x = ember.randn(2, requires_grad=True)
    with pytest.raises(ValueError, match="determinism_check should be one of"):
        checkpoint(ember.sin, x, use_reentrant=False, determinism_check="bogus")
    with pytest.raises(ValueError, match="Unexpected keyword arguments: k"):
        checkpoint(lambda t, k=1: t, x, use_reentrant=True, k=2)
    with pytest.raises(ValueError, match="only supported when use_reentrant=False"):
        checkpoint(ember.sin, x, use_reentrant=True, debug=True)
    with pytest.raises(TypeError, match="must be callable"):
        checkpoint(3, x)
    with pytest.raises(ValueError, match="segments"):
        checkpoint_sequential([ember.sin], 2, x)
    with pytest.raises(TypeError, match="checkpoint_impl"):
        from ember.distributed.fsdp import CheckpointWrapper

        CheckpointWrapper(ember.nn.Linear(2, 2), checkpoint_impl="no")


def test_under_no_grad_just_runs():
    x = ember.randn(3, requires_grad=True)
    with ember.no_grad():
        out = checkpoint(ember.sin, x, use_reentrant=False)
    assert not out.requires_grad
    np.testing.assert_allclose(out.numpy(), np.sin(x.detach().numpy()))


# ---- distributed wrappers (one rank in this process) ------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def one_rank():
    import ember.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group is already initialized in this process")
    os.environ.setdefault("EMBER_TOKEN", secrets.token_hex(16))
    dist.init_process_group(init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


class _Block(ember.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = ember.nn.Linear(8, 8)
        self.drop = ember.nn.Dropout(0.25)

    def forward(self, x):
        return x + self.drop(ember.tanh(self.fc(x)))


def _stack():
    ember.manual_seed(3)
    return ember.nn.Sequential(_Block(), _Block(), _Block(), ember.nn.Linear(8, 2))


@pytest.mark.parametrize("wrapper", ["fsdp", "ddp"])
def test_wrapped_model_with_activation_checkpointing(one_rank, wrapper):
    from ember.distributed.fsdp import (
        CheckpointWrapper,
        FullyShardedDataParallel,
        ModuleWrapPolicy,
        apply_activation_checkpointing,
    )
    from ember.nn.parallel import DistributedDataParallel

    def wrap(m):
        if wrapper == "fsdp":
            return FullyShardedDataParallel(m, auto_wrap_policy=ModuleWrapPolicy({_Block}))
        return DistributedDataParallel(m)

    x = ember.randn(5, 8)
    results = []
    for ac in (False, True):
        model = wrap(_stack())
        keys = list(model.state_dict().keys())
        if ac:
            apply_activation_checkpointing(model, check_fn=lambda m: isinstance(m, _Block))
            assert sum(isinstance(m, CheckpointWrapper) for m in model.modules()) == 3
            assert list(model.state_dict().keys()) == keys  # unwrapped names
        opt = ember.optim.SGD(model.parameters(), lr=0.1)
        ember.manual_seed(9)
        for _ in range(2):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
        results.append({k: v.numpy().copy() for k, v in model.state_dict().items()})
    for k in results[0]:
        np.testing.assert_allclose(results[0][k], results[1][k], rtol=1e-5, atol=1e-6)
