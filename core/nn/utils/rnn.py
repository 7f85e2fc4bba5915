"""Variable-length sequences: PackedSequence, pack/pad helpers (PyTorch's ``nn.utils.rnn``)."""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ... import ops
from ...ops.rnn import PackedToPadded, PaddedToPacked
from ...tensor import Tensor

__all__ = [
    "PackedSequence",
    "pack_padded_sequence",
    "pad_packed_sequence",
    "pack_sequence",
    "unpack_sequence",
    "unpad_sequence",
]


def _long(values) -> Tensor:
    return Tensor._wrap(np.asarray(values, dtype=np.int64))


def _host_lengths(lengths) -> np.ndarray:
    if isinstance(lengths, Tensor):
        if lengths.is_cuda:
            raise RuntimeError(
                "'lengths' argument should be a 1D CPU int64 tensor, but got 1D cuda Long tensor"
            )
        arr = lengths._data
    else:
        arr = np.asarray(lengths)
    if arr.ndim != 1:
        raise RuntimeError(f"'lengths' argument should be a 1D tensor, but got {arr.ndim}D")
    return arr.astype(np.int64)


def invert_permutation(permutation: Tensor | None) -> Tensor | None:
    if permutation is None:
        return None
    from ...backend.device import get_array_module

    perm = permutation._data
    xp = get_array_module(perm)
    out = xp.empty_like(perm)
    out[perm] = xp.arange(perm.size, dtype=perm.dtype)
    return Tensor._wrap(out)


class PackedSequence(
    namedtuple("PackedSequence_", ["data", "batch_sizes", "sorted_indices", "unsorted_indices"])
):
    """Holds the data and ``batch_sizes`` of a packed batch of variable-length sequences.

    ``data`` stacks the time steps of all sequences (sorted by decreasing length): first every
    sequence's step 0, then every sequence still running at step 1, ... ``batch_sizes[t]`` counts
    the sequences running at step ``t``. ``sorted_indices``/``unsorted_indices`` map between the
    caller's batch order and the sorted order (None when the input was already sorted).
    """

    def __new__(cls, data, batch_sizes=None, sorted_indices=None, unsorted_indices=None):
        if unsorted_indices is None:
            unsorted_indices = invert_permutation(sorted_indices)
        if batch_sizes is None:
            raise ValueError(
                "PackedSequence needs batch_sizes; build it with "
                "pack_padded_sequence or pack_sequence"
            )
        if not isinstance(batch_sizes, Tensor):
            batch_sizes = _long(batch_sizes)
        return super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices)

    def _map_data(self, fn) -> PackedSequence:
        return type(self)(
            fn(self.data), self.batch_sizes, self.sorted_indices, self.unsorted_indices
        )

    def to(self, *args, **kwargs) -> PackedSequence:
        data = self.data.to(*args, **kwargs)
        if data is self.data:
            return self
        device = data.device

        def move(t):
            return None if t is None else t.to(device)

        return type(self)(
            data, self.batch_sizes, move(self.sorted_indices), move(self.unsorted_indices)
        )

    def cuda(self, *args, **kwargs) -> PackedSequence:
        return self.to("cuda" if not args else args[0])

    def cpu(self) -> PackedSequence:
        return self.to("cpu")

    def double(self) -> PackedSequence:
        return self._map_data(lambda d: d.double())

    def float(self) -> PackedSequence:
        return self._map_data(lambda d: d.float())

    def half(self) -> PackedSequence:
        return self._map_data(lambda d: d.half())

    def long(self) -> PackedSequence:
        return self._map_data(lambda d: d.long())

    def int(self) -> PackedSequence:
        return self._map_data(lambda d: d.int())

    @property
    def is_cuda(self) -> bool:
        return self.data.is_cuda

    def is_pinned(self) -> bool:
        return False


def _batch_sizes(lengths: np.ndarray) -> np.ndarray:
    """``batch_sizes[t]``: how many (decreasingly sorted) lengths exceed ``t``."""
    T = int(lengths.max())
    counts = np.bincount(lengths, minlength=T + 1)  # sequences ending exactly at each length
    return (len(lengths) - np.cumsum(counts)[:T]).astype(np.int64)


def pack_padded_sequence(
    input: Tensor, lengths, batch_first: bool = False, enforce_sorted: bool = True
) -> PackedSequence:
    """Pack a padded batch ``(T, B, *)`` (or ``(B, T, *)`` with ``batch_first``) of sequences."""
    lens = _host_lengths(lengths)
    bdim = 0 if batch_first else 1
    if input.dim() < 2:
        raise ValueError(
            f"pack_padded_sequence: input must have at least 2 dims (time and "
            f"batch), got {input.dim()}"
        )
    if lens.size != input.shape[bdim]:
        raise RuntimeError(
            f"Expected `len(lengths)` to be equal to batch_size, but got "
            f"{lens.size} (batch_size={input.shape[bdim]})"
        )
    sorted_indices = None
    if enforce_sorted:
        if np.any(lens[1:] > lens[:-1]):
            raise RuntimeError(
                "`lengths` array must be sorted in decreasing order when `enforce_sorted` is "
                "True. You can pass `enforce_sorted=False` to pack_padded_sequence and/or "
                "pack_sequence to sidestep this requirement if you do not need ONNX "
                "exportability."
            )
    else:
        order = np.argsort(-lens, kind="stable")
        lens = lens[order]
        sorted_indices = _long(order)
        if input.is_cuda:
            sorted_indices = sorted_indices.to(input.device)
        input = ops.index_select(input, bdim, sorted_indices)
    if lens.size and lens.min() <= 0:
        raise RuntimeError(
            "Length of all samples has to be greater than 0, but found an element "
            "in 'lengths' that is <= 0"
        )
    T = input.shape[1 - bdim]
    if lens.size and lens.max() > T:
        raise RuntimeError(
            f"pack_padded_sequence: a length ({int(lens.max())}) exceeds the "
            f"padded sequence length ({T})"
        )
    if batch_first:
        input = ops.transpose(input, 0, 1)
    bs = _batch_sizes(lens)
    data = PaddedToPacked.apply(input, bs)
    return PackedSequence(data, _long(bs), sorted_indices, None)


