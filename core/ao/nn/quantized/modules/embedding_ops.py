"""Weight-only quantized ``Embedding`` (torch's ``nn.quantized.Embedding``): uint8 rows, each
with a float scale and zero point (``per_channel_affine_float_qparams``), looked up and
dequantized on the fly; float indices in, float rows out."""

from __future__ import annotations

import numpy as np

from ..... import quantized as _q
from .....nn.module import Module
from .....tensor import Tensor

__all__ = ["Embedding", "EmbeddingPackedParams"]


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
        w = self._packed_params._weight()
        idx = np.asarray(indices._data if isinstance(indices, Tensor) else indices)
        if idx.dtype.kind not in "iu":
            raise RuntimeError(
                f"Expected tensor for argument #1 'indices' to have an integer scalar type; "
                f"got {idx.dtype}"
            )
        # dequantize only the rows looked up: (q - zero_point) * scale, per row
        rows = w._data[idx].astype(np.float32)
        scale = np.asarray(w._scale, np.float32)[idx][..., None]
        zp = np.asarray(w._zero_point, np.float32)[idx][..., None]
        return Tensor._wrap((rows - zp) * scale)

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant: bool = False):
        """Quantize a float ``nn.Embedding`` with its ``qconfig``'s weight observer (which
        must be per-channel float-qparams, as ``float_qparams_weight_only_qconfig``'s)."""
        from .....nn import Embedding as FloatEmbedding
        from ....quantization.qconfig import float_qparams_weight_only_qconfig

        if type(mod) is not FloatEmbedding:
            raise AssertionError(
                f"nnq.Embedding.from_float only works for nn.Embedding, got {type(mod).__name__}"
            )
        qconfig = getattr(mod, "qconfig", None) or float_qparams_weight_only_qconfig
        obs = qconfig.weight()
        if obs.qscheme is not _q.per_channel_affine_float_qparams:
            raise AssertionError(
                "Embedding quantization is only supported with float_qparams_weight_only_qconfig."
            )
        if obs.dtype is not _q.quint8:
            raise AssertionError(
                f"The only supported dtype for nnq.Embedding is torch.quint8, got {obs.dtype}"
            )
        weight = mod.weight.detach().float()
        obs(weight)
        scales, zero_points = obs.calculate_qparams()
        from ..... import quantize_per_channel

        qweight = quantize_per_channel(weight, scales.float(), zero_points.float(), 0, _q.quint8)
        q = cls(mod.num_embeddings, mod.embedding_dim, dtype=_q.quint8)
        q.set_weight(qweight)
        return q
