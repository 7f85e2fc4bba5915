"""Idioms from PyTorch's own examples (pytorch/examples' tensor-parallel Llama) that stopped an
ember port, each checked against torch: ``outer`` of an integer and a float vector (rotary
embeddings), ``with torch.device(...):`` as the default device of a block, and the old
``torch.distributed._tensor`` import path."""

from __future__ import annotations

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    "a_dtype, b_dtype",
    [("int64", "float32"), ("int64", "float64"), ("bool", "bool"), ("float32", "float64")],
)
def test_outer_promotes_like_torch(a_dtype, b_dtype):
    a, b = np.arange(4).astype(a_dtype), np.linspace(0.5, 2, 3).astype(b_dtype)
    got = ember.outer(ember.tensor(a), ember.tensor(b))
    want = torch.outer(torch.tensor(a), torch.tensor(b))
    assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1]
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert ember.ger(ember.tensor(a), ember.tensor(b)).dtype == got.dtype


def test_outer_gradients_match_torch():
    a, b = np.random.default_rng(0).standard_normal((2, 5))
    ea, eb = (ember.tensor(v, requires_grad=True) for v in (a, b))
    ta, tb = (torch.tensor(v, requires_grad=True) for v in (a, b))
    (ember.outer(ea, eb) ** 2).sum().backward()
    (torch.outer(ta, tb) ** 2).sum().backward()
    np.testing.assert_allclose(ea.grad.numpy(), ta.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(eb.grad.numpy(), tb.grad.numpy(), rtol=1e-12)


def test_device_is_a_context_manager_for_the_default_device():
    assert str(ember.get_default_device()) == "cpu"
    with ember.device("cpu") as d:
        assert d == ember.device("cpu") and ember.get_default_device() == d
        assert ember.zeros(2).device == d
        with ember.device("cuda"):  # nests; like torch, naming CUDA needs no GPU
            assert ember.get_default_device().type == "cuda"
        assert ember.get_default_device() == d
    with torch.device("cpu"):
        assert torch.get_default_device() == torch.device("cpu")
    assert str(ember.get_default_device()) == "cpu"
    try:  # restored on an exception too
        with ember.device("cuda"):
            raise KeyError("inside")
    except KeyError:
        pass
    assert str(ember.get_default_device()) == "cpu"


def test_old_dtensor_import_path():
    import ember.distributed.tensor as dt
    from ember.distributed._tensor import DTensor, Shard
    from ember.distributed._tensor.device_mesh import init_device_mesh

    assert DTensor is dt.DTensor and Shard is dt.Shard
    assert init_device_mesh is dt.init_device_mesh


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1"])
def test_default_backend_for_device_is_torchs(device):
    import ember.distributed as dist

    want = torch.distributed.get_default_backend_for_device(device)
    assert dist.get_default_backend_for_device(device) == want
    assert dist.get_default_backend_for_device(ember.device(device)) == want


def test_default_backend_for_an_unknown_device_names_it():
    import ember.distributed as dist

    with pytest.raises(RuntimeError, match="'tpu'"):
        dist.get_default_backend_for_device("tpu")


def test_init_optim_state_creates_adam_state_without_moving_parameters():
    """PyTorch's FSDP2 example calls ``_init_optim_state(opt)`` before loading optimizer state:
    the state exists afterwards (as torch's does) and the parameters are unchanged."""
    from torch.distributed.checkpoint.state_dict import _init_optim_state as torch_init

    from ember.distributed.checkpoint.state_dict import _init_optim_state

    w = np.arange(6.0).reshape(2, 3)
    ep, tp = ember.nn.Parameter(ember.tensor(w)), torch.nn.Parameter(torch.tensor(w))
    eopt, topt = ember.optim.AdamW([ep], lr=0.1), torch.optim.AdamW([tp], lr=0.1)
    _init_optim_state(eopt)
    torch_init(topt)
    assert sorted(eopt.state[ep]) == sorted(topt.state[tp])
    np.testing.assert_array_equal(ep.detach().numpy(), w)
    assert ep.grad is None and eopt.param_groups[0]["lr"] == 0.1
    # with a gradient present it does nothing, as torch's (a step would move the parameter)
    fresh = ember.nn.Parameter(ember.tensor(w))
    fresh.grad = ember.ones(2, 3)
    opt = ember.optim.AdamW([fresh], lr=0.1)
    _init_optim_state(opt)
    assert not opt.state and np.array_equal(fresh.detach().numpy(), w)


def test_hook_handles_are_utils_hooks_removable_handles():
    """Scripts annotate with and isinstance-check ``torch.utils.hooks.RemovableHandle``: module
    and optimizer hook registrations return that one class, and it removes the hook."""
    from ember.utils.hooks import RemovableHandle

    m = ember.nn.Linear(2, 2)
    calls = []
    handle = m.register_forward_hook(lambda *a: calls.append(1))
    opt = ember.optim.SGD(m.parameters(), lr=0.1)
    step = opt.register_step_pre_hook(lambda *a: calls.append(2))
    assert isinstance(handle, RemovableHandle) and isinstance(step, RemovableHandle)
    m(ember.ones(1, 2))
    opt.step()
    with handle, step:  # handles are context managers, as torch's
        pass
    m(ember.ones(1, 2))
    opt.step()
    assert calls == [1, 2]
