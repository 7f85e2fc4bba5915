"""``PreTrainedModel``: ``from_pretrained`` / ``save_pretrained`` in Hugging Face's layout."""

from __future__ import annotations

import json
import os
import re
import warnings
from typing import Any

import ember
from ember import nn

from ._hub import load_state_dict_files, resolve_model_dir, save_state_dict_files
from .configuration_utils import PretrainedConfig

__all__ = ["PreTrainedModel", "resolve_dtype"]

_DTYPES = ("float32", "float16", "bfloat16", "float64")
GENERATION_CONFIG_NAME = "generation_config.json"


def resolve_dtype(dtype: Any, config: PretrainedConfig | None = None):
    r"""An ember floating dtype from ``torch_dtype=`` (a dtype, its name, or ``"auto"``)."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        if dtype == "auto":
            saved = getattr(config, "dtype", None)
            return resolve_dtype(saved) if saved else None
        name = dtype.removeprefix("torch.").removeprefix("ember.")
        if name not in _DTYPES:
            raise ValueError(f"torch_dtype {dtype!r} is not one of {list(_DTYPES)} or 'auto'")
        return getattr(ember, name)
    if isinstance(dtype, ember.dtype) and dtype.is_floating_point:
        return dtype
    raise TypeError(f"torch_dtype must be a floating dtype, its name or 'auto', got {dtype!r}")


class PreTrainedModel(nn.Module):
    r"""Base of the ember.models architectures.

    Subclasses set ``config_class``, ``base_model_prefix`` (the attribute holding the
    backbone, ``"transformer"`` for GPT-2) and ``_tied_weights_keys`` (``{tied: source}``,
    e.g. the LM head and the input embedding), whose tied entries are neither required on load
    nor written on save, as transformers does.
    """

    config_class: type[PretrainedConfig] = PretrainedConfig
    base_model_prefix: str = ""
    _tied_weights_keys: dict[str, str] = {}
    # checkpoint entries that older transformers wrote and that carry no weights
    _keys_to_ignore_on_load_unexpected: tuple[str, ...] = ()
    # a task head that a backbone checkpoint lacks starts from its random init (transformers
    # does the same, with a warning); every other missing key is an error
    _new_head_keys: tuple[str, ...] = ()

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got "
                f"{type(config).__name__}"
            )
        self.config = config
        self.generation_config: dict = {}  # generation_config.json's generate() defaults

    # -- weights tying -------------------------------------------------------------------
    def _active_tied_keys(self) -> dict[str, str]:
        return self._tied_weights_keys if self.config.tie_word_embeddings else {}

    def tie_weights(self) -> None:
        r"""Make each tied parameter the very same Parameter as its source."""
        for tied, source in self._active_tied_keys().items():
            mod_path, _, name = tied.rpartition(".")
            setattr(self.get_submodule(mod_path), name, self.get_parameter(source))

    def get_input_embeddings(self) -> nn.Module:
        base = getattr(self, self.base_model_prefix, self)
        return base.get_input_embeddings() if base is not self else self._input_embeddings()

    def _input_embeddings(self) -> nn.Module:
        raise NotImplementedError

    @property
    def dtype(self):
        return next(self.parameters()).dtype

    @property
    def device(self):
        return next(self.parameters()).device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())

    # -- loading -------------------------------------------------------------------------
    def _map_checkpoint_keys(self, state: dict) -> dict:
        r"""Add or strip ``base_model_prefix`` so a backbone checkpoint fits a head model and
        a head checkpoint fits a backbone; drop entries that carry no weights."""
        own = set(self.state_dict())
        prefix = self.base_model_prefix + "."
        ignore = [re.compile(p) for p in self._keys_to_ignore_on_load_unexpected]
        state = {k: v for k, v in state.items() if not any(p.search(k) for p in ignore)}
        # TensorFlow-era LayerNorm names, renamed as transformers does
        state = {
            re.sub(
                r"LayerNorm\.gamma$",
                "LayerNorm.weight",
                re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k),
            ): v
            for k, v in state.items()
        }
        if not self.base_model_prefix or not state:
            return state
        own_has_prefix = any(k.startswith(prefix) for k in own)
        ckpt_has_prefix = any(k.startswith(prefix) for k in state)
        if own_has_prefix and not ckpt_has_prefix:
            return {(k if k in own else prefix + k): v for k, v in state.items()}
        if not own_has_prefix and ckpt_has_prefix:
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        return state

    def _check_state(self, state: dict) -> None:
        r"""Raise, before anything is copied, listing every missing, unexpected and
        mismatched entry (``load_state_dict``'s wording)."""
        own = self.state_dict()
        tied = set(self._active_tied_keys())
        missing = [k for k in own if k not in state and k not in tied]
        head = [k for k in own if self._new_head_keys and k.startswith(self._new_head_keys)]
        if head and all(k in missing for k in head):
            missing = [k for k in missing if k not in head]
            warnings.warn(
                f"{type(self).__name__}: the checkpoint has no {', '.join(head)}; "
                "they keep their random initialisation (train before use)",
                stacklevel=3,
            )
        unexpected = [k for k in state if k not in own]
        mismatched = [
            f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
            for k in own
            if k in state and tuple(state[k].shape) != tuple(own[k].shape)
        ]
        if missing or unexpected or mismatched:
            lines = []
            if missing:
                lines.append("Missing key(s) in state_dict: " + ", ".join(missing))
            if unexpected:
                lines.append("Unexpected key(s) in state_dict: " + ", ".join(unexpected))
            if mismatched:
                lines.append("size mismatch: " + "; ".join(mismatched))
            raise RuntimeError(
                f"Error(s) in loading the checkpoint into {type(self).__name__} "
                "(nothing was loaded):\n\t" + "\n\t".join(lines)
            )

    def load_pretrained_state_dict(self, state: dict) -> None:
        r"""Check ``state`` against this model (all or nothing), then copy it in."""
        state = self._map_checkpoint_keys(state)
        self._check_state(state)
        with ember.no_grad():
            for name, t in self.state_dict(keep_vars=True).items():
                if name in state:
                    t.copy_(state[name])
        self.tie_weights()

    @classmethod
    def from_config(cls, config: PretrainedConfig, torch_dtype: Any = None) -> PreTrainedModel:
        r"""A randomly initialised model of ``config``."""
        model = cls(config)
        dtype = resolve_dtype(torch_dtype)
        return model.to(dtype) if dtype is not None else model

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *args: Any,
        config: PretrainedConfig | None = None,
        torch_dtype: Any = None,
        dtype: Any = None,
        cache_dir: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        device: Any = None,
        **kwargs: Any,
    ) -> PreTrainedModel:
        r"""Load a model from a directory with ``config.json`` and ``model.safetensors`` (or a
        sharded ``model.safetensors.index.json``; else ``pytorch_model.bin``, read without
        running pickled code), or from a Hub repo id (local cache first).

        Args:
            pretrained_model_name_or_path: directory or Hub repo id.
            config: use this config instead of the directory's ``config.json``.
            torch_dtype: ``ember.float16``, ``"bfloat16"``, ``"auto"`` (the dtype saved in
                config.json) ...; default float32, not transformers 5's ``"auto"``: half
                precision is slow on NumPy (``dtype=`` is accepted as transformers 5).
            device: move the loaded model there (``"cuda"``).
            kwargs: overrides of config entries (``num_labels=3``).

        Raises:
            RuntimeError: the checkpoint's keys or shapes do not fit; nothing is loaded.
        """
        if args:
            raise TypeError("from_pretrained takes the path positionally and the rest by name")
        model_dir = resolve_model_dir(
            pretrained_model_name_or_path,
            cache_dir=cache_dir,
            revision=revision,
            local_files_only=local_files_only,
        )
        if config is None:
            config = cls.config_class.from_pretrained(model_dir, **kwargs)
        elif kwargs:
            for k, v in kwargs.items():
                setattr(config, k, v)
        target = resolve_dtype(torch_dtype if torch_dtype is not None else dtype, config)
        state = load_state_dict_files(model_dir)
        model = cls(config)
        if target is not None:
            model = model.to(target)
        model.load_pretrained_state_dict(state)
        gen_path = os.path.join(model_dir, GENERATION_CONFIG_NAME)
        if os.path.isfile(gen_path):  # generate()'s defaults, as transformers reads them
            with open(gen_path, encoding="utf-8") as f:
                model.generation_config = json.load(f)
        if device is not None:
            model = model.to(device)
        model.eval()  # as transformers: dropout off until .train()
        return model

    # -- saving --------------------------------------------------------------------------
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        max_shard_size: int | str = "5GB",
        state_dict: dict | None = None,
    ) -> None:
        r"""Write ``config.json`` and ``model.safetensors`` (or shards plus
        ``model.safetensors.index.json`` past ``max_shard_size``) that transformers'
        ``from_pretrained`` loads."""
        save_directory = os.fspath(save_directory)
        if os.path.isfile(save_directory):
            raise ValueError(f"save_directory {save_directory!r} is a file, not a directory")
        os.makedirs(save_directory, exist_ok=True)
        self.config.architectures = [type(self).__name__]
        self.config.dtype = str(self.dtype).removeprefix("ember.")
        self.config.save_pretrained(save_directory)
        if state_dict is None:
            state_dict = self.state_dict()
        tied = set(self._active_tied_keys())
        state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items() if k not in tied}
        save_state_dict_files(state, save_directory, max_shard_size)
        if getattr(self, "generation_config", None):
            with open(
                os.path.join(save_directory, GENERATION_CONFIG_NAME), "w", encoding="utf-8"
            ) as f:
                json.dump(self.generation_config, f, indent=2, sort_keys=True)
