"""``ember.distributed.checkpoint``: PyTorch's distributed checkpoint (DCP) API.

``save`` writes a state dict from every rank in parallel (each rank its own shards, one
safetensors file per rank, a JSON ``.metadata`` describing every global tensor); ``load``
fills a state dict in place on any number of ranks with any sharding, reading only the chunks
it needs. ``state_dict.get_state_dict`` / ``set_state_dict`` give model and optimizer state
dicts (plain, DDP, FSDP) in the form DCP reshards. See docs/checkpointing.md.
"""

from ._deprecated import load_state_dict, save_state_dict
from .filesystem import FileSystemReader, FileSystemWriter
from .metadata import BytesStorageMetadata, ChunkStorageMetadata, Metadata, TensorStorageMetadata
from .state_dict_loader import load
from .state_dict_saver import async_save, save

__all__ = [
    "BytesStorageMetadata",
    "ChunkStorageMetadata",
    "FileSystemReader",
    "FileSystemWriter",
    "Metadata",
    "TensorStorageMetadata",
    "async_save",
    "load",
    "load_state_dict",
    "save",
    "save_state_dict",
]
