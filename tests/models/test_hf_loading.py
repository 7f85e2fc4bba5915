"""ember.models' own checks: bad checkpoints, unknown architectures, configs, outputs and the
sampling filters (the latter against transformers' logits warpers)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import ember
from ember import models
from ember.models.generation import _filter_logits


def _tiny_gpt2(tmp_path):
    ember.manual_seed(0)
    cfg = models.GPT2Config(
        n_layer=2, n_embd=32, n_head=4, vocab_size=50, n_positions=32, eos_token_id=None
    )
    model = models.GPT2LMHeadModel(cfg).eval()
    model.save_pretrained(tmp_path)
    return model


def test_bad_checkpoint_lists_every_problem_and_loads_nothing(tmp_path):
    model = _tiny_gpt2(tmp_path)
    state = ember.load_safetensors(tmp_path / "model.safetensors")
    state["transformer.h.0.ln_9.weight"] = state.pop("transformer.h.0.ln_1.weight")
    state["transformer.wpe.weight"] = ember.zeros(16, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state["transformer.ln_f.bias"] = ember.ones(32)  # would change the model if loaded
    with pytest.raises(RuntimeError) as e:
        model.load_pretrained_state_dict(state)
    msg = str(e.value)
    assert "Missing key(s) in state_dict: transformer.h.0.ln_1.weight" in msg
    assert "Unexpected key(s) in state_dict: transformer.h.0.ln_9.weight" in msg
    assert "transformer.wpe.weight: checkpoint (16, 32) vs model (32, 32)" in msg
    for k, v in model.state_dict().items():  # nothing half-loaded
        np.testing.assert_array_equal(v.numpy(), before[k].numpy())
    # through from_pretrained too: a checkpoint of another shape
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "n_embd": 16}))
    with pytest.raises(
        RuntimeError, match="size mismatch: .*checkpoint \\(50, 32\\) vs model \\(50, 16\\)"
    ):
        models.AutoModelForCausalLM.from_pretrained(tmp_path)


def test_unknown_architecture_names_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    with pytest.raises(
        ValueError,
        match=r"Unrecognized model_type 'mamba'.*\['bert', 'gpt2', "
        r"'llama', 'mistral'\]",
    ):
        models.AutoModel.from_pretrained(tmp_path)
    bert = models.BertConfig(num_hidden_layers=1, hidden_size=8, num_attention_heads=2)
    with pytest.raises(
        ValueError, match="no causal-LM class for model_type 'bert'.*'gpt2', 'llama'"
    ):
        models.AutoModelForCausalLM.from_config(bert)
    with pytest.raises(ValueError, match="rope_type 'yarn' is not supported"):
        models.LlamaConfig(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4})
    with pytest.raises(OSError, match="not in the Hugging Face cache"):
        models.AutoConfig.from_pretrained(
            "no-org/no-model", cache_dir=tmp_path, local_files_only=True
        )


def test_missing_weights_file_and_backbone_into_classifier(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(
        OSError, match="no model.safetensors, model.safetensors.index.json or pytorch_model.bin"
    ):
        models.AutoModel.from_pretrained(tmp_path)
    # a backbone checkpoint into a classifier: the new head keeps its init, with a warning
    ember.manual_seed(0)
    cfg = models.BertConfig(
        num_hidden_layers=1,
        hidden_size=8,
        num_attention_heads=2,
        intermediate_size=16,
        vocab_size=20,
        num_labels=4,
    )
    models.BertModel(cfg).save_pretrained(tmp_path / "bb")
    with pytest.warns(UserWarning, match="no classifier.weight, classifier.bias"):
        clf = models.AutoModelForSequenceClassification.from_pretrained(tmp_path / "bb")
    assert clf.config.num_labels == 4 and clf.classifier.weight.shape == (4, 8)
    assert not clf.training  # from_pretrained returns eval mode, as transformers


def test_config_round_trip_and_aliases(tmp_path):
    cfg = models.GPT2Config(n_layer=3, n_embd=48, n_head=4, custom_field=[1, 2])
    assert cfg.hidden_size == 48 and cfg.num_hidden_layers == 3
    cfg.save_pretrained(tmp_path)
    back = models.AutoConfig.from_pretrained(tmp_path)
    assert isinstance(back, models.GPT2Config) and back == cfg and back.custom_field == [1, 2]
    old = models.LlamaConfig(rope_theta=5e5, rope_scaling={"type": "linear", "factor": 2.0})
    assert old.rope_parameters == {"rope_theta": 5e5, "rope_type": "linear", "factor": 2.0}
    assert models.BertConfig(num_labels=5).num_labels == 5
    with pytest.raises(ValueError, match="n_embd \\(30\\) must be divisible by n_head \\(4\\)"):
        models.GPT2Config(n_embd=30, n_head=4)


def test_model_output_access():
    logits = ember.zeros(2, 3)
    out = models.CausalLMOutputWithPast(logits=logits)
    assert out.logits is logits and out["logits"] is logits and out[0] is logits
    assert out.loss is None and out.to_tuple() == (logits,) and list(out) == ["logits"]
    with pytest.raises(AttributeError):
        out.nope  # noqa: B018
    with pytest.raises(TypeError, match="unexpected field"):
        models.CausalLMOutputWithPast(logit=logits)


def test_sampling_filters_match_transformers_warpers():
    torch = pytest.importorskip("torch")
    lp = pytest.importorskip("transformers.generation.logits_process")
    logits = np.random.RandomState(0).randn(3, 40).astype(np.float32)
    got = _filter_logits(ember.tensor(logits), 0.7, 10, 0.8).numpy()
    t = torch.tensor(logits)
    for warper in (
        lp.TemperatureLogitsWarper(0.7),
        lp.TopKLogitsWarper(10),
        lp.TopPLogitsWarper(0.8),
    ):
        t = warper(None, t)
    want = t.numpy()
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_allclose(got[~np.isinf(got)], want[~np.isinf(want)], rtol=1e-6)


def test_sampling_generate(tmp_path):
    model = _tiny_gpt2(tmp_path)
    ids = ember.tensor([[3, 4, 5]])
    greedy = model.generate(ids, max_new_tokens=5)
    assert greedy.shape == (1, 8) and greedy[:, :3].tolist() == ids.tolist()
    assert (
        model.generate(ids, max_new_tokens=5, do_sample=True, top_k=1).tolist() == greedy.tolist()
    )
    runs = [
        model.generate(
            ids,
            max_new_tokens=5,
            do_sample=True,
            temperature=1.5,
            top_p=0.9,
            generator=ember.Generator().manual_seed(7),
        ).tolist()
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    eos = greedy[0, 4].item()  # the second generated token: generation stops where it first is
    stop = 3 + greedy[0, 3:].tolist().index(eos) + 1
    out = model.generate(
        ember.tensor([[3, 4, 5], [3, 4, 5]]), max_new_tokens=5, eos_token_id=eos, pad_token_id=0
    )
    assert out.shape == (2, stop) and out[:, -1].tolist() == [eos, eos]
    # generation_config.json gives the defaults (sampling with top_k=1 is greedy)
    (tmp_path / "generation_config.json").write_text(
        json.dumps({"do_sample": True, "top_k": 1, "max_new_tokens": 2})
    )
    loaded = models.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert loaded.generate(ids).tolist() == greedy[:, :5].tolist()
    with pytest.raises(ValueError, match="temperature must be positive"):
        model.generate(ids, do_sample=True, temperature=0.0)
    with pytest.raises(ValueError, match="longer than GPT-2's n_positions=32"):
        model.generate(ember.zeros(1, 30, dtype=ember.int64), max_new_tokens=4)


def test_import_stays_light():
    # torch/transformers are test references only; tokenizers loads on first tokenizer use
    code = (
        "import sys, ember.models; bad = [m for m in ('torch', 'transformers', 'tokenizers') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
