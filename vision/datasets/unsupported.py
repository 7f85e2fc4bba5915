"""torchvision's dataset names whose readers ember lacks: importable (libraries import them
by name, e.g. avalanche's dataset wrappers), and raising on construction with the reason."""

from __future__ import annotations

from typing import Any

from .vision import VisionDataset

__all__ = [
    "Cityscapes",
    "HMDB51",
    "LSUN",
    "PhotoTour",
    "SBDataset",
    "UCF101",
]

# name -> what the reader would need, said in the error
_REASONS = {
    "Cityscapes": "the gtFine/gtCoarse polygon and instance targets are not implemented",
    "HMDB51": "ember.vision has no video decoder (torchvision uses PyAV for VideoClips)",
    "LSUN": "reading LSUN needs its LMDB databases (the lmdb package), not implemented",
    "PhotoTour": "the patch-sheet and matches-file reader is not implemented",
    "SBDataset": "reading the .mat annotations is not implemented",
    "UCF101": "ember.vision has no video decoder (torchvision uses PyAV for VideoClips)",
}


def _unsupported(name: str) -> type:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            f"ember.vision.datasets.{name} is not available: {_REASONS[name]}. Load the files "
            "yourself into a Dataset (ember.utils.data.Dataset or TensorDataset)."
        )

    doc = f"torchvision's ``{name}``: not available in ember ({_REASONS[name]})."
    attrs = {"__init__": __init__, "__doc__": doc, "__module__": __name__}
    return type(name, (VisionDataset,), attrs)


Cityscapes = _unsupported("Cityscapes")
HMDB51 = _unsupported("HMDB51")
LSUN = _unsupported("LSUN")
PhotoTour = _unsupported("PhotoTour")
SBDataset = _unsupported("SBDataset")
UCF101 = _unsupported("UCF101")
