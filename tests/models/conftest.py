"""Tiny random Hugging Face checkpoints, written once per session by transformers itself."""

from __future__ import annotations

import numpy as np
import pytest

VOCAB = 100


def tiny_configs(transformers):
    # 2 layers, hidden 32: the smallest shapes that still exercise every path
    # (grouped-query attention: 4 query heads share 2 key/value heads; Mistral's window of 3
    # is shorter than the 7-token prompts)
    return {
        "gpt2": transformers.GPT2Config(
            n_layer=2,
            n_embd=32,
            n_head=4,
            vocab_size=VOCAB,
            n_positions=64,
            bos_token_id=1,
            eos_token_id=2,
        ),
        "llama": transformers.LlamaConfig(
            num_hidden_layers=2,
            hidden_size=32,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=64,
            vocab_size=VOCAB,
            max_position_embeddings=64,
        ),
        "mistral": transformers.MistralConfig(
            num_hidden_layers=2,
            hidden_size=32,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=64,
            vocab_size=VOCAB,
            max_position_embeddings=64,
            sliding_window=3,
        ),
        "bert": transformers.BertConfig(
            num_hidden_layers=2,
            hidden_size=32,
            num_attention_heads=4,
            intermediate_size=37,
            vocab_size=VOCAB,
            max_position_embeddings=64,
            num_labels=3,
        ),
    }


HEADS = {
    "gpt2": "GPT2LMHeadModel",
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "bert": "BertForSequenceClassification",
}


@pytest.fixture(scope="session")
def transformers():
    pytest.importorskip("torch")
    return pytest.importorskip("transformers")


@pytest.fixture(scope="session")
def hf_models(transformers, tmp_path_factory):
    r"""{arch: (directory, transformers model in eval mode)} for each of HEADS."""
    import torch

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for arch, cfg in tiny_configs(transformers).items():
        model = getattr(transformers, HEADS[arch])(cfg).eval()
        model.save_pretrained(root / arch)
        out[arch] = (root / arch, model)
    return out


@pytest.fixture
def batch():
    r"""Token ids (2, 7) and a left-padding mask (the first row has 2 pad positions)."""
    ids = np.random.RandomState(0).randint(3, VOCAB, (2, 7)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[0, :2] = 0
    return ids, mask
