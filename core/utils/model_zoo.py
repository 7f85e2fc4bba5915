"""``torch.utils.model_zoo``: the old home of ``load_url`` (``from torch.utils import
model_zoo; model_zoo.load_url(url)``, as MONAI's EfficientNet does); it re-exports the hub's
downloader, and ``tqdm`` as torch's does (torchvision's ``references/detection``
``group_by_aspect_ratio.py`` imports ``from torch.utils.model_zoo import tqdm``)."""

from typing import Any

from ..hub import load_state_dict_from_url as load_url

__all__ = ["load_url"]


def __getattr__(name: str) -> Any:
    # tqdm is a declared dependency; it is imported here on first use so that
    # ``import ember`` does not pay for it
    if name == "tqdm":
        from tqdm import tqdm

        return tqdm
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
