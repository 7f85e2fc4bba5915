"""Progress bars for training loops (on tqdm), used by the examples and the Trainer.

``progress(loader, desc="epoch 1")`` wraps an iterable in a bar that shows live metrics
(``bar.set_metrics(loss=loss)`` accepts tensors) and hides itself where a bar would only add
noise: when the output is not a terminal (logs, CI, Ray workers), on distributed ranks other
than 0 (``RANK`` set and not ``0``), or when ``EMBER_PROGRESS=0``. ``EMBER_PROGRESS=1`` forces
bars on (e.g. in a notebook, whose output is no terminal, or in a captured log).
"""

from __future__ import annotations

import numbers
import os
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

import numpy as np
from tqdm import tqdm

from ..tensor import Tensor

__all__ = ["Progress", "progress", "progress_enabled"]

_OFF = ("0", "false", "no", "off")
_ON = ("1", "true", "yes", "on")


def progress_enabled(file: IO[str] | None = None) -> bool:
    """Whether a bar writing to ``file`` (default ``sys.stderr``) should be shown by default."""
    forced = os.environ.get("EMBER_PROGRESS", "").strip().lower()
    if forced in _OFF:
        return False
    if forced in _ON:
        return True
    if os.environ.get("RANK", "0") != "0":
        return False
    file = sys.stderr if file is None else file
    isatty = getattr(file, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed or detached stream
        return False


def _value(v: Any):
    """A Python number for one-element tensors and arrays; anything else unchanged."""
    if isinstance(v, Tensor):
        return v.item() if v.numel() == 1 else v
    if isinstance(v, (np.ndarray, np.generic)) and v.size == 1:
        return v.item()
    return v


def _display(value: Any) -> str:
    value = _value(value)
    if isinstance(value, numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real):
        return f"{value:.4g}"
    return str(value)


class Progress:
    r"""A progress bar over ``iterable`` (or a manual one with ``total`` and ``update``).

    Args:
        iterable: what to iterate over; ``None`` for a manual bar.
        desc: text before the bar.
        total: expected number of steps (default: ``len(iterable)`` when it has one).
        disable: ``True`` hides the bar, ``False`` shows it, ``None`` (default) decides with
            :func:`progress_enabled`.
        leave: keep the finished bar on screen.
        unit: name of one step.
        file: stream to draw on (default ``sys.stderr``).
        **tqdm_kwargs: passed on to ``tqdm`` (``position``, ``ncols``, ``mininterval`` ...).

    Example::

        for epoch in range(epochs):
            with progress(loader, desc=f"epoch {epoch}") as bar:
                for x, y in bar:
                    loss = step(x, y)
                    bar.set_metrics(loss=loss, lr=sched.get_last_lr()[0])
    """

    def __init__(
        self,
        iterable: Iterable | None = None,
        desc: str | None = None,
        total: int | None = None,
        disable: bool | None = None,
        *,
        leave: bool = True,
        unit: str = "it",
        file: IO[str] | None = None,
        **tqdm_kwargs,
    ):
        if disable is None:
            disable = not progress_enabled(file)
        self.disabled = bool(disable)
        self._metrics: dict[str, Any] = {}
        self._file = file
        self._bar = tqdm(
            iterable,
            desc=desc,
            total=total,
            disable=self.disabled,
            leave=leave,
            unit=unit,
            file=file,
            dynamic_ncols=True,
            **tqdm_kwargs,
        )
        if self.disabled and total is None and iterable is not None:
            # tqdm skips this when disabled; keep ``total`` meaningful either way
            self._bar.total = len(iterable) if hasattr(iterable, "__len__") else None

    def __iter__(self) -> Iterator:
        if not self.disabled:
            return iter(self._bar)
        return self._counting(self._bar.iterable)

    def _counting(self, iterable: Iterable) -> Iterator:
        # a disabled tqdm does not count; keep ``n`` right for callers that read it
        bar = self._bar
        for item in iterable:
            yield item
            bar.n += 1

    def __len__(self) -> int:
        if self._bar.total is None:
            raise TypeError("this progress bar has no length (pass total=...)")
        return int(self._bar.total)

    @property
    def n(self) -> int:
        """Steps done so far (shown or hidden)."""
        return self._bar.n

    @property
    def total(self) -> int | None:
        return self._bar.total

    @property
    def metrics(self) -> dict[str, Any]:
        """The last metrics given to :meth:`set_metrics`, as Python numbers."""
        return {k: _value(v) for k, v in self._metrics.items()}

    def update(self, n: int = 1, **metrics) -> None:
        """Advance a manual bar by ``n`` steps, optionally setting metrics at the same time."""
        if metrics:
            self.set_metrics(**metrics)
        if self.disabled:
            self._bar.n += n
        else:
            self._bar.update(n)

    def set_metrics(self, **metrics) -> None:
        """Show ``name=value`` pairs after the bar; values may be tensors, arrays or numbers.

        Tensors are detached and only turned into numbers when shown, so a hidden bar costs no
        device synchronisation.
        """
        for k, v in metrics.items():
            self._metrics[k] = v.detach() if hasattr(v, "detach") else v
        if not self.disabled:
            self._bar.set_postfix_str(
                ", ".join(f"{k}={_display(v)}" for k, v in self._metrics.items()), refresh=False
            )

    set_postfix = set_metrics  # tqdm's name

    def set_description(self, desc: str) -> None:
        self._bar.set_description_str(desc, refresh=False)

    def write(self, message: str) -> None:
        """Print a line without breaking the bar (printed plainly when the bar is hidden)."""
        if self.disabled:
            print(message, file=self._file if self._file is not None else sys.stdout)
        else:
            self._bar.write(message, file=self._file)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "hidden" if self.disabled else "shown"
        return f"Progress(n={self.n}, total={self.total}, {state}, metrics={self.metrics})"


def progress(
    iterable: Iterable | None = None,
    desc: str | None = None,
    total: int | None = None,
    disable: bool | None = None,
    **kwargs,
) -> Progress:
    """A :class:`Progress` bar over ``iterable``; see there for the arguments."""
    return Progress(iterable, desc=desc, total=total, disable=disable, **kwargs)
