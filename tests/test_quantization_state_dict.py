"""state_dict keys (and their shapes and dtypes) of every quantized module, against torch's;
``nn.quantized.Linear.from_reference``."""

import warnings

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
warnings.filterwarnings("ignore", message=".*quantized tensor creation.*")

STATIC = {
    "Quantize": lambda m, lib: m.Quantize(0.1, 2, lib.quint8),
    "DeQuantize": lambda m, lib: m.DeQuantize(),
    "ReLU6": lambda m, lib: m.ReLU6(),
    "Hardswish": lambda m, lib: m.Hardswish(0.1, 2),
    "LeakyReLU": lambda m, lib: m.LeakyReLU(0.1, 2, 0.2),
    "Sigmoid": lambda m, lib: m.Sigmoid(0.1, 2),
    "Dropout": lambda m, lib: m.Dropout(0.5),
    "FloatFunctional": lambda m, lib: m.FloatFunctional(),
    "QFunctional": lambda m, lib: m.QFunctional(),
    "Linear": lambda m, lib: m.Linear(4, 3),
    "Conv1d": lambda m, lib: m.Conv1d(2, 3, 3),
    "Conv2d": lambda m, lib: m.Conv2d(2, 3, 3),
    "dynamic.Linear": lambda m, lib: m.dynamic.Linear(4, 3),
    "dynamic.LSTM": lambda m, lib: m.dynamic.LSTM(4, 3, num_layers=2, bidirectional=True),
    "dynamic.GRU": lambda m, lib: m.dynamic.GRU(4, 3),
}


def _keys(sd):
    return {
        k: (tuple(v.shape), str(v.dtype).split(".")[-1])
        if hasattr(v, "shape")
        else type(v).__name__
        for k, v in sd.items()
    }


@pytest.mark.parametrize("name", list(STATIC))
def test_state_dict_keys_match_torch(name):
    import torch.ao.nn.quantized as tq
    import torch.ao.nn.quantized.dynamic  # noqa: F401

    import ember.ao.nn.quantized as eq
    import ember.ao.nn.quantized.dynamic  # noqa: F401

    ours = _keys(STATIC[name](eq, ember).state_dict())
    theirs = _keys(STATIC[name](tq, torch).state_dict())
    if name.startswith("dynamic.") and name != "dynamic.Linear":
        # torch keeps a TorchScript object under each key, ember a tuple of tensors
        ours, theirs = list(ours), list(theirs)
    assert ours == theirs


@pytest.mark.parametrize("name", ["Hardswish", "LeakyReLU", "QFunctional"])
def test_output_qparams_round_trip_through_state_dict(name):
    import ember.ao.nn.quantized as eq

    src = STATIC[name](eq, ember)
    src.scale, src.zero_point = 0.25, 7
    dst = STATIC[name](eq, ember)
    dst.load_state_dict(src.state_dict())
    assert (dst.scale, dst.zero_point) == (0.25, 7)
    with pytest.raises(RuntimeError, match="zero_point"):
        dst.load_state_dict({"scale": ember.tensor(1.0)})


class _Ref:
    """The reference-module interface from_reference reads."""

    def __init__(self, qweight, bias, in_features, out_features):
        self.qweight, self.bias = qweight, bias
        self.in_features, self.out_features = in_features, out_features

    def get_quantized_weight(self):
        return self.qweight


def test_linear_from_reference_matches_torch():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 5)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    outs = []
    for lib, nnq in ((ember, ember.ao.nn.quantized), (torch, torch.ao.nn.quantized)):
        ref = _Ref(lib.quantize_per_tensor(lib.tensor(w), 0.02, 0, lib.qint8), lib.tensor(b), 5, 3)
        q = nnq.Linear.from_reference(ref, 0.05, 64)
        outs.append(q(lib.quantize_per_tensor(lib.tensor(x), 0.03, 60, lib.quint8)))
    assert (outs[0].q_scale(), outs[0].q_zero_point()) == (0.05, 64)
    np.testing.assert_array_equal(outs[0].int_repr().numpy(), outs[1].int_repr().numpy())
    with pytest.raises(TypeError, match="get_quantized_weight"):
        ember.ao.nn.quantized.Linear.from_reference(ember.nn.Linear(5, 3), 0.1, 0)
