"""Weight-only quantized ``Embedding`` (torch's ``nn.quantized.Embedding``): uint8 rows, each
with a float scale and zero point (``per_channel_affine_float_qparams``), looked up and
dequantized on the fly; float indices in, float rows out."""

from __future__ import annotations

import numpy as np

from ..... import quantized as _q
from .....nn.module import Module
from .....tensor import Tensor

__all__ = ["Embedding", "EmbeddingBag", "EmbeddingPackedParams"]


class EmbeddingPackedParams(Module):
    """The quantized weight, saved as torch saves it: ``dtype`` and ``_packed_weight``."""

    _version = 1

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype=_q.quint8):
        super().__init__()
        if dtype is not _q.quint8:
            raise NotImplementedError(
                f"Unsupported dtype on quantized embedding! Supports quint8, got {dtype}"
            )
        self.dtype = dtype
        from ..... import ones, quantize_per_channel, zeros

        w = quantize_per_channel(
            zeros(num_embeddings, embedding_dim),
            ones(num_embeddings),
            zeros(num_embeddings),
            0,
            dtype,
        )
        self.set_weight(w)

    def set_weight(self, weight) -> None:
        if weight.qscheme() is not _q.per_channel_affine_float_qparams:
            raise RuntimeError(
                "quantized Embedding expects a per_channel_affine_float_qparams weight, got "
                f"{weight.qscheme()}"
            )
        self._packed_weight = weight

    def _weight(self):
        return self._packed_weight

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "dtype"] = self.dtype
        destination[prefix + "_packed_weight"] = self._packed_weight

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        self.dtype = state_dict.pop(prefix + "dtype", self.dtype)
        key = prefix + "_packed_weight"
        if key in state_dict:
            self.set_weight(state_dict.pop(key))
        elif strict:
            missing_keys.append(key)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, False, missing_keys, unexpected_keys, error_msgs
        )

    def __repr__(self) -> str:
        return repr(self._packed_weight)


class Embedding(Module):
    """A quantized ``nn.Embedding``: ``from_float`` quantizes each row to uint8 with the
    qconfig's float-qparams observer (``float_qparams_weight_only_qconfig``)."""

    _version = 1

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        _weight=None,
        dtype=_q.quint8,
    ) -> None:
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.dtype = dtype
        self._packed_params = EmbeddingPackedParams(num_embeddings, embedding_dim, dtype)
        if _weight is not None:
            self._packed_params.set_weight(_weight)

    def _get_name(self) -> str:
        return "QuantizedEmbedding"

    def __repr__(self) -> str:  # the packed params child stays hidden, as torch prints it
        return f"{self._get_name()}({self.extra_repr()})"

    def extra_repr(self) -> str:
        w = self._packed_params._weight()
        return (
            f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}, "
            f"dtype={self._packed_params.dtype}, qscheme={w.qscheme()}"
        )

    def weight(self):
        return self._packed_params._weight()

    def set_weight(self, w) -> None:
        self._packed_params.set_weight(w)

    def forward(self, indices: Tensor) -> Tensor:
        return Tensor._wrap(self._rows(_int_array(indices, "indices")))

    def _rows(self, idx: np.ndarray) -> np.ndarray:
        """The rows ``idx`` dequantized, float32 (a new array): ``(q - zero_point) * scale``
        per row, only the rows looked up."""
        w = self._packed_params._weight()
        rows = w._data[idx].astype(np.float32)
        scale = np.asarray(w._scale, np.float32)[idx][..., None]
        zp = np.asarray(w._zero_point, np.float32)[idx][..., None]
        return (rows - zp) * scale

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant: bool = False):
        """Quantize a float ``nn.Embedding`` with its ``qconfig``'s weight observer (which
        must be per-channel float-qparams, as ``float_qparams_weight_only_qconfig``'s)."""
        from .....nn import Embedding as FloatEmbedding

        if type(mod) is not FloatEmbedding:
            raise AssertionError(
                f"nnq.Embedding.from_float only works for nn.Embedding, got {type(mod).__name__}"
            )
        q = cls(mod.num_embeddings, mod.embedding_dim, dtype=_q.quint8)
        q.set_weight(_quantize_rows(mod, "Embedding"))
        return q


def _int_array(t, what: str) -> np.ndarray:
    a = np.asarray(t._data if isinstance(t, Tensor) else t)
    if a.dtype.kind not in "iu":
        raise RuntimeError(
            f"Expected tensor for argument #1 '{what}' to have an integer scalar type; "
            f"got {a.dtype}"
        )
    return a


