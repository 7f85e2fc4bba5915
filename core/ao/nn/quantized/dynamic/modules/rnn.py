"""``nn.quantized.dynamic.LSTM`` / ``GRU``: int8 weight matrices, activations quantized per
call. Per layer and direction, the input projection of the whole sequence is one integer GEMM
(as torch's CPU path); the recurrent projection is one per time step."""

from __future__ import annotations

import numpy as np

from ...... import quantized as _q
from ......nn.module import Module
from ......nn.modules.container import ModuleList
from ......tensor import Tensor
from ... import _kernels as K
from ...modules.utils import quantize_weight, weight_bound
from ._rnn_layers import gru_layer, lstm_layer
from .linear import dynamic_linear

__all__ = ["LSTM", "GRU", "PackedParameter"]


class PackedParameter(Module):
    """One layer/direction's weights: state_dict key ``param`` (as torch's
    ``_all_weight_values.N.param``) holding ``(w_ih, w_hh, b_ih, b_hh)``: two quantized
    tensors and two float tensors (torch stores a TorchScript object there instead)."""

    def __init__(self, param):
        super().__init__()
        self.param = param

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "param"] = self.param

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        if prefix + "param" in state_dict:
            self.param = tuple(state_dict.pop(prefix + "param"))
        elif strict:
            missing_keys.append(prefix + "param")
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, False, missing_keys, unexpected_keys, error_msgs
        )


