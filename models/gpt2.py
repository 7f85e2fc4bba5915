"""GPT-2 (``GPT2Config``, ``GPT2Model``, ``GPT2LMHeadModel``) with transformers' weight names."""

from __future__ import annotations

from typing import Any

import ember
import ember.nn.functional as F
from ember import Tensor, nn

from ._layers import Conv1D, attention, get_activation, make_attention_mask
from .cache_utils import DynamicCache, as_cache
from .configuration_utils import PretrainedConfig
from .generation import GenerationMixin
from .modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from .modeling_utils import PreTrainedModel

__all__ = ["GPT2Config", "GPT2LMHeadModel", "GPT2Model", "GPT2PreTrainedModel"]


class GPT2Config(PretrainedConfig):
    r"""Configuration of GPT-2 (transformers' defaults: the 124M model)."""

    model_type = "gpt2"
    attribute_map = {
        "hidden_size": "n_embd",
        "max_position_embeddings": "n_positions",
        "num_attention_heads": "n_head",
        "num_hidden_layers": "n_layer",
    }

    def __init__(
        self,
        vocab_size: int = 50257,
        n_positions: int = 1024,
        n_embd: int = 768,
        n_layer: int = 12,
        n_head: int = 12,
        n_inner: int | None = None,
        activation_function: str = "gelu_new",
        resid_pdrop: float = 0.1,
        embd_pdrop: float = 0.1,
        attn_pdrop: float = 0.1,
        layer_norm_epsilon: float = 1e-5,
        initializer_range: float = 0.02,
        scale_attn_weights: bool = True,
        scale_attn_by_inverse_layer_idx: bool = False,
        reorder_and_upcast_attn: bool = False,
        bos_token_id: int | None = 50256,
        eos_token_id: int | None = 50256,
        tie_word_embeddings: bool = True,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.n_positions = n_positions
        self.n_embd = n_embd
        self.n_layer = n_layer
        self.n_head = n_head
        self.n_inner = n_inner
        self.activation_function = activation_function
        self.resid_pdrop = resid_pdrop
        self.embd_pdrop = embd_pdrop
        self.attn_pdrop = attn_pdrop
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range
        self.scale_attn_weights = scale_attn_weights
        self.scale_attn_by_inverse_layer_idx = scale_attn_by_inverse_layer_idx
        self.reorder_and_upcast_attn = reorder_and_upcast_attn
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )


class GPT2Attention(nn.Module):
    def __init__(self, config: GPT2Config, layer_idx: int) -> None:
        super().__init__()
        self.embed_dim = config.n_embd
        self.num_heads = config.n_head
        self.head_dim = self.embed_dim // self.num_heads
        self.layer_idx = layer_idx
        self.scaling = self.head_dim**-0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            self.scaling /= float(layer_idx + 1)
        self.c_attn = Conv1D(3 * self.embed_dim, self.embed_dim)
        self.c_proj = Conv1D(self.embed_dim, self.embed_dim)
        self.attn_pdrop = config.attn_pdrop
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: Tensor, mask: Tensor | None, cache: DynamicCache | None) -> Tensor:
        b, s, _ = x.shape
        q, k, v = self.c_attn(x).split(self.embed_dim, dim=2)
        q, k, v = (
            t.reshape(b, s, self.num_heads, self.head_dim).transpose(1, 2) for t in (q, k, v)
        )
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        out = attention(q, k, v, mask, self.attn_pdrop if self.training else 0.0, self.scaling)
        out = out.transpose(1, 2).reshape(b, s, self.embed_dim)
        return self.resid_dropout(self.c_proj(out))


class GPT2MLP(nn.Module):
    def __init__(self, inner: int, config: GPT2Config) -> None:
        super().__init__()
        self.c_fc = Conv1D(inner, config.n_embd)
        self.c_proj = Conv1D(config.n_embd, inner)
        self.act = get_activation(config.activation_function)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GPT2Block(nn.Module):
    def __init__(self, config: GPT2Config, layer_idx: int) -> None:
        super().__init__()
        inner = config.n_inner if config.n_inner is not None else 4 * config.n_embd
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(inner, config)

    def forward(self, x: Tensor, mask: Tensor | None, cache: DynamicCache | None) -> Tensor:
        x = x + self.attn(self.ln_1(x), mask, cache)
        return x + self.mlp(self.ln_2(x))


class GPT2PreTrainedModel(PreTrainedModel, GenerationMixin):
    """The base of the GPT-2 models: :class:`GPT2Config`, the ``transformer.`` prefix of
    checkpoint keys, and ``generate``."""

    config_class = GPT2Config
    base_model_prefix = "transformer"
    # transformers < 5 saved the causal-mask buffers
    _keys_to_ignore_on_load_unexpected = (r"\.attn\.masked_bias$", r"\.attn\.bias$")


class GPT2Model(GPT2PreTrainedModel):
    r"""The GPT-2 decoder stack: token + position embeddings, blocks, final LayerNorm."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(GPT2Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        for emb in (self.wte, self.wpe):
            nn.init.normal_(emb.weight, std=config.initializer_range)

    def get_input_embeddings(self) -> nn.Module:
        return self.wte

    def forward(
        self,
        input_ids: Tensor | None = None,
        past_key_values: Any = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        use_cache: bool | None = None,
        return_dict: bool = True,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.wte(input_ids)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        cache = as_cache(past_key_values, use_cache)
        past = cache.get_seq_length() if cache is not None else 0
        b, s = inputs_embeds.shape[:2]
        if past + s > self.config.n_positions:
            raise ValueError(
                f"sequence of {past + s} tokens is longer than GPT-2's "
                f"n_positions={self.config.n_positions}"
            )
        if position_ids is None:
            position_ids = ember.arange(past, past + s, device=inputs_embeds.device)[None]
        x = inputs_embeds + self.wpe(position_ids)
        if token_type_ids is not None:
            x = x + self.wte(token_type_ids)
        x = self.drop(x)
        mask = make_attention_mask(attention_mask, s, past, x.dtype, causal=True, device=x.device)
        for block in self.h:
            x = block(x, mask, cache)
        x = self.ln_f(x)
        out = BaseModelOutputWithPast(
            last_hidden_state=x, past_key_values=cache if use_cache else None
        )
        return out if return_dict else out.to_tuple()


class GPT2LMHeadModel(GPT2PreTrainedModel):
    r"""GPT-2 with the language-model head (tied to ``wte`` unless ``tie_word_embeddings``
    is false)."""

    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config: GPT2Config) -> None:
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.tie_weights()

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def forward(
        self,
        input_ids: Tensor | None = None,
        past_key_values: Any = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        use_cache: bool | None = None,
        return_dict: bool = True,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        r"""``labels`` (batch, seq) are the input ids themselves (shifted inside); -100 is
        ignored in the loss."""
        h = self.transformer(
            input_ids,
            past_key_values=past_key_values,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
        )
        logits = self.lm_head(h.last_hidden_state)
        out = CausalLMOutputWithPast(
            loss=causal_lm_loss(logits, labels), logits=logits, past_key_values=h.past_key_values
        )
        return out if return_dict else out.to_tuple()


def causal_lm_loss(logits: Tensor, labels: Tensor | None) -> Tensor | None:
    r"""Mean cross entropy of token ``t+1`` predicted at ``t``; label -100 is ignored."""
    if labels is None:
        return None
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:].to(ember.int64)
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]),
        shift_labels.reshape(-1),
        ignore_index=-100,
    )
