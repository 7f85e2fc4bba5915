"""Idioms of a seventh batch of pytorch/tutorials programs (deployment: TorchScript, ONNX,
AOTInductor, torch.export's challenges) that stopped an ``import ember as torch`` port, each a
small program of our own with the same idiom: a traced module keeps its submodule tree
(``traced.dg.code``) and can call a scripted loop; ``optimize_for_mobile``; the ONNX exporter's
fallback to tracing for Python control flow, ``ONNXProgram.optimize()``, ``dynamic_shapes`` and
opsets below 11; AOTInductor's package/load calls; and ``export`` of a ``forward(*args,
**kwargs)`` helper around a module it closes over. Checked against torch where torch runs it
here."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _np(t):
    return t.detach().cpu().numpy()


# ---- Intro_to_TorchScript ------------------------------------------------------------------
def _cell_classes(lib):
    class Gate(lib.nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return x
            return -x

    class Cell(lib.nn.Module):
        def __init__(self, dg):
            super().__init__()
            self.dg = dg
            self.linear = lib.nn.Linear(4, 4)

        def forward(self, x, h):
            new_h = lib.tanh(self.dg(self.linear(x)) + h)
            return new_h, new_h

    return Gate, Cell


def _traced_cell(lib):
    gate, cell = _cell_classes(lib)
    c = cell(gate())
    with lib.no_grad():  # linear(x) = -x < 0 for x in [0, 1): the trace takes the negation
        c.linear.weight.copy_(-lib.eye(4))
        c.linear.bias.zero_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TracerWarning of `if x.sum() > 0`
        return lib.jit.trace(c, (lib.rand(3, 4), lib.rand(3, 4)))


def test_traced_module_keeps_its_submodules_like_torch(tmp_path):
    ours, theirs = _traced_cell(ember), _traced_cell(torch)
    assert repr(ours) == repr(theirs)  # the same tree, names and order
    assert "(dg): Gate(original_name=Gate)" in repr(ours)
    # traced_cell.dg.code: the gate's own part of the trace (the branch taken: negate)
    code = ours.dg.code
    assert "def forward(self, linear)" in code and "-linear" in code
    x = ember.randn(2, 4)
    assert ember.equal(ours.dg(x), -x)
    ours.save(str(tmp_path / "cell.pt"))
    loaded = ember.jit.load(str(tmp_path / "cell.pt"))
    assert repr(loaded) == repr(ours)
    with pytest.raises(RuntimeError, match="no graph of its own"):
        loaded.dg.code  # noqa: B018 - a loaded program keeps one graph


def _rnn_classes(lib):
    gate, cell = _cell_classes(lib)

    class Loop(lib.nn.Module):
        def __init__(self):
            super().__init__()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.cell = lib.jit.trace(
                    cell(lib.jit.script(gate())), (lib.rand(3, 4), lib.rand(3, 4))
                )

        def forward(self, xs):
            h, y = lib.zeros(3, 4), lib.zeros(3, 4)
            for i in range(xs.size(0)):
                y, h = self.cell(xs[i], h)
            return y, h

    class Wrap(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.loop = lib.jit.script(Loop())

        def forward(self, xs):
            y, h = self.loop(xs)
            return lib.relu(y)

    return Wrap


def test_trace_calls_a_scripted_loop_and_the_file_reloads(tmp_path):
    """Tracing through a scripted module reads its loop's body graphs as submodules (they
    stopped the tracer), and a loaded file finds them under a submodule holding weights."""
    wrap = _rnn_classes(ember)()
    traced = ember.jit.trace(wrap, (ember.rand(10, 3, 4),))
    assert "ember.while_loop" in traced.code
    traced.save(str(tmp_path / "wrapped_rnn.pt"))
    loaded = ember.jit.load(str(tmp_path / "wrapped_rnn.pt"))
    for steps in (1, 5):  # the loop count follows the input, as torch's scripted loop
        xs = ember.rand(steps, 3, 4)
        want = wrap(xs)
        assert ember.allclose(traced(xs), want, atol=1e-6)
        assert ember.allclose(loaded(xs), want, atol=1e-6)
    assert "(loop): Loop(" in repr(loaded) and "(dg): Gate(original_name=Gate)" in repr(loaded)


# ---- script_optimized recipe -----------------------------------------------------------------
def _convnet(lib):
    lib.manual_seed(0)
    m = lib.nn.Sequential(
        lib.nn.Conv2d(3, 4, 3),
        lib.nn.BatchNorm2d(4),
        lib.nn.ReLU(),
        lib.nn.Dropout(0.5),
        lib.nn.Flatten(),
        lib.nn.Linear(4 * 6 * 6, 3),
    )
    with lib.no_grad():
        m[1].running_mean.uniform_(-0.5, 0.5)
        m[1].running_var.uniform_(0.5, 2.0)
    return m.eval()


def test_optimize_for_mobile_folds_batch_norm_and_drops_dropout(tmp_path):
    from ember.utils.mobile_optimizer import MobileOptimizerType, optimize_for_mobile

    model, x = _convnet(ember), ember.randn(2, 3, 8, 8)
    with pytest.raises(TypeError, match="ScriptModule is expected"):
        optimize_for_mobile(model)
    traced = ember.jit.trace(model, x)
    opt = optimize_for_mobile(traced)
    code = opt.code
    assert "batch_norm" not in code and "dropout" not in code
    opt.save(str(tmp_path / "optimized_torchscript_model.pth"))
    assert ember.allclose(
        ember.jit.load(str(tmp_path / "optimized_torchscript_model.pth"))(x), model(x), atol=1e-5
    )
    keep = optimize_for_mobile(traced, {MobileOptimizerType.CONV_BN_FUSION})
    assert "batch_norm" in keep.code
    assert traced.training is False and ember.allclose(traced(x), model(x))


# ---- ONNX: control flow, optimize, dynamic_shapes, low opsets ---------------------------------
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _run_ort(proto, *xs):
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: _np(x) for i, x in zip(sess.get_inputs(), xs)}
    return sess.run(None, feeds)[0]


class _Branchy(ember.nn.Module):
    def __init__(self, use_cond: bool):
        super().__init__()
        self.lin = ember.nn.Linear(3, 2)
        self.use_cond = use_cond

    def forward(self, x):
        y = self.lin(x)
        if self.use_cond:
            return ember.cond(y.sum() > 0, lambda v: v * 2, lambda v: -v, (y,))
        if y.sum():  # Python control flow on data: traced, the branch taken is kept
            return y * 2
        return -y


def test_onnx_export_falls_back_to_tracing_and_cond_keeps_both_branches():
    ember.manual_seed(0)
    m, x = _Branchy(False), ember.randn(3)
    with pytest.raises(Exception, match="data"):
        ember.export.export(m, (x,))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prog = ember.onnx.export(m, (x,), dynamo=True)
    assert any("TracerWarning" in type(w.message).__name__ for w in caught)
    assert np.allclose(_run_ort(prog.model_proto, x), _np(m(x)), atol=1e-6)

    m.use_cond = True
    prog = ember.onnx.export(m, (x,), dynamo=True)
    n_before = len(prog.model_proto.graph.node)
    prog.optimize()  # Identity nodes and unread initializers go, the outputs stay
    assert len(prog.model_proto.graph.node) <= n_before
    assert [o.name for o in prog.model_proto.graph.output] == ["output"]
    onnx.checker.check_model(prog.model_proto)
    for v in (x, -x * 100, x * 100):
        assert np.allclose(prog(v)[0].numpy(), _np(m(v)), atol=1e-5)


def test_onnx_dynamic_shapes_and_opset_10():
    ember.manual_seed(0)
    net = ember.nn.Sequential(ember.nn.Conv2d(1, 2, 3), ember.nn.ReLU(), ember.nn.Flatten())
    x = ember.randn(1, 1, 6, 6)
    batch = ember.export.Dim("batch")
    prog = ember.onnx.export(net, (x,), dynamo=True, dynamic_shapes={"input": {0: batch}})
    x4 = ember.randn(4, 1, 6, 6)
    assert np.allclose(_run_ort(prog.model_proto, x4), _np(net(x4)), atol=1e-5)
    dims = prog.model_proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"
    # opset 10: written at 11, then onnx's version converter steps down
    proto = ember.onnx.export(net, x, None, opset_version=10)
    assert proto.opset_import[0].version == 10
    assert np.allclose(_run_ort(proto, x), _np(net(x)), atol=1e-5)
    # an op with no opset-10 form (PixelShuffle -> DepthToSpace mode=CRD) stays at 11
    shuffle = ember.nn.Sequential(ember.nn.Conv2d(1, 4, 1), ember.nn.PixelShuffle(2))
    with pytest.warns(UserWarning, match="kept at opset 11"):
        proto = ember.onnx.export(shuffle, x, None, opset_version=10)
    assert np.allclose(_run_ort(proto, x), _np(shuffle(x)), atol=1e-5)


# ---- torch_export_aoti_python ----------------------------------------------------------------
def test_aoti_package_and_aot_load_run_the_exported_program(tmp_path):
    model, x = _convnet(ember), ember.randn(2, 3, 8, 8)
    batch = ember.export.Dim("batch", min=2, max=8)
    ep = ember.export.export(model, (x,), dynamic_shapes={"input": {0: batch}})
    path = ember._inductor.aoti_compile_and_package(ep, package_path=str(tmp_path / "m.pt2"))
    compiled = ember._inductor.aoti_load_package(path)
    x3 = ember.randn(3, 3, 8, 8)
    assert ember.allclose(compiled(x3), model(x3), atol=1e-5)
    with pytest.raises(ValueError, match=".pt2"):
        ember._inductor.aoti_compile_and_package(ep, package_path=str(tmp_path / "m.so"))
    # the older pair, on ep.module(): dynamic dims kept; min=2 serves batch 1 (torch's note)
    so = ember._inductor.aot_compile(
        ep.module(), (x,), options={"aot_inductor.output_path": str(tmp_path / "m_pt2.so")}
    )
    runner = ember._export.aot_load(so, "cpu")
    x1 = ember.randn(1, 3, 8, 8)
    with ember.inference_mode():
        assert ember.allclose(runner((x1,)), model(x1), atol=1e-5)  # the input tuple itself
    with pytest.raises(AssertionError, match="batch"):
        runner(ember.randn(9, 3, 8, 8))


# ---- torch_export_challenges_solutions -------------------------------------------------------
class _Predictor:
    """SAM2's shape: the computation is a method of a plain object holding the model."""

    def __init__(self, lib):
        self.lin = lib.nn.Linear(2, 2)

    def _predict(self, coords, labels, multimask_output, return_logits=False):
        out = self.lin(coords) + labels
        return out if return_logits else out.sigmoid()


