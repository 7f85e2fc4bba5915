"""``GenerationMixin.generate``: greedy and sampled decoding with a KV cache."""

from __future__ import annotations

from typing import Any

import ember
from ember import Tensor

__all__ = ["GenerationMixin"]


def _as_list(eos: int | list[int] | None) -> list[int]:
    if eos is None:
        return []
    return [int(eos)] if isinstance(eos, int) else [int(e) for e in eos]


def _filter_logits(
    logits: Tensor, temperature: float, top_k: int | None, top_p: float | None
) -> Tensor:
    r"""transformers' sampling warpers in their order: temperature, top-k, top-p.
    Removed tokens get -inf; at least one token always stays."""
    if temperature != 1.0:
        logits = logits / temperature
    neg_inf = ember.full((), float("-inf"), dtype=logits.dtype, device=logits.device)
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = ember.where(logits < kth, neg_inf, logits)
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the tokens ranked above it already reach top_p
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop_sorted[:, 0] = False
        drop = ember.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = ember.where(drop, neg_inf, logits)
    return logits


class GenerationMixin:
    r"""Adds ``generate()`` to causal language models (transformers' method, a subset)."""

    def generate(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        *,
        max_new_tokens: int | None = None,
        max_length: int | None = None,
        do_sample: bool | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_token_id: int | list[int] | None = None,
        pad_token_id: int | None = None,
        use_cache: bool = True,
        generator: Any = None,
        **kwargs: Any,
    ) -> Tensor:
        r"""Continue ``input_ids`` (batch, seq) token by token; return (batch, seq + new).

        Settings left ``None`` come from the checkpoint's ``generation_config.json`` (as
        transformers), else from transformers' defaults (below).

        Args:
            input_ids: prompt ids; left-pad a batch of prompts and pass ``attention_mask``.
            attention_mask: 1 for real tokens, 0 for padding.
            max_new_tokens: tokens to add (default: up to ``max_length``, itself 20).
            do_sample: sample from the filtered distribution instead of taking the argmax
                (default ``False``).
            temperature, top_k, top_p: sampling filters, applied in that order (defaults
                1.0, 50, 1.0).
            eos_token_id: stop a sequence after it emits one of these (default: the
                config's); finished sequences are padded with ``pad_token_id`` (default: EOS).
            use_cache: reuse the keys and values of earlier positions (one new token per
                forward instead of the whole sequence).
            generator: an ``ember.Generator`` for sampling.
        """
        unknown = sorted(set(kwargs) - {"num_beams"})
        if unknown:
            raise TypeError(f"generate() got unsupported argument(s) {unknown}")
        if kwargs.get("num_beams", 1) != 1:
            raise NotImplementedError("beam search is not supported; use num_beams=1")
        if not isinstance(input_ids, Tensor) or input_ids.dim() != 2:
            raise ValueError("input_ids must be a (batch, seq) tensor of token ids")
        saved = getattr(self, "generation_config", None) or {}

        def pick(value, key, default):
            if value is not None:
                return value
            return saved[key] if saved.get(key) is not None else default

        do_sample = pick(do_sample, "do_sample", False)
        temperature = pick(temperature, "temperature", 1.0)
        top_k = pick(top_k, "top_k", 50)
        top_p = pick(top_p, "top_p", 1.0)
        if do_sample and temperature <= 0:
            raise ValueError(f"temperature must be positive when sampling, got {temperature}")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        prompt_len = input_ids.shape[1]
        if max_new_tokens is None:
            max_new_tokens = saved.get("max_new_tokens")
        if max_new_tokens is None:
            max_new_tokens = max(0, pick(max_length, "max_length", 20) - prompt_len)
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        eos = _as_list(pick(eos_token_id, "eos_token_id", self.config.eos_token_id))
        pad_token_id = pick(pad_token_id, "pad_token_id", self.config.pad_token_id)
        if pad_token_id is None:
            pad_token_id = eos[0] if eos else 0
        dev = input_ids.device
        ids = input_ids.to(ember.int64)
        mask = (
            attention_mask.to(ember.int64) if attention_mask is not None else ember.ones_like(ids)
        )
        finished = ember.zeros(ids.shape[0], dtype=ember.bool, device=dev)
        eos_t = ember.tensor(eos, dtype=ember.int64, device=dev) if eos else None
        was_training = getattr(self, "training", False)
        self.eval()
        cache = None
        try:
            with ember.no_grad():
                for _ in range(max_new_tokens):
                    # positions count real tokens only, so left padding does not shift them
                    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
                    step = ids if cache is None or not use_cache else ids[:, -1:]
                    out = self(
                        input_ids=step,
                        attention_mask=mask,
                        position_ids=pos[:, -step.shape[1] :],
                        past_key_values=cache if use_cache else None,
                        use_cache=use_cache,
                    )
                    cache = out.past_key_values if use_cache else None
                    logits = out.logits[:, -1, :].float()
                    if do_sample:
                        logits = _filter_logits(logits, temperature, top_k, top_p)
                        nxt = ember.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]
                    else:
                        nxt = logits.argmax(-1)
                    nxt = ember.where(finished, ember.full_like(nxt, pad_token_id), nxt)
                    ids = ember.cat([ids, nxt[:, None]], 1)
                    mask = ember.cat([mask, ember.ones_like(nxt)[:, None]], 1)
                    if eos_t is not None:
                        finished = finished | (nxt[:, None] == eos_t).any(-1)
                        if bool(finished.all()):
                            break
        finally:
            if was_training:
                self.train()
        return ids
