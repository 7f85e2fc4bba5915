"""``torch.TensorType`` (TorchScript's tensor type): open_clip imports it for its annotations;
what it answers about a tensor matches torch's."""

from __future__ import annotations

import pytest

import ember

torch = pytest.importorskip("torch")


def test_tensor_type_answers_as_torchs():
    for lib in (torch, ember):
        t = lib.TensorType.get()
        assert repr(t) == "Tensor" and t.sizes() is None
    e = ember.TensorType.create_from_tensor(ember.ones(2, 3))
    r = torch.TensorType.create_from_tensor(torch.ones(2, 3))
    assert e.sizes() == r.sizes() == [2, 3]
    assert e.strides() == r.strides() == [3, 1]
    assert e.dim() == r.dim() == 2 and e.scalarType() == r.scalarType() == "Float"
    assert e.dtype() == ember.float32 and str(e.device()) == "cpu"
    assert e.with_sizes([4, None]).varyingSizes() == [4, None]
    with pytest.raises(RuntimeError, match="not known"):
        ember.TensorType.get().dim()


def test_tensor_type_as_an_annotation():
    def masked_mean(x: ember.TensorType, mask: ember.TensorType) -> ember.Tensor:
        return (x * mask).sum() / mask.sum()

    assert masked_mean(ember.ones(4), ember.tensor([1.0, 1.0, 0.0, 0.0])).item() == 1.0
