"""``channels_last``: the strides, ``is_contiguous(memory_format=...)``,
``contiguous`` / ``clone`` / ``to`` and ``suggest_memory_format`` answers torch gives for a
tensor converted to NHWC, and a model moved to it training as the row-major one (the kernels
read any strides). Compared with torch 2.13."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember._prims_common import suggest_memory_format

torch = pytest.importorskip("torch")
from torch._prims_common import suggest_memory_format as torch_suggest  # noqa: E402


def _answers(lib, suggest, shape, fmt_name):
    fmt = getattr(lib, fmt_name)
    x = lib.arange(float(np.prod(shape))).reshape(shape)
    y = x.contiguous(memory_format=fmt)
    out = {
        "nchw": (x.stride(), x.is_contiguous(memory_format=fmt), x.is_contiguous()),
        "converted": (y.stride(), y.is_contiguous(), y.is_contiguous(memory_format=fmt)),
        "same": y.contiguous(memory_format=fmt) is y,
        "to": x.to(memory_format=fmt).stride(),
        "clone": (y.clone().stride(), y.clone(memory_format=lib.contiguous_format).stride()),
        "back": (
            y.contiguous().stride(),
            y.contiguous().is_contiguous(),
            y.to(memory_format=lib.contiguous_format).stride(),
        ),
        "ops": ((y + 1).stride(), (y * y).stride(), y.relu().stride(), y.sum(1).stride()),
        "reshape": y.reshape(shape[0], -1).stride(),
        "like": (
            lib.empty_like(y).stride(),
            lib.zeros_like(y).stride(),
            lib.full_like(y, 2.0).stride(),
            lib.ones_like(x, memory_format=fmt).stride(),
            lib.zeros_like(x).stride(),
        ),
        "suggest": (str(suggest(y)).split(".")[-1], str(suggest(x)).split(".")[-1]),
        "values": y.tolist() == x.tolist() and y.numpy().tolist() == x.numpy().tolist(),
    }
    return out


@pytest.mark.parametrize(
    "shape, fmt",
    [
        ((2, 3, 4, 5), "channels_last"),
        ((2, 3, 1, 1), "channels_last"),
        ((2, 1, 4, 5), "channels_last"),
        ((2, 3, 2, 4, 5), "channels_last_3d"),
    ],
)
def test_channels_last_answers_match_torch(shape, fmt):
    assert _answers(ember, suggest_memory_format, shape, fmt) == _answers(
        torch, torch_suggest, shape, fmt
    )


def test_channels_last_errors_and_views():
    for lib in (ember, torch):
        y = lib.randn(2, 3, 4, 5).contiguous(memory_format=lib.channels_last)
        with pytest.raises(RuntimeError, match="view size is not compatible"):
            y.view(2, -1)
        with pytest.raises(RuntimeError, match="required rank 4 tensor to use channels_last"):
            lib.randn(3, 4, 5).contiguous(memory_format=lib.channels_last)
        with pytest.raises(RuntimeError, match="required rank 5 tensor to use channels_last_3d"):
            lib.randn(3, 4, 5, 6).to(memory_format=lib.channels_last_3d)
        assert not lib.randn(3, 4, 5).is_contiguous(memory_format=lib.channels_last)
        p = y.permute(0, 2, 3, 1)  # NHWC indexing of NHWC memory: row-major
        assert p.is_contiguous() and p.view(-1).shape == (120,)


def _train(lib, channels_last: bool):
    lib.manual_seed(0)
    nn = lib.nn
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2),
    )  # fmt: skip
    rng = np.random.default_rng(0)
    weights = [rng.normal(0, 0.3, p.shape).astype(np.float32) for p in model.parameters()]
    with lib.no_grad():
        for p, w in zip(model.parameters(), weights):
            p.copy_(lib.tensor(w))
    x = lib.tensor(rng.normal(size=(4, 3, 8, 8)).astype(np.float32))
    target = lib.tensor([0, 1, 1, 0])
    if channels_last:
        model = model.to(memory_format=lib.channels_last)
        x = x.contiguous(memory_format=lib.channels_last)
    strides = model[0].weight.stride()
    opt = lib.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, strides, model[0].weight.stride(), model[0].weight.grad.shape


def test_channels_last_model_trains_as_torch():
    got = {(lib.__name__, cl): _train(lib, cl) for lib in (ember, torch) for cl in (False, True)}
    for cl in (False, True):
        e, t = got[("ember", cl)], got[("torch", cl)]
        np.testing.assert_allclose(e[0], t[0], rtol=1e-5)
        assert e[1] == t[1] and e[3] == t[3]
    assert got[("ember", True)][1] == (27, 1, 9, 3)  # the weight moved to NHWC strides
    # the optimizer updated the NHWC weight in place (its strides stay)
    assert got[("ember", True)][2] == (27, 1, 9, 3)
    np.testing.assert_allclose(got[("ember", True)][0], got[("ember", False)][0], rtol=1e-5)