def _export_helper(lib, predictor):
    class ExportHelper(lib.nn.Module):
        def forward(_, *args, **kwargs):
            return predictor._predict(*args, **kwargs)

    c, lab = lib.randn(3, 2), lib.randn(3, 2)
    ep = lib.export.export(
        ExportHelper(), args=(c, lab, True), kwargs={"return_logits": False}, strict=False
    )
    return ep, c, lab


def test_export_of_a_varargs_helper_around_a_closed_over_module():
    p = _Predictor(ember)
    with pytest.raises(ValueError, match="instance of `ember.nn.Module`, got <class 'method'>"):
        ember.export.export(p._predict, (ember.randn(3, 2), ember.randn(3, 2), True))
    ep, c, lab = _export_helper(ember, p)
    # forward's whole argument list, as torch's: the baked-in Python values are checked
    got = ep.module()(c, lab, True, return_logits=False)
    assert ember.allclose(got, p._predict(c, lab, True))
    with pytest.raises(AssertionError, match="return_logits"):
        ep.module()(c, lab, True, return_logits=True)
    # the closed-over Linear's weights are constants of the program (torch: the same)
    tep, *_ = _export_helper(torch, _Predictor(torch))

    def lifted(e):
        return [s.kind.name for s in e.graph_signature.input_specs if s.kind.name != "USER_INPUT"]

    assert lifted(ep) == lifted(tep) == ["CONSTANT_TENSOR", "CONSTANT_TENSOR"]


