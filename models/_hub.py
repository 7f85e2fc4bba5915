"""Finding and reading Hugging Face checkpoint files: a local directory or the Hub cache layout.

The cache layout (``huggingface_hub``'s) is ``<cache>/models--<org>--<name>/refs/<revision>``
holding a commit hash and ``snapshots/<hash>/`` holding the files. ``<cache>`` is ``cache_dir``,
else ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``.
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = [
    "hub_cache_dir",
    "load_config_dict",
    "load_state_dict_files",
    "resolve_model_dir",
    "save_state_dict_files",
]

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
TORCH_WEIGHTS_NAME = "pytorch_model.bin"
_DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "tokenizer.model", "*.txt"]


def hub_cache_dir(cache_dir: str | os.PathLike | None = None) -> str:
    r"""The Hugging Face Hub cache folder that would be searched."""
    if cache_dir is not None:
        return os.fspath(cache_dir)
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache", "huggingface"
    )
    return os.path.join(home, "hub")


def _from_cache(repo_id: str, cache: str, revision: str) -> str | None:
    repo_dir = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    if not os.path.isdir(repo_dir):
        return None
    ref = os.path.join(repo_dir, "refs", revision)
    commit = revision
    if os.path.isfile(ref):
        with open(ref, encoding="utf-8") as f:
            commit = f.read().strip()
    snap = os.path.join(repo_dir, "snapshots", commit)
    return snap if os.path.isdir(snap) else None


def resolve_model_dir(
    name_or_path: str | os.PathLike,
    *,
    cache_dir: str | None = None,
    revision: str | None = None,
    local_files_only: bool = False,
) -> str:
    r"""The local directory holding ``name_or_path``'s files.

    A directory is used as is. Otherwise ``name_or_path`` is a Hub repo id (``"gpt2"``,
    ``"org/name"``): it is looked up in the local cache, then downloaded with
    ``huggingface_hub`` when that package is installed and ``local_files_only`` is false.
    """
    path = os.fspath(name_or_path)
    if os.path.isdir(path):
        return path
    if os.path.isfile(path):
        return os.path.dirname(path) or "."
    cache = hub_cache_dir(cache_dir)
    revision = revision or "main"
    found = _from_cache(path, cache, revision)
    if found is not None:
        return found
    where = (
        f"not a local directory, and not in the Hugging Face cache "
        f"{os.path.join(cache, 'models--' + path.replace('/', '--'))} (revision "
        f"{revision!r})"
    )
    if local_files_only:
        raise OSError(f"{path!r} is {where}; local_files_only=True forbids downloading")
    try:
        import huggingface_hub
    except ImportError:
        raise OSError(f"{path!r} is {where}; install huggingface_hub to download it") from None
    try:
        return huggingface_hub.snapshot_download(
            path, revision=revision, cache_dir=cache_dir, allow_patterns=_DOWNLOAD_PATTERNS
        )
    except Exception as e:  # offline, unknown repo, gated repo: say what was tried
        raise OSError(f"{path!r} is {where}, and downloading it from the Hub failed: {e}") from e


def load_config_dict(name_or_path: str | os.PathLike, **hub_kwargs: Any) -> dict[str, Any]:
    r"""The parsed ``config.json`` of a model directory, repo id or config file."""
    path = os.fspath(name_or_path)
    if os.path.isfile(path) and path.endswith(".json"):
        cfg = path
    else:
        cfg = os.path.join(resolve_model_dir(path, **hub_kwargs), "config.json")
    if not os.path.isfile(cfg):
        raise OSError(f"no config.json in {os.path.dirname(cfg)!r}")
    with open(cfg, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{cfg} is not valid JSON: {e}") from e


def load_state_dict_files(model_dir: str) -> dict:
    r"""All tensors of ``model.safetensors`` or of the shards its index names."""
    from ember.serialization import load_safetensors

    single = os.path.join(model_dir, SAFE_WEIGHTS_NAME)
    index = os.path.join(model_dir, SAFE_WEIGHTS_INDEX_NAME)
    if os.path.isfile(single):
        return load_safetensors(single)
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index} has no 'weight_map' object")
        state: dict = {}
        for shard in sorted(set(weight_map.values())):
            shard_path = os.path.join(model_dir, shard)
            if not os.path.isfile(shard_path):
                raise OSError(f"{index} names shard {shard!r}, which is missing")
            part = load_safetensors(shard_path)
            state.update({k: v for k, v in part.items() if weight_map.get(k) == shard})
        absent = sorted(set(weight_map) - set(state))
        if absent:
            raise ValueError(f"{index} lists tensors its shards lack: {absent[:10]}")
        return state
    state = _load_torch_files(model_dir)
    if state is not None:
        return state
    present = sorted(os.listdir(model_dir))
    raise OSError(
        f"no {SAFE_WEIGHTS_NAME}, {SAFE_WEIGHTS_INDEX_NAME} or {TORCH_WEIGHTS_NAME} in "
        f"{model_dir!r} (it holds {present})"
    )


def _load_torch_files(model_dir: str) -> dict | None:
    r"""``pytorch_model.bin`` (or its shards), read by ember.load with ``weights_only=True``:
    tensors only, no pickled code runs."""
    import ember

    single = os.path.join(model_dir, TORCH_WEIGHTS_NAME)
    index = os.path.join(model_dir, TORCH_WEIGHTS_NAME + ".index.json")
    if os.path.isfile(single):
        files = [single]
    elif os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f).get("weight_map") or {}
        files = [os.path.join(model_dir, n) for n in sorted(set(weight_map.values()))]
    else:
        return None
    state: dict = {}
    for path in files:
        part = ember.load(path, weights_only=True, map_location="cpu")
        if not isinstance(part, dict):
            raise ValueError(f"{path} holds a {type(part).__name__}, not a state_dict")
        state.update(part)
    return state


def _parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    s = size.strip().upper()
    for unit, mult in (
        ("GIB", 2**30),
        ("MIB", 2**20),
        ("KIB", 2**10),
        ("GB", 10**9),
        ("MB", 10**6),
        ("KB", 10**3),
        ("B", 1),
    ):
        if s.endswith(unit):
            return int(float(s[: -len(unit)]) * mult)
    raise ValueError(f"max_shard_size must be an int or like '5GB', got {size!r}")


def save_state_dict_files(
    state: dict, save_directory: str, max_shard_size: int | str = "5GB"
) -> list[str]:
    r"""Write ``state`` as ``model.safetensors`` or as shards plus an index; return the files."""
    from ember.serialization import save_safetensors

    limit = _parse_size(max_shard_size)
    shards: list[dict] = [{}]
    size = 0
    for key, t in state.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][key] = t
        size += nbytes
    # remove files of an earlier save with another shard count, so no stale shard remains
    for name in os.listdir(save_directory):
        if name == SAFE_WEIGHTS_INDEX_NAME or (
            name.startswith("model-") and name.endswith(".safetensors")
        ):
            os.remove(os.path.join(save_directory, name))
    if len(shards) == 1:
        save_safetensors(shards[0], os.path.join(save_directory, SAFE_WEIGHTS_NAME))
        return [SAFE_WEIGHTS_NAME]
    single = os.path.join(save_directory, SAFE_WEIGHTS_NAME)
    if os.path.isfile(single):
        os.remove(single)
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for name, shard in zip(names, shards):
        save_safetensors(shard, os.path.join(save_directory, name))
        weight_map.update({k: name for k in shard})
    total = sum(t.numel() * t.element_size() for t in state.values())
    with open(os.path.join(save_directory, SAFE_WEIGHTS_INDEX_NAME), "w", encoding="utf-8") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    return [*names, SAFE_WEIGHTS_INDEX_NAME]
