"""ember.models: text models with Hugging Face layouts, under transformers' names.

GPT-2, BERT and Llama-style decoders that load ``config.json`` + ``model.safetensors`` (or a
sharded index) written by transformers, save files transformers loads back, and generate text
with a KV cache; tokenizers come from ``tokenizer.json`` (the ``tokenizers`` package).
See docs/models.md.
"""

from .auto import (
    CONFIG_MAPPING,
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
)
from .bert import BertConfig, BertForSequenceClassification, BertModel, BertPreTrainedModel
from .cache_utils import DynamicCache
from .configuration_utils import PretrainedConfig
from .generation import GenerationMixin
from .gpt2 import GPT2Config, GPT2LMHeadModel, GPT2Model, GPT2PreTrainedModel
from .llama import LlamaConfig, LlamaForCausalLM, LlamaModel, LlamaPreTrainedModel
from .mistral import MistralConfig, MistralForCausalLM, MistralModel
from .modeling_outputs import (
    BaseModelOutputWithPast,
    BaseModelOutputWithPooling,
    CausalLMOutputWithPast,
    ModelOutput,
    SequenceClassifierOutput,
)
from .modeling_utils import PreTrainedModel
from .tokenization import AutoTokenizer, BatchEncoding, PreTrainedTokenizerFast

__all__ = [
    "CONFIG_MAPPING",
    "AutoConfig",
    "AutoModel",
    "AutoModelForCausalLM",
    "AutoModelForSequenceClassification",
    "AutoTokenizer",
    "BaseModelOutputWithPast",
    "BaseModelOutputWithPooling",
    "BatchEncoding",
    "BertConfig",
    "BertForSequenceClassification",
    "BertModel",
    "BertPreTrainedModel",
    "CausalLMOutputWithPast",
    "DynamicCache",
    "GPT2Config",
    "GPT2LMHeadModel",
    "GPT2Model",
    "GPT2PreTrainedModel",
    "GenerationMixin",
    "LlamaConfig",
    "LlamaForCausalLM",
    "LlamaModel",
    "LlamaPreTrainedModel",
    "MistralConfig",
    "MistralForCausalLM",
    "MistralModel",
    "ModelOutput",
    "PreTrainedModel",
    "PreTrainedTokenizerFast",
    "PretrainedConfig",
    "SequenceClassifierOutput",
]