# ---- deploy_seq2seq_hybrid_frontend: traced encoder/decoder under a scripted greedy search ----
def _seq2seq(lib):
    class Encoder(lib.nn.Module):
        def __init__(self, emb):
            super().__init__()
            self.embedding = emb
            self.gru = lib.nn.GRU(8, 8, 2, bidirectional=True)

        def forward(self, input_seq, input_lengths):
            packed = lib.nn.utils.rnn.pack_padded_sequence(self.embedding(input_seq), input_lengths)
            outputs, hidden = self.gru(packed)
            outputs, _ = lib.nn.utils.rnn.pad_packed_sequence(outputs)
            return outputs[:, :, :8] + outputs[:, :, 8:], hidden

    class Decoder(lib.nn.Module):
        def __init__(self, emb):
            super().__init__()
            self.embedding = emb
            self.gru = lib.nn.GRU(8, 8, 2)
            self.concat = lib.nn.Linear(16, 8)
            self.out = lib.nn.Linear(8, 12)
            self.n_layers = 2

        def forward(self, input_step, last_hidden, encoder_outputs):
            rnn_output, hidden = self.gru(self.embedding(input_step), last_hidden)
            energies = lib.sum(rnn_output * encoder_outputs, dim=2).t()  # Luong "dot"
            attn = lib.nn.functional.softmax(energies, dim=1).unsqueeze(1)
            context = attn.bmm(encoder_outputs.transpose(0, 1)).squeeze(1)
            cat = lib.cat((rnn_output.squeeze(0), context), 1)
            out = self.out(lib.tanh(self.concat(cat)))
            return lib.nn.functional.softmax(out, dim=1), hidden

    class Greedy(lib.nn.Module):
        def __init__(self, encoder, decoder, decoder_n_layers: int):
            super().__init__()
            self.encoder, self.decoder = encoder, decoder
            self._sos = 1
            self._decoder_n_layers = decoder_n_layers

        def forward(self, input_seq: lib.Tensor, input_length: lib.Tensor, max_length: int):
            encoder_outputs, encoder_hidden = self.encoder(input_seq, input_length)
            decoder_hidden = encoder_hidden[: self._decoder_n_layers]
            decoder_input = lib.ones(1, 1, dtype=lib.long) * self._sos
            all_tokens = lib.zeros([0], dtype=lib.long)
            all_scores = lib.zeros([0])
            for _ in range(max_length):
                decoder_output, decoder_hidden = self.decoder(
                    decoder_input, decoder_hidden, encoder_outputs
                )
                decoder_scores, decoder_input = lib.max(decoder_output, dim=1)
                all_tokens = lib.cat((all_tokens, decoder_input), dim=0)
                all_scores = lib.cat((all_scores, decoder_scores), dim=0)
                decoder_input = lib.unsqueeze(decoder_input, 0)
            return all_tokens, all_scores

    emb = lib.nn.Embedding(12, 8)
    return Encoder(emb).eval(), Decoder(emb).eval(), Greedy


