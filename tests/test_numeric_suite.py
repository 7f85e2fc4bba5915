"""The quantization numeric suite (ember.ao.ns) against torch.ao.ns on the same models,
weights and data: eager mode (compare_weights / compare_model_outputs / compare_model_stub)
and FX (extract_weights / add_loggers / add_shadow_loggers), keys and SQNR values."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

import ember
import ember.ao.ns._numeric_suite as ens
import ember.ao.ns._numeric_suite_fx as ensfx
from ember.ao.ns.fx.utils import (
    compute_cosine_similarity,
    compute_normalized_l2_error,
    compute_sqnr,
)

torch = pytest.importorskip("torch")
import torch.ao.ns._numeric_suite as tns  # noqa: E402
import torch.ao.ns._numeric_suite_fx as tnsfx  # noqa: E402
from torch.ao.ns.fx.utils import compute_sqnr as t_sqnr  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")


def _models(T):
    nn = T.nn
    q = T.ao.quantization

    class Block(nn.Module):  # a unit compare_model_stub shadows as a whole
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.conv(x))

    class Eager(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.dequant = q.QuantStub(), q.DeQuantStub()
            self.conv1 = nn.Conv2d(3, 4, 3)
            self.relu1 = nn.ReLU()
            self.block = Block()
            self.fc = nn.Linear(4 * 6 * 6, 5)

        def forward(self, x):
            x = self.block(self.relu1(self.conv1(self.quant(x))))
            return self.dequant(self.fc(x.flatten(1)))

    class Graph(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)
            self.conv2 = nn.Conv2d(4, 4, 1)
            self.fc = nn.Linear(4 * 6 * 6, 5)

        def forward(self, x):
            x = T.nn.functional.relu(self.bn(self.conv(x)))
            x = x + self.conv2(x)
            return T.nn.functional.relu(self.fc(T.flatten(x, 1)))

    class Seq(nn.Module):  # dynamic quantization: LSTM + Linear
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 6)
            self.rnn = nn.LSTM(6, 5, 2)
            self.fc = nn.Linear(5, 10)

        def forward(self, x):
            out, _ = self.rnn(self.emb(x))
            return self.fc(out)

    return Block, Eager, Graph, Seq


def _pair(index):
    """(torch model, ember model) with torch's weights and buffers."""
    torch.manual_seed(0)
    t = _models(torch)[index]().eval()
    e = _models(ember)[index]().eval()
    e.load_state_dict({k: ember.tensor(v.numpy()) for k, v in t.state_dict().items()})
    return t, e


def _num(x):
    if isinstance(x, (list, tuple)):
        return [_num(v) for v in x]
    return np.asarray(x.detach().numpy() if hasattr(x, "detach") else x, dtype=np.float64)


def _close(a, b, rtol=1e-4):
    np.testing.assert_allclose(_num(a), _num(b), rtol=rtol)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return [rng.standard_normal((2, 3, 8, 8)).astype(np.float32) for _ in range(3)]


def _eager_quantized(T, model, data):
    q = T.ao.quantization
    model = copy.deepcopy(model)
    model.qconfig = q.default_qconfig
    q.fuse_modules(model, [["conv1", "relu1"]], inplace=True)
    prepared = q.prepare(model)
    for x in data:
        prepared(T.tensor(x))
    return model, q.convert(prepared)


def test_eager_compare_weights_and_outputs(data):
    t, e = _pair(1)
    (tf, tq), (ef, eq) = _eager_quantized(torch, t, data), _eager_quantized(ember, e, data)
    tw = tns.compare_weights(tf.state_dict(), tq.state_dict())
    ew = ens.compare_weights(ef.state_dict(), eq.state_dict())
    assert (
        list(ew)
        == list(tw)
        == ["conv1.weight", "block.conv.weight", "fc._packed_params._packed_params"]
    )
    for k in tw:
        _close(
            compute_sqnr(ew[k]["float"], ew[k]["quantized"]),
            t_sqnr(tw[k]["float"], tw[k]["quantized"]),
        )

    x = data[0]
    ta = tns.compare_model_outputs(copy.deepcopy(tf), copy.deepcopy(tq), torch.tensor(x))
    ea = ens.compare_model_outputs(copy.deepcopy(ef), copy.deepcopy(eq), ember.tensor(x))
    assert sorted(ea) == sorted(ta)
    for k in ta:
        # torch's count too: a fused float module is a Sequential, which also calls the
        # logger child it was given, before the output hook does
        assert len(ea[k]["float"]) == len(ta[k]["float"]) == (2 if k == "conv1.stats" else 1)
        _close(
            compute_sqnr(ea[k]["float"][0], ea[k]["quantized"][0]),
            t_sqnr(ta[k]["float"][0], ta[k]["quantized"][0]),
        )


