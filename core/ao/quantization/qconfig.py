"""``QConfig``: which observer (or fake quantizer) watches activations and which weights."""

from __future__ import annotations

import re
from collections import OrderedDict, namedtuple
from typing import Any

from .fake_quantize import (
    FakeQuantize,
    FusedMovingAvgObsFakeQuantize,
    default_fake_quant,
    default_fused_per_channel_wt_fake_quant,
    default_fused_wt_fake_quant,
    default_per_channel_weight_fake_quant,
    default_weight_fake_quant,
)
from .observer import (
    HistogramObserver,
    MovingAverageMinMaxObserver,
    PlaceholderObserver,
    default_dynamic_quant_observer,
    default_float_qparams_observer,
    default_observer,
    default_per_channel_weight_observer,
    default_weight_observer,
)

__all__ = [
    "QConfig",
    "QConfigDynamic",
    "QConfigMapping",
    "default_qconfig",
    "default_dynamic_qconfig",
    "per_channel_dynamic_qconfig",
    "default_qat_qconfig",
    "default_per_channel_qconfig",
    "float16_dynamic_qconfig",
    "float_qparams_weight_only_qconfig",
    "get_default_qconfig",
    "get_default_qat_qconfig",
    "get_default_qconfig_mapping",
    "get_default_qat_qconfig_mapping",
    "qconfig_equals",
]

_BACKENDS = ("fbgemm", "x86", "qnnpack", "onednn")


class QConfig(namedtuple("QConfig", ["activation", "weight"])):
    """Observer constructors for a layer's output activation and its weight.

    Pass classes or ``Observer.with_args(...)`` results, not instances: each quantized layer
    builds its own observers from them.
    """

    __slots__ = ()

    def __new__(cls, activation, weight):
        from ...nn.module import Module

        if isinstance(activation, Module) or isinstance(weight, Module):
            raise ValueError(
                "QConfig received observer instance, please pass observer class "
                "instead. Use MyObserver.with_args(x=1) to override arguments to "
                "constructor if needed"
            )
        return super().__new__(cls, activation, weight)


QConfigDynamic = QConfig

#: Static post-training quantization: per-tensor affine uint8 activations in [0, 127] (min/max
#: observer, the reduced range) and per-tensor symmetric int8 weights.
default_qconfig = QConfig(activation=default_observer, weight=default_weight_observer)
#: As :data:`default_qconfig` with per-channel symmetric int8 weights (one scale per output
#: channel).
default_per_channel_qconfig = QConfig(
    activation=default_observer, weight=default_per_channel_weight_observer
)
#: Dynamic quantization: activations quantized per batch at run time, int8 per-tensor weights.
default_dynamic_qconfig = QConfig(
    activation=default_dynamic_quant_observer, weight=default_weight_observer
)
#: Dynamic quantization with per-channel int8 weights.
per_channel_dynamic_qconfig = QConfig(
    activation=default_dynamic_quant_observer, weight=default_per_channel_weight_observer
)
#: Dynamic quantization of weights to float16 (activations stay floating point).
float16_dynamic_qconfig = QConfig(
    activation=PlaceholderObserver.with_args(dtype=None, is_dynamic=True),
    weight=PlaceholderObserver.with_args(dtype=None),
)
#: Weight-only quantization of embeddings: uint8 rows with a float scale and zero point each
#: (``nn.Embedding`` -> ``nn.quantized.Embedding``); activations stay float.
float_qparams_weight_only_qconfig = QConfig(
    activation=PlaceholderObserver, weight=default_float_qparams_observer
)
#: Quantization-aware training: fake-quantize modules with moving-average min/max observers
#: for activations (uint8) and weights (int8).
default_qat_qconfig = QConfig(activation=default_fake_quant, weight=default_weight_fake_quant)


def _check_backend(backend: str) -> None:
    if backend not in _BACKENDS:
        raise AssertionError(
            f"backend: {backend} not supported. backend must be one of {list(_BACKENDS)}"
        )


def get_default_qconfig(backend: str = "x86", version: int = 0) -> QConfig:
    """The default post-training qconfig for ``backend`` (torch's choices: a histogram
    observer for activations; per-channel symmetric int8 weights except on qnnpack)."""
    _check_backend(backend)
    if version != 0:
        raise AssertionError(
            f"Version number: {version} in get_default_qconfig is not "
            f"supported. Version number must be 0"
        )
    if backend == "qnnpack":
        return QConfig(
            activation=HistogramObserver.with_args(reduce_range=False),
            weight=default_weight_observer,
        )
    return QConfig(
        activation=HistogramObserver.with_args(reduce_range=backend != "onednn"),
        weight=default_per_channel_weight_observer,
    )


