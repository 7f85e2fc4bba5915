"""SummaryWriter.add_figure/add_embedding/add_pr_curve/add_mesh/add_graph, read back with
TensorBoard's own EventAccumulator (and the projector's config format)."""

from __future__ import annotations

import numpy as np
import pytest

import ember

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
tensor_util = pytest.importorskip("tensorboard.util.tensor_util")
from ember.utils.tensorboard import SummaryWriter  # noqa: E402


def _read(logdir):
    acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    return acc


def test_pr_curve_counts(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 50)
    preds = rng.random(50).astype(np.float32)
    with SummaryWriter(tmp_path) as w:
        w.add_pr_curve("pr", ember.tensor(labels), ember.tensor(preds), 3, num_thresholds=11)
    ev = _read(tmp_path).Tensors("pr")[0]
    got = tensor_util.make_ndarray(ev.tensor_proto)
    assert ev.step == 3 and got.shape == (6, 11)
    thresholds = np.arange(11) / 10
    tp = [(labels.astype(bool) & (preds >= t)).sum() for t in thresholds]
    fp = [(~labels.astype(bool) & (preds >= t)).sum() for t in thresholds]
    np.testing.assert_allclose(got[0], tp, atol=1e-6)
    np.testing.assert_allclose(got[1], fp, atol=1e-6)


def test_mesh_and_figure(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    verts = ember.rand(1, 4, 3)
    faces = ember.tensor([[[0, 1, 2], [1, 2, 3]]])
    fig = plt.figure(figsize=(2, 1), dpi=50)
    plt.plot([0, 1], [1, 0])
    with SummaryWriter(tmp_path) as w:
        w.add_mesh("m", verts, faces=faces, global_step=1)
        w.add_figure("fig", fig, global_step=2)
    acc = _read(tmp_path)
    vert_tag = [t for t in acc.Tags()["tensors"] if t.startswith("m")]
    vals = [tensor_util.make_ndarray(acc.Tensors(t)[0].tensor_proto) for t in sorted(vert_tag)]
    assert any(v.shape == (1, 4, 3) and np.allclose(v, verts.numpy()) for v in vals)
    assert any(v.shape == (1, 2, 3) and np.array_equal(v, faces.numpy()) for v in vals)
    img = acc.Images("fig")[0]
    assert (img.width, img.height, img.step) == (100, 50, 2)


def test_embedding_projector_files(tmp_path):
    projector = pytest.importorskip("tensorboard.plugins.projector.projector_config_pb2")
    from google.protobuf import text_format

    mat = ember.randn(6, 4)
    with SummaryWriter(tmp_path) as w:
        w.add_embedding(
            mat,
            metadata=list("abcdef"),
            label_img=ember.rand(6, 3, 8, 8),
            global_step=0,
            tag="words",
        )
    cfg = text_format.Parse(
        (tmp_path / "projector_config.pbtxt").read_text(), projector.ProjectorConfig()
    )
    emb = cfg.embeddings[0]
    assert emb.tensor_name.startswith("words")
    tensors = np.loadtxt(tmp_path / emb.tensor_path, delimiter="\t")
    np.testing.assert_allclose(tensors, mat.numpy(), rtol=1e-5, atol=1e-6)
    assert (tmp_path / emb.metadata_path).read_text().split() == list("abcdef")
    assert list(emb.sprite.single_image_dim) == [8, 8]


def test_graph_from_fx(tmp_path):
    model = ember.nn.Sequential(ember.nn.Linear(4, 3), ember.nn.ReLU(), ember.nn.Linear(3, 1))
    with SummaryWriter(tmp_path) as w:
        w.add_graph(model, ember.randn(2, 4))
    g = _read(tmp_path).Graph()
    ops = [n.op for n in g.node]
    assert ops == ["IO Node", "Linear", "ReLU", "Linear", "IO Node"]
    for prev, node in zip(g.node, g.node[1:]):
        assert list(node.input) == [prev.name]


def test_bad_input(tmp_path):
    with SummaryWriter(tmp_path) as w:
        with pytest.raises(ValueError, match="differ in shape"):
            w.add_pr_curve("pr", ember.ones(3), ember.ones(4))
        with pytest.raises(ValueError, match=r"in \[0, 1\]"):
            w.add_pr_curve("pr", ember.ones(3), ember.full((3,), 2.0))
        with pytest.raises(ValueError, match=r"vertices must be \(B, N, 3\)"):
            w.add_mesh("m", ember.rand(4, 3))
        with pytest.raises(ValueError, match="metadata rows"):
            w.add_embedding(ember.randn(3, 2), metadata=["a"])
        with pytest.raises(TypeError, match="matplotlib Figure"):
            w.add_figure("f", "not a figure")
        with pytest.raises(TypeError, match="nn.Module"):
            w.add_graph(lambda x: x)
