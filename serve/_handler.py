"""What a replica runs: an artifact loader and TorchServe-shaped handlers.

A handler has TorchServe's four steps -- ``initialize(context)``, ``preprocess(requests)``,
``inference(batch)``, ``postprocess(outputs)`` -- and ``handle(requests, context)`` chains them.
:class:`BaseHandler` is the default tensor-in/tensor-out handler: each request carries one
array whose first dimension is its own batch; requests with the same trailing shape are
concatenated into one forward pass and the outputs are split back per request.
"""

from __future__ import annotations

import hashlib
import io
import os
import types
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: The kinds of saved model a deployment can serve: an ``ember.export`` program, a
#: ``ember.jit`` module, an ONNX file, an ``nn.Module`` object, or a handler class.
ARTIFACT_KINDS = ("export", "jit", "onnx", "module", "handler")

# onnxruntime's type strings -> NumPy dtypes (the ones a model input is likely to use)
_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


@dataclass
class Context:
    """What ``initialize(context)`` receives (TorchServe's context, reduced to what applies).

    ``artifact`` holds the model file's bytes (or None for a handler that builds its own
    model); ``model_dir`` is the directory the artifact or handler file came from on the
    deploying machine; ``manifest`` carries name, version and kind."""

    model_name: str
    version: str
    kind: str
    artifact: bytes | None = None
    model_obj: Any = None
    model_dir: str | None = None
    device: str = "cpu"
    input_dtype: str | None = None
    pad_sequences: bool = False
    manifest: dict = field(default_factory=dict)
    system_properties: dict = field(default_factory=dict)


def detect_kind(path: str) -> str:
    """Name the artifact kind of ``path``: 'export', 'jit', 'onnx' or 'handler'."""
    if ":" in os.path.basename(path) and path.rsplit(":", 1)[0].endswith(".py"):
        return "handler"
    if not os.path.exists(path):
        raise FileNotFoundError(f"ember serve: no such file: {path!r}")
    if path.endswith(".onnx"):
        return "onnx"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
        for kind in ("export", "jit"):
            if f"{kind}/header.json" in names:
                return kind
    raise ValueError(
        f"ember serve: {path!r} is neither an ember.export / ember.jit archive, "
        "an .onnx file, nor a handler given as 'file.py:ClassName'"
    )


def digest(data: bytes) -> str:
    """A short content version for an artifact (first 12 hex digits of its sha256)."""
    return hashlib.sha256(data).hexdigest()[:12]


def load_handler_class(source: str, filename: str, class_name: str) -> type:
    """Execute a handler file's source as a module and return its class ``class_name``."""
    mod = types.ModuleType(os.path.splitext(os.path.basename(filename))[0])
    mod.__file__ = filename
    exec(compile(source, filename, "exec"), mod.__dict__)  # the user's own handler file
    cls = mod.__dict__.get(class_name)
    if not isinstance(cls, type):
        raise ValueError(f"ember serve: {filename} defines no class {class_name!r}")
    missing = [
        m
        for m in ("initialize", "preprocess", "inference", "postprocess")
        if not callable(getattr(cls, m, None))
    ]
    if missing:
        raise TypeError(
            f"ember serve: handler {class_name} lacks {', '.join(missing)} "
            "(subclass ember.serve.BaseHandler for the defaults)"
        )
    return cls


class _OnnxModel:
    """An onnxruntime session behind the same call shape as an ember module."""

    def __init__(self, data: bytes) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError(
                "ember serve: serving an .onnx file needs onnxruntime (pip install onnxruntime)"
            ) from None
        self.session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        self.inputs = self.session.get_inputs()
        self.outputs = self.session.get_outputs()

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        feed = {i.name: a for i, a in zip(self.inputs, arrays)}
        return self.session.run(None, feed)


def _spec(name: str, dtype: str | None, shape: list | None) -> dict:
    return {"name": name, "dtype": dtype, "shape": shape}


