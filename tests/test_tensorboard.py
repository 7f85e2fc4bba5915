"""ember.utils.tensorboard.SummaryWriter, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import ember
from ember.utils.tensorboard import SummaryWriter

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
plugin_data_pb2 = pytest.importorskip("tensorboard.plugins.hparams.plugin_data_pb2")


def _read(logdir):
    acc = event_accumulator.EventAccumulator(
        str(logdir), size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0}
    )
    acc.Reload()
    return acc


def test_scalars_accept_tensors_arrays_and_numbers(tmp_path):
    values = [
        ember.tensor(0.5),
        ember.tensor([0.25], requires_grad=True),
        np.float32(0.125),
        np.array(2.0),
        3,
        4.5,
        ember.tensor(7, dtype=ember.int64),
    ]
    with SummaryWriter(tmp_path) as w:
        for step, v in enumerate(values):
            w.add_scalar("train/loss", v, global_step=ember.tensor(step))
    got = _read(tmp_path).Scalars("train/loss")
    assert [e.step for e in got] == list(range(len(values)))
    assert [e.value for e in got] == pytest.approx([0.5, 0.25, 0.125, 2.0, 3.0, 4.5, 7.0])


def test_add_scalar_rejects_non_scalars(tmp_path):
    with SummaryWriter(tmp_path) as w:
        with pytest.raises(ValueError, match=r"add_scalar\('x'\).*shape \(3,\)"):
            w.add_scalar("x", ember.ones(3), 0)
        with pytest.raises(TypeError, match="real number"):
            w.add_scalar("x", np.array("a"), 0)


def test_add_scalars_uses_pytorch_run_layout(tmp_path):
    with SummaryWriter(tmp_path) as w:
        for step in range(3):
            w.add_scalars("run/acc", {"train": 0.5 + step, "val": ember.tensor(float(step))}, step)
    assert sorted(d for d in os.listdir(tmp_path) if (tmp_path / d).is_dir()) == [
        "run_acc_train",
        "run_acc_val",
    ]
    val = _read(tmp_path / "run_acc_val").Scalars("run/acc")
    assert [(e.step, e.value) for e in val] == [(0, 0.0), (1, 1.0), (2, 2.0)]
    train = _read(tmp_path / "run_acc_train").Scalars("run/acc")
    assert [e.value for e in train] == [0.5, 1.5, 2.5]


def test_histogram(tmp_path):
    data = ember.randn(1000, requires_grad=True) * 2
    with SummaryWriter(tmp_path) as w:
        w.add_histogram("weights", data, 5)
        w.add_histogram("half", ember.ones(10, dtype=ember.float16), 6, bins=4)
        w.add_histogram("ints", np.arange(10), 7, bins="auto")
        with pytest.raises(ValueError, match="no element"):
            w.add_histogram("empty", ember.zeros(0), 8)
    acc = _read(tmp_path)
    (h,) = acc.Histograms("weights")
    arr = data.detach().numpy()
    assert h.step == 5 and h.histogram_value.num == 1000
    assert h.histogram_value.min == pytest.approx(arr.min())
    assert h.histogram_value.max == pytest.approx(arr.max())
    assert h.histogram_value.sum == pytest.approx(arr.sum(), rel=1e-4, abs=1e-3)
    assert acc.Histograms("half")[0].histogram_value.num == 10
    assert acc.Histograms("ints")[0].histogram_value.max == 9


def test_images(tmp_path):
    chw = ember.rand(3, 8, 10)
    with SummaryWriter(tmp_path) as w:
        w.add_image("chw", chw, 1)
        w.add_image("hwc", np.zeros((6, 4, 3), dtype=np.uint8), 1, dataformats="HWC")
        w.add_image("hw", ember.rand(5, 7), 1, dataformats="HW")
        w.add_images("batch", ember.rand(4, 1, 5, 5), 2)
        with pytest.raises(ValueError, match="needs 3 dims"):
            w.add_image("bad", ember.rand(8, 10), 1)
    acc = _read(tmp_path)
    img = acc.Images("chw")[0]
    assert (img.width, img.height, img.step) == (10, 8, 1)
    assert img.encoded_image_string.startswith(b"\x89PNG")
    assert (acc.Images("hwc")[0].width, acc.Images("hwc")[0].height) == (4, 6)
    assert (acc.Images("hw")[0].width, acc.Images("hw")[0].height) == (7, 5)
    assert acc.Images("batch")[0].step == 2


def test_text(tmp_path):
    with SummaryWriter(tmp_path) as w:
        w.add_text("notes", "epoch **1** done", 1)
        with pytest.raises(TypeError, match="must be a str"):
            w.add_text("notes", 3, 2)
    (ev,) = _read(tmp_path).Tensors("notes/text_summary")
    assert ev.step == 1 and ev.tensor_proto.string_val == [b"epoch **1** done"]


def test_hparams(tmp_path):
    with SummaryWriter(tmp_path) as w:
        w.add_hparams(
            {"lr": ember.tensor(0.01), "batch": np.int64(32), "opt": "adam", "nesterov": True},
            {"hparam/accuracy": ember.tensor(0.9), "hparam/loss": 0.3},
            hparam_domain_discrete={"opt": ["adam", "sgd"]},
            run_name="trial",
            global_step=4,
        )
        with pytest.raises(TypeError, match=r"hparam_domain_discrete\[opt\]"):
            w.add_hparams({"opt": "adam"}, {"m": 1.0}, hparam_domain_discrete={"opt": [1]})
        with pytest.raises(TypeError, match="should be dictionary"):
            w.add_hparams([("lr", 1)], {"m": 1.0})
        with pytest.raises(ValueError, match="hparam 'f'"):
            w.add_hparams({"f": object()}, {"m": 1.0})
    acc = _read(tmp_path / "trial")
    content = acc.PluginTagToContent("hparams")
    exp = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    infos = {i.name: i for i in exp.experiment.hparam_infos}
    assert set(infos) == {"lr", "batch", "opt", "nesterov"}
    assert [v.string_value for v in infos["opt"].domain_discrete.values] == ["adam", "sgd"]
    assert {m.name.tag for m in exp.experiment.metric_infos} == {"hparam/accuracy", "hparam/loss"}
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = start.session_start_info.hparams
    assert hp["lr"].number_value == pytest.approx(0.01) and hp["batch"].number_value == 32
    assert hp["opt"].string_value == "adam" and hp["nesterov"].bool_value is True
    (ev,) = acc.Scalars("hparam/accuracy")
    assert ev.step == 4 and ev.value == pytest.approx(0.9)


def test_flush_makes_events_visible_before_close(tmp_path):
    w = SummaryWriter(tmp_path, flush_secs=3600, max_queue=1000)
    w.add_scalar("a", 1.0, 0)
    w.add_scalars("m", {"x": 1.0}, 0)
    w.flush()
    assert [e.value for e in _read(tmp_path).Scalars("a")] == [1.0]
    assert [e.value for e in _read(tmp_path / "m_x").Scalars("m")] == [1.0]
    w.close()
    assert w.get_logdir() == str(tmp_path)


def test_default_log_dir_and_comment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    w = SummaryWriter(comment="_exp1")
    w.close()
    assert os.path.dirname(w.log_dir) == "runs" and w.log_dir.endswith("_exp1")
    assert os.path.isdir(tmp_path / w.log_dir)


def test_import_is_lazy_and_keeps_torch_out():
    code = (
        "import sys, ember, ember.utils; assert 'ember.utils.tensorboard' not in sys.modules;"
        "assert 'tensorboardX' not in sys.modules; from ember.utils.tensorboard import "
        "SummaryWriter; assert 'torch' not in sys.modules; import torch"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
