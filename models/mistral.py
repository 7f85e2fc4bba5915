"""Mistral (``MistralConfig``, ``MistralModel``, ``MistralForCausalLM``): the Llama layout with
sliding-window attention; transformers' names and weight keys."""

from __future__ import annotations

from typing import Any

from .llama import LlamaConfig, LlamaForCausalLM, LlamaModel

__all__ = ["MistralConfig", "MistralForCausalLM", "MistralModel"]


class MistralConfig(LlamaConfig):
    r"""Configuration of a Mistral model (transformers' defaults: Mistral 7B).

    ``sliding_window``: each token attends to itself and the ``sliding_window - 1`` before
    it; ``None`` attends to all earlier tokens, as Llama.
    """

    model_type = "mistral"

    def __init__(
        self,
        vocab_size: int = 32000,
        hidden_size: int = 4096,
        intermediate_size: int = 14336,
        num_hidden_layers: int = 32,
        num_attention_heads: int = 32,
        num_key_value_heads: int | None = 8,
        max_position_embeddings: int = 4096 * 32,
        sliding_window: int | None = 4096,
        **kwargs: Any,
    ) -> None:
        if sliding_window is not None and sliding_window < 1:
            raise ValueError(f"sliding_window must be >= 1 or None, got {sliding_window}")
        self.sliding_window = sliding_window
        super().__init__(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            num_key_value_heads=num_key_value_heads,
            max_position_embeddings=max_position_embeddings,
            **kwargs,
        )


class MistralModel(LlamaModel):
    r"""The Mistral decoder stack (``LlamaModel`` with the config's sliding window)."""

    config_class = MistralConfig


class MistralForCausalLM(LlamaForCausalLM):
    r"""Mistral with its language-model head."""

    config_class = MistralConfig
