"""Converting between distributed checkpoints and ``ember.save`` files
(``torch.distributed.checkpoint.format_utils``).

``dcp_to_torch_save`` reads a whole DCP checkpoint (saved on any number of ranks) into one
state dict, nested as it was saved, and writes it with ``ember.save``; ``torch_save_to_dcp``
goes the other way. ``BroadcastingTorchSaveReader`` (with ``DynamicMetaLoadPlanner``) lets
``dcp.load`` fill a sharded state dict from an ``ember.save`` file: the coordinator rank reads
the file and broadcasts it, and every rank takes its own region of each tensor.

From the command line::

    python -m ember.distributed.checkpoint.format_utils dcp_to_torch CHECKPOINT_DIR model.pt
    python -m ember.distributed.checkpoint.format_utils torch_to_dcp model.pt CHECKPOINT_DIR
"""

from __future__ import annotations

import os

import numpy as np

from ._items import flatten, host, is_tensor_leaf
from .default_planner import DefaultLoadPlanner
from .filesystem import FileSystemReader
from .metadata import BytesStorageMetadata, ChunkStorageMetadata, Metadata, TensorStorageMetadata

__all__ = [
    "BroadcastingTorchSaveReader",
    "DynamicMetaLoadPlanner",
    "dcp_to_torch_save",
    "torch_save_to_dcp",
]


def _nest(flat: dict, paths: dict) -> dict:
    """Rebuild the saved nesting of ``flat`` (``{fqn: value}``) from ``Metadata.planner_data``;
    keys without a path stay at the top level."""
    root: dict = {}
    for fqn, value in flat.items():
        path = paths.get(fqn, [fqn])
        node = root
        for i, step in enumerate(path):
            key = step["__key__"] if isinstance(step, dict) else step
            last = i == len(path) - 1
            if isinstance(node, list):
                while len(node) <= key:
                    node.append(None)
            if last:
                node[key] = value
                break
            nxt = path[i + 1]
            child = [] if isinstance(nxt, int) else {}
            if isinstance(node, dict):
                node = node.setdefault(key, child)
            else:
                if node[key] is None:
                    node[key] = child
                node = node[key]
    return root


def _to_tensor(arr: np.ndarray):
    import ember

    return ember.from_numpy(np.ascontiguousarray(arr))


def _read_all(dcp_checkpoint_dir) -> dict:
    """The whole checkpoint as a nested state dict of full tensors and plain values."""
    from .state_dict_loader import _read_region

    reader = FileSystemReader(dcp_checkpoint_dir)
    md = reader.read_metadata()
    flat = {}
    try:
        for fqn, meta in md.state_dict_metadata.items():
            if isinstance(meta, BytesStorageMetadata):
                flat[fqn] = meta.value
                continue
            size = list(meta.size)
            arr = _read_region(reader, fqn, meta, ("box", [0] * len(size), size))
            flat[fqn] = _to_tensor(arr.reshape(size))
    finally:
        reader.close()
    return _nest(flat, md.planner_data)


def dcp_to_torch_save(
    dcp_checkpoint_dir: str | os.PathLike, torch_save_path: str | os.PathLike
) -> None:
    """Convert the distributed checkpoint in ``dcp_checkpoint_dir`` into one ``ember.save``
    file at ``torch_save_path`` (full tensors, nested as the state dict was saved).

    .. warning:: Every tensor is read whole into this process: run it on one rank.
    """
    import ember

    ember.save(_read_all(dcp_checkpoint_dir), torch_save_path)


def torch_save_to_dcp(
    torch_save_path: str | os.PathLike, dcp_checkpoint_dir: str | os.PathLike
) -> None:
    """Convert the ``ember.save`` file ``torch_save_path`` (a state dict) into a distributed
    checkpoint in ``dcp_checkpoint_dir``, written by this process alone.

    .. warning:: The whole file is loaded into this process: run it on one rank.
    """
    import ember

    from .state_dict_saver import save

    state_dict = ember.load(torch_save_path, weights_only=False)
    if not isinstance(state_dict, dict):
        raise TypeError(
            f"torch_save_to_dcp: {os.fspath(torch_save_path)!r} holds a "
            f"{type(state_dict).__name__}, not a state dict"
        )
    save(state_dict, checkpoint_id=dcp_checkpoint_dir, no_dist=True)


