"""``SummaryWriter``'s figure, embedding, PR-curve, mesh and graph methods (a mixin kept apart
from tensorboard.py to keep each file one family)."""

from __future__ import annotations

from typing import Any

import numpy as np


def _np(x: Any, what: str) -> np.ndarray:
    from .tensorboard import _to_numpy

    if x is None:
        return None
    arr = _to_numpy(x)
    if arr.dtype == object:
        raise TypeError(f"{what}: expected a tensor or array, got {type(x).__name__}")
    return arr


class _ExtraMixin:
    def add_figure(
        self,
        tag: str,
        figure,
        global_step: int | None = None,
        close: bool = True,
        walltime: float | None = None,
    ) -> None:
        """Render a matplotlib figure (or a list of them, as one grid) into an image."""
        from .tensorboard import _raw_tags, _step

        figs = figure if isinstance(figure, (list, tuple)) else [figure]
        for f in figs:
            if not hasattr(f, "canvas"):
                raise TypeError(
                    f"add_figure({tag!r}): expected a matplotlib Figure, got {type(f).__name__}"
                )
        with _raw_tags():
            self._writer.add_figure(tag, figure, _step(global_step), close, walltime)

    def add_embedding(
        self,
        mat,
        metadata=None,
        label_img=None,
        global_step: int | None = None,
        tag: str = "default",
        metadata_header=None,
    ) -> None:
        """Write an (N, D) matrix, optional per-row labels and (N, C, H, W) thumbnails for
        TensorBoard's projector."""
        from .tensorboard import _step

        arr = _np(mat, f"add_embedding({tag!r})")
        if arr.ndim != 2:
            raise ValueError(
                f"add_embedding({tag!r}): mat must be 2-D (N, D), got shape {tuple(arr.shape)}"
            )
        if metadata is not None:
            if isinstance(metadata, np.ndarray) or hasattr(metadata, "_data"):
                metadata = _np(metadata, "metadata").tolist()
            if len(metadata) != arr.shape[0]:
                raise ValueError(
                    f"add_embedding({tag!r}): {len(metadata)} metadata rows for "
                    f"{arr.shape[0]} embeddings"
                )
        img = _np(label_img, "label_img")
        if img is not None and (img.ndim != 4 or img.shape[0] != arr.shape[0]):
            raise ValueError(
                f"add_embedding({tag!r}): label_img must be (N, C, H, W) with "
                f"N={arr.shape[0]}, got shape {tuple(img.shape)}"
            )
        self._writer.add_embedding(arr, metadata, img, _step(global_step), tag, metadata_header)

    def add_pr_curve(
        self,
        tag: str,
        labels,
        predictions,
        global_step: int | None = None,
        num_thresholds: int = 127,
        weights=None,
        walltime: float | None = None,
    ) -> None:
        """A precision-recall curve from binary ``labels`` and ``predictions`` in [0, 1]."""
        from .tensorboard import _step

        lab = _np(labels, "labels")
        pred = _np(predictions, "predictions").astype(np.float64)
        if lab.shape != pred.shape:
            raise ValueError(
                f"add_pr_curve({tag!r}): labels {tuple(lab.shape)} and "
                f"predictions {tuple(pred.shape)} differ in shape"
            )
        if pred.size and (pred.min() < 0 or pred.max() > 1):
            raise ValueError(f"add_pr_curve({tag!r}): predictions must lie in [0, 1]")
        if not isinstance(num_thresholds, int) or num_thresholds < 2:
            raise ValueError(f"add_pr_curve({tag!r}): num_thresholds must be an int >= 2")
        self._writer.add_pr_curve(
            tag,
            lab.astype(bool),
            pred,
            _step(global_step),
            num_thresholds,
            _np(weights, "weights"),
            walltime,
        )

    def add_pr_curve_raw(
        self,
        tag: str,
        true_positive_counts,
        false_positive_counts,
        true_negative_counts,
        false_negative_counts,
        precision,
        recall,
        global_step: int | None = None,
        num_thresholds: int = 127,
        weights=None,
        walltime: float | None = None,
    ) -> None:
        """A precision-recall curve from precomputed counts."""
        from .tensorboard import _step

        self._writer.add_pr_curve_raw(
            tag,
            *(
                _np(v, tag)
                for v in (
                    true_positive_counts,
                    false_positive_counts,
                    true_negative_counts,
                    false_negative_counts,
                    precision,
                    recall,
                )
            ),
            _step(global_step),
            num_thresholds,
            weights,
            walltime,
        )

    def add_mesh(
        self,
        tag: str,
        vertices,
        colors=None,
        faces=None,
        config_dict=None,
        global_step: int | None = None,
        walltime: float | None = None,
    ) -> None:
        """A 3-D point cloud or mesh: ``vertices`` (B, N, 3), ``colors`` (B, N, 3) uint8,
        ``faces`` (B, F, 3) vertex indices."""
        from .tensorboard import _step

        v = _np(vertices, "vertices")
        if v.ndim != 3 or v.shape[-1] != 3:
            raise ValueError(
                f"add_mesh({tag!r}): vertices must be (B, N, 3), got shape {tuple(v.shape)}"
            )
        c, f = _np(colors, "colors"), _np(faces, "faces")
        for name, a in (("colors", c), ("faces", f)):
            if a is not None and (a.ndim != 3 or a.shape[-1] != 3):
                raise ValueError(
                    f"add_mesh({tag!r}): {name} must be (B, *, 3), got shape {tuple(a.shape)}"
                )
        self._writer.add_mesh(tag, v, c, f, config_dict, _step(global_step), walltime)

    def add_graph(
        self, model, input_to_model=None, verbose: bool = False, use_strict_trace: bool = True
    ) -> None:
        """The model's graph for TensorBoard's Graphs tab, from ``ember.fx.symbolic_trace``."""
        from ..nn import Module

        if not isinstance(model, Module):
            raise TypeError(f"add_graph: expected an nn.Module, got {type(model).__name__}")
        try:
            from .. import fx
        except ImportError as err:  # pragma: no cover - fx is part of ember now
            raise NotImplementedError("add_graph needs ember.fx (graph tracing)") from err
        try:
            gm = fx.symbolic_trace(model)
        except Exception as err:
            raise RuntimeError(
                f"add_graph: ember.fx.symbolic_trace could not trace {type(model).__name__}: {err}"
            ) from err
        graph_def = _graph_def(model, gm)
        if verbose:
            print(gm.graph)
        # an Event carrying only graph_def (tensorboardX's writer of a bare GraphDef)
        self._writer._get_file_writer().add_onnx_graph(graph_def)


