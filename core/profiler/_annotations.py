"""The ranges PyTorch's profiler labels by itself, which TensorBoard's profiler plugin reads to
split each step's time (DataLoader, optimizer): ``enumerate(DataLoader)#<Iter>.__next__``,
``Optimizer.step#<Opt>.step`` and ``Optimizer.zero_grad#<Opt>.zero_grad``. Swapped in while a
profiler records (as the op hooks of ``_record.py``), so nothing pays for them otherwise."""

from __future__ import annotations

import functools

_saved: dict = {}
_handles: list = []
_open: dict = {}


def _ranged(fn, label):
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        from . import _record

        token = _record.push_range(label(self))
        try:
            return fn(self, *args, **kwargs)
        finally:
            _record.pop_range(token, label(self))

    return wrapper


def _step_pre(opt, args, kwargs) -> None:
    from . import _record

    _open[id(opt)] = _record.push_range("Optimizer.step")


def _step_post(opt, args, kwargs) -> None:
    from . import _record

    name = type(opt).__name__
    _record.pop_range(_open.pop(id(opt), None), f"Optimizer.step#{name}.step")


def install(on: bool) -> None:
    """Swap the labelled entry points in (``on``) or restore them."""
    from ..optim import optimizer as _optim
    from ..utils.data import dataloader as _dl

    if on and not _saved:
        it, opt = _dl._BaseDataLoaderIter, _optim.Optimizer
        _saved["next"], _saved["zero_grad"] = it.__dict__["__next__"], opt.__dict__["zero_grad"]
        it.__next__ = _ranged(
            _saved["next"], lambda s: f"enumerate(DataLoader)#{type(s).__name__}.__next__"
        )
        opt.zero_grad = _ranged(
            _saved["zero_grad"], lambda s: f"Optimizer.zero_grad#{type(s).__name__}.zero_grad"
        )
        _handles.append(_optim.register_optimizer_step_pre_hook(_step_pre))
        _handles.append(_optim.register_optimizer_step_post_hook(_step_post))
    elif not on and _saved:
        _dl._BaseDataLoaderIter.__next__ = _saved.pop("next")
        _optim.Optimizer.zero_grad = _saved.pop("zero_grad")
        while _handles:
            _handles.pop().remove()
        _open.clear()