def test_eager_compare_model_stub_and_custom_logger(data):
    t, e = _pair(1)
    (tf, tq), (ef, eq) = _eager_quantized(torch, t, data), _eager_quantized(ember, e, data)
    block_t, block_e = _models(torch)[0], _models(ember)[0]
    # the Block classes are the ones the models were built from
    block_t, block_e = type(tf.block), type(ef.block)
    x = data[1]
    tob = tns.compare_model_stub(tf, tq, [block_t], torch.tensor(x))
    eob = ens.compare_model_stub(ef, eq, [block_e], ember.tensor(x))
    assert list(eob) == list(tob) == ["block.stats"]
    _close(
        compute_sqnr(eob["block.stats"]["float"][0], eob["block.stats"]["quantized"][0]),
        t_sqnr(tob["block.stats"]["float"][0], tob["block.stats"]["quantized"][0]),
    )
    assert isinstance(eq.block, ens.Shadow)
    # more data through the prepared model keeps appending; the model's output is unchanged
    out = eq(ember.tensor(data[2]))
    assert len(ens.get_logger_dict(eq)["block.stats"]["float"]) == 2
    assert out.shape == (2, 5)

    seen = []

    class Counting(ens.Logger):
        def forward(self, x):
            seen.append(tuple(x.shape))
            return x

    ef2, eq2 = _eager_quantized(ember, e, data)
    ens.prepare_model_outputs(ef2, eq2, Counting)
    ef2(ember.tensor(x))
    eq2(ember.tensor(x))
    assert len(seen) >= 6 and (2, 5) in seen


def test_eager_dynamic_lstm_weights():
    t, e = _pair(3)
    tq = torch.ao.quantization.quantize_dynamic(t, {torch.nn.LSTM, torch.nn.Linear})
    eq = ember.ao.quantization.quantize_dynamic(e, {ember.nn.LSTM, ember.nn.Linear})
    tw = tns.compare_weights(t.state_dict(), tq.state_dict())
    ew = ens.compare_weights(e.state_dict(), eq.state_dict())
    assert list(ew) == list(tw)
    for k in tw:
        _close(
            compute_sqnr(ew[k]["float"], ew[k]["quantized"]),
            t_sqnr(tw[k]["float"], tw[k]["quantized"]),
        )


def _fx_quantized(T, model, data):
    from importlib import import_module

    qfx = import_module(f"{T.__name__}.ao.quantization.quantize_fx")
    qm = T.ao.quantization.get_default_qconfig_mapping("x86")
    prepared = qfx.prepare_fx(copy.deepcopy(model), qm, (T.tensor(data[0]),))
    for x in data:
        prepared(T.tensor(x))
    return prepared, qfx.convert_fx(copy.deepcopy(prepared))


@pytest.fixture(scope="module")
def fx_pair(data):
    t, e = _pair(2)
    return _fx_quantized(torch, t, data), _fx_quantized(ember, e, data)


def _sqnrs(results, kind, model="int8"):
    return {k: float(v[kind][model][0]["sqnr"][0]) for k, v in results.items()}


def test_fx_extract_weights(fx_pair):
    (tp, tq), (ep, eq) = fx_pair
    tw, ew = (
        tnsfx.extract_weights("fp32", tp, "int8", tq),
        ensfx.extract_weights("fp32", ep, "int8", eq),
    )
    for ns, res, fn in ((tnsfx, tw, t_sqnr), (ensfx, ew, compute_sqnr)):
        ns.extend_logger_results_with_comparison(res, "fp32", "int8", fn, "sqnr")
    assert list(ew) == list(tw) == ["conv", "conv2", "fc"]
    t_s, e_s = _sqnrs(tw, "weight"), _sqnrs(ew, "weight")
    _close(list(e_s.values()), list(t_s.values()))
    entry = ew["conv"]["weight"]["int8"][0]
    assert entry["fqn"] == "conv" and entry["values"][0].is_quantized
    assert entry["ref_node_target_type"].endswith("ConvReLU2d")


