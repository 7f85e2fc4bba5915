"""The eager-mode numeric suite (``torch.ao.ns._numeric_suite``): compare a float model with
the model ``ember.ao.quantization.quantize`` / ``quantize_dynamic`` made from it.

- :func:`compare_weights`: each quantized weight beside its float weight (state dicts);
- :func:`compare_model_outputs`: each module's output in both models on the same data
  (loggers attached as ``activation_post_process`` by ``prepare``);
- :func:`compare_model_stub`: chosen quantized modules run beside their float originals on
  the same input (:class:`Shadow`), so each one's error is seen alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import ember

from ... import nn
from ..nn import quantized as nnq
from ..nn.quantized import dynamic as nnqd
from ..quantization.qconfig import QConfig
from ..quantization.quantization_mappings import get_default_compare_output_module_list
from ..quantization.quantize import prepare

__all__ = [
    "compare_weights",
    "get_logger_dict",
    "Logger",
    "ShadowLogger",
    "OutputLogger",
    "Shadow",
    "prepare_model_with_stubs",
    "compare_model_stub",
    "get_matching_activations",
    "prepare_model_outputs",
    "compare_model_outputs",
]

# quantized modules with children (packed parameters) that still get an output logger
NON_LEAF_MODULE_TO_ADD_OBSERVER_ALLOW_LIST = {nnqd.Linear, nnq.Linear, nnqd.LSTM, nn.LSTM}


def _parent(key: str, levels: int) -> str | None:
    parts = key.split(".")
    return ".".join(parts[:-levels]) if len(parts) > levels else None


def _match(candidates: Iterable[str], path: str) -> str | None:
    """The first key whose module path (one or two levels up: fused modules nest the
    layer as ``path.0``) is ``path``."""
    for key in candidates:
        if path in (_parent(key, 1), _parent(key, 2)):
            return key
    return None


def compare_weights(
    float_dict: dict[str, Any], quantized_dict: dict[str, Any]
) -> dict[str, dict[str, ember.Tensor]]:
    """``{quantized key: {"float": float weight, "quantized": quantized weight}}`` for each
    weight of the quantized model's state dict (plain, packed linear, dynamic LSTM).

    Example::

        >>> wt = compare_weights(float_model.state_dict(), qmodel.state_dict())
        >>> compute_sqnr(wt["conv1.weight"]["float"], wt["conv1.weight"]["quantized"])
    """
    out: dict[str, dict[str, Any]] = {}
    for key, value in quantized_dict.items():
        parts = key.split(".")
        if parts[-1] == "weight" and (m := _match(float_dict, ".".join(parts[:-1]))):
            out[key] = {"float": float_dict[m], "quantized": value}
        elif parts[-1] == "_packed_params" and len(parts) >= 3:
            m = _match(float_dict, ".".join(parts[:-2]))  # linear._packed_params._packed_params
            if m is not None:
                out[key] = {"float": float_dict[m], "quantized": value[0]}
        elif parts[-1] == "param" and len(parts) >= 3 and parts[-3] == "_all_weight_values":
            module, layer = ".".join(parts[:-3]), parts[-2]
            hh = f"{module}.weight_hh_l{layer}"  # as torch: the recurrent weight of the layer
            if f"{module}.weight_ih_l{layer}" in float_dict and hh in float_dict:
                out[key] = {"float": float_dict[hh], "quantized": value[1]}
    return out


class Logger(nn.Module):
    """Base class of the eager numeric suite's loggers: ``stats`` holds what they keep."""

    def __init__(self) -> None:
        super().__init__()
        self.stats: dict[str, Any] = {}
        self.dtype = ember.quint8

    def forward(self, x: Any) -> Any:
        return x


class ShadowLogger(Logger):
    """Keeps the outputs of a quantized module (``stats["quantized"]``) and of its float
    shadow (``stats["float"]``). As torch's, it keeps the first item of anything longer than
    one: a tuple's first output, but also a batched tensor's first sample."""

    def __init__(self) -> None:
        super().__init__()
        self.stats["float"] = []
        self.stats["quantized"] = []

    def forward(self, x: Any, y: Any) -> None:  # type: ignore[override]
        if len(x) > 1:
            x = x[0]
        if len(y) > 1:
            y = y[0]
        self.stats["quantized"].append(x.detach())
        self.stats["float"].append(y.detach())


class OutputLogger(Logger):
    """Keeps each output it is called with in ``stats["tensor_val"]``."""

    def __init__(self) -> None:
        super().__init__()
        self.stats["tensor_val"] = []

    def forward(self, x: Any) -> Any:
        self.stats["tensor_val"].append(x)
        return x