class BaseHandler:
    """Default tensor-in/tensor-out handler for ember.export, ember.jit and .onnx artifacts."""

    def initialize(self, context: Context) -> None:
        import ember

        self.context = context
        self.device = context.device
        self.input_dtype = context.input_dtype
        self.onnx = None
        kind = context.kind
        if kind == "onnx":
            self.onnx = _OnnxModel(context.artifact)
            self.model = self.onnx
            self.inputs = [
                _spec(
                    i.name,
                    _ORT_DTYPES.get(i.type, i.type),
                    [d if isinstance(d, int) else str(d) for d in i.shape],
                )
                for i in self.onnx.inputs
            ]
            self.outputs = [
                _spec(
                    o.name,
                    _ORT_DTYPES.get(o.type, o.type),
                    [d if isinstance(d, int) else str(d) for d in o.shape],
                )
                for o in self.onnx.outputs
            ]
            if self.input_dtype is None and self.inputs[0]["dtype"] in _ORT_DTYPES.values():
                self.input_dtype = self.inputs[0]["dtype"]
            return
        if kind == "export":
            ep = ember.export.load(io.BytesIO(context.artifact), map_location=self.device)
            self.model = ep.module()
            guards = ep._guards.to_json()
            self.inputs = []
            for g in guards:
                shape = g.get("shape")
                if shape is not None:
                    shape = list(shape)
                    for i, d in g.get("dims", {}).items():
                        shape[int(i)] = d.get("name") or f"dim{i}"
                # the dtype the program was exported with (artifacts saved before it was
                # recorded have none: then JSON numbers follow PyTorch's inference)
                self.inputs.append(_spec(g["name"], self.input_dtype or g.get("dtype"), shape))
            if self.input_dtype is None and self.inputs and self.inputs[0]["dtype"]:
                self.input_dtype = self.inputs[0]["dtype"]
            self.outputs = [_spec(n, None, None) for n in ep.graph_signature.user_outputs]
        elif kind == "jit":
            self.model = ember.jit.load(io.BytesIO(context.artifact), map_location=self.device)
            names = [n.name for n in self.model.graph.nodes if n.op == "placeholder"]
            self.inputs = [_spec(n, self.input_dtype, None) for n in names]
            self.outputs = [_spec("output", None, None)]
        elif kind == "module":
            self.model = context.model_obj.to(self.device)
            self.inputs = [_spec("input", self.input_dtype, None)]
            self.outputs = [_spec("output", None, None)]
        else:
            raise ValueError(f"BaseHandler cannot load a {kind!r} artifact")
        if hasattr(self.model, "eval"):
            self.model.eval()

    # -- the four steps -------------------------------------------------------------------
    def preprocess(self, requests: list[dict]) -> list[tuple[list[int], np.ndarray]]:
        """Group requests by trailing shape and concatenate each group along dim 0.

        With ``pad_sequences``, requests that differ only in dim 1 (sequence length) share a
        group: each is right-padded with zeros to the group's longest, and ``postprocess``
        cuts the outputs back. Returns ``[(request indices, batch array), ...]``."""
        pad = getattr(self.context, "pad_sequences", False) if hasattr(self, "context") else False
        groups: dict[tuple, list[int]] = {}
        arrays = [r["body"] for r in requests]
        for i, a in enumerate(arrays):
            key = (a.ndim, a.shape[2:]) if pad and a.ndim >= 2 else (a.shape[1:],)
            groups.setdefault((*key, a.dtype.str), []).append(i)
        self._lengths, self._padded = {}, {}
        out = []
        for idx in groups.values():
            parts = [arrays[i] for i in idx]
            if pad and parts[0].ndim >= 2:
                longest = max(p.shape[1] for p in parts)
                self._padded[idx[0]] = longest
                for i, p in zip(idx, parts):
                    self._lengths[i] = p.shape[1]
                parts = [
                    p
                    if p.shape[1] == longest
                    else np.pad(p, [(0, 0), (0, longest - p.shape[1])] + [(0, 0)] * (p.ndim - 2))
                    for p in parts
                ]
            out.append((idx, np.concatenate(parts) if len(parts) > 1 else parts[0]))
        return out

    def inference(self, batch: list[tuple[list[int], np.ndarray]]) -> list[tuple[list[int], Any]]:
        import ember

        out = []
        for idx, x in batch:
            if self.onnx is not None:
                y = self.onnx(x)
            else:
                with ember.no_grad():
                    y = self.model(ember.from_numpy(np.ascontiguousarray(x)).to(self.device))
            out.append((idx, y))
        return out

    def postprocess(self, outputs: list[tuple[list[int], Any]]) -> list[list[np.ndarray]]:
        """Split each group's outputs back per request: one list of arrays per request."""
        n = sum(len(idx) for idx, _ in outputs)
        result: list = [None] * n
        padded = getattr(self, "_padded", {})
        lengths = getattr(self, "_lengths", {})
        for idx, y in outputs:
            ys = [_to_numpy(t) for t in (y if isinstance(y, (list, tuple)) else [y])]
            cuts = np.cumsum([self._rows[i] for i in idx])[:-1]
            parts = [np.split(a, cuts) if len(idx) > 1 else [a] for a in ys]
            longest = padded.get(idx[0])
            for j, i in enumerate(idx):
                mine = [p[j] for p in parts]
                if longest is not None and lengths.get(i, longest) < longest:
                    # outputs that carry the padded sequence dim are cut back to this request's
                    mine = [
                        m[:, : lengths[i]] if m.ndim >= 2 and m.shape[1] == longest else m
                        for m in mine
                    ]
                result[i] = mine
        return result

    def handle(self, requests: list[dict], context: Context | None = None) -> list:
        self._rows = [r["body"].shape[0] for r in requests]
        return self.postprocess(self.inference(self.preprocess(requests)))

    def metadata(self) -> dict:
        return {"inputs": self.inputs, "outputs": self.outputs}


def _to_numpy(t: Any) -> np.ndarray:
    if isinstance(t, np.ndarray):
        return t
    if hasattr(t, "detach"):
        t = t.detach()
    if hasattr(t, "cpu"):
        t = t.cpu()
    return t.numpy() if hasattr(t, "numpy") else np.asarray(t)
