"""BERT (``BertConfig``, ``BertModel``, ``BertForSequenceClassification``), transformers' names."""

from __future__ import annotations

from typing import Any

import ember
import ember.nn.functional as F
from ember import Tensor, nn

from ._layers import additive_mask, attention, get_activation
from .configuration_utils import PretrainedConfig
from .modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from .modeling_utils import PreTrainedModel

__all__ = ["BertConfig", "BertForSequenceClassification", "BertModel", "BertPreTrainedModel"]


class BertConfig(PretrainedConfig):
    r"""Configuration of BERT (transformers' defaults: bert-base)."""

    model_type = "bert"

    def __init__(
        self,
        vocab_size: int = 30522,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.1,
        attention_probs_dropout_prob: float = 0.1,
        max_position_embeddings: int = 512,
        type_vocab_size: int = 2,
        initializer_range: float = 0.02,
        layer_norm_eps: float = 1e-12,
        pad_token_id: int | None = 0,
        classifier_dropout: float | None = None,
        **kwargs: Any,
    ) -> None:
        kind = kwargs.pop("position_embedding_type", "absolute")
        if kind != "absolute":
            raise ValueError(
                f"position_embedding_type {kind!r} is not supported; "
                "ember.models supports 'absolute'"
            )
        if hidden_size % num_attention_heads:
            raise ValueError(
                f"hidden_size ({hidden_size}) must be divisible by "
                f"num_attention_heads ({num_attention_heads})"
            )
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.classifier_dropout = classifier_dropout
        super().__init__(pad_token_id=pad_token_id, **kwargs)


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, h)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, h)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, h)
        self.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.max_positions = config.max_position_embeddings

    def forward(
        self,
        input_ids: Tensor | None,
        token_type_ids: Tensor | None,
        position_ids: Tensor | None,
        inputs_embeds: Tensor | None,
    ) -> Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        s = inputs_embeds.shape[1]
        if s > self.max_positions:
            raise ValueError(
                f"sequence of {s} tokens is longer than BERT's "
                f"max_position_embeddings={self.max_positions}"
            )
        if position_ids is None:
            position_ids = ember.arange(s, device=inputs_embeds.device)[None]
        if token_type_ids is None:
            token_type_ids = ember.zeros(
                inputs_embeds.shape[:2], dtype=ember.int64, device=inputs_embeds.device
            )
        x = (
            inputs_embeds
            + self.token_type_embeddings(token_type_ids)
            + self.position_embeddings(position_ids)
        )
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = h // self.num_heads
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.value = nn.Linear(h, h)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        b, s, h = x.shape
        q, k, v = (
            p(x).reshape(b, s, self.num_heads, self.head_dim).transpose(1, 2)
            for p in (self.query, self.key, self.value)
        )
        out = attention(q, k, v, mask, self.dropout_p if self.training else 0.0)
        return out.transpose(1, 2).reshape(b, s, h)


class BertSelfOutput(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, h: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = get_activation(config.hidden_act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.dense(x))


class BertOutput(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, h: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        a = self.attention(x, mask)
        return self.output(self.intermediate(a), a)


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        for layer in self.layer:
            x = layer(x, mask)
        return x


class BertPooler(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return ember.tanh(self.dense(x[:, 0]))


class BertPreTrainedModel(PreTrainedModel):
    """The base of the BERT models: :class:`BertConfig`, the ``bert.`` prefix of checkpoint
    keys, and the checkpoint keys that loading ignores."""

    config_class = BertConfig
    base_model_prefix = "bert"
    # old files keep the position_ids buffer; pretraining checkpoints carry the MLM/NSP heads
    _keys_to_ignore_on_load_unexpected = (r"embeddings\.position_ids$", r"^cls\.")

    def _init_weights(self) -> None:
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)


class BertModel(BertPreTrainedModel):
    r"""The BERT encoder: embeddings, ``num_hidden_layers`` post-norm layers, and the pooler
    (``tanh(dense(h[:, 0]))``) unless ``add_pooling_layer=False``."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self._init_weights()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.word_embeddings

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        return_dict: bool = True,
        **kwargs: Any,
    ) -> BaseModelOutputWithPooling:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)
        mask = None
        if attention_mask is not None:
            if tuple(attention_mask.shape) != tuple(x.shape[:2]):
                raise ValueError(
                    f"attention_mask must be (batch, seq) = {tuple(x.shape[:2])},"
                    f" got {tuple(attention_mask.shape)}"
                )
            mask = additive_mask((attention_mask != 0)[:, None, None, :], x.dtype)
        h = self.encoder(x, mask)
        pooled = self.pooler(h) if self.pooler is not None else None
        out = BaseModelOutputWithPooling(last_hidden_state=h, pooler_output=pooled)
        return out if return_dict else out.to_tuple()


class BertForSequenceClassification(BertPreTrainedModel):
    r"""BERT + dropout + ``classifier`` on the pooled output; ``config.num_labels`` outputs.

    The loss follows ``config.problem_type`` (inferred as transformers does when unset):
    regression (MSE) for one label, cross entropy for integer labels, BCE-with-logits else.
    """

    _new_head_keys = ("classifier.",)  # may be absent from a backbone checkpoint

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config)
        p = config.classifier_dropout
        self.dropout = nn.Dropout(config.hidden_dropout_prob if p is None else p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        nn.init.normal_(self.classifier.weight, std=config.initializer_range)
        nn.init.zeros_(self.classifier.bias)

    def get_input_embeddings(self) -> nn.Module:
        return self.bert.embeddings.word_embeddings

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        return_dict: bool = True,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        h = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
        )
        logits = self.classifier(self.dropout(h.pooler_output))
        out = SequenceClassifierOutput(loss=self._loss(logits, labels), logits=logits)
        return out if return_dict else out.to_tuple()

    def _loss(self, logits: Tensor, labels: Tensor | None) -> Tensor | None:
        if labels is None:
            return None
        kind = self.config.problem_type
        if kind is None:
            if self.num_labels == 1:
                kind = "regression"
            elif not labels.dtype.is_floating_point:
                kind = "single_label_classification"
            else:
                kind = "multi_label_classification"
            self.config.problem_type = kind
        if kind == "regression":
            if self.num_labels == 1:
                return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
            return F.mse_loss(logits, labels.to(logits.dtype))
        if kind == "single_label_classification":
            return F.cross_entropy(
                logits.reshape(-1, self.num_labels), labels.reshape(-1).to(ember.int64)
            )
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