def test_hybrid_frontend_scripted_search_over_traced_gru_models(tmp_path):
    """The encoder packs its batch (pack_padded_sequence -> GRU -> pad_packed_sequence stopped
    the tracer), the decoder's GRU takes its hidden state as an input (a size check on
    ``hx.shape`` did), and the scripted loop over both traced models saves and reloads."""
    ember.manual_seed(0)
    enc, dec, greedy = _seq2seq(ember)
    seq, n = ember.randint(0, 12, (5, 1)), ember.tensor([5])
    t_enc = ember.jit.trace(enc, (seq, n))
    batch, lens = ember.randint(0, 12, (4, 3)), ember.tensor([4, 3, 1])  # other lengths
    for got, want in zip(t_enc(batch, lens), enc(batch, lens)):
        assert ember.allclose(got, want, atol=1e-6)
    outs, hidden = t_enc(seq, n)
    t_dec = ember.jit.trace(dec, (ember.ones(1, 1, dtype=ember.long), hidden[:2], outs))
    searcher = ember.jit.script(greedy(t_enc, t_dec, dec.n_layers))
    want = greedy(enc, dec, 2)(seq, n, 6)
    got = searcher(seq, n, 6)
    assert got[0].tolist() == want[0].tolist() and ember.allclose(got[1], want[1], atol=1e-6)
    searcher.save(str(tmp_path / "scripted_chatbot.pth"))
    loaded = ember.jit.load(str(tmp_path / "scripted_chatbot.pth"))
    assert loaded(seq, n, 6)[0].tolist() == want[0].tolist()
    short, n3 = seq[:3], ember.tensor([3])  # a shorter sentence than the traced one
    assert loaded(short, n3, 4)[0].tolist() == greedy(enc, dec, 2)(short, n3, 4)[0].tolist()
    # the traced decoder step equals torch's decoder on the same weights
    _, tdec, _ = _seq2seq(torch)
    tdec.load_state_dict({k: torch.from_numpy(_np(v)) for k, v in dec.state_dict().items()})
    h, e = hidden[:2], outs
    a = t_dec(ember.ones(1, 1, dtype=ember.long), h, e)[0]
    with torch.no_grad():
        b = tdec(
            torch.ones(1, 1, dtype=torch.long), torch.from_numpy(_np(h)), torch.from_numpy(_np(e))
        )
    assert np.allclose(_np(a), b[0].numpy(), atol=1e-5)


