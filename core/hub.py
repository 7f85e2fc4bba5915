"""``ember.hub``: download checkpoints into a local cache (``torch.hub``'s API).

``load_state_dict_from_url(url, model_dir=None, map_location=None, progress=True,
check_hash=False, file_name=None, weights_only=True)`` downloads ``url`` once into
``get_dir()/checkpoints`` (``$EMBER_HOME/hub``, default ``~/.cache/ember/hub``), writing to a
temporary file that is renamed into place only when complete, and loads it with ``ember.load``
(PyTorch ``.pt``/``.pth`` files, zip or legacy) or as safetensors (``.safetensors``). With
``check_hash=True`` the file name must carry the SHA-256 prefix torchvision's names carry
(``resnet18-f37072fd.pth``) and the download must match it.

``load(repo_dir, model, *args, source="local", **kwargs)``, ``list`` and ``help`` call the
entrypoints of a ``hubconf.py`` in a folder on local disk.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

__all__ = [
    "get_dir",
    "set_dir",
    "download_url_to_file",
    "load_state_dict_from_url",
    "load",
    "list",
    "help",
]

_hub_dir: str | None = None
# the SHA-256 prefix in a checkpoint's file name (``resnet18-f37072fd.pth``); torch's public
# name, which libraries (timm) import with ``urlparse`` from this module
HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")
urlparse = urllib.parse.urlparse
urlopen = urllib.request.urlopen


def get_dir() -> str:
    """The hub cache folder: ``set_dir``'s, else ``$EMBER_HOME/hub`` or
    ``~/.cache/ember/hub``."""
    if _hub_dir is not None:
        return _hub_dir
    home = os.environ.get("EMBER_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "ember"
    )
    return os.path.join(home, "hub")


def set_dir(d: str | os.PathLike) -> None:
    """Set the folder where the hub keeps downloaded repositories and weights, in place of
    :func:`get_dir`'s default. ``~`` is expanded.

    Args:
        d: the folder.
    """
    global _hub_dir
    _hub_dir = os.path.expanduser(os.fspath(d))


def download_url_to_file(
    url: str, dst: str, hash_prefix: str | None = None, progress: bool = True, timeout: float = 60.0
) -> None:
    """Download ``url`` to ``dst`` atomically (temporary file, then rename); with
    ``hash_prefix``, the file's SHA-256 must start with it or nothing is written."""
    dst = os.path.expanduser(dst)
    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".download-", dir=folder)
    sha = hashlib.sha256()
    try:
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "ember-hub"})
            with urllib.request.urlopen(req, timeout=timeout) as resp, os.fdopen(fd, "wb") as f:
                total = resp.headers.get("Content-Length")
                bar = _progress(progress, int(total) if total else None, os.path.basename(dst))
                while chunk := resp.read(1 << 16):
                    f.write(chunk)
                    sha.update(chunk)
                    bar.update(len(chunk))
                bar.close()
        except (urllib.error.URLError, OSError) as exc:
            raise RuntimeError(f"could not download {url} to {dst}: {exc}") from exc
        if hash_prefix is not None and not sha.hexdigest().startswith(hash_prefix):
            raise RuntimeError(
                f'invalid hash value (expected "{hash_prefix}", got "{sha.hexdigest()}") for {url}'
            )
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(enabled: bool, total: int | None, desc: str):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return _NoBar()
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc)


def load_state_dict_from_url(
    url: str,
    model_dir: str | None = None,
    map_location=None,
    progress: bool = True,
    check_hash: bool = False,
    file_name: str | None = None,
    weights_only: bool = True,
) -> dict[str, Any]:
    """Load the state dict at ``url``, downloading it into the cache on first use."""
    if model_dir is None:
        model_dir = os.path.join(get_dir(), "checkpoints")
    os.makedirs(model_dir, exist_ok=True)
    filename = file_name or os.path.basename(urlparse(url).path)
    if not filename:
        raise ValueError(f"cannot derive a file name from {url!r}; pass file_name=")
    cached = os.path.join(model_dir, filename)
    hash_prefix = None
    if check_hash:
        # as torch: a name without a '-<sha256 prefix>' suffix (torchvision's older quantized
        # checkpoints: 'resnet18_fbgemm_16fa66dd.pth') is downloaded unchecked
        m = HASH_REGEX.search(filename)
        hash_prefix = m.group(1) if m is not None and m.group(1) else None
    if not os.path.exists(cached):
        download_url_to_file(url, cached, hash_prefix, progress=progress)
    return _load(cached, map_location, weights_only)


def _load(path: str, map_location, weights_only: bool):
    # ember.load recognises the format (PyTorch zip or legacy, safetensors) from the bytes.
    from .serialization import load

    return load(path, map_location=map_location, weights_only=weights_only)


# ---- hubconf.py repositories on local disk -------------------------------------------------------
def _load_hubconf(repo_dir: str, source: str):
    if source != "local":
        raise ValueError(
            f"ember.hub supports source='local' (a folder with hubconf.py); got "
            f"source={source!r}. Clone the repository and pass its path."
        )
    path = os.path.join(os.path.expanduser(os.fspath(repo_dir)), "hubconf.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no hubconf.py in {repo_dir} (expected {path})")
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(f"hubconf_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(path))  # hubconf.py imports its repository's modules
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(os.path.dirname(path))
    return module


def _entry(module, model: str):
    fn = getattr(module, model, None)
    if fn is None or not callable(fn) or model.startswith("_"):
        raise RuntimeError(
            f"Cannot find callable {model} in hubconf; entrypoints: {_entrypoints(module)}"
        )
    return fn


def _entrypoints(module) -> list[str]:
    return [
        name
        for name, f in vars(module).items()
        if callable(f) and not name.startswith("_") and not isinstance(f, type(os))
    ]


def list(repo_or_dir: str, source: str = "local", **kwargs) -> list[str]:  # noqa: A001
    """The entrypoints (public callables) of ``repo_or_dir/hubconf.py``."""
    return _entrypoints(_load_hubconf(repo_or_dir, source))


def help(repo_or_dir: str, model: str, source: str = "local", **kwargs) -> str:  # noqa: A001
    """The docstring of entrypoint ``model``."""
    return _entry(_load_hubconf(repo_or_dir, source), model).__doc__ or ""


def load(
    repo_or_dir: str,
    model: str,
    *args,
    source: str = "local",
    trust_repo=None,
    force_reload: bool = False,
    verbose: bool = True,
    skip_validation: bool = False,
    **kwargs,
):
    """Call entrypoint ``model`` of ``repo_or_dir/hubconf.py`` with ``*args, **kwargs``.

    Only ``source="local"`` is supported: ember does not fetch GitHub repositories; clone one
    and pass its folder. The hubconf's code runs in this process, as with torch.hub.
    """
    return _entry(_load_hubconf(repo_or_dir, source), model)(*args, **kwargs)
