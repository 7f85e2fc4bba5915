"""Session 22 quantization leftovers, against torch: the dynamic LSTM / GRU loop with the BLAS
thread mode chosen by measurement (same values in both modes), static and dynamic qconfigs
mixed in one FX ``QConfigMapping``, and the quantized ``EmbeddingBag`` (eager and FX)."""

import copy

import numpy as np
import pytest

import ember

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
rng = np.random.default_rng(22)


def _to_ember(t_mod, e_mod):
    e_mod.load_state_dict({k: ember.tensor(v.numpy()) for k, v in t_mod.state_dict().items()})
    return e_mod


@pytest.mark.parametrize("mode,batch", [("LSTM", 20), ("GRU", 20), ("LSTM", 1)])
def test_dynamic_rnn_matches_torch_in_both_blas_modes(mode, batch):
    torch = pytest.importorskip("torch")
    t_rnn = getattr(torch.nn, mode)(32, 48, num_layers=2)
    e_rnn = _to_ember(t_rnn, getattr(ember.nn, mode)(32, 48, num_layers=2))
    tq = torch.ao.quantization.quantize_dynamic(
        torch.nn.Sequential(t_rnn), {getattr(torch.nn, mode)}, torch.qint8
    )
    eq = ember.ao.quantization.quantize_dynamic(
        ember.nn.Sequential(e_rnn), {getattr(ember.nn, mode)}, ember.qint8
    )
    x = rng.standard_normal((9, batch, 32)).astype(np.float32)
    with torch.no_grad():
        t_out = tq(torch.from_numpy(x))[0].numpy()
    # the first loop of a size runs on one BLAS thread, the next on the full pool: the
    # integer GEMM is exact, so both give the same numbers
    outs = [eq(ember.tensor(x))[0].numpy() for _ in range(3)]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    np.testing.assert_allclose(outs[0], t_out, atol=2e-3)


