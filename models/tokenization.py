"""Tokenizers from ``tokenizer.json`` through the ``tokenizers`` package (transformers' fast
tokenizers): ``AutoTokenizer``, ``PreTrainedTokenizerFast``, ``BatchEncoding``."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ._hub import resolve_model_dir

__all__ = ["AutoTokenizer", "BatchEncoding", "PreTrainedTokenizerFast"]

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
_SPECIAL = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ImportError(
            "ember.models tokenizers need the 'tokenizers' package: pip install 'ember[models]'"
        ) from None
    return tokenizers


def _token_text(value: Any) -> str | None:
    # tokenizer_config.json stores a special token as a string or as an AddedToken dict
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and "content" in value:
        return value["content"]
    raise ValueError(f"cannot read special token {value!r}")


class BatchEncoding(dict):
    r"""The tokenizer's output: a dict (``input_ids``, ``attention_mask`` ...) whose keys are
    also attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no {name!r}; it holds {list(self)}") from None

    def to(self, device: Any) -> BatchEncoding:
        return BatchEncoding({k: v.to(device) if hasattr(v, "to") else v for k, v in self.items()})


class PreTrainedTokenizerFast:
    r"""A ``tokenizers.Tokenizer`` with transformers' calling conventions.

    ``tokenizer(texts, padding=True, return_tensors="pt")`` gives ``input_ids`` and
    ``attention_mask`` as ember int64 tensors; ``padding_side`` ("right" or "left", the latter
    for batched generation) comes from ``tokenizer_config.json`` or the constructor.
    """

    def __init__(
        self,
        tokenizer_object: Any = None,
        *,
        tokenizer_file: str | None = None,
        padding_side: str = "right",
        truncation_side: str = "right",
        model_max_length: int | None = None,
        tokenizer_class: str | None = None,
        **special_tokens: Any,
    ) -> None:
        tk = _tokenizers()
        if tokenizer_object is None:
            if tokenizer_file is None:
                raise ValueError("pass tokenizer_object or tokenizer_file")
            tokenizer_object = tk.Tokenizer.from_file(os.fspath(tokenizer_file))
        self._tokenizer = tokenizer_object
        # padding and truncation are decided per call, not by settings saved in the file
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        for side, name in ((padding_side, "padding_side"), (truncation_side, "truncation_side")):
            if side not in ("left", "right"):
                raise ValueError(f"{name} must be 'left' or 'right', got {side!r}")
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.model_max_length = model_max_length if model_max_length is not None else int(1e30)
        self.tokenizer_class = tokenizer_class
        unknown = sorted(set(special_tokens) - set(_SPECIAL))
        if unknown:
            raise TypeError(f"unexpected argument(s) {unknown}; special tokens are {_SPECIAL}")
        for name in _SPECIAL:
            setattr(self, name, _token_text(special_tokens.get(name)))
        # mark them special in the backend (as transformers does), so decode() can skip them
        named = [getattr(self, n) for n in _SPECIAL if getattr(self, n)]
        if named:
            self._tokenizer.add_special_tokens(named)
        bert_like = (tokenizer_class or "").startswith(("Bert", "DistilBert"))
        self.model_input_names = (
            ["input_ids", "token_type_ids", "attention_mask"]
            if bert_like
            else ["input_ids", "attention_mask"]
        )

    # -- loading and saving ----------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> PreTrainedTokenizerFast:
        r"""Read ``tokenizer.json`` (+ ``tokenizer_config.json``, ``special_tokens_map.json``)
        from a directory or a Hub repo id; ``kwargs`` override the config's entries."""
        hub = {
            k: kwargs.pop(k) for k in ("cache_dir", "revision", "local_files_only") if k in kwargs
        }
        d = resolve_model_dir(pretrained_model_name_or_path, **hub)
        path = os.path.join(d, TOKENIZER_FILE)
        if not os.path.isfile(path):
            raise OSError(
                f"no {TOKENIZER_FILE} in {d!r} (it holds {sorted(os.listdir(d))}); "
                "ember.models reads fast tokenizers saved as tokenizer.json"
            )
        cfg: dict[str, Any] = {}
        for name in (SPECIAL_TOKENS_MAP_FILE, TOKENIZER_CONFIG_FILE):
            p = os.path.join(d, name)
            if os.path.isfile(p):
                with open(p, encoding="utf-8") as f:
                    cfg.update(json.load(f))
        init = {
            k: cfg[k]
            for k in (
                *_SPECIAL,
                "padding_side",
                "truncation_side",
                "model_max_length",
                "tokenizer_class",
            )
            if k in cfg
        }
        if isinstance(init.get("model_max_length"), float):
            init["model_max_length"] = int(init["model_max_length"])
        init.update(kwargs)
        return cls(tokenizer_file=path, **init)

    def save_pretrained(self, save_directory: str | os.PathLike) -> list[str]:
        r"""Write ``tokenizer.json`` and ``tokenizer_config.json`` (transformers reads both)."""
        d = os.fspath(save_directory)
        os.makedirs(d, exist_ok=True)
        self._tokenizer.save(os.path.join(d, TOKENIZER_FILE))
        cfg = {name: getattr(self, name) for name in _SPECIAL if getattr(self, name)}
        cfg.update(
            padding_side=self.padding_side,
            truncation_side=self.truncation_side,
            model_max_length=self.model_max_length,
            tokenizer_class=self.tokenizer_class or "PreTrainedTokenizerFast",
        )
        with open(os.path.join(d, TOKENIZER_CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2)
        return [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE]

    # -- vocabulary ------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._tokenizer.get_vocab(with_added_tokens=True)

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | None | list[int | None]:
        if isinstance(tokens, str):
            return self._tokenizer.token_to_id(tokens)
        return [self._tokenizer.token_to_id(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | list[int]) -> str | None | list[str | None]:
        if isinstance(ids, int):
            return self._tokenizer.id_to_token(ids)
        return [self._tokenizer.id_to_token(int(i)) for i in ids]

    def __getattr__(self, name: str) -> Any:
        # bos_token_id, eos_token_id, pad_token_id, ... from the special token strings
        if name.endswith("_token_id") and name[:-3] in _SPECIAL:
            token = self.__dict__.get(name[:-3])
            return None if token is None else self._tokenizer.token_to_id(token)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- encoding --------------------------------------------------------------------------
    def tokenize(self, text: str, add_special_tokens: bool = False) -> list[str]:
        return self._tokenizer.encode(text, add_special_tokens=add_special_tokens).tokens

    def encode(
        self, text: str, text_pair: str | None = None, add_special_tokens: bool = True
    ) -> list[int]:
        r"""Token ids of one text (or pair)."""
        return self._tokenizer.encode(text, text_pair, add_special_tokens=add_special_tokens).ids

    def __call__(
        self,
        text: str | list[str],
        text_pair: str | list[str] | None = None,
        *,
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        add_special_tokens: bool = True,
        return_attention_mask: bool = True,
        return_token_type_ids: bool | None = None,
    ) -> BatchEncoding:
        r"""Encode a text or a batch of texts.

        Args:
            padding: ``True``/``"longest"`` pads to the longest in the batch,
                ``"max_length"`` to ``max_length``; padding goes on ``padding_side``.
            truncation: cut to ``max_length`` (or ``model_max_length``) on
                ``truncation_side``.
            return_tensors: ``"pt"`` (ember int64 tensors), ``"np"``, or ``None`` (lists).
        """
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("text must be a str or a list of str")
        pairs = None
        if text_pair is not None:
            pairs = [text_pair] if isinstance(text_pair, str) else list(text_pair)
            if len(pairs) != len(texts):
                raise ValueError(f"{len(texts)} texts but {len(pairs)} text pairs")
        if padding not in (False, True, "longest", "max_length", "do_not_pad"):
            raise ValueError(
                f"padding must be True, False, 'longest' or 'max_length', got {padding!r}"
            )
        if return_tensors not in (None, "pt", "np"):
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        limit = max_length if max_length is not None else self.model_max_length
        if truncation:
            self._tokenizer.enable_truncation(limit, direction=self.truncation_side)
        try:
            inputs = texts if pairs is None else list(zip(texts, pairs))
            encs = self._tokenizer.encode_batch(inputs, add_special_tokens=add_special_tokens)
        finally:
            self._tokenizer.no_truncation()
        ids = [e.ids for e in encs]
        types = [e.type_ids for e in encs]
        masks = [[1] * len(i) for i in ids]
        if padding in (True, "longest", "max_length"):
            width = max(map(len, ids), default=0)
            if padding == "max_length":
                if max_length is None:
                    raise ValueError("padding='max_length' needs max_length")
                width = max(width, max_length)
            if self.pad_token_id is None:
                raise ValueError(
                    "padding needs a pad_token; set tokenizer.pad_token "
                    "(for example tokenizer.pad_token = tokenizer.eos_token)"
                )
            ids = [self._pad(x, width, self.pad_token_id) for x in ids]
            types = [self._pad(x, width, 0) for x in types]
            masks = [self._pad(x, width, 0) for x in masks]
        out: dict[str, Any] = {"input_ids": ids}
        want_types = (
            return_token_type_ids
            if return_token_type_ids is not None
            else "token_type_ids" in self.model_input_names
        )
        if want_types:
            out["token_type_ids"] = types
        if return_attention_mask:
            out["attention_mask"] = masks
        return BatchEncoding({k: self._convert(v, single, return_tensors) for k, v in out.items()})

    def _pad(self, seq: list[int], width: int, value: int) -> list[int]:
        fill = [value] * (width - len(seq))
        return fill + seq if self.padding_side == "left" else seq + fill

    @staticmethod
    def _convert(rows: list[list[int]], single: bool, return_tensors: str | None) -> Any:
        if return_tensors is None:
            return rows[0] if single else rows
        if len({len(r) for r in rows}) > 1:
            raise ValueError(
                "sequences have different lengths; pass padding=True to return tensors"
            )
        arr = np.asarray(rows, dtype=np.int64).reshape(len(rows), -1)
        if return_tensors == "np":
            return arr
        import ember

        return ember.from_numpy(arr)

    # -- decoding --------------------------------------------------------------------------
    def decode(self, token_ids: Any, skip_special_tokens: bool = False) -> str:
        r"""Text of one sequence of ids (a list, NumPy array or 1-D tensor)."""
        if hasattr(token_ids, "tolist"):
            token_ids = token_ids.tolist()
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        return self._tokenizer.decode(
            [int(i) for i in token_ids], skip_special_tokens=skip_special_tokens
        )

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False) -> list[str]:
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        return [self.decode(s, skip_special_tokens=skip_special_tokens) for s in sequences]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vocab_size={self.vocab_size}, padding_side="
            f"{self.padding_side!r}, special_tokens="
            f"{ {n: getattr(self, n) for n in _SPECIAL if getattr(self, n)} })"
        )


class AutoTokenizer:
    r"""``AutoTokenizer.from_pretrained(dir_or_repo_id)``: the fast tokenizer in
    ``tokenizer.json``."""

    def __init__(self) -> None:
        raise OSError("AutoTokenizer is built with AutoTokenizer.from_pretrained(...)")

    @staticmethod
    def from_pretrained(
        pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> PreTrainedTokenizerFast:
        kwargs.pop("use_fast", None)
        return PreTrainedTokenizerFast.from_pretrained(pretrained_model_name_or_path, **kwargs)