def test_fx_add_loggers_and_comparisons(fx_pair, data):
    (tp, tq), (ep, eq) = fx_pair
    ta, tb = tnsfx.add_loggers(
        "fp32", copy.deepcopy(tp), "int8", copy.deepcopy(tq), tnsfx.OutputLogger
    )
    ea, eb = ensfx.add_loggers(
        "fp32", copy.deepcopy(ep), "int8", copy.deepcopy(eq), ensfx.OutputLogger
    )
    x = data[1]
    for m in (ta, tb):
        m(torch.tensor(x))
    for m in (ea, eb):
        m(ember.tensor(x))
    # the loggers pass values through: the models compute what they did
    _close(eb(ember.tensor(x)).numpy(), eq(ember.tensor(x)).numpy(), rtol=0)
    tr = tnsfx.extract_logger_info(ta, tb, tnsfx.OutputLogger, "int8")
    er = ensfx.extract_logger_info(ea, eb, ensfx.OutputLogger, "int8")
    tnsfx.extend_logger_results_with_comparison(tr, "fp32", "int8", t_sqnr, "sqnr")
    ensfx.extend_logger_results_with_comparison(er, "fp32", "int8", compute_sqnr, "sqnr")
    assert list(er) == list(tr) == ["conv", "conv2", "add", "flatten", "fc"]
    _close(list(_sqnrs(er, "node_output").values()), list(_sqnrs(tr, "node_output").values()))
    e_conv = er["conv"]["node_output"]
    assert len(e_conv["int8"][0]["values"]) == 2  # b ran twice
    assert e_conv["fp32"][0]["prev_node_target_type"].endswith("HistogramObserver")
    ensfx.extend_logger_results_with_comparison(
        er, "fp32", "int8", compute_normalized_l2_error, "l2"
    )
    ensfx.extend_logger_results_with_comparison(
        er, "fp32", "int8", compute_cosine_similarity, "cos"
    )
    fc = er["fc"]["node_output"]["int8"][0]
    assert 0 < float(fc["l2"][0]) < 0.1 and float(fc["cos"][0].reshape(())) > 0.99

    ensfx.loggers_set_enabled(eb, False)
    eb(ember.tensor(x))
    assert (
        len(
            ensfx.extract_logger_info(ea, eb, ensfx.OutputLogger, "int8")["fc"]["node_output"][
                "int8"
            ][0]["values"]
        )
        == 2
    )


def test_fx_add_loggers_logs_inputs(fx_pair, data):
    _, (ep, eq) = fx_pair
    ea, eb = ensfx.add_loggers("fp32", ep, "int8", eq, ensfx.OutputLogger, should_log_inputs=True)
    ea(ember.tensor(data[0]))
    eb(ember.tensor(data[0]))
    res = ensfx.extract_logger_info(ea, eb, ensfx.OutputLogger, "int8")
    add_in = res["add"]["node_input"]["int8"]
    assert [(e["index_of_arg"], e["index_within_arg"]) for e in add_in] == [(0, 0), (1, 0)]
    assert add_in[0]["values"][0].is_quantized


