"""torch's ready-made observer factories (``default_observer`` and friends).

Each is an ``Observer.with_args(...)`` partial built once at import; ``observer.py`` imports
them back so ``ember.ao.quantization.observer.default_observer`` is this very object.
"""

from __future__ import annotations

from ... import quantized as _q
from .histogram import HistogramObserver
from .observer import MinMaxObserver, PerChannelMinMaxObserver, PlaceholderObserver

default_observer = MinMaxObserver.with_args(quant_min=0, quant_max=127)
default_placeholder_observer = PlaceholderObserver
default_weight_observer = MinMaxObserver.with_args(dtype=_q.qint8, qscheme=_q.per_tensor_symmetric)
weight_observer_range_neg_127_to_127 = MinMaxObserver.with_args(
    dtype=_q.qint8, qscheme=_q.per_tensor_symmetric, quant_min=-127, quant_max=127, eps=2**-12
)
default_histogram_observer = HistogramObserver.with_args(quant_min=0, quant_max=127)
default_per_channel_weight_observer = PerChannelMinMaxObserver.with_args(
    dtype=_q.qint8, qscheme=_q.per_channel_symmetric
)
per_channel_weight_observer_range_neg_127_to_127 = PerChannelMinMaxObserver.with_args(
    dtype=_q.qint8, qscheme=_q.per_channel_symmetric, quant_min=-127, quant_max=127, eps=2**-12
)
default_dynamic_quant_observer = PlaceholderObserver.with_args(
    dtype=_q.quint8, quant_min=0, quant_max=255, is_dynamic=True
)
default_float_qparams_observer = PerChannelMinMaxObserver.with_args(
    dtype=_q.quint8, qscheme=_q.per_channel_affine_float_qparams, ch_axis=0
)
