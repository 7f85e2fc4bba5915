"""What a distributed checkpoint's ``.metadata`` file says: every global tensor (its global
shape, dtype and the chunks that hold it, each in one rank's file) and every non-tensor value.

A chunk is either a box (``offsets``/``sizes`` per dimension, PyTorch's
``ChunkStorageMetadata``; written for whole tensors and DTensor shards) or a range of the
tensor's row-major flattened elements (``flat_offset``/``numel``; written for FSDP's flat
parameter pieces, which need not be boxes). The file is JSON, so reading a checkpoint never
runs pickled code.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BytesStorageMetadata",
    "ChunkStorageMetadata",
    "Metadata",
    "TensorStorageMetadata",
    "FORMAT",
    "METADATA_FILE",
]

FORMAT = "ember.dcp/1"
METADATA_FILE = ".metadata"


@dataclass
class ChunkStorageMetadata:
    """One stored chunk of a global tensor: where it lies in the tensor and where it is stored
    (``file``, and ``key`` inside that safetensors file)."""

    offsets: list[int] | None
    sizes: list[int] | None
    flat_offset: int | None = None
    numel: int | None = None
    file: str = ""
    key: str = ""

    @property
    def is_flat(self) -> bool:
        return self.offsets is None

    def flat_range(self, shape) -> tuple[int, int] | None:
        """``[lo, hi)`` in flattened elements when the chunk is contiguous there, else None."""
        if self.is_flat:
            return self.flat_offset, self.flat_offset + self.numel
        shape = list(shape)
        # a box is contiguous when every dimension after the first split one is whole
        for d in range(len(shape)):
            if all(self.sizes[j] == shape[j] for j in range(d + 1, len(shape))) and all(
                self.sizes[j] == 1 for j in range(d)
            ):
                strides = [math.prod(shape[j + 1 :]) for j in range(len(shape))]
                lo = sum(o * s for o, s in zip(self.offsets, strides))
                return lo, lo + math.prod(self.sizes)
        if not shape:
            return 0, 1
        return None

    def to_json(self) -> dict:
        if self.is_flat:
            out = {"flat_offset": self.flat_offset, "numel": self.numel}
        else:
            out = {"offsets": list(self.offsets), "sizes": list(self.sizes)}
        return {**out, "file": self.file, "key": self.key}

    @classmethod
    def from_json(cls, d: dict) -> ChunkStorageMetadata:
        return cls(
            offsets=d.get("offsets"),
            sizes=d.get("sizes"),
            flat_offset=d.get("flat_offset"),
            numel=d.get("numel"),
            file=d["file"],
            key=d["key"],
        )


@dataclass
class TensorStorageMetadata:
    """A global tensor: dtype name (ember's / NumPy's), global shape, and its chunks."""

    dtype: str
    size: list[int]
    chunks: list[ChunkStorageMetadata] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "dtype": self.dtype,
            "size": list(self.size),
            "chunks": [c.to_json() for c in self.chunks],
        }

    @classmethod
    def from_json(cls, d: dict) -> TensorStorageMetadata:
        return cls(
            d["dtype"], list(d["size"]), [ChunkStorageMetadata.from_json(c) for c in d["chunks"]]
        )


@dataclass
class BytesStorageMetadata:
    """A non-tensor value (numbers, strings, lists, ...), stored in the metadata itself."""

    value: Any


@dataclass
class Metadata:
    """The whole checkpoint: ``state_dict_metadata`` maps each flattened key to a
    :class:`TensorStorageMetadata` or :class:`BytesStorageMetadata`. ``planner_data`` maps a
    nested key to its path in the saved state dict (``"model.net1.weight"`` ->
    ``["model", "net1.weight"]``), as PyTorch's default planner records it; keys at the top
    level are left out."""

    state_dict_metadata: dict[str, TensorStorageMetadata | BytesStorageMetadata]
    checkpoint_id: str = ""
    world_size: int = 1
    files: list[str] = field(default_factory=list)
    planner_data: dict[str, list] = field(default_factory=dict)

    def dumps(self) -> str:
        tensors, objects = {}, {}
        for k, v in self.state_dict_metadata.items():
            if isinstance(v, TensorStorageMetadata):
                tensors[k] = v.to_json()
            else:
                objects[k] = encode(v.value)
        out = {
            "format": FORMAT,
            "checkpoint_id": self.checkpoint_id,
            "world_size": self.world_size,
            "files": self.files,
            "tensors": tensors,
            "objects": objects,
        }
        if self.planner_data:  # (absent from checkpoints of flat state dicts, and older ones)
            out["planner_data"] = {k: encode(list(v)) for k, v in self.planner_data.items()}
        return json.dumps(out)

    @classmethod
    def loads(cls, text: str, where: str = "checkpoint") -> Metadata:
        d = json.loads(text)
        if d.get("format") != FORMAT:
            raise RuntimeError(f"{where}: unknown checkpoint format {d.get('format')!r}")
        md: dict = {k: TensorStorageMetadata.from_json(v) for k, v in d["tensors"].items()}
        md.update({k: BytesStorageMetadata(decode(v)) for k, v in d["objects"].items()})
        paths = {k: decode(v) for k, v in d.get("planner_data", {}).items()}
        return cls(md, d["checkpoint_id"], d["world_size"], d["files"], paths)


# ---- JSON with tuples and non-string keys kept ----------------------------------------------
def encode(value):
    """A JSON-able form of plain data that :func:`decode` turns back into the same types."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {"__float__": repr(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {"__items__": [[encode(k), encode(v)] for k, v in value.items()]}
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # a NumPy scalar
        return encode(value.item())
    raise TypeError(
        f"cannot store a {type(value).__name__} in a distributed checkpoint: values that are "
        "not tensors must be numbers, strings, booleans, None, or lists/tuples/dicts of them"
    )


def decode(value):
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if "__tuple__" in value:
            return tuple(decode(v) for v in value["__tuple__"])
        if "__float__" in value:
            return float(value["__float__"])
        if "__items__" in value:
            return {decode(k): decode(v) for k, v in value["__items__"]}
        return {k: decode(v) for k, v in value.items()}
    return value