class BroadcastingTorchSaveReader:
    """A storage reader for ``dcp.load`` that reads an ``ember.save`` file (a state dict) on
    ``coordinator_rank`` and broadcasts it to the other ranks, so that every rank loads its
    own region of each tensor (DTensor shards, FSDP pieces, whole tensors).

    Example::

        >>> sd = {"model": model.state_dict()}  # e.g. sharded by FSDP / DTensor
        >>> dcp.load(sd, storage_reader=BroadcastingTorchSaveReader(),
        ...          planner=DynamicMetaLoadPlanner(), checkpoint_id="model.pt")

    .. warning:: The whole file is held in memory on every rank.
    """

    def __init__(
        self, checkpoint_id: str | os.PathLike | None = None, coordinator_rank: int = 0
    ) -> None:
        self.checkpoint_id = checkpoint_id
        self.coordinator_rank = coordinator_rank
        self._arrays: dict | None = None

    @property
    def path(self) -> str:
        return os.fspath(self.checkpoint_id) if self.checkpoint_id is not None else ""

    def reset(self, checkpoint_id: str | os.PathLike | None = None) -> None:
        self.checkpoint_id = checkpoint_id
        self._arrays = None

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike) -> bool:
        return os.path.isfile(checkpoint_id)

    def _load_flat(self) -> dict:
        """``{fqn: numpy array or plain value}``, read by the coordinator and broadcast."""
        import ember
        import ember.distributed as dist

        distributed = dist.is_available() and dist.is_initialized()
        here = not distributed or dist.get_rank() == self.coordinator_rank
        payload = [None]
        if here:
            if self.checkpoint_id is None:
                raise ValueError(
                    "BroadcastingTorchSaveReader: no checkpoint_id (give it to the reader or "
                    "to dcp.load)"
                )
            sd = ember.load(self.checkpoint_id, weights_only=False)
            if not isinstance(sd, dict):
                raise TypeError(
                    f"BroadcastingTorchSaveReader: {self.path!r} holds a "
                    f"{type(sd).__name__}, not a state dict"
                )
            payload = [
                {
                    leaf.fqn: (host(leaf.value) if is_tensor_leaf(leaf.value) else leaf.value)
                    for leaf in flatten(sd)
                }
            ]
        if distributed and dist.get_world_size() > 1:
            dist.broadcast_object_list(payload, src=self.coordinator_rank)
        return payload[0]

    def read_metadata(self) -> Metadata:
        """The file's tensors as one chunk each (read on first use)."""
        if self._arrays is None:
            self._arrays = self._load_flat()
        md: dict = {}
        for fqn, v in self._arrays.items():
            if isinstance(v, np.ndarray):
                chunk = ChunkStorageMetadata([0] * v.ndim, list(v.shape))
                chunk.file, chunk.key = "", fqn
                md[fqn] = TensorStorageMetadata(v.dtype.name, list(v.shape), [chunk])
            else:
                md[fqn] = BytesStorageMetadata(v)
        return Metadata(md, self.path, 1, [])

    def read(self, file: str, key: str, dtype_name: str, index=None) -> np.ndarray:
        arr = self._arrays[key]
        return arr if index is None else arr[index]

    def close(self) -> None:
        self._arrays = None


class DynamicMetaLoadPlanner(DefaultLoadPlanner):
    """The load planner PyTorch pairs with :class:`BroadcastingTorchSaveReader` (its metadata
    comes from the file, not from a ``.metadata``). ember's reader builds that metadata itself,
    so this plans as :class:`DefaultLoadPlanner`; only its default options are supported."""

    _plans_as_default = True


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m ember.distributed.checkpoint.format_utils",
        description="Convert between a distributed checkpoint and an ember.save file.",
    )
    parser.add_argument("mode", choices=["torch_to_dcp", "dcp_to_torch"], help="Conversion mode")
    parser.add_argument("src", help="Path to the source model")
    parser.add_argument("dst", help="Path to the destination model")
    args = parser.parse_args(argv)
    print(f"Converting checkpoint from {args.src} to {args.dst} using method: '{args.mode}'")
    missing = f"No checkpoint found at {args.src}. Skipping conversion."
    if args.mode == "torch_to_dcp":
        if not os.path.isfile(args.src):
            print(missing)
            return 1
        torch_save_to_dcp(args.src, args.dst)
    else:
        if not os.path.isdir(args.src):
            print(missing)
            return 1
        dcp_to_torch_save(args.src, args.dst)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
