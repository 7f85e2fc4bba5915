"""``save`` and ``async_save``: every rank writes its own chunks, in parallel, into one
checkpoint directory.

Planning takes one ``all_gather_object`` of what each rank holds (key, global shape, dtype,
chunk; no data): from it every rank derives the same plan. A chunk several ranks hold
(a replicated tensor, a DTensor replicated over a mesh dimension) is written once, by the
holder with the fewest bytes so far, so replicated state is spread over the ranks' files.
Non-tensor values are taken from the coordinator (rank 0 of the group) and stored in
``.metadata``.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os

import numpy as np

from .. import distributed_c10d as c10d
from .._objects import all_gather_object
from ._items import flatten, is_tensor_leaf, local_item
from .filesystem import FileSystemWriter, rank_file
from .metadata import BytesStorageMetadata, Metadata, TensorStorageMetadata, encode

__all__ = ["async_save", "save"]


class _Group:
    """Rank, world size and object collectives of the group a save runs in (or one process
    when no process group is initialised)."""

    def __init__(self, process_group, no_dist: bool) -> None:
        self.dist = not no_dist and c10d.is_initialized()
        self.pg = process_group
        self.rank = c10d.get_rank(process_group) if self.dist else 0
        self.world = c10d.get_world_size(process_group) if self.dist else 1

    def gather(self, obj) -> list:
        if not self.dist:
            return [obj]
        out = [None] * self.world
        all_gather_object(out, obj, group=self.pg)
        return out


def _writer(checkpoint_id, storage_writer) -> FileSystemWriter:
    if storage_writer is None:
        if checkpoint_id is None:
            raise ValueError("save: give checkpoint_id (a directory) or storage_writer")
        return FileSystemWriter(checkpoint_id)
    if checkpoint_id is not None:
        storage_writer.reset(checkpoint_id)
    return storage_writer


def _describe(state_dict: dict):
    """This rank's tensor chunks ``{(fqn, chunk key): array}``, their descriptions, and its
    non-tensor values."""
    arrays, desc, objects = {}, [], {}
    for leaf in flatten(state_dict):
        if not is_tensor_leaf(leaf.value):
            objects[leaf.fqn] = leaf.value
            continue
        shape, dtype, chunk, arr = local_item(leaf.value)
        ck = json.dumps(chunk.to_json(), sort_keys=True)
        arrays[(leaf.fqn, ck)] = arr
        desc.append((leaf.fqn, shape, dtype, ck, int(arr.nbytes)))
    return arrays, desc, objects


def _plan(descs: list, objects: dict, world: int, cid: str) -> tuple[Metadata, dict]:
    """The same plan on every rank: the metadata, and ``{(fqn, chunk key): (writer rank,
    storage key)}``."""
    from .metadata import ChunkStorageMetadata

    shapes: dict = {}
    holders: dict = {}
    for r, desc in enumerate(descs):
        for fqn, shape, dtype, ck, nbytes in desc:
            seen = shapes.setdefault(fqn, (shape, dtype, r))
            if seen[:2] != (shape, dtype):
                raise ValueError(
                    f"save: '{fqn}' is a {seen[1]} tensor of global shape {tuple(seen[0])} on "
                    f"rank {seen[2]} but a {dtype} tensor of global shape {tuple(shape)} on "
                    f"rank {r}"
                )
            holders.setdefault((fqn, ck), [nbytes, []])[1].append(r)
    load = [0] * world
    assign = {}
    # single holders first (sharded state), then the replicated chunks, largest first
    order = sorted(holders.items(), key=lambda kv: (len(kv[1][1]) > 1, -kv[1][0], kv[0]))
    for (fqn, ck), (nbytes, ranks) in order:
        w = min(ranks, key=lambda r: (load[r], r))
        load[w] += nbytes
        assign[(fqn, ck)] = w
    md: dict = {}
    for fqn, (shape, dtype, _) in shapes.items():
        md[fqn] = TensorStorageMetadata(dtype, list(shape))
    counters = {}
    for (fqn, ck), w in sorted(assign.items()):
        chunk = ChunkStorageMetadata.from_json({**json.loads(ck), "file": "", "key": ""})
        size = chunk.numel if chunk.is_flat else math.prod(chunk.sizes)
        if size == 0:
            assign[(fqn, ck)] = None
            continue
        j = counters[fqn] = counters.get(fqn, -1) + 1
        chunk.file, chunk.key = rank_file(w), f"{fqn}#{j}"
        md[fqn].chunks.append(chunk)
        assign[(fqn, ck)] = (w, chunk.key)
    for fqn, meta in md.items():
        meta.chunks.sort(key=lambda c: (c.flat_offset or 0, c.offsets or []))
        _check_cover(fqn, meta)
    for fqn, v in objects.items():
        md[fqn] = BytesStorageMetadata(v)
    files = sorted(
        {c.file for m in md.values() if isinstance(m, TensorStorageMetadata) for c in m.chunks}
    )
    return Metadata(md, cid, world, files), assign


def _check_cover(fqn: str, meta: TensorStorageMetadata) -> None:
    """Every element of the global tensor is in exactly one chunk."""
    numel = math.prod(meta.size)
    total, ranges = 0, []
    for c in meta.chunks:
        total += c.numel if c.is_flat else math.prod(c.sizes)
        fr = c.flat_range(meta.size)
        if fr is not None:
            ranges.append(fr)
    ranges.sort()
    overlap = any(a[1] > b[0] for a, b in zip(ranges, ranges[1:]))
    if total != numel or overlap:
        raise ValueError(
            f"save: the ranks' chunks of '{fqn}' (global shape {tuple(meta.size)}) hold "
            f"{total} elements{' with overlaps' if overlap else ''}, not {numel}: are its "
            "shards laid out the same way on every rank?"
        )


def _prepare(state_dict, group: _Group, writer: FileSystemWriter, copy: bool):
    arrays, desc, objects = _describe(state_dict)
    head = None
    if group.rank == 0:
        try:
            for v in objects.values():
                encode(v)  # unstorable values fail the save before anything is written
            head = ("ok",) + writer.begin()
        except Exception as e:  # every rank must learn of it, or they would hang
            head = ("err", f"{type(e).__name__}: {e}")
    got = group.gather((head, desc, writer.path))
    head = got[0][0]
    if head[0] == "err":
        raise ValueError(f"save: the checkpoint was not started: {head[1]}")
    _, cid, staging = head
    try:
        md, assign = _plan([d for _, d, _ in got], objects, group.world, cid)
        md.planner_data = _paths(state_dict)
    except Exception:
        if group.rank == 0:
            _discard(staging)
        raise
    # A rank that does not see the coordinator's staging directory (another host without a
    # shared filesystem, or its own checkpoint_id) stages and installs its file in its own
    # directory; merging the ranks' directories (as the Trainer's checkpoints do) then gives
    # the whole checkpoint.
    local = group.rank != 0 and (writer.path != got[0][2] or not os.path.isdir(staging))
    if local:
        try:
            staging = writer.begin()[1]
        except Exception as e:
            staging = e
    mine = {}
    for k, arr in arrays.items():
        where = assign[k]
        if where is not None and where[0] == group.rank:
            mine[where[1]] = np.array(arr, copy=True) if copy else arr
    return md, staging, mine, local


def _paths(state_dict: dict) -> dict[str, list]:
    """``Metadata.planner_data``: the path of every nested key (a dict key that is not a
    string is kept as ``{"__key__": key}``, so it is not taken for a list index)."""
    out = {}
    for leaf in flatten(state_dict):
        if len(leaf.path) > 1:
            steps, node = [], state_dict
            for k in leaf.path:
                steps.append(
                    {"__key__": k} if isinstance(node, dict) and not isinstance(k, str) else k
                )
                node = node[k]
            out[leaf.fqn] = steps
    return out


def _discard(staging: str) -> None:
    import shutil

    shutil.rmtree(staging, ignore_errors=True)


def save(
    state_dict: dict,
    *,
    checkpoint_id: str | os.PathLike | None = None,
    storage_writer: FileSystemWriter | None = None,
    planner=None,
    process_group=None,
    no_dist: bool = False,
) -> Metadata:
    """Save ``state_dict`` as a distributed checkpoint (collective over ``process_group``).

    Args:
        state_dict: nested dicts of tensors (whole, FSDP sharded pieces, or DTensors) and plain
            data; the same keys on every rank.
        checkpoint_id: the checkpoint directory.
        storage_writer: a :class:`FileSystemWriter` (instead of, or reset to, ``checkpoint_id``).
        process_group: the ranks that save together (default: the whole world).
        no_dist: save from this process alone, ignoring any process group.

    Returns:
        The checkpoint's :class:`Metadata`.
    """
    from .default_planner import DefaultSavePlanner, check_planner
    from .stateful import to_state_dict

    check_planner(planner, DefaultSavePlanner, "save")
    state_dict = to_state_dict(state_dict)  # (Stateful values save their state_dict())
    writer = _writer(checkpoint_id, storage_writer)
    group = _Group(process_group, no_dist)
    md, staging, mine, local = _prepare(state_dict, group, writer, copy=False)
    owner = group.rank == 0 or local
    try:
        if isinstance(staging, Exception):
            raise staging
        writer.write_rank(staging, group.rank, mine)
        status = ("ok", "")
    except Exception as e:
        status = ("err", f"{type(e).__name__}: {e}")
    _raise_failed(group.gather(status), staging, owner)
    status = ("ok", "")
    try:
        if group.rank == 0:
            writer.finish(staging, md)
        elif local:
            writer.install(staging)
    except Exception as e:
        status = ("err", f"{type(e).__name__}: {e}")
    _raise_failed(group.gather(status), staging, owner)
    return md


def _raise_failed(statuses: list, staging, owner: bool) -> None:
    failed = {r: msg for r, (st, msg) in enumerate(statuses) if st == "err"}
    if failed:
        if owner and isinstance(staging, str):
            _discard(staging)
        raise RuntimeError(
            "save: the checkpoint was not written (the previous one is unchanged): "
            + "; ".join(f"rank {r}: {m}" for r, m in sorted(failed.items()))
        )


_EXECUTOR: list = []


def async_save(
    state_dict: dict,
    *,
    checkpoint_id: str | os.PathLike | None = None,
    storage_writer: FileSystemWriter | None = None,
    planner=None,
    process_group=None,
    no_dist: bool = False,
    timeout: float | None = None,
) -> concurrent.futures.Future:
    """Like :func:`save`, but returns once the state is copied to host memory; the files are
    written by a background thread. The returned future's ``result()`` is the
    :class:`Metadata` once the checkpoint is complete and in place (on every rank), so training
    may go on and change the parameters meanwhile. The background thread uses no collectives
    (ranks meet through files in the staging directory), so it never interleaves with the
    training loop's; a rank that dies mid-write makes the others' futures fail after
    ``timeout`` seconds (default: the process group's), leaving the previous checkpoint."""
    if planner is not None:
        raise NotImplementedError("async_save: custom planners are not supported")
    from .stateful import to_state_dict

    state_dict = to_state_dict(state_dict)
    writer = _writer(checkpoint_id, storage_writer)
    group = _Group(process_group, no_dist)
    md, staging, mine, local = _prepare(state_dict, group, writer, copy=True)
    if any(group.gather(local)):
        if local and isinstance(staging, str):
            _discard(staging)
        raise ValueError(
            "async_save needs one checkpoint directory that every rank sees (a shared "
            "filesystem); use save to write into each rank's own directory"
        )
    if timeout is None:
        timeout = 1800.0
    rank, world = group.rank, group.world

    def work() -> Metadata:
        writer.write_rank(staging, rank, mine)
        writer.mark_done(staging, rank, md.checkpoint_id)
        if rank == 0:
            try:
                writer.wait_done(staging, world, timeout)
                writer.finish(staging, md)
            except BaseException:
                _discard(staging)
                raise
        else:
            writer.wait_installed(md.checkpoint_id, timeout)
        return md

    if not _EXECUTOR:
        _EXECUTOR.append(
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ember-dcp-async-save")
        )
    return _EXECUTOR[0].submit(work)
