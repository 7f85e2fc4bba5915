"""ONNX export of packed sequences (pack_padded_sequence -> ONNX sequence_lens ->
pad_packed_sequence) and of LSTM ``proj_size``: onnxruntime equals ember to 1e-5, also on
batch sizes, lengths and sequence lengths other than the export inputs."""

import io

import numpy as np
import pytest

import ember
import ember.nn as nn
from ember.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


class PackedRNN(nn.Module):
    def __init__(
        self, kind: str, batch_first: bool, total_length=None, with_hx=False, **kwargs
    ) -> None:
        super().__init__()
        self.rnn = getattr(nn, kind)(4, 6, batch_first=batch_first, **kwargs)
        self.batch_first, self.total_length, self.with_hx = batch_first, total_length, with_hx

    def forward(self, x, lengths):
        packed = pack_padded_sequence(
            x, lengths, batch_first=self.batch_first, enforce_sorted=False
        )
        out, state = self.rnn(packed)
        y, lens = pad_packed_sequence(
            out, batch_first=self.batch_first, total_length=self.total_length
        )
        return y, state, lens


class ProjLSTM(nn.Module):
    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.rnn = nn.LSTM(4, 6, proj_size=3, **kwargs)

    def forward(self, x):
        return self.rnn(x)


def _flat(o):
    if isinstance(o, (tuple, list)):
        return [y for e in o for y in _flat(e)]
    return [o.detach().numpy()]


def _session(model, args, dynamic_axes):
    f = io.BytesIO()
    names = ["x", "lengths"][: len(args)]
    ember.onnx.export(model, args, f, input_names=names, dynamic_axes=dynamic_axes)
    return ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"]), names


def _compare(model, sess, names, args):
    got = sess.run(None, {n: a.numpy() for n, a in zip(names, args)})
    want = _flat(model(*args))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


PACKED = {
    "lstm_batch_first": ("LSTM", True, None, {}),
    "gru_2layer_bidir": ("GRU", False, None, {"num_layers": 2, "bidirectional": True}),
    "rnn_total_length": ("RNN", True, 9, {"nonlinearity": "relu"}),
    "lstm_bidir": ("LSTM", True, None, {"bidirectional": True}),
    "lstm_proj_2layer_bidir": (
        "LSTM",
        True,
        None,
        {"proj_size": 3, "num_layers": 2, "bidirectional": True},
    ),
}


@pytest.mark.parametrize("case", list(PACKED))
def test_packed_sequence_export_matches_ember(case):
    kind, bf, total, kwargs = PACKED[case]
    ember.manual_seed(0)
    model = PackedRNN(kind, bf, total, **kwargs).eval()
    shape = (3, 7, 4) if bf else (7, 3, 4)
    x, lengths = ember.randn(*shape), ember.tensor([5, 2, 7])
    b_ax, t_ax = (0, 1) if bf else (1, 0)
    sess, names = _session(
        model, (x, lengths), {"x": {b_ax: "batch", t_ax: "time"}, "lengths": {0: "batch"}}
    )
    _compare(model, sess, names, (x, lengths))
    # another batch, other lengths, a longer padded input, longest sequence shorter than it
    shape2 = (4, 8, 4) if bf else (8, 4, 4)
    _compare(model, sess, names, (ember.randn(*shape2), ember.tensor([3, 6, 1, 2])))


@pytest.mark.parametrize(
    "kwargs", [{}, {"num_layers": 2, "bidirectional": True, "batch_first": True}]
)
def test_lstm_proj_size_export_matches_ember(kwargs):
    ember.manual_seed(0)
    model = ProjLSTM(**kwargs).eval()
    bf = kwargs.get("batch_first", False)
    x = ember.randn(2, 5, 4) if bf else ember.randn(5, 2, 4)
    sess, names = _session(model, (x,), {"x": {0: "a", 1: "b"}})
    _compare(model, sess, names, (x,))
    _compare(model, sess, names, (ember.randn(3, 6, 4),))


def test_lstm_proj_size_unbatched_export():
    ember.manual_seed(0)
    model = ProjLSTM().eval()
    sess, names = _session(model, (ember.randn(5, 4),), None)
    _compare(model, sess, names, (ember.randn(5, 4),))


def test_packed_lengths_become_sequence_lens():
    import onnx

    f = io.BytesIO()
    ember.onnx.export(
        PackedRNN("LSTM", True).eval(), (ember.randn(2, 4, 4), ember.tensor([4, 2])), f
    )
    graph = onnx.load_from_string(f.getvalue()).graph
    (lstm,) = [n for n in graph.node if n.op_type == "LSTM"]
    (cast,) = [n for n in graph.node if n.output[0] == lstm.input[4]]  # sequence_lens
    assert cast.op_type == "Cast" and cast.input[0] == "lengths"
