"""``ONNXProgram``: what ``export(..., dynamo=True)`` returns (torch.onnx's newer result type)."""

from __future__ import annotations

from typing import Any


class ONNXProgram:
    """An exported ONNX model: ``.model_proto``, ``save(path)`` and calling it with ember
    tensors (runs onnxruntime, which must be installed)."""

    def __init__(self, model_proto: Any) -> None:
        self.model_proto = model_proto
        self._session = None

    @property
    def model(self):
        return self.model_proto

    def save(
        self,
        destination,
        *,
        include_initializers: bool = True,
        keep_initializers_as_inputs: bool = False,
        external_data: bool | None = None,
    ) -> None:
        import onnx

        if not include_initializers:
            raise NotImplementedError("save(include_initializers=False) is not supported")
        onnx.save(self.model_proto, destination)

    def initialize_inference_session(self, initializer=None) -> None:
        import onnxruntime as ort

        self._session = ort.InferenceSession(
            self.model_proto.SerializeToString(), providers=["CPUExecutionProvider"]
        )

    def release(self) -> None:
        self._session = None

    def __call__(self, *args, **kwargs) -> list:
        """Run the model on ember tensors (or arrays); returns ember tensors."""
        import numpy as np

        import ember

        from ._exporter import _flatten

        if self._session is None:
            self.initialize_inference_session()
        flat = _flatten(list(args) + list(kwargs.values()))
        feeds = {
            i.name: (t.detach().cpu().numpy() if isinstance(t, ember.Tensor) else np.asarray(t))
            for i, t in zip(self._session.get_inputs(), flat)
        }
        return [ember.tensor(o) for o in self._session.run(None, feeds)]

    def __repr__(self) -> str:
        g = self.model_proto.graph
        return (
            f"ONNXProgram(inputs={[i.name for i in g.input]}, "
            f"outputs={[o.name for o in g.output]}, nodes={len(g.node)})"
        )
