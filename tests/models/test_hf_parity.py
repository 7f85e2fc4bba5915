"""ember.models against transformers on the same tiny checkpoints: logits, loss, gradients,
greedy generation, and files written by either side loaded by the other."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember import models

torch = pytest.importorskip("torch")

ARCHS = ["gpt2", "llama", "mistral", "bert"]
DECODERS = ["gpt2", "llama", "mistral"]


def _np(t):
    return t.detach().numpy()


def _ember_model(arch, path):
    auto = (
        models.AutoModelForSequenceClassification if arch == "bert" else models.AutoModelForCausalLM
    )
    return auto.from_pretrained(path)


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_and_loss_match_transformers(hf_models, batch, arch):
    path, ref = hf_models[arch]
    model = _ember_model(arch, path)
    assert type(model).__name__ == type(ref).__name__
    ids, mask = batch
    labels = np.array([0, 2]) if arch == "bert" else ids
    out = model(ember.tensor(ids), attention_mask=ember.tensor(mask))
    with torch.no_grad():
        want = ref(torch.tensor(ids), attention_mask=torch.tensor(mask))
    real = mask.astype(bool) if arch != "bert" else slice(None)  # padded rows are undefined
    np.testing.assert_allclose(_np(out.logits)[real], want.logits.numpy()[real], atol=1e-4)
    assert out.loss is None and "loss" not in out
    # loss without padding (a decoder's padded positions would predict from undefined logits)
    out = model(ember.tensor(ids), labels=ember.tensor(labels))
    with torch.no_grad():
        want = ref(torch.tensor(ids), labels=torch.tensor(labels))
    np.testing.assert_allclose(out.loss.item(), want.loss.item(), atol=1e-4)
    assert out["logits"] is out.logits and out[1] is out.logits  # (loss, logits, ...)


FULL = pytest.mark.full  # outside CI's bounded subset (EMBER_FULL_TESTS=1 runs them)


@pytest.mark.parametrize("arch", ["gpt2", pytest.param("llama", marks=FULL)])
def test_backbone_last_hidden_state_and_gradients(hf_models, transformers, batch, arch):
    path, ref_head = hf_models[arch]
    model = models.AutoModel.from_pretrained(path)  # head checkpoint into the backbone
    ref = transformers.AutoModel.from_pretrained(path).eval()
    ids, _ = batch
    out = model(ember.tensor(ids))
    want = ref(torch.tensor(ids))
    np.testing.assert_allclose(
        _np(out.last_hidden_state), want.last_hidden_state.detach(), atol=1e-4
    )
    # gradients through the causal-LM loss (fine-tuning) equal torch's
    lm = _ember_model(arch, path)
    lm(ember.tensor(ids), labels=ember.tensor(ids)).loss.backward()
    ref_head.zero_grad()
    ref_head(torch.tensor(ids), labels=torch.tensor(ids)).loss.backward()
    name = (
        "transformer.h.1.mlp.c_fc.weight"
        if arch == "gpt2"
        else "model.layers.1.self_attn.k_proj.weight"
    )
    np.testing.assert_allclose(
        lm.get_parameter(name).grad.numpy(), ref_head.get_parameter(name).grad.numpy(), atol=1e-5
    )
    ref_head.zero_grad()


@pytest.mark.parametrize("arch", DECODERS)
def test_greedy_generate_matches_transformers(hf_models, batch, arch):
    path, ref = hf_models[arch]
    model = _ember_model(arch, path)
    ids, mask = batch
    got = model.generate(ember.tensor(ids), attention_mask=ember.tensor(mask), max_new_tokens=6)
    want = ref.generate(
        torch.tensor(ids),
        attention_mask=torch.tensor(mask),
        max_new_tokens=6,
        do_sample=False,
        pad_token_id=0,
    )
    assert got.tolist() == want.tolist()
    no_cache = model.generate(
        ember.tensor(ids), attention_mask=ember.tensor(mask), max_new_tokens=6, use_cache=False
    )
    assert no_cache.tolist() == want.tolist()


@pytest.mark.parametrize("arch", ["gpt2", pytest.param("llama", marks=FULL), "mistral"])
def test_kv_cache_steps_equal_full_forward(hf_models, batch, arch):
    model = _ember_model(arch, hf_models[arch][0])
    ids = ember.tensor(batch[0])
    full = _np(model(ids).logits)
    out = model(ids[:, :4])
    assert isinstance(out.past_key_values, models.DynamicCache)
    assert out.past_key_values.get_seq_length() == 4
    past = out.past_key_values.to_legacy_cache()  # the tuple format is accepted too
    for t in range(4, 7):
        out = model(ids[:, t : t + 1], past_key_values=past)
        past = out.past_key_values
        np.testing.assert_allclose(_np(out.logits)[:, 0], full[:, t], atol=1e-5)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bert"])
def test_ember_save_pretrained_loads_in_transformers(transformers, tmp_path, batch, arch):
    import importlib.util
    from pathlib import Path

    # `conftest` names several modules in the suite: load this folder's one by its path
    spec = importlib.util.spec_from_file_location(
        "models_conftest", Path(__file__).with_name("conftest.py")
    )
    local = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(local)
    HEADS, tiny_configs = local.HEADS, local.tiny_configs

    cfg = tiny_configs(transformers)[arch].to_dict()
    ember.manual_seed(1)
    config = models.AutoConfig.for_model(
        arch, **{k: v for k, v in cfg.items() if k != "model_type"}
    )
    auto = (
        models.AutoModelForSequenceClassification if arch == "bert" else models.AutoModelForCausalLM
    )
    model = auto.from_config(config).eval()  # from_config leaves dropout on, as transformers
    model.save_pretrained(tmp_path, max_shard_size="40KB" if arch == "llama" else "5GB")
    if arch == "llama":  # sharded: the index names every tensor's shard
        assert (tmp_path / "model.safetensors.index.json").is_file()
        assert not (tmp_path / "model.safetensors").exists()
    ref = getattr(transformers, HEADS[arch]).from_pretrained(tmp_path).eval()
    ids, mask = batch
    out = model(ember.tensor(ids), attention_mask=ember.tensor(mask))
    with torch.no_grad():
        want = ref(torch.tensor(ids), attention_mask=torch.tensor(mask))
    real = mask.astype(bool) if arch != "bert" else slice(None)
    np.testing.assert_allclose(_np(out.logits)[real], want.logits.numpy()[real], atol=1e-4)
    # and back: ember reads its own files with nothing lost
    again = auto.from_pretrained(tmp_path)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[k].numpy(), v.numpy())


def test_sharded_transformers_checkpoint_and_hub_cache_layout(
    transformers, hf_models, tmp_path, batch
):
    path, ref = hf_models["gpt2"]
    shard_dir = tmp_path / "models--tiny-org--gpt2" / "snapshots" / "abc123"
    ref.save_pretrained(shard_dir, max_shard_size="20KB")
    assert len(list(shard_dir.glob("model-*.safetensors"))) > 1
    (tmp_path / "models--tiny-org--gpt2" / "refs").mkdir()
    (tmp_path / "models--tiny-org--gpt2" / "refs" / "main").write_text("abc123")
    model = models.GPT2LMHeadModel.from_pretrained(
        "tiny-org/gpt2", cache_dir=tmp_path, local_files_only=True
    )
    ids = batch[0]
    with torch.no_grad():
        want = ref(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(_np(model(ember.tensor(ids)).logits), want, atol=1e-4)
    # tied head: one Parameter, not a copy
    assert model.lm_head.weight is model.transformer.wte.weight
    # an older checkpoint: pytorch_model.bin (GPT-2 backbone keys, no prefix), read safely
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text((path / "config.json").read_text())
    torch.save(ref.transformer.state_dict(), old / "pytorch_model.bin")
    model = models.AutoModelForCausalLM.from_pretrained(old)
    np.testing.assert_allclose(_np(model(ember.tensor(ids)).logits), want, atol=1e-4)


@pytest.mark.parametrize("dtype", ["bfloat16", pytest.param("auto", marks=FULL)])
def test_torch_dtype(hf_models, batch, dtype):
    path, ref = hf_models["llama"]
    model = models.LlamaForCausalLM.from_pretrained(path, torch_dtype=dtype)
    assert model.dtype == (ember.bfloat16 if dtype == "bfloat16" else ember.float32)
    logits = model(ember.tensor(batch[0])).logits.float()
    with torch.no_grad():
        want = ref(torch.tensor(batch[0])).logits.numpy()
    np.testing.assert_allclose(_np(logits), want, atol=5e-2 if dtype == "bfloat16" else 1e-4)