class _DynRNN(Module):
    _MODE = "LSTM"
    _GATES = 4

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype=_q.qint8,
    ):
        self._setup(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype
        )
        # as torch: standard-normal weights quantized at scale 0.1 (state_dict keys from the
        # start), drawn in torch's order so the generator moves on as torch's does
        for w_ih, w_hh, b_ih, b_hh in self._random_weights():
            qw = [_q.quantize_per_tensor(w, 0.1, 0, _q.qint8) for w in (w_ih, w_hh)]
            bs = (b_ih, b_hh) if bias else (None, None)
            self._all_weight_values.append(PackedParameter((qw[0], qw[1], *bs)))

    def _random_weights(self):
        """torch's draws when it builds a dynamic quantized RNN: ``randn`` of w_ih, w_hh,
        b_ih, b_hh for each layer and direction (``from_float`` makes them too, then drops
        them: the random numbers a script draws afterwards are torch's)."""
        import ember

        gates = self._GATES * self.hidden_size
        dirs = 2 if self.bidirectional else 1
        for layer in range(self.num_layers):
            for _ in range(dirs):
                n_in = self.input_size if layer == 0 else self.hidden_size * dirs
                yield (
                    ember.randn(gates, n_in),
                    ember.randn(gates, self.hidden_size),
                    ember.randn(gates),
                    ember.randn(gates),
                )

    def _setup(
        self,
        input_size,
        hidden_size,
        num_layers,
        bias,
        batch_first,
        dropout,
        bidirectional,
        dtype=_q.qint8,
    ) -> None:
        Module.__init__(self)
        self.mode, self.input_size, self.hidden_size = self._MODE, input_size, hidden_size
        self.num_layers, self.bias, self.batch_first = num_layers, bias, batch_first
        self.dropout, self.bidirectional, self.dtype = float(dropout), bidirectional, dtype
        self.version = 2
        self.reduce_range = True
        self._all_weight_values = ModuleList()

    def _get_name(self) -> str:
        return f"DynamicQuantized{self._MODE}"

    def __repr__(self) -> str:  # the packed weights stay hidden, as torch prints them
        return f"{self._get_name()}({self.extra_repr()})"

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s

    def forward(self, input, hx=None):
        if not isinstance(input, Tensor) or isinstance(input, _q.QTensor):
            raise RuntimeError(
                f"{self._get_name()}: expected a float tensor input (packed "
                f"sequences are not supported by the dynamic quantized RNNs)"
            )
        x = input._data.astype(np.float32, copy=False)
        unbatched = x.ndim == 2
        if unbatched:
            x = x[:, None]
        elif self.batch_first:
            x = x.transpose(1, 0, 2)
        if x.shape[-1] != self.input_size:
            raise RuntimeError(
                f"input.size(-1) must be equal to input_size. Expected "
                f"{self.input_size}, got {x.shape[-1]}"
            )
        xp = K.xp_of(x)
        dirs = 2 if self.bidirectional else 1
        lstm = self._MODE == "LSTM"
        h0 = c0 = None
        if hx is not None:
            h0, c0 = hx if lstm else (hx, None)
            h0 = h0._data if not unbatched else h0._data[:, None]
            if c0 is not None:
                c0 = c0._data if not unbatched else c0._data[:, None]
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outs = []
            for d in range(dirs):
                k = layer * dirs + d
                w_ih, w_hh, b_ih, b_hh = self._all_weight_values[k].param
                bi = None if b_ih is None else b_ih._data
                bh = None if b_hh is None else b_hh._data
                # the input projection of the whole sequence: one quantization, one GEMM
                gi = dynamic_linear(x, w_ih, weight_bound(w_ih), bi, self.reduce_range)
                hk = None if h0 is None else h0[k]
                if lstm:
                    out, h, c = lstm_layer(
                        xp,
                        gi,
                        w_hh,
                        bh,
                        hk,
                        None if c0 is None else c0[k],
                        d == 1,
                        self.reduce_range,
                    )
                else:
                    out, h = gru_layer(xp, gi, w_hh, bh, hk, d == 1, self.reduce_range)
                    c = None
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
            x = outs[0] if dirs == 1 else xp.concatenate(outs, -1)
        out = x
        hn = xp.stack(h_n)
        cn = xp.stack(c_n) if lstm else None
        if unbatched:
            out, hn = out[:, 0], hn[:, 0]
            cn = cn[:, 0] if lstm else None
        elif self.batch_first:
            out = out.transpose(1, 0, 2)
        w = Tensor._wrap
        return (w(out), (w(hn), w(cn))) if lstm else (w(out), w(hn))

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant: bool = False):
        """Quantize each weight matrix of a float LSTM / GRU to int8 (per-tensor symmetric,
        or what the module's qconfig weight observer chooses)."""
        from .....quantization.qconfig import default_dynamic_qconfig

        if getattr(mod, "mode", None) != cls._MODE:
            raise AssertionError(
                f"nn.quantized.dynamic.{cls._MODE}.from_float only works for "
                f"nn.{cls._MODE}, got {type(mod).__name__}"
            )
        if getattr(mod, "proj_size", 0):
            raise NotImplementedError("dynamic quantization of an LSTM with proj_size")
        q = cls.__new__(cls)
        q._setup(
            mod.input_size,
            mod.hidden_size,
            mod.num_layers,
            mod.bias,
            mod.batch_first,
            mod.dropout,
            mod.bidirectional,
        )
        for _ in q._random_weights():  # torch builds the module first: the same draws
            pass
        q._pack(mod, getattr(mod, "qconfig", None) or default_dynamic_qconfig)
        return q

    def _pack(self, mod, qconfig) -> None:
        """Quantize ``mod``'s weights into ``_all_weight_values`` (one entry per layer and
        direction)."""
        if qconfig is None:
            from .....quantization.qconfig import default_dynamic_qconfig as qconfig
        dirs = 2 if mod.bidirectional else 1
        for layer in range(mod.num_layers):
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                qws = []
                for name in ("weight_ih", "weight_hh"):
                    obs = qconfig.weight()
                    if obs.dtype is not _q.qint8:
                        raise RuntimeError(
                            f"dynamic quantization supports dtype=ember.qint8, got {obs.dtype}"
                        )
                    wt = getattr(mod, name + sfx)
                    obs(wt)
                    qws.append(quantize_weight(wt, obs))
                bs = [None, None]
                if mod.bias:
                    bs = [
                        Tensor(getattr(mod, n + sfx).detach()._data.astype(np.float32))
                        for n in ("bias_ih", "bias_hh")
                    ]
                self._all_weight_values.append(PackedParameter((qws[0], qws[1], bs[0], bs[1])))


class LSTM(_DynRNN):
    """Dynamically quantized LSTM (gates i, f, g, o as torch)."""

    _MODE = "LSTM"


class GRU(_DynRNN):
    """Dynamically quantized GRU (gates r, z, n as torch)."""

    _MODE = "GRU"
    _GATES = 3