def _float(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return [_float(v) for v in x]
    return x.dequantize() if getattr(x, "is_quantized", False) else x


class Shadow(nn.Module):
    """Runs ``q_module`` and, on the same input dequantized, its float original
    ``float_module``; a ``logger_cls`` instance receives both outputs. Returns the quantized
    output, so the model computes what it did before."""

    def __init__(self, q_module: nn.Module, float_module: nn.Module, logger_cls: Callable):
        super().__init__()
        self.orig_module = q_module
        self.shadow_module = float_module
        self.dequant = nnq.DeQuantize()
        self.logger = logger_cls()

    def forward(self, *x: Any) -> Any:
        xs = [list(v) if type(v) is tuple else v for v in x]
        output = self.orig_module(*xs)
        self.logger(output, self.shadow_module(*_float(xs)))
        return output

    def _both(self, op: str, *args: Any) -> Any:
        output = getattr(self.orig_module, op)(*args)
        self.logger(output, getattr(self.shadow_module, op)(*_float(list(args))))
        return output

    # FloatFunctional / QFunctional's methods
    def add(self, x: ember.Tensor, y: ember.Tensor) -> ember.Tensor:
        return self._both("add", x, y)

    def add_scalar(self, x: ember.Tensor, y: float) -> ember.Tensor:
        return self._both("add_scalar", x, y)

    def mul(self, x: ember.Tensor, y: ember.Tensor) -> ember.Tensor:
        return self._both("mul", x, y)

    def mul_scalar(self, x: ember.Tensor, y: float) -> ember.Tensor:
        return self._both("mul_scalar", x, y)

    def cat(self, x: list[ember.Tensor], dim: int = 0) -> ember.Tensor:
        return self._both("cat", x, dim)

    def add_relu(self, x: ember.Tensor, y: ember.Tensor) -> ember.Tensor:
        return self._both("add_relu", x, y)


def get_logger_dict(mod: nn.Module, prefix: str = "") -> dict[str, dict]:
    """``{"<module path>.stats": logger.stats}`` of every module with a :class:`Logger`
    child (the first one), walking ``mod`` recursively."""
    out: dict[str, dict] = {}

    def walk(m: nn.Module, path: str) -> None:
        logger = next((c for c in m.children() if isinstance(c, Logger)), None)
        if logger is not None:
            out[f"{path}.stats" if path else "stats"] = logger.stats
        for name, child in m.named_children():
            walk(child, f"{path}.{name}" if path else name)

    walk(mod, prefix)
    return out


def prepare_model_with_stubs(
    float_module: nn.Module,
    q_module: nn.Module,
    module_swap_list: Iterable[type],
    logger_cls: Callable,
) -> None:
    """Replace, in ``q_module`` (in place), each module whose float original's type is in
    ``module_swap_list`` with a :class:`Shadow` of both."""
    swap = set(module_swap_list)
    floats = dict(float_module.named_children())
    for name, q_child in list(q_module.named_children()):
        f_child = floats.get(name)
        if f_child is None:
            continue
        if type(f_child) not in swap:
            prepare_model_with_stubs(f_child, q_child, swap, logger_cls)
        elif [type(m) for m in q_child.modules()] != [type(m) for m in f_child.modules()]:
            q_module._modules[name] = Shadow(q_child, f_child, logger_cls)


def compare_model_stub(
    float_model: nn.Module,
    q_model: nn.Module,
    module_swap_list: Iterable[type],
    *data: Any,
    logger_cls: Callable = ShadowLogger,
) -> dict[str, dict]:
    """Shadow the modules of ``module_swap_list`` types (:func:`prepare_model_with_stubs`),
    run ``q_model(*data)`` and return :func:`get_logger_dict` of it:
    ``{"<path>.stats": {"float": [...], "quantized": [...]}}``. Modifies ``q_model``."""
    prepare_model_with_stubs(float_model, q_model, module_swap_list, logger_cls)
    q_model(*data)
    return get_logger_dict(q_model)


def get_matching_activations(
    float_module: nn.Module, q_module: nn.Module
) -> dict[str, dict[str, list]]:
    """``{quantized logger key: {"float": [...], "quantized": [...]}}`` of the outputs the
    :class:`OutputLogger` s of :func:`prepare_model_outputs` recorded."""
    float_dict, q_dict = get_logger_dict(float_module), get_logger_dict(q_module)
    out: dict[str, dict[str, list]] = {}
    for key, stats in q_dict.items():
        if not stats.get("tensor_val"):
            continue
        m = _match(sorted(float_dict, reverse=True), key[: -len(".stats")])
        if m is not None:
            out[key] = {"float": float_dict[m]["tensor_val"], "quantized": stats["tensor_val"]}
    return out


def prepare_model_outputs(
    float_module: nn.Module,
    q_module: nn.Module,
    logger_cls: Callable = OutputLogger,
    allow_list: Iterable[type] | None = None,
) -> None:
    """Attach a ``logger_cls`` to the output of each module of ``allow_list`` types
    (default: :func:`get_default_compare_output_module_list`) in both models, in place."""
    allow = set(allow_list) if allow_list is not None else get_default_compare_output_module_list()
    qconfig = QConfig(activation=logger_cls, weight=None)
    float_module.qconfig = qconfig
    prepare(float_module, inplace=True, allow_list=allow, prepare_custom_config_dict={})
    q_module.qconfig = qconfig
    prepare(
        q_module,
        inplace=True,
        allow_list=allow,
        observer_non_leaf_module_list=NON_LEAF_MODULE_TO_ADD_OBSERVER_ALLOW_LIST,
        prepare_custom_config_dict={},
    )


def compare_model_outputs(
    float_model: nn.Module,
    q_model: nn.Module,
    *data: Any,
    logger_cls: Callable = OutputLogger,
    allow_list: Iterable[type] | None = None,
) -> dict[str, dict[str, list]]:
    """The outputs of corresponding modules of both models on ``data``:
    :func:`prepare_model_outputs`, one forward of each, :func:`get_matching_activations`.
    Modifies both models."""
    prepare_model_outputs(float_model, q_model, logger_cls, allow_list)
    float_model(*data)
    q_model(*data)
    return get_matching_activations(float_model, q_model)