class _Mixed:
    @staticmethod
    def build(nn):
        class M(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = nn.Linear(8, 16)
                self.relu = nn.ReLU()
                self.lstm = nn.LSTM(16, 12)
                self.fc2 = nn.Linear(12, 4)

            def forward(self, x):
                y, _ = self.lstm(self.relu(self.fc1(x)))
                return self.fc2(y)

        return M


def _fx(lib):
    from importlib import import_module

    return (
        import_module(lib.__name__ + ".ao.quantization"),
        import_module(lib.__name__ + ".ao.quantization.quantize_fx"),
    )


def test_fx_static_mapping_with_dynamic_lstm_matches_torch():
    torch = pytest.importorskip("torch")
    t_m = _Mixed.build(torch.nn)().eval()
    e_m = _to_ember(t_m, _Mixed.build(ember.nn)().eval())
    x = rng.standard_normal((5, 3, 8)).astype(np.float32)
    results = []
    for lib, m in ((torch, t_m), (ember, e_m)):
        aq, qfx = _fx(lib)
        mapping = (
            aq.QConfigMapping()
            .set_global(aq.get_default_qconfig("fbgemm"))
            .set_object_type(lib.nn.LSTM, aq.default_dynamic_qconfig)
        )
        xt = lib.tensor(x)
        prepared = qfx.prepare_fx(copy.deepcopy(m), mapping, (xt,))
        names = [n.target for n in prepared.graph.nodes if n.op == "call_module"]
        prepared(xt)
        conv = qfx.convert_fx(prepared)
        with torch.no_grad():
            out = conv(xt).numpy()
        results.append((names, sorted(conv.state_dict()), repr(conv.lstm), out))
    (t_names, t_keys, t_repr, t_out), (e_names, e_keys, e_repr, e_out) = results
    assert e_names == t_names  # observers numbered in graph order, as torch
    assert e_keys == t_keys  # torch's qparams names ("_scale_0" for the LSTM's output)
    assert e_repr == t_repr
    np.testing.assert_allclose(e_out, t_out, atol=1e-6)


def test_fx_mixed_mapping_still_refused_in_qat():
    eq, eqfx = _fx(ember)
    m = _Mixed.build(ember.nn)().train()
    mapping = eq.get_default_qat_qconfig_mapping().set_object_type(
        ember.nn.LSTM, eq.default_dynamic_qconfig
    )
    with pytest.raises(NotImplementedError, match="object type LSTM qconfig.*dynamic"):
        eqfx.prepare_qat_fx(m, mapping, (ember.randn(5, 3, 8),))


class _Bag:
    @staticmethod
    def build(nn, mode, last):
        class W(nn.Module):
            def __init__(self):
                super().__init__()
                self.bag = nn.EmbeddingBag(10, 6, mode=mode, include_last_offset=last)

            def forward(self, i, o=None, w=None):
                return self.bag(i, o, per_sample_weights=w)

        return W


@pytest.mark.parametrize("mode,last", [("sum", False), ("mean", True), ("max", False)])
def test_quantized_embedding_bag_eager_matches_torch(mode, last):
    torch = pytest.importorskip("torch")
    t_m = _Bag.build(torch.nn, mode, last)()
    e_m = _to_ember(t_m, _Bag.build(ember.nn, mode, last)())
    idx = np.array([1, 2, 4, 5, 4, 3, 2, 9, 0])
    off = np.array([0, 4, 4, 9]) if last else np.array([0, 4, 4])  # an empty bag
    psw = rng.random(idx.size).astype(np.float32)
    outs = []
    for lib, m in ((torch, t_m), (ember, e_m)):
        m.bag.qconfig = lib.ao.quantization.float_qparams_weight_only_qconfig
        q = lib.ao.quantization.convert(lib.ao.quantization.prepare(m))
        args = [(lib.tensor(idx), lib.tensor(off)), (lib.tensor(idx.reshape(3, 3)),)]
        if mode == "sum":
            args.append((lib.tensor(idx), lib.tensor(off), lib.tensor(psw)))
        with torch.no_grad():
            ys = [q(*a).numpy() for a in args]
        outs.append((ys, repr(q), sorted(q.state_dict()), q.bag.mode))
    (t_ys, t_repr, t_keys, t_mode), (e_ys, e_repr, e_keys, e_mode) = outs
    for e_y, t_y in zip(e_ys, t_ys):  # torch sums every bag whatever the mode: so do we
        np.testing.assert_allclose(e_y, t_y, rtol=1e-5, atol=1e-5)
    assert e_repr == t_repr.replace("torch.", "ember.")
    assert e_keys == t_keys and e_mode == t_mode


def test_quantized_embedding_bag_fx_and_state_dict():
    torch = pytest.importorskip("torch")
    t_m = _Bag.build(torch.nn, "sum", False)().eval()
    e_m = _to_ember(t_m, _Bag.build(ember.nn, "sum", False)().eval())
    idx, off = np.array([3, 1, 4, 1, 5, 9]), np.array([0, 2])
    res = []
    for lib, m in ((torch, t_m), (ember, e_m)):
        aq, qfx = _fx(lib)
        mapping = aq.QConfigMapping().set_object_type(
            lib.nn.EmbeddingBag, aq.float_qparams_weight_only_qconfig
        )
        ex = (lib.tensor(idx), lib.tensor(off))
        conv = qfx.convert_fx(qfx.prepare_fx(copy.deepcopy(m), mapping, ex))
        res.append((conv(*ex).numpy(), repr(conv.bag), conv.state_dict()))
    (t_y, t_repr, t_sd), (e_y, e_repr, e_sd) = res
    np.testing.assert_allclose(e_y, t_y, rtol=1e-5, atol=1e-5)
    assert e_repr == t_repr.replace("torch.", "ember.")
    assert sorted(e_sd) == sorted(t_sd)
    w_t, w_e = t_sd["bag._packed_params._packed_weight"], e_sd["bag._packed_params._packed_weight"]
    np.testing.assert_array_equal(w_e.int_repr().numpy(), w_t.int_repr().numpy())
    # a fresh quantized bag loads the state_dict and gives the same sums
    fresh = ember.ao.nn.quantized.EmbeddingBag(10, 6)
    fresh.load_state_dict({k[4:]: v for k, v in e_sd.items()})
    np.testing.assert_array_equal(fresh(ember.tensor(idx), ember.tensor(off)).numpy(), e_y)
