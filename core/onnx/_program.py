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

    def optimize(self) -> None:
        """Simplify the model in place (torch runs onnxscript's optimizer; ember, which does
        not need onnxscript, removes Identity nodes, then nodes and initializers whose results
        nothing reads). Outputs and their names are unchanged."""
        g = self.model_proto.graph
        outputs = {o.name for o in g.output}
        alias: dict[str, str] = {}
        for node in list(g.node):
            for i, name in enumerate(node.input):
                node.input[i] = alias.get(name, name)
            if node.op_type == "Identity" and node.output[0] not in outputs:
                alias[node.output[0]] = node.input[0]
                g.node.remove(node)
        needed = set(outputs)
        for node in reversed(list(g.node)):
            if any(o in needed for o in node.output):
                needed.update(node.input)
                needed.update(_subgraph_reads(node))  # If/Loop bodies read outer names
            else:
                g.node.remove(node)
        for init in list(g.initializer):
            if init.name not in needed:
                g.initializer.remove(init)
        self._session = None

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


def _subgraph_reads(node) -> set:
    """Every name the nodes of ``node``'s subgraph attributes (If branches, Loop bodies) read."""
    names: set = set()
    for attr in node.attribute:
        for g in [attr.g] if attr.HasField("g") else list(attr.graphs):
            for n in g.node:
                names.update(n.input)
                names.update(_subgraph_reads(n))
    return names