def _quantize_rows(mod, kind: str):
    """``mod.weight`` quantized per row to quint8 with float qparams, by ``mod.qconfig``'s
    weight observer (default: ``float_qparams_weight_only_qconfig``'s)."""
    from ..... import quantize_per_channel
    from ....quantization.qconfig import float_qparams_weight_only_qconfig

    qconfig = getattr(mod, "qconfig", None) or float_qparams_weight_only_qconfig
    obs = qconfig.weight()
    if obs.qscheme is not _q.per_channel_affine_float_qparams:
        raise AssertionError(
            f"{kind} quantization is only supported with float_qparams_weight_only_qconfig."
        )
    if obs.dtype is not _q.quint8:
        raise AssertionError(
            f"The only supported dtype for nnq.{kind} is torch.quint8, got {obs.dtype}"
        )
    weight = mod.weight.detach().float()
    obs(weight)
    scales, zero_points = obs.calculate_qparams()
    return quantize_per_channel(weight, scales.float(), zero_points.float(), 0, _q.quint8)


class EmbeddingBag(Embedding):
    """A quantized ``nn.EmbeddingBag`` (torch's ``nn.quantized.EmbeddingBag``): uint8 rows
    with float per-row qparams; each bag is the sum of its dequantized rows (times
    ``per_sample_weights`` when given). As torch's, the bags are summed whatever ``mode`` the
    float module had: ``mode`` is kept as an attribute only."""

    _version = 1

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        mode: str = "sum",
        sparse: bool = False,
        _weight=None,
        include_last_offset: bool = False,
        dtype=_q.quint8,
    ) -> None:
        super().__init__(num_embeddings, embedding_dim, _weight=_weight, dtype=dtype)
        self.mode = mode
        self.pruned_weights = False
        self.include_last_offset = include_last_offset

    def _get_name(self) -> str:
        return "QuantizedEmbeddingBag"

    def forward(
        self,
        indices: Tensor,
        offsets: Tensor | None = None,
        per_sample_weights: Tensor | None = None,
        compressed_indices_mapping: Tensor | None = None,
    ) -> Tensor:
        if compressed_indices_mapping is not None:
            raise NotImplementedError(
                "QuantizedEmbeddingBag: compressed_indices_mapping (pruned weights) is not "
                "supported"
            )
        idx = _int_array(indices, "indices")
        if idx.ndim == 2:
            if offsets is not None:
                raise ValueError(
                    "if input is 2D, then offsets has to be None, as input is treated is a "
                    "mini-batch of fixed length sequences."
                )
            starts = np.arange(idx.shape[0], dtype=np.int64) * idx.shape[1]
            ends = starts + idx.shape[1]
            if self.include_last_offset:  # torch's: the row starts read as offsets with the
                starts, ends = starts[:-1], ends[:-1]  # last one included: one bag fewer
            idx = idx.reshape(-1)
        elif idx.ndim == 1:
            if offsets is None:
                raise ValueError("offsets has to be a 1D Tensor but got None")
            off = _int_array(offsets, "offsets").reshape(-1).astype(np.int64)
            if self.include_last_offset:
                starts, ends = off[:-1], off[1:]
            else:
                starts, ends = off, np.append(off[1:], idx.size)
        else:
            raise ValueError(
                f"input has to be 1D or 2D Tensor, but got Tensor of dimension {idx.ndim}"
            )
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_embeddings):
            raise IndexError(
                f"QuantizedEmbeddingBag: index out of range (num_embeddings="
                f"{self.num_embeddings}, indices in [{idx.min()}, {idx.max()}])"
            )
        rows = self._rows(idx)
        if per_sample_weights is not None:
            psw = np.asarray(per_sample_weights._data, np.float32).reshape(-1)
            if psw.size != idx.size:
                raise ValueError(
                    f"per_sample_weights must have as many elements as indices ({idx.size}), "
                    f"got {psw.size}"
                )
            rows *= psw[:, None]
        lengths = np.maximum(ends - starts, 0)
        out = np.zeros((starts.size, self.embedding_dim), np.float32)
        # each index in its bag, in order (an empty bag stays zeros, as torch's)
        bag_of = np.repeat(np.arange(starts.size), lengths)
        pos = np.arange(bag_of.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        np.add.at(out, bag_of, rows[np.repeat(starts, lengths) + pos])
        return Tensor._wrap(out)

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant: bool = False):
        """Quantize a float ``nn.EmbeddingBag`` with its ``qconfig``'s weight observer (which
        must be per-channel float-qparams, as ``float_qparams_weight_only_qconfig``'s)."""
        from .....nn import EmbeddingBag as FloatEmbeddingBag

        if type(mod) is not FloatEmbeddingBag:
            raise AssertionError(
                f"nnq.EmbeddingBag.from_float only works for nn.EmbeddingBag, got "
                f"{type(mod).__name__}"
            )
        qweight = _quantize_rows(mod, "EmbeddingBag")
        return cls(
            mod.num_embeddings,
            mod.embedding_dim,
            mode=mod.mode,
            _weight=qweight,
            include_last_offset=mod.include_last_offset,
            dtype=_q.quint8,
        )
