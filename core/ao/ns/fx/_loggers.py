"""The loggers the FX numeric suite inserts into graphs (``OutputLogger``,
``OutputComparisonLogger``): identity modules that keep what passes through them, labelled
with the layer they watch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .... import nn
from .utils import compute_sqnr

__all__ = ["OutputLogger", "OutputComparisonLogger"]


def _detach(x: Any) -> Any:
    if isinstance(x, (tuple, list)):
        return type(x)(_detach(v) for v in x)
    return x.detach() if hasattr(x, "detach") else x


class OutputLogger(nn.Module):
    """Keeps each value it is called with in ``stats`` (RNN outputs ``(out, (h, c))`` in
    ``stats_rnn``) and returns it unchanged.

    ``enabled`` switches logging off entirely; ``save_activations`` off keeps nothing but
    still runs (the n-shadows API's switches).
    """

    stats: list[Any]
    stats_rnn: list[Any]

    def __init__(
        self,
        ref_node_name: str,
        prev_node_name: str,
        model_name: str,
        ref_name: str,
        prev_node_target_type: str,
        ref_node_target_type: str,
        results_type: str,
        index_within_arg: int,
        index_of_arg: int,
        fqn: str | None,
        qconfig_str: str | None = "",
    ) -> None:
        super().__init__()
        self.stats = []
        self.stats_rnn = []
        self.ref_node_name = ref_node_name
        self.prev_node_name = prev_node_name
        self.model_name = model_name
        self.ref_name = ref_name
        self.prev_node_target_type = prev_node_target_type
        self.ref_node_target_type = ref_node_target_type
        self.results_type = results_type
        self.index_within_arg = index_within_arg
        self.index_of_arg = index_of_arg
        self.fqn = fqn
        self.qconfig_str = qconfig_str
        self.enabled = True
        self.save_activations = True

    def _keep(self, x: Any) -> None:
        if isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], tuple):
            self.stats_rnn.append(_detach(x))  # (output, (h, c))
        else:
            self.stats.append(_detach(x))

    def forward(self, x: Any) -> Any:
        if self.enabled and self.save_activations:
            self._keep(x)
        return x

    def extra_repr(self) -> str:
        fields = ("ref_node_name", "prev_node_name", "model_name", "results_type", "fqn")
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in fields)


class OutputComparisonLogger(OutputLogger):
    """An :class:`OutputLogger` that also compares each value with the reference value it
    is called with (``comparison_fn``, SQNR by default) and keeps the results in
    ``comparisons``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.comparison_fn: Callable[[Any, Any], Any] = compute_sqnr
        self.comparison_fn_name = "sqnr"
        self.comparisons: list[Any] = []

    def forward(self, x: Any, x_ref: Any) -> Any:  # type: ignore[override]
        if self.enabled:
            if self.save_activations:
                self._keep(x)
            self.comparisons.append(self.comparison_fn(x, x_ref))
        return x
