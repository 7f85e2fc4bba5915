"""AutoTokenizer from tokenizer.json against transformers' fast tokenizer on the same files."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember import models

tokenizers = pytest.importorskip("tokenizers")
TEXTS = ["hello world", "the quick brown fox", "a"]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    from tokenizers import decoders, pre_tokenizers, processors, trainers

    tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(
        ["hello world", "the quick brown fox jumps over the lazy dog"] * 5, trainer
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> $B </s>", special_tokens=[("<s>", 1), ("</s>", 2)]
    )
    ref = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",
    )
    path = tmp_path_factory.mktemp("tok")
    ref.save_pretrained(path)
    return path


@pytest.mark.parametrize("side", ["left", "right"])
def test_batch_encoding_matches_transformers(tok_dir, side):
    transformers = pytest.importorskip("transformers")
    ours = models.AutoTokenizer.from_pretrained(tok_dir, padding_side=side)
    ref = transformers.AutoTokenizer.from_pretrained(tok_dir, padding_side=side)
    got = ours(TEXTS, padding=True, return_tensors="pt")
    want = ref(TEXTS, padding=True, return_tensors="np")
    assert set(got) == {"input_ids", "attention_mask"}
    assert got.input_ids.dtype == ember.int64
    np.testing.assert_array_equal(got.input_ids.numpy(), want["input_ids"])
    np.testing.assert_array_equal(got["attention_mask"].numpy(), want["attention_mask"])
    cut = dict(truncation=True, max_length=4, padding="max_length")
    assert ours(TEXTS, **cut)["input_ids"] == ref(TEXTS, **cut)["input_ids"]
    assert ours("hello", "world")["input_ids"] == ref("hello", "world")["input_ids"]


def test_encode_decode_and_special_tokens(tok_dir, tmp_path):
    transformers = pytest.importorskip("transformers")
    ours = models.AutoTokenizer.from_pretrained(tok_dir)
    ref = transformers.AutoTokenizer.from_pretrained(tok_dir)
    ids = ours.encode("the lazy dog")
    assert ids == ref.encode("the lazy dog") and ids[0] == ours.bos_token_id == 1
    assert ours.decode(ids, skip_special_tokens=True) == "the lazy dog"
    assert ours.decode(ember.tensor(ids)) == ref.decode(ids)
    assert ours.batch_decode(np.array([ids, ids])) == [ref.decode(ids)] * 2
    assert (ours.pad_token_id, ours.eos_token_id, len(ours)) == (0, 2, len(ref))
    assert ours.tokenize("hello world") == ref.tokenize("hello world")
    # ember's save_pretrained is read back by transformers
    ours.save_pretrained(tmp_path)
    back = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert back(TEXTS, padding=True)["input_ids"] == ours(TEXTS, padding=True)["input_ids"]
    assert back.padding_side == "left" and back.eos_token == "</s>"


def test_tokenizer_bad_input(tok_dir, tmp_path):
    ours = models.AutoTokenizer.from_pretrained(tok_dir)
    with pytest.raises(ValueError, match="different lengths; pass padding=True"):
        ours(TEXTS, return_tensors="pt")
    with pytest.raises(ValueError, match="padding must be"):
        ours(TEXTS, padding="yes")
    with pytest.raises(OSError, match="no tokenizer.json"):
        models.AutoTokenizer.from_pretrained(tmp_path)