def get_default_qat_qconfig(backend: str = "x86", version: int = 1) -> QConfig:
    """The default quantization-aware-training qconfig for ``backend``."""
    _check_backend(backend)
    if version not in (0, 1):
        raise AssertionError(
            f"Version number: {version} in get_default_qat_qconfig is not "
            f"supported. Version number must be 0 or 1"
        )
    fq = FakeQuantize if version == 0 else FusedMovingAvgObsFakeQuantize
    reduce = backend in ("fbgemm", "x86")
    act = fq.with_args(
        observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255, reduce_range=reduce
    )
    if backend == "qnnpack":
        wt = default_weight_fake_quant if version == 0 else default_fused_wt_fake_quant
    else:
        wt = (
            default_per_channel_weight_fake_quant
            if version == 0
            else default_fused_per_channel_wt_fake_quant
        )
    return QConfig(activation=act, weight=wt)


def qconfig_equals(q1, q2) -> bool:
    """Whether two qconfigs build the same observers (compares the partials' arguments)."""
    if q1 is None or q2 is None:
        return q1 is q2

    def same(a, b):
        pa, pb = getattr(a, "p", a), getattr(b, "p", b)
        if hasattr(pa, "func") and hasattr(pb, "func"):
            return pa.func == pb.func and pa.args == pb.args and pa.keywords == pb.keywords
        return pa == pb

    return same(q1.activation, q2.activation) and same(q1.weight, q2.weight)


class QConfigMapping:
    """Which qconfig applies where: global, by module type, by module name / regex.

    Precedence (torch's): module name > module name regex > object type > global.
    """

    def __init__(self):
        self.global_qconfig = None
        self.object_type_qconfigs: OrderedDict = OrderedDict()
        self.module_name_regex_qconfigs: OrderedDict = OrderedDict()
        self.module_name_qconfigs: OrderedDict = OrderedDict()
        self.module_name_object_type_order_qconfigs: OrderedDict = OrderedDict()

    def set_global(self, global_qconfig) -> QConfigMapping:
        self.global_qconfig = global_qconfig
        return self

    def set_object_type(self, object_type, qconfig) -> QConfigMapping:
        self.object_type_qconfigs[object_type] = qconfig
        return self

    def set_module_name_regex(self, module_name_regex: str, qconfig) -> QConfigMapping:
        self.module_name_regex_qconfigs[module_name_regex] = qconfig
        return self

    def set_module_name(self, module_name: str, qconfig) -> QConfigMapping:
        self.module_name_qconfigs[module_name] = qconfig
        return self

    def set_module_name_object_type_order(
        self, module_name: str, object_type, index: int, qconfig
    ) -> QConfigMapping:
        self.module_name_object_type_order_qconfigs[(module_name, object_type, index)] = qconfig
        return self

    def qconfig_for(self, module_name: str, module) -> Any:
        """The qconfig this mapping gives the module at ``module_name``."""
        if module_name in self.module_name_qconfigs:
            return self.module_name_qconfigs[module_name]
        for pattern, qc in self.module_name_regex_qconfigs.items():
            if re.match(pattern, module_name):
                return qc
        for cls in type(module).__mro__:
            if cls in self.object_type_qconfigs:
                return self.object_type_qconfigs[cls]
        return self.global_qconfig

    def to_dict(self) -> dict[str, Any]:
        return {
            "": self.global_qconfig,
            "object_type": list(self.object_type_qconfigs.items()),
            "module_name_regex": list(self.module_name_regex_qconfigs.items()),
            "module_name": list(self.module_name_qconfigs.items()),
            "module_name_object_type_order": [
                (*k, v) for k, v in self.module_name_object_type_order_qconfigs.items()
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QConfigMapping:
        m = cls()
        unknown = set(d) - {
            "",
            "object_type",
            "module_name_regex",
            "module_name",
            "module_name_object_type_order",
        }
        if unknown:
            raise ValueError(f"QConfigMapping.from_dict: unknown keys {sorted(unknown)}")
        if "" in d:
            m.set_global(d[""])
        for t, qc in d.get("object_type", []):
            m.set_object_type(t, qc)
        for r, qc in d.get("module_name_regex", []):
            m.set_module_name_regex(r, qc)
        for n, qc in d.get("module_name", []):
            m.set_module_name(n, qc)
        for n, t, i, qc in d.get("module_name_object_type_order", []):
            m.set_module_name_object_type_order(n, t, i, qc)
        return m

    def __repr__(self) -> str:
        return f"QConfigMapping({self.to_dict()})"


def get_default_qconfig_mapping(backend: str = "x86", version: int = 0) -> QConfigMapping:
    """A mapping with ``get_default_qconfig(backend)`` as the global qconfig."""
    return QConfigMapping().set_global(get_default_qconfig(backend, version))


def get_default_qat_qconfig_mapping(backend: str = "x86", version: int = 1) -> QConfigMapping:
    """A mapping with ``get_default_qat_qconfig(backend)`` as the global qconfig."""
    return QConfigMapping().set_global(get_default_qat_qconfig(backend, version))