def test_tracing_a_quantized_model_says_what_to_do():
    m = ember.nn.Sequential(ember.nn.Linear(4, 4), ember.nn.ReLU())
    q = ember.quantization.quantize_dynamic(m, {ember.nn.Linear}, dtype=ember.qint8)
    with pytest.raises(Exception, match="quantized module '0' .*ember.onnx.export"):
        ember.jit.trace(q, ember.randn(2, 4))
    with pytest.raises(Exception, match="quantized module DynamicQuantizedLinear"):
        ember.jit.script(q)  # the static-quantization tutorial's jit.save(jit.script(...))


class _Block(ember.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear1 = ember.nn.Linear(6, 6)
        self.norm = ember.nn.LayerNorm(6)

    def forward(self, x):
        return self.norm(ember.sigmoid(self.linear1(x)))


def test_regional_aot_one_package_serves_every_block(tmp_path):
    # recipes/regional_aot: package one block without its weights, then load each block's
    # state_dict into its own loaded package and use it as that block's forward
    ember.manual_seed(0)
    blocks = ember.nn.ModuleList([_Block() for _ in range(3)])
    x = ember.randn(4, 6)
    ref = x
    for b in blocks:
        ref = b(ref)
    path = ember._inductor.aoti_compile_and_package(
        ember.export.export(blocks[0], args=(x,)),
        package_path=str(tmp_path / "block.pt2"),
        inductor_configs={"aot_inductor.package_constants_in_so": False},
    )
    for b in blocks:
        compiled = ember._inductor.aoti_load_package(path)
        compiled.load_constants(b.state_dict(), check_full_update=True, user_managed=True)
        b.forward = compiled
    out = x
    for b in blocks:
        out = b(out)
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=1e-6)
    # user_managed: the package reads the block's own storage, so in-place updates show
    with ember.no_grad():
        blocks[2].norm.bias.add_(1.0)
        eager = blocks[2].norm(ember.sigmoid(blocks[2].linear1(out)))
        np.testing.assert_allclose(blocks[2](out).numpy(), eager.numpy(), rtol=1e-6)
    copied = ember._inductor.aoti_load_package(path)
    copied.load_constants(blocks[1].state_dict(), check_full_update=False)
    with pytest.raises(RuntimeError, match="no value given for"):
        copied.load_constants({"linear1.weight": blocks[1].linear1.weight}, check_full_update=True)
    with pytest.raises(RuntimeError, match="must be a"):
        copied.load_constants({"linear1.bias": ember.zeros(7)}, check_full_update=False)
