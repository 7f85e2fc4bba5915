"""``PretrainedConfig``: the config.json of a Hugging Face model, as attributes."""

from __future__ import annotations

import copy
import json
import os
from typing import Any

__all__ = ["PretrainedConfig"]

CONFIG_NAME = "config.json"


class PretrainedConfig:
    r"""Base class of model configurations (transformers' ``PretrainedConfig``).

    Every key of ``config.json`` becomes an attribute; keys this class does not know are kept
    and written back by :meth:`save_pretrained`, so a round trip loses nothing.
    ``attribute_map`` aliases transformers' common names (``hidden_size``) to a model's own
    (GPT-2's ``n_embd``).
    """

    model_type: str = ""
    attribute_map: dict[str, str] = {}

    def __init__(
        self,
        *,
        architectures: list[str] | None = None,
        bos_token_id: int | None = None,
        eos_token_id: int | list[int] | None = None,
        pad_token_id: int | None = None,
        tie_word_embeddings: bool = True,
        num_labels: int | None = None,
        id2label: dict | None = None,
        label2id: dict | None = None,
        problem_type: str | None = None,
        use_cache: bool = True,
        dtype: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.architectures = architectures
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id
        self.tie_word_embeddings = tie_word_embeddings
        self.use_cache = use_cache
        # transformers < 5 wrote "torch_dtype"; 5.x writes "dtype"
        self.dtype = dtype if dtype is not None else kwargs.pop("torch_dtype", None)
        if id2label is not None:
            id2label = {int(k): v for k, v in id2label.items()}
        elif num_labels is not None:
            id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
        else:
            id2label = {0: "LABEL_0", 1: "LABEL_1"}
        self.id2label = id2label
        self.label2id = (
            dict(label2id) if label2id is not None else {v: k for k, v in id2label.items()}
        )
        if problem_type not in (
            None,
            "regression",
            "single_label_classification",
            "multi_label_classification",
        ):
            raise ValueError(
                "problem_type must be one of 'regression', "
                "'single_label_classification', 'multi_label_classification', "
                f"got {problem_type!r}"
            )
        self.problem_type = problem_type
        kwargs.pop("model_type", None)
        kwargs.pop("transformers_version", None)
        for key, value in kwargs.items():
            setattr(self, key, value)

    # attribute_map aliases: config.hidden_size reads/writes config.n_embd for GPT-2
    def __getattr__(self, name: str) -> Any:
        amap = type(self).attribute_map
        if name in amap:
            return getattr(self, amap[name])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        name = type(self).attribute_map.get(name, name)
        super().__setattr__(name, value)

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n: int) -> None:
        if n != len(self.id2label):
            self.id2label = {i: f"LABEL_{i}" for i in range(n)}
            self.label2id = {v: k for k, v in self.id2label.items()}

    def to_dict(self) -> dict[str, Any]:
        r"""All settings as a JSON-ready dict (``model_type`` included)."""
        out = {k: copy.deepcopy(v) for k, v in self.__dict__.items() if not k.startswith("_")}
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out["model_type"] = self.model_type
        return dict(sorted(out.items()))

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> PretrainedConfig:
        r"""Build a config from a dict; ``kwargs`` override its entries."""
        merged = {**config_dict, **kwargs}
        mt = merged.get("model_type")
        if cls.model_type and mt and mt != cls.model_type:
            raise ValueError(
                f"config.json has model_type {mt!r}, but {cls.__name__} is for "
                f"{cls.model_type!r}; use ember.models.AutoConfig"
            )
        if "num_labels" in merged and "id2label" in merged:
            if int(merged["num_labels"]) != len(merged["id2label"]):
                merged.pop("id2label")
                merged.pop("label2id", None)
        return cls(**merged)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> PretrainedConfig:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> PretrainedConfig:
        r"""Read ``config.json`` from a directory, a Hub repo id in the local cache, or a file."""
        from ._hub import load_config_dict

        hub_kwargs = {
            k: kwargs.pop(k) for k in ("cache_dir", "revision", "local_files_only") if k in kwargs
        }
        return cls.from_dict(
            load_config_dict(pretrained_model_name_or_path, **hub_kwargs), **kwargs
        )

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        r"""Write ``config.json`` into ``save_directory`` (created if needed)."""
        if os.path.isfile(save_directory):
            raise ValueError(f"save_directory {str(save_directory)!r} is a file, not a directory")
        os.makedirs(save_directory, exist_ok=True)
        with open(os.path.join(save_directory, CONFIG_NAME), "w", encoding="utf-8") as f:
            f.write(self.to_json_string())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PretrainedConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"
