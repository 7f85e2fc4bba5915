"""``ember.utils.tensorboard.SummaryWriter``: PyTorch's TensorBoard writer for ember values.

Event files are written by tensorboardX (the writer library PyTorch's own writer grew from), so
TensorBoard reads them as usual (``tensorboard --logdir runs``). Every method accepts ember
tensors (CPU or CUDA, with or without grad), NumPy arrays and Python numbers.

This module is deliberately not imported by ``ember.utils`` (tensorboardX takes a while to
import): ``from ember.utils.tensorboard import SummaryWriter``.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import sys
import time
from typing import Any

import numpy as np

from ..tensor import Tensor
from ._tensorboard_extra import _ExtraMixin


def _import_tensorboardx():
    # tensorboardX imports torch whenever it is installed (only to recognise torch tensors,
    # which ember never hands it). That costs ~2 s and pulls torch into ember processes, so
    # unless the user already imported torch, hide it for the duration of this one import.
    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # makes `import torch` raise ImportError
    try:
        import tensorboardX
        from tensorboardX import summary
        from tensorboardX.writer import FileWriter
    finally:
        if hide and sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    return tensorboardX, summary, FileWriter


tensorboardX, _summary, _FileWriter = _import_tensorboardx()


@contextlib.contextmanager
def _raw_tags():
    """Keep tags as given: tensorboardX turns characters outside ``[-/\\w.]`` into ``_``
    ("Training loss" -> "Training_loss"), torch's writer does not, and TensorBoard reads any
    tag. Scoped to ember's own calls so tensorboardX used directly keeps its behaviour."""
    clean = _summary._clean_tag
    _summary._clean_tag = lambda name: name
    try:
        yield
    finally:
        _summary._clean_tag = clean


__all__ = ["SummaryWriter"]


def _to_numpy(x: Any) -> np.ndarray:
    """A NumPy array for an ember tensor, array or number (half types widened to float32)."""
    if isinstance(x, Tensor):
        x = x._data if type(x._data) is np.ndarray else x._data.get()
    arr = np.asarray(x)
    if arr.dtype.name in ("bfloat16", "float16"):
        arr = arr.astype(np.float32)
    return arr


def _scalar(x: Any, what: str) -> float:
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        return float(x)
    arr = _to_numpy(x)
    if arr.size != 1:
        raise ValueError(
            f"{what}: expected a single number, got a value of shape {tuple(arr.shape)}"
        )
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{what}: expected a real number, got dtype {arr.dtype}")
    return float(arr.reshape(()))


def _step(step: Any) -> int | None:
    return None if step is None else int(_scalar(step, "global_step"))


def _hparam_value(key: str, v: Any):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, numbers.Integral):  # NumPy numbers become Python ones for tensorboardX
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    if isinstance(v, (Tensor, np.ndarray, np.generic)):
        return _scalar(v, f"hparam {key!r}")
    raise ValueError(
        f"hparam {key!r}: value should be one of int, float, str, bool, or "
        f"ember.Tensor, got {type(v).__name__}"
    )


def _drain(event_writer) -> None:
    """Wait until tensorboardX's writer thread has written every queued event.

    tensorboardX's ``flush`` only flushes the file; events still in its queue are written by a
    background thread later. Stopping that thread drains the queue in order (it writes all
    events queued before its stop signal); a fresh thread then carries on with the same file.
    """
    worker = getattr(event_writer, "_worker", None)
    if worker is None or getattr(event_writer, "_closed", True) or not worker.is_alive():
        return
    worker.stop()
    event_writer._worker = type(worker)(
        event_writer._event_queue, event_writer._ev_writer, event_writer._flush_secs
    )
    event_writer._worker.start()


