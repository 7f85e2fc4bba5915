"""NumPy's ``axis=``/``keepdims=`` for ``dim``/``keepdim``, as torch's argument parser takes them
(core/_numpy_names.py), checked against torch on the same calls."""

import inspect

import numpy as np
import pytest
import torch

import ember

A = np.random.default_rng(0).random((3, 4)).astype(np.float32) + 0.5
IDX = np.array([[0, 1], [1, 0], [2, 2]])

# (label, call): each is run on torch and on ember with the same arguments
CALLS = {
    # Tensor methods
    "all": lambda T, x: (x > 0.7).all(axis=1, keepdims=True),
    "std": lambda T, x: x.std(axis=0, keepdims=True),
    "var": lambda T, x: x.var(axis=1),
    "median": lambda T, x: x.median(axis=1, keepdims=True).values,
    "nansum": lambda T, x: x.nansum(axis=1, keepdims=True),
    "logsumexp": lambda T, x: x.logsumexp(axis=1, keepdims=True),
    "prod": lambda T, x: x.prod(axis=0, keepdims=True),
    "cumsum": lambda T, x: x.cumsum(axis=1),
    "cumsum_": lambda T, x: x.clone().cumsum_(axis=0),
    "softmax": lambda T, x: x.softmax(axis=-1),
    "log_softmax": lambda T, x: x.log_softmax(axis=0),
    "squeeze": lambda T, x: x[:, :1].squeeze(axis=1),
    "unsqueeze": lambda T, x: x.unsqueeze(axis=0),
    "unsqueeze_": lambda T, x: x.clone().unsqueeze_(axis=2),
    "sort": lambda T, x: x.sort(axis=0).values,
    "argsort": lambda T, x: x.argsort(axis=1),
    "topk": lambda T, x: x.topk(2, axis=1).values,
    "kthvalue": lambda T, x: x.kthvalue(2, axis=1).values,
    "gather": lambda T, x: x.gather(axis=1, index=T.tensor(IDX)),
    "narrow": lambda T, x: x.narrow(axis=1, start=1, length=2),
    "select": lambda T, x: x.select(axis=1, index=2),
    "chunk": lambda T, x: x.chunk(2, axis=1)[1],
    "unbind": lambda T, x: x.unbind(axis=1)[3],
    "scatter": lambda T, x: x.scatter(axis=1, index=T.tensor(IDX), src=x),
    "index_add": lambda T, x: x.index_add(axis=1, index=T.tensor([0, 3]), source=x[:, :2]),
    "repeat_interleave": lambda T, x: x.repeat_interleave(2, axis=1),
    "swapaxes": lambda T, x: x.swapaxes(axis0=0, axis1=1),
    # functions
    "concatenate": lambda T, x: T.concatenate([x, x], axis=1),
    "cat": lambda T, x: T.cat([x, x], axis=0),
    "stack": lambda T, x: T.stack([x, x], axis=2),
    "tensor_split": lambda T, x: T.tensor_split(x, 2, axis=1)[0],
    "aminmax": lambda T, x: T.aminmax(x, axis=1, keepdims=True).max,
    "count_nonzero": lambda T, x: T.count_nonzero(x > 0.9, axis=1),
    "torch.softmax": lambda T, x: T.softmax(x, axis=1),
    "torch.squeeze": lambda T, x: T.squeeze(x[None], axis=0),
    "cosine_similarity": lambda T, x: T.cosine_similarity(x, x + 1, axis=1),
    "trapezoid": lambda T, x: T.trapezoid(x, axis=0),
    "torch.swapaxes": lambda T, x: T.swapaxes(x, axis0=1, axis1=0),
    "slice_copy": lambda T, x: T.slice_copy(x, axis=1, start=1),
    "linalg.norm": lambda T, x: T.linalg.norm(x, axis=1, keepdims=True),
    "linalg.vector_norm": lambda T, x: T.linalg.vector_norm(x, axis=0),
    "special.logsumexp": lambda T, x: T.special.logsumexp(x, axis=1),
    "fft.fft": lambda T, x: T.fft.fft(x, axis=0).abs(),
}


@pytest.mark.parametrize("label", sorted(CALLS))
def test_numpy_names_match_torch(label):
    call = CALLS[label]
    expected = call(torch, torch.tensor(A)).numpy()
    got = call(ember, ember.tensor(A)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_alias_and_name_together_is_an_error_naming_both():
    x = ember.tensor(A)
    for call in (
        lambda: x.unsqueeze(0, axis=0),
        lambda: ember.squeeze(x, dim=0, axis=0),
        lambda: x.std(dim=0, axis=0),
        lambda: ember.cat([x, x], dim=0, axis=0),
        lambda: x.cumsum_(dim=0, axis=0),
    ):
        with pytest.raises(TypeError, match="got both 'dim' and its alias 'axis'"):
            call()
    with pytest.raises(TypeError, match="got both 'keepdim' and its alias 'keepdims'"):
        x.median(0, keepdim=True, keepdims=True)


def test_missing_required_argument_keeps_pythons_message():
    x = ember.tensor(A)
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'dim'"):
        x.unsqueeze()
    with pytest.raises(TypeError, match="required positional argument: 'index'"):
        x.gather(axis=1)


def test_signatures_stay_pytorchs():
    # help() and the docs show the function's own parameters, not the aliases' sentinels
    for fn in (ember.Tensor.unsqueeze, ember.Tensor.gather, ember.squeeze, ember.linalg.norm):
        params = inspect.signature(fn).parameters
        assert "axis" not in params and "dim" in params
        assert all(p.default is not ember._numpy_names.NA for p in params.values())


def test_positional_calls_and_autograd_unchanged():
    x = ember.tensor(A, requires_grad=True)
    y = x.softmax(axis=1).gather(axis=1, index=ember.tensor(IDX)).sum()
    y.backward()
    t = torch.tensor(A, requires_grad=True)
    t.softmax(1).gather(1, torch.tensor(IDX)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-6, atol=1e-7)
