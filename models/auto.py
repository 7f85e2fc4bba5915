"""``AutoConfig`` / ``AutoModel*``: pick the architecture from config.json's ``model_type``."""

from __future__ import annotations

import os
from typing import Any

from ._hub import load_config_dict
from .bert import BertConfig, BertForSequenceClassification, BertModel
from .configuration_utils import PretrainedConfig
from .gpt2 import GPT2Config, GPT2LMHeadModel, GPT2Model
from .llama import LlamaConfig, LlamaForCausalLM, LlamaModel
from .mistral import MistralConfig, MistralForCausalLM, MistralModel
from .modeling_utils import PreTrainedModel

__all__ = [
    "CONFIG_MAPPING",
    "AutoConfig",
    "AutoModel",
    "AutoModelForCausalLM",
    "AutoModelForSequenceClassification",
]

#: The configuration class of each supported ``model_type`` (the key of a checkpoint's
#: ``config.json``): ``bert``, ``gpt2``, ``llama`` and ``mistral``.
CONFIG_MAPPING: dict[str, type[PretrainedConfig]] = {
    "bert": BertConfig,
    "gpt2": GPT2Config,
    "llama": LlamaConfig,
    "mistral": MistralConfig,
}
MODEL_MAPPING: dict[str, type[PreTrainedModel]] = {
    "bert": BertModel,
    "gpt2": GPT2Model,
    "llama": LlamaModel,
    "mistral": MistralModel,
}
MODEL_FOR_CAUSAL_LM_MAPPING: dict[str, type[PreTrainedModel]] = {
    "gpt2": GPT2LMHeadModel,
    "llama": LlamaForCausalLM,
    "mistral": MistralForCausalLM,
}
MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING: dict[str, type[PreTrainedModel]] = {
    "bert": BertForSequenceClassification
}


def _config_class(model_type: Any, where: str) -> type[PretrainedConfig]:
    if model_type is None:
        raise ValueError(
            f"{where} has no 'model_type'; ember.models supports {sorted(CONFIG_MAPPING)}"
        )
    try:
        return CONFIG_MAPPING[model_type]
    except KeyError:
        raise ValueError(
            f"Unrecognized model_type {model_type!r} in {where}; ember.models "
            f"supports {sorted(CONFIG_MAPPING)}"
        ) from None


class AutoConfig:
    r"""``AutoConfig.from_pretrained(dir_or_repo_id)`` returns the matching config class;
    ``AutoConfig.for_model("gpt2", n_layer=2)`` builds one."""

    def __init__(self) -> None:
        raise OSError(
            "AutoConfig is built with AutoConfig.from_pretrained(...) or AutoConfig.for_model(...)"
        )

    @staticmethod
    def for_model(model_type: str, **kwargs: Any) -> PretrainedConfig:
        return _config_class(model_type, "for_model()")(**kwargs)

    @staticmethod
    def from_pretrained(
        pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> PretrainedConfig:
        hub = {
            k: kwargs.pop(k) for k in ("cache_dir", "revision", "local_files_only") if k in kwargs
        }
        d = load_config_dict(pretrained_model_name_or_path, **hub)
        where = f"the config.json of {os.fspath(pretrained_model_name_or_path)!r}"
        return _config_class(d.get("model_type"), where).from_dict(d, **kwargs)


class _AutoModel:
    _mapping: dict[str, type[PreTrainedModel]] = {}
    _task = "model"

    def __init__(self) -> None:
        raise OSError(
            f"{type(self).__name__} is built with .from_pretrained(...) or .from_config(config)"
        )

    @classmethod
    def _model_class(cls, config: PretrainedConfig) -> type[PreTrainedModel]:
        mt = getattr(config, "model_type", None)
        try:
            return cls._mapping[mt]
        except KeyError:
            raise ValueError(
                f"{cls.__name__} has no {cls._task} class for model_type {mt!r}; "
                f"ember.models supports {sorted(cls._mapping)}"
            ) from None

    @classmethod
    def from_config(cls, config: PretrainedConfig, **kwargs: Any) -> PreTrainedModel:
        r"""A randomly initialised model of ``config``'s architecture."""
        return cls._model_class(config).from_config(config, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *args: Any,
        config: PretrainedConfig | None = None,
        **kwargs: Any,
    ) -> PreTrainedModel:
        r"""Load ``config.json`` + safetensors weights into the class ``model_type`` names
        (arguments as ``PreTrainedModel.from_pretrained``)."""
        if config is None:
            hub = {
                k: kwargs[k] for k in ("cache_dir", "revision", "local_files_only") if k in kwargs
            }
            config = AutoConfig.from_pretrained(pretrained_model_name_or_path, **hub)
        return cls._model_class(config).from_pretrained(
            pretrained_model_name_or_path, *args, config=config, **kwargs
        )


class AutoModel(_AutoModel):
    r"""The bare backbone (``GPT2Model``, ``BertModel``, ``LlamaModel``)."""

    _mapping = MODEL_MAPPING


class AutoModelForCausalLM(_AutoModel):
    r"""A decoder with its language-model head (``GPT2LMHeadModel``, ``LlamaForCausalLM``)."""

    _mapping = MODEL_FOR_CAUSAL_LM_MAPPING
    _task = "causal-LM"


class AutoModelForSequenceClassification(_AutoModel):
    r"""An encoder with a classification head (``BertForSequenceClassification``)."""

    _mapping = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING
    _task = "sequence-classification"