class SummaryWriter(_ExtraMixin):
    r"""Writes TensorBoard event files, as ``torch.utils.tensorboard.SummaryWriter``.

    Args:
        log_dir (str, optional): directory for the event files. Default:
            ``runs/CURRENT_DATETIME_HOSTNAME`` (+ ``comment``).
        comment (str): suffix of the default ``log_dir``; ignored if ``log_dir`` is given.
        purge_step (int, optional): hide events at or after this step left by a crashed run
            that is being resumed into the same ``log_dir``.
        max_queue (int): pending events before the writer flushes. Default: 10.
        flush_secs (int): seconds between automatic flushes. Default: 120.
        filename_suffix (str): suffix of the event file names.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike | None = None,
        comment: str = "",
        purge_step: int | None = None,
        max_queue: int = 10,
        flush_secs: int = 120,
        filename_suffix: str = "",
    ):
        self._writer = tensorboardX.SummaryWriter(
            logdir=None if log_dir is None else os.fspath(log_dir),
            comment=comment,
            purge_step=purge_step,
            max_queue=max_queue,
            flush_secs=flush_secs,
            filename_suffix=filename_suffix,
        )
        self.log_dir = self._writer.logdir
        self._settings = {
            "max_queue": max_queue,
            "flush_secs": flush_secs,
            "filename_suffix": filename_suffix,
        }
        self._sub_writers: dict[str, Any] = {}  # add_scalars' runs, by directory

    def get_logdir(self) -> str:
        """The directory event files are written to."""
        return self.log_dir

    def _get_file_writer(self):
        """The event-file writer of ``log_dir`` (torch's private accessor; Lightning's
        TensorBoardLogger writes its hparams summaries through it)."""
        return self._writer._get_file_writer()

    @property
    def file_writer(self):
        return self._writer._get_file_writer()

    def add_scalar(
        self, tag: str, scalar_value, global_step: int | None = None, walltime: float | None = None
    ) -> None:
        """Log one number (a Python/NumPy number or a one-element tensor) under ``tag``."""
        value = _scalar(scalar_value, f"add_scalar({tag!r})")
        with _raw_tags():
            self._writer.add_scalar(tag, value, _step(global_step), walltime)

    def add_scalars(
        self,
        main_tag: str,
        tag_scalar_dict: dict,
        global_step: int | None = None,
        walltime: float | None = None,
    ) -> None:
        """Log several numbers in one chart; each goes to its own run ``main_tag_<tag>``."""
        if not isinstance(tag_scalar_dict, dict):
            raise TypeError(
                f"add_scalars({main_tag!r}): tag_scalar_dict must be a dict, got "
                f"{type(tag_scalar_dict).__name__}"
            )
        values = {
            k: _scalar(v, f"add_scalars({main_tag!r})[{k!r}]") for k, v in tag_scalar_dict.items()
        }
        step = _step(global_step)
        for tag, value in values.items():
            # PyTorch's layout: one run per tag at log_dir/<main_tag with / as _>_<tag>
            run = os.path.join(self.log_dir, main_tag.replace("/", "_") + "_" + tag)
            fw = self._sub_writers.get(run)
            if fw is None:
                fw = self._sub_writers[run] = _FileWriter(run, **self._settings)
            with _raw_tags():
                fw.add_summary(_summary.scalar(main_tag, value), step, walltime)

    def add_histogram(
        self,
        tag: str,
        values,
        global_step: int | None = None,
        bins: str | int | Any = "tensorflow",
        walltime: float | None = None,
        max_bins: int | None = None,
    ) -> None:
        """Log a histogram of ``values`` (any shape); ``bins`` as in ``numpy.histogram`` or
        ``"tensorflow"`` (exponential buckets, the default)."""
        arr = _to_numpy(values).astype(np.float64, copy=False)
        if arr.size == 0:
            raise ValueError(f"add_histogram({tag!r}): the input has no element")
        if isinstance(bins, Tensor):
            bins = _to_numpy(bins)
        with _raw_tags():
            self._writer.add_histogram(tag, arr, _step(global_step), bins, walltime, max_bins)

    def add_image(
        self,
        tag: str,
        img_tensor,
        global_step: int | None = None,
        walltime: float | None = None,
        dataformats: str = "CHW",
    ) -> None:
        """Log an image: float values in [0, 1] or uint8 in [0, 255], laid out as
        ``dataformats`` (``"CHW"``, ``"HWC"``, ``"HW"``) with 1, 3 or 4 channels."""
        arr = self._image_array(tag, img_tensor, dataformats)
        with _raw_tags():
            self._writer.add_image(tag, arr, _step(global_step), walltime, dataformats)

    def add_images(
        self,
        tag: str,
        img_tensor,
        global_step: int | None = None,
        walltime: float | None = None,
        dataformats: str = "NCHW",
    ) -> None:
        """Log a batch of images as one grid (``dataformats`` ``"NCHW"``, ``"NHWC"``, ...)."""
        arr = self._image_array(tag, img_tensor, dataformats)
        with _raw_tags():
            self._writer.add_images(tag, arr, _step(global_step), walltime, dataformats)

    @staticmethod
    def _image_array(tag: str, img, dataformats: str) -> np.ndarray:
        arr = _to_numpy(img)
        if arr.ndim != len(dataformats):
            raise ValueError(
                f"add_image({tag!r}): dataformats {dataformats!r} needs "
                f"{len(dataformats)} dims, got shape {tuple(arr.shape)}"
            )
        if arr.dtype == np.bool_:
            arr = arr.astype(np.float32)
        return arr

    def add_text(
        self,
        tag: str,
        text_string: str,
        global_step: int | None = None,
        walltime: float | None = None,
    ) -> None:
        """Log text (rendered as Markdown by TensorBoard)."""
        if not isinstance(text_string, str):
            raise TypeError(
                f"add_text({tag!r}): text_string must be a str, got {type(text_string).__name__}"
            )
        self._writer.add_text(tag, text_string, _step(global_step), walltime)

    def add_hparams(
        self,
        hparam_dict: dict,
        metric_dict: dict,
        hparam_domain_discrete: dict | None = None,
        run_name: str | None = None,
        global_step: int | None = None,
    ) -> None:
        """Log hyperparameters and their metrics for TensorBoard's HParams tab.

        As in PyTorch, the session goes to a sub-run ``log_dir/run_name`` (default: the current
        time) holding the hparams summaries and one scalar per metric.

        Args:
            hparam_dict: name -> bool, str, int, float, None or one-element tensor.
            metric_dict: name -> number; the names should not clash with other scalar tags.
            hparam_domain_discrete: name -> list of all values that hparam can take.
            run_name: name of the sub-run.
            global_step: step of the metric scalars.
        """
        if type(hparam_dict) is not dict or type(metric_dict) is not dict:
            raise TypeError("hparam_dict and metric_dict should be dictionary.")
        hparams = {k: _hparam_value(k, v) for k, v in hparam_dict.items()}
        metrics = {k: _scalar(v, f"add_hparams metric {k!r}") for k, v in metric_dict.items()}
        exp, ssi, sei = _summary.hparams(hparams, metrics)
        if hparam_domain_discrete:
            _set_discrete_domains(exp, hparams, hparam_domain_discrete)
        step = _step(global_step)
        logdir = os.path.join(self.log_dir, run_name or str(time.time()))
        with tensorboardX.SummaryWriter(logdir=logdir, **self._settings) as w_hp:
            for s in (exp, ssi, sei):
                w_hp.file_writer.add_summary(s, step)
            with _raw_tags():
                for k, v in metrics.items():
                    w_hp.add_scalar(k, v, step)

    def flush(self) -> None:
        """Write pending events to disk; they are readable when this returns."""
        writers = list((self._writer.all_writers or {}).values()) + list(self._sub_writers.values())
        for fw in writers:
            _drain(fw.event_writer)
            fw.flush()

    def close(self) -> None:
        """Flush and close the event files (the writer cannot be used afterwards)."""
        self._writer.close()
        for fw in self._sub_writers.values():
            fw.close()
        self._sub_writers.clear()

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _set_discrete_domains(exp, hparams: dict, domains: dict) -> None:
    """Add PyTorch's ``hparam_domain_discrete`` to the experiment summary tensorboardX built."""
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    if not isinstance(domains, dict):
        raise TypeError("parameter: hparam_domain_discrete should be a dictionary, nothing else")
    for k, values in domains.items():
        if (
            k not in hparams
            or not isinstance(values, list)
            or not all(isinstance(d, type(hparams[k])) for d in values)
        ):
            raise TypeError(
                f"parameter: hparam_domain_discrete[{k}] should be a list of same "
                f"type as hparam_dict[{k}]."
            )
    value = exp.value[0]
    data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
    for info in data.experiment.hparam_infos:
        if info.name in domains:
            info.domain_discrete.extend(domains[info.name])
    value.metadata.plugin_data.content = data.SerializeToString()