def test_fx_shadow_loggers(fx_pair, data):
    (tp, tq), (ep, eq) = fx_pair
    ts = tnsfx.add_shadow_loggers(
        "fp32", copy.deepcopy(tp), "int8", copy.deepcopy(tq), tnsfx.OutputLogger
    )
    es = ensfx.add_shadow_loggers(
        "fp32", copy.deepcopy(ep), "int8", copy.deepcopy(eq), ensfx.OutputLogger
    )
    x = data[2]
    ts(torch.tensor(x))
    _close(es(ember.tensor(x)).numpy(), eq(ember.tensor(x)).numpy(), rtol=0)
    tr = tnsfx.extract_shadow_logger_info(ts, tnsfx.OutputLogger, "int8")
    er = ensfx.extract_shadow_logger_info(es, ensfx.OutputLogger, "int8")
    tnsfx.extend_logger_results_with_comparison(tr, "fp32", "int8", t_sqnr, "sqnr")
    ensfx.extend_logger_results_with_comparison(er, "fp32", "int8", compute_sqnr, "sqnr")
    t_s, e_s = _sqnrs(tr, "node_output"), _sqnrs(er, "node_output")
    # torch skips the shadows of the quantized add and of flatten; ember shadows them too
    assert set(t_s) == {"conv", "conv2", "fc"} and list(e_s) == [
        "conv",
        "conv2",
        "add",
        "flatten",
        "fc",
    ]
    _close([e_s[k] for k in t_s], list(t_s.values()))
    assert e_s["flatten"] > 30  # a shadow sees only its own layer's error


def test_fx_float_model_against_quantized_and_errors(fx_pair):
    _, (ep, eq) = fx_pair
    t, e = _pair(2)
    # an unfused float model: conv -> bn -> relu pairs with the fused ConvReLU2d
    res = ensfx.extract_weights("fp32", e, "int8", eq)
    assert list(res) == ["conv", "conv2", "fc"]
    other = _models(ember)[1]().eval()
    with pytest.raises(ensfx.GraphMatchingException, match="model"):
        ensfx.add_loggers("a", other, "b", eq, ensfx.OutputLogger)
    with pytest.raises(NotImplementedError, match="unmatchable_types_map"):
        ensfx.extract_weights("a", ep, "b", eq, unmatchable_types_map={})


def test_legacy_paths():
    import ember.quantization._numeric_suite as legacy
    import ember.quantization._numeric_suite_fx as legacy_fx

    assert legacy.compare_weights is ens.compare_weights
    assert legacy_fx.add_loggers is ensfx.add_loggers
    assert ember.ao.ns.fx.utils.compute_sqnr is compute_sqnr
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a, b = ember.ones(4), ember.ones(4) * 1.01
        _close(compute_sqnr((a, [a]), (b, [b]))[0], compute_sqnr(a, b))


def test_docs_snippet_runs(capsys):
    import pathlib
    import re

    doc = (pathlib.Path(__file__).parents[1] / "docs" / "quantization.md").read_text()
    section = doc[doc.index("## Numeric suite") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "docs/quantization.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("_0 ") and "alone:" in out[-1]  # layer "0": node "_0"


@pytest.mark.parametrize("bidirectional", [False, True])
def test_dynamic_rnn_draws_torchs_random_numbers(bidirectional):
    """torch builds a dynamic quantized LSTM / GRU from random weights before copying the
    float ones in: a script's later draws (the numeric-suite tutorial's input) follow that."""
    for name in ("LSTM", "GRU"):
        draws = []
        for T in (torch, ember):
            model = T.nn.Sequential(getattr(T.nn, name)(6, 5, 2, bidirectional=bidirectional))
            T.manual_seed(3)
            T.ao.quantization.quantize_dynamic(model, {getattr(T.nn, name)}, dtype=T.qint8)
            draws.append(T.rand(4).numpy())
        np.testing.assert_array_equal(draws[0], draws[1])


def test_eager_dynamic_outputs_match_torchs_keys():
    t, e = _pair(3)
    tq = torch.ao.quantization.quantize_dynamic(t, {torch.nn.LSTM, torch.nn.Linear})
    eq = ember.ao.quantization.quantize_dynamic(e, {ember.nn.LSTM, ember.nn.Linear})
    tok = np.array([[1, 4, 2]]).T
    ta = tns.compare_model_outputs(t, tq, torch.tensor(tok))
    ea = ens.compare_model_outputs(e, eq, ember.tensor(tok))
    assert sorted(ea) == sorted(ta) == ["emb.stats", "fc.stats", "rnn.stats"]
    for k in ta:
        f, q = ta[k]["float"][0], ta[k]["quantized"][0]
        ef, eq_ = ea[k]["float"][0], ea[k]["quantized"][0]
        if isinstance(f, tuple):
            f, q, ef, eq_ = f[0], q[0], ef[0], eq_[0]
        _close(_num(eq_), _num(q), rtol=1e-5)
