"""``torch.utils.model_zoo``: the old home of ``load_url`` (``from torch.utils import
model_zoo; model_zoo.load_url(url)``, as MONAI's EfficientNet does); it re-exports the hub's
downloader."""

from ..hub import load_state_dict_from_url as load_url

__all__ = ["load_url"]