def _hparams_summary(hparam_dict=None, metric_dict=None, hparam_domain_discrete=None):
    r"""``torch.utils.tensorboard.summary.hparams``: the experiment, session-start and
    session-end summaries of one hyperparameter run (write them with a file writer)."""
    if not isinstance(hparam_dict, dict) or not isinstance(metric_dict, dict):
        raise TypeError("hparams(): hparam_dict and metric_dict should be dictionaries.")
    hparams = {k: _hparam_value(k, v) for k, v in hparam_dict.items()}
    metrics = {k: _scalar(v, f"hparams metric {k!r}") for k, v in metric_dict.items()}
    exp, ssi, sei = _summary.hparams(hparams, metrics)
    if hparam_domain_discrete:
        _set_discrete_domains(exp, hparams, hparam_domain_discrete)
    return exp, ssi, sei


def _register_submodules() -> None:
    # torch.utils.tensorboard is a package: programs import ``.summary`` (``hparams``,
    # ``scalar``, ...) and ``.writer`` (``SummaryWriter``, ``FileWriter``) by path. This module
    # is one file, so the two are registered; summary functions other than hparams are
    # tensorboardX's own (the library torch's writer grew from, same signatures).
    import types

    summary = types.ModuleType(f"{__name__}.summary")
    summary.hparams = _hparams_summary

    def _summary_attr(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(_summary, name)

    summary.__getattr__ = _summary_attr
    writer = types.ModuleType(f"{__name__}.writer")
    writer.SummaryWriter = SummaryWriter
    writer.FileWriter = _FileWriter
    for mod in (summary, writer):
        sys.modules[mod.__name__] = mod
        globals()[mod.__name__.rsplit(".", 1)[1]] = mod


_register_submodules()
# A package, as torch's is: with a ``__path__`` the import system resolves
# ``torch.utils.tensorboard.writer`` through an alias of this module (sbi imports it so) instead
# of refusing "is not a package"; the submodules themselves come from sys.modules above.
__path__: list[str] = []
