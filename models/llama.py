"""Llama-style decoder (``LlamaConfig``, ``LlamaModel``, ``LlamaForCausalLM``): RMSNorm, rotary
position embeddings, SwiGLU MLP, grouped-query attention and a KV cache; transformers' names."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import ember
from ember import Tensor, nn

from ._layers import attention, get_activation, make_attention_mask
from .cache_utils import DynamicCache, as_cache
from .configuration_utils import PretrainedConfig
from .generation import GenerationMixin
from .gpt2 import causal_lm_loss
from .modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from .modeling_utils import PreTrainedModel

__all__ = ["LlamaConfig", "LlamaForCausalLM", "LlamaModel", "LlamaPreTrainedModel", "LlamaRMSNorm"]

ROPE_TYPES = ("default", "linear", "llama3")


class LlamaConfig(PretrainedConfig):
    r"""Configuration of a Llama-style model (transformers' defaults: Llama-2 7B).

    Rotary settings are read from ``rope_parameters`` (transformers 5) or from ``rope_theta``
    and ``rope_scaling`` (earlier files) and written back as ``rope_parameters``.
    """

    model_type = "llama"

    def __init__(
        self,
        vocab_size: int = 32000,
        hidden_size: int = 4096,
        intermediate_size: int = 11008,
        num_hidden_layers: int = 32,
        num_attention_heads: int = 32,
        num_key_value_heads: int | None = None,
        head_dim: int | None = None,
        hidden_act: str = "silu",
        max_position_embeddings: int = 2048,
        initializer_range: float = 0.02,
        rms_norm_eps: float = 1e-6,
        rope_parameters: dict | None = None,
        attention_bias: bool = False,
        attention_dropout: float = 0.0,
        mlp_bias: bool = False,
        bos_token_id: int | None = 1,
        eos_token_id: int | list[int] | None = 2,
        tie_word_embeddings: bool = False,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = (
            num_attention_heads if num_key_value_heads is None else num_key_value_heads
        )
        self.head_dim = head_dim if head_dim is not None else hidden_size // num_attention_heads
        if num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({num_attention_heads}) must be a multiple "
                f"of num_key_value_heads ({self.num_key_value_heads})"
            )
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        theta = kwargs.pop("rope_theta", 10000.0)
        scaling = kwargs.pop("rope_scaling", None)
        if rope_parameters is None:
            rope_parameters = {"rope_theta": theta, **(scaling or {})}
        rope_parameters = dict(rope_parameters)
        rope_parameters.setdefault("rope_theta", theta)
        rope_type = rope_parameters.pop("type", None) or rope_parameters.get("rope_type")
        rope_parameters["rope_type"] = rope_type or "default"
        if rope_parameters["rope_type"] not in ROPE_TYPES:
            raise ValueError(
                f"rope_type {rope_parameters['rope_type']!r} is not supported; "
                f"ember.models supports {list(ROPE_TYPES)}"
            )
        self.rope_parameters = rope_parameters
        self.attention_bias = attention_bias
        self.attention_dropout = attention_dropout
        self.mlp_bias = mlp_bias
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )


def rope_inv_freq(config: LlamaConfig) -> np.ndarray:
    r"""Rotary inverse frequencies (head_dim / 2,) in float32, as transformers computes them."""
    p = config.rope_parameters
    dim = int(config.head_dim * p.get("partial_rotary_factor", 1.0))
    exps = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / np.float32(dim)
    inv = (np.float32(1.0) / (np.float32(p["rope_theta"]) ** exps)).astype(np.float32)
    kind = p["rope_type"]
    if kind == "linear":
        inv = inv / np.float32(p["factor"])
    elif kind == "llama3":
        factor, lo, hi = p["factor"], p["low_freq_factor"], p["high_freq_factor"]
        old = p["original_max_position_embeddings"]
        lo_wavelen, hi_wavelen = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > lo_wavelen, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < hi_wavelen) & ~(wavelen > lo_wavelen)
        inv = np.where(medium, smoothed, scaled).astype(np.float32)
    return inv


class LlamaRotaryEmbedding(nn.Module):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        # not a buffer: model.to(bfloat16) must not round the frequencies (transformers keeps
        # them in float32 too); one float32 copy per device, made on first use
        self._inv_freq = rope_inv_freq(config)
        self._on_device: dict[str, Tensor] = {}

    def forward(self, x: Tensor, position_ids: Tensor) -> tuple[Tensor, Tensor]:
        dev = str(position_ids.device)
        if dev not in self._on_device:
            self._on_device[dev] = ember.from_numpy(self._inv_freq).to(position_ids.device)
        freqs = position_ids[..., None].to(ember.float32) * self._on_device[dev]
        emb = ember.cat([freqs, freqs], -1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return ember.cat([-x[..., half:], x[..., :half]], -1)


def apply_rotary_pos_emb(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    cos, sin = cos[:, None], sin[:, None]  # broadcast over heads
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


class LlamaRMSNorm(nn.Module):
    r"""Root-mean-square LayerNorm without centring or bias, computed in float32."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(ember.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        h = x.to(ember.float32)
        h = h * ember.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * h.to(dtype)


class LlamaAttention(nn.Module):
    def __init__(self, config: LlamaConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.dropout = config.attention_dropout
        h, bias = config.hidden_size, config.attention_bias
        self.q_proj = nn.Linear(h, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(h, self.num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(h, self.num_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, h, bias=bias)

    def forward(
        self,
        x: Tensor,
        cos_sin: tuple[Tensor, Tensor],
        mask: Tensor | None,
        cache: DynamicCache | None,
    ) -> Tensor:
        b, s, _ = x.shape
        q = self.q_proj(x).reshape(b, s, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).reshape(b, s, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).reshape(b, s, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, *cos_sin)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        out = attention(q, k, v, mask, self.dropout if self.training else 0.0, self.head_dim**-0.5)
        return self.o_proj(out.transpose(1, 2).reshape(b, s, self.num_heads * self.head_dim))


class LlamaMLP(nn.Module):
    r"""SwiGLU: ``down_proj(act(gate_proj(x)) * up_proj(x))``."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        h, i, bias = config.hidden_size, config.intermediate_size, config.mlp_bias
        self.gate_proj = nn.Linear(h, i, bias=bias)
        self.up_proj = nn.Linear(h, i, bias=bias)
        self.down_proj = nn.Linear(i, h, bias=bias)
        self.act_fn = get_activation(config.hidden_act)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config: LlamaConfig, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = LlamaAttention(config, layer_idx)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(
        self,
        x: Tensor,
        cos_sin: tuple[Tensor, Tensor],
        mask: Tensor | None,
        cache: DynamicCache | None,
    ) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos_sin, mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaPreTrainedModel(PreTrainedModel, GenerationMixin):
    """The base of the Llama-style models: :class:`LlamaConfig`, the ``model.`` prefix of
    checkpoint keys, and ``generate``."""

    config_class = LlamaConfig
    base_model_prefix = "model"
    _keys_to_ignore_on_load_unexpected = (r"rotary_emb\.inv_freq$",)

    def _init_linear(self) -> None:
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)


class LlamaModel(LlamaPreTrainedModel):
    r"""The Llama decoder stack without a head; ``last_hidden_state`` is after the final norm."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            LlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers)
        )
        self.norm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config)
        self._init_linear()

    def get_input_embeddings(self) -> nn.Module:
        return self.embed_tokens

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: Tensor | None = None,
        use_cache: bool | None = None,
        return_dict: bool = True,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        cache = as_cache(past_key_values, use_cache)
        past = cache.get_seq_length() if cache is not None else 0
        s = inputs_embeds.shape[1]
        if position_ids is None:
            position_ids = ember.arange(past, past + s, device=inputs_embeds.device)[None]
        x = inputs_embeds
        cos_sin = self.rotary_emb(x, position_ids)
        mask = make_attention_mask(
            attention_mask,
            s,
            past,
            x.dtype,
            causal=True,
            device=x.device,
            sliding_window=getattr(self.config, "sliding_window", None),
        )
        for layer in self.layers:
            x = layer(x, cos_sin, mask, cache)
        out = BaseModelOutputWithPast(
            last_hidden_state=self.norm(x), past_key_values=cache if use_cache else None
        )
        return out if return_dict else out.to_tuple()


class LlamaForCausalLM(LlamaPreTrainedModel):
    r"""Llama with the language-model head (``lm_head``, tied only if the config says so)."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        nn.init.normal_(self.lm_head.weight, std=config.initializer_range)
        self.tie_weights()

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        use_cache: bool | None = None,
        return_dict: bool = True,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        r"""``labels`` (batch, seq) are the input ids themselves (shifted inside); -100 is
        ignored in the loss."""
        h = self.model(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
        )
        logits = self.lm_head(h.last_hidden_state)
        out = CausalLMOutputWithPast(
            loss=causal_lm_loss(logits, labels), logits=logits, past_key_values=h.past_key_values
        )
        return out if return_dict else out.to_tuple()