def pad_packed_sequence(
    sequence: PackedSequence,
    batch_first: bool = False,
    padding_value: float = 0.0,
    total_length: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Inverse of ``pack_padded_sequence``: returns (padded, lengths) in the caller's order."""
    bs = sequence.batch_sizes._data
    bs = np.asarray(bs.get() if hasattr(bs, "get") else bs, dtype=np.int64)
    T = len(bs)
    if total_length is not None:
        if total_length < T:
            raise ValueError(
                "Expected total_length to be at least the length of the longest "
                f"sequence in input, but got total_length={total_length} and max "
                f"sequence length being {T}"
            )
    padded = PackedToPadded.apply(sequence.data, bs, float(padding_value))
    if total_length is not None and total_length > T:
        from ...creation import full

        extra = full(
            (total_length - T,) + tuple(padded.shape[1:]),
            padding_value,
            dtype=padded.dtype,
            device=padded.device,
        )
        padded = ops.cat([padded, extra], 0)
    B = int(bs[0]) if T else 0
    lengths = (bs[None, :] > np.arange(B)[:, None]).sum(1)  # steps during which b is active
    if sequence.unsorted_indices is not None:
        idx = sequence.unsorted_indices
        padded = ops.index_select(padded, 1, idx)
        perm = idx._data.get() if idx.is_cuda else idx._data
        lengths = lengths[np.asarray(perm)]
    if batch_first:
        padded = ops.transpose(padded, 0, 1)
    return padded, _long(lengths)


def pack_sequence(sequences, enforce_sorted: bool = True) -> PackedSequence:
    """Pack a list of tensors of shape ``(L_i, *)`` (sorted by decreasing length if
    ``enforce_sorted``)."""
    sequences = list(sequences)
    if not sequences:
        raise RuntimeError("pack_sequence: received an empty list of sequences")
    lens = np.array([s.shape[0] for s in sequences], dtype=np.int64)
    if enforce_sorted and np.any(lens[1:] > lens[:-1]):
        raise RuntimeError(
            "`lengths` array must be sorted in decreasing order when `enforce_sorted` is True. "
            "You can pass `enforce_sorted=False` to pack_padded_sequence and/or pack_sequence to "
            "sidestep this requirement if you do not need ONNX exportability."
        )
    if lens.min() <= 0:
        raise RuntimeError(
            "Length of all samples has to be greater than 0, but found an element "
            "in 'lengths' that is <= 0"
        )
    order = np.arange(lens.size) if enforce_sorted else np.argsort(-lens, kind="stable")
    sorted_lens = lens[order]
    bs = _batch_sizes(sorted_lens)
    # One cat of all sequences, then one gather of the rows in packed order.
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])[order]
    rows = np.concatenate([starts[:n] + t for t, n in enumerate(bs)])
    flat = ops.cat(sequences, 0)
    index = _long(rows)
    if flat.is_cuda:
        index = index.to(flat.device)
    data = ops.index_select(flat, 0, index)
    sorted_indices = None
    if not enforce_sorted:
        sorted_indices = _long(order)
        if flat.is_cuda:
            sorted_indices = sorted_indices.to(flat.device)
    return PackedSequence(data, _long(bs), sorted_indices, None)


def unpad_sequence(padded_sequences: Tensor, lengths, batch_first: bool = False) -> list[Tensor]:
    """Split a padded batch back into a list of tensors of their own lengths."""
    lens = _host_lengths(lengths)
    if not batch_first:
        padded_sequences = ops.transpose(padded_sequences, 0, 1)
    return [padded_sequences[i, : int(n)] for i, n in enumerate(lens)]


def unpack_sequence(packed_sequences: PackedSequence) -> list[Tensor]:
    """The list of sequences held by a PackedSequence, in the caller's original order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)


# ---- pad_sequence (D1) ---------------------------------------------------------------------
__all__ += ["pad_sequence"]


def pad_sequence(
    sequences, batch_first: bool = False, padding_value: float = 0.0, padding_side: str = "right"
) -> Tensor:
    r"""Stack tensors of shapes ``(L_i, *)`` into ``(T, B, *)`` (or ``(B, T, *)`` with
    ``batch_first``), padding each up to the longest with ``padding_value``; differentiable."""
    if padding_side not in ("left", "right"):
        raise ValueError(
            f"Expected padding_side to be one of left or right, but got {padding_side}."
        )
    sequences = list(sequences)
    if not sequences:
        raise RuntimeError("received an empty list of sequences")
    max_len = max(s.shape[0] for s in sequences)
    padded = []
    for s in sequences:
        extra = max_len - s.shape[0]
        if extra:
            spec = [0, 0] * (s.dim() - 1) + ([0, extra] if padding_side == "right" else [extra, 0])
            s = ops.pad(s, tuple(spec), value=padding_value)
        padded.append(s)
    return ops.stack(padded, 0 if batch_first else 1)
