"""The ONNX exporter's tracer: ember.fx's Tracer with the converted modules as leaves."""

from __future__ import annotations

import contextlib
import inspect

from . import OnnxExporterError, TrainingMode


@contextlib.contextmanager
def _select_mode(model, mode: TrainingMode):
    from ember.nn import Module

    if not isinstance(model, Module) or mode == TrainingMode.PRESERVE:
        yield
        return
    was = model.training
    model.train(mode == TrainingMode.TRAINING)
    try:
        yield
    finally:
        model.train(was)


def make_tracer():
    from ember.fx import Tracer

    from ._modules import leaf_handler, traceable_forward

    class OnnxTracer(Tracer):
        """Leaves: the modules converted whole (conv, pools, norms, RNNs, attention)."""

        def is_leaf_module(self, m, module_qualified_name: str) -> bool:
            return leaf_handler(m) is not None

        def call_module(self, m, forward, args, kwargs):
            if leaf_handler(m) is None:
                alt = traceable_forward(m)
                if alt is not None:

                    def forward(*a, **k):  # noqa: F811 - a forward without shape checks
                        return alt(m, *a, **k)

            return super().call_module(m, forward, args, kwargs)

        def _patch_all(self, patcher, cache, fn) -> None:
            super()._patch_all(patcher, cache, fn)
            # a static method the tracer does not record by itself (ember.fx wraps functions
            # kept as module attributes and math's functions already)
            from ember.fx._patch import tracing_wrapper
            from ember.nn import Transformer

            gen = Transformer.__dict__["generate_square_subsequent_mask"]
            patcher.set_attr(
                Transformer,
                "generate_square_subsequent_mask",
                staticmethod(tracing_wrapper(gen.__func__)),
            )
            from ._ops_quant import patch_tracer

            patch_tracer(patcher)  # QFunctional's requantization

    from ember.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    # packing is recorded as one node each (lowered in _ops_rnn.py), not traced through
    return OnnxTracer(autowrap_functions=(pack_padded_sequence, pad_packed_sequence))


class _Root:
    """A module wrapping the exported model, so that the model itself is called through the
    tracer's ``call_module`` (a leaf model becomes one node; activation modules get wrapped)."""

    @staticmethod
    def of(model, fn):
        from ember.nn import Module

        params = list(inspect.signature(fn).parameters.values())
        for p in params:
            if p.kind in (p.VAR_KEYWORD, p.KEYWORD_ONLY) or not p.name.isidentifier():
                raise OnnxExporterError(
                    f"forward's parameter {p.name!r} ({p.kind}) is not "
                    "supported by ember.onnx.export"
                )
        defaults = {p.name: p.default for p in params if p.default is not p.empty}
        sig = ", ".join(
            ("*" if p.kind == p.VAR_POSITIONAL else "")
            + p.name
            + (f"=__d[{p.name!r}]" if p.name in defaults else "")
            for p in params
        )
        call = ", ".join(("*" if p.kind == p.VAR_POSITIONAL else "") + p.name for p in params)
        ns: dict = {"__d": defaults}
        # the parameter names come from forward's signature (identifiers only, checked above)
        exec(f"def forward(self, {sig}):\n    return self.m({call})\n", ns)  # noqa: S102

        class ExportRoot(Module):
            forward = ns["forward"]

        root = ExportRoot()
        root.m = model
        return root