def _graph_def(model, gm):
    """A TensorFlow GraphDef of an fx graph: one node per fx node, scoped by module path."""
    from tensorboardX.proto import (
        attr_value_pb2,
        graph_pb2,
        node_def_pb2,
        versions_pb2,
    )

    root = type(model).__name__
    names: dict = {}
    nodes = []
    modules = dict(model.named_modules())
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            name, op = f"{root}/input/{n.name}", "IO Node"
        elif n.op == "output":
            name, op = f"{root}/output/{n.name}", "IO Node"
        elif n.op == "call_module":
            sub = modules.get(n.target)
            path = str(n.target).replace(".", "/")
            name, op = f"{root}/{type(sub).__name__}[{path}]/{n.name}", type(sub).__name__
        elif n.op == "call_function":
            fname = getattr(n.target, "__name__", str(n.target))
            name, op = f"{root}/{n.name}", f"ember::{fname}"
        elif n.op == "call_method":
            name, op = f"{root}/{n.name}", f"ember::{n.target}"
        else:  # get_attr
            name, op = f"{root}/{str(n.target).replace('.', '/')}", "prim::GetAttr"
        names[n] = name
        inputs = [names[a] for a in n.all_input_nodes if a in names]
        attr = {"_ember_op": attr_value_pb2.AttrValue(s=n.op.encode())}
        nodes.append(node_def_pb2.NodeDef(name=name, op=op, input=inputs, attr=attr))
    return graph_pb2.GraphDef(node=nodes, versions=versions_pb2.VersionDef(producer=22))
