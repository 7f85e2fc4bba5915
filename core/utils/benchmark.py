"""``ember.utils.benchmark``: time a statement the way ``torch.utils.benchmark`` does.

``Timer(stmt, setup, globals=...)`` compiles the statement once and runs it in blocks; a
:class:`Measurement` keeps the per-block times and reports the median and the interquartile
range (robust to the outliers a shared machine produces) rather than a mean. ``num_threads``
sets ember's thread count for the run and restores it afterwards. :class:`Compare` prints
measurements as a table: one per ``label``, rows by ``sub_label``, columns by ``description``.
"""

from __future__ import annotations

import enum
import math
import statistics
import textwrap
import timeit
from collections.abc import Callable, Iterable
from typing import Any

from ._benchmark_fuzzer import FuzzedParameter, FuzzedTensor, Fuzzer, ParameterAlias

__all__ = [
    "Compare",
    "FuzzedParameter",
    "FuzzedTensor",
    "Fuzzer",
    "Language",
    "Measurement",
    "ParameterAlias",
    "Timer",
]


class Language(enum.Enum):
    """The language of a :class:`Timer`'s statement (torch's names; ember times Python)."""

    PYTHON = 0
    CPP = 1


class Measurement:
    """The times of ``number_per_run`` executions each, per block (``raw_times``, seconds).

    ``times`` are per execution; ``median``, ``mean`` and ``iqr`` summarize them.
    """

    def __init__(self, number_per_run: int, raw_times: list[float], task_spec: dict[str, Any]):
        self.number_per_run = number_per_run
        self.raw_times = list(raw_times)
        self.task_spec = task_spec

    @property
    def times(self) -> list[float]:
        return [t / self.number_per_run for t in self.raw_times]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.times)

    @property
    def iqr(self) -> float:
        q1, q3 = self._quartiles()
        return q3 - q1

    def _quartiles(self) -> tuple[float, float]:
        times = self.times
        if len(times) < 2:
            return times[0], times[0]
        q = statistics.quantiles(times, n=4, method="inclusive")
        return q[0], q[2]

    @property
    def title(self) -> str:
        spec = self.task_spec
        return spec["label"] or spec["stmt"].splitlines()[0]

    def __getattr__(self, name: str):  # label, sub_label, description, stmt, num_threads
        spec = self.__dict__.get("task_spec", {})
        if name in spec:
            return spec[name]
        raise AttributeError(f"'Measurement' object has no attribute {name!r}")

    def __repr__(self) -> str:
        # PyTorch's layout: title, description, setup, the time, the counts
        unit, scale = _unit(self.median)
        q1, q3 = self._quartiles()
        spec, n = self.task_spec, len(self.times)
        lines = [f"<ember.utils.benchmark.Measurement object at {hex(id(self))}>", _summary(spec)]
        lines.append(f"  {'Median: ' if n > 1 else ''}{self.median * scale:.2f} {unit}")
        if n >= 4:
            lines.append(
                f"  IQR:    {self.iqr * scale:.2f} {unit} ({q1 * scale:.2f} to {q3 * scale:.2f})"
            )
        threads = spec["num_threads"]
        lines.append(
            f"  {n} measurement{'s' * (n > 1)}, {self.number_per_run} runs "
            f"{'per measurement,' if n > 1 else ','} {threads} thread{'s' * (threads > 1)}"
        )
        return "\n".join(line for line in lines if line)


def _summary(spec: dict) -> str:
    """Title (``label: sub_label``, else the statement), description and setup lines."""
    sub = spec.get("sub_label")
    stmt = spec["stmt"] if isinstance(spec["stmt"], str) else getattr(spec["stmt"], "__name__", "")
    if spec.get("label") is not None:
        title = spec["label"] + (f": {sub}" if sub else "")
    elif "\n" not in stmt:
        title = stmt + (f": {sub}" if sub else "")
    else:
        title = f"stmt:{f' ({sub})' if sub else ''}\n" + textwrap.indent(stmt, "  ")
    setup = spec.get("setup") or "pass"
    if setup == "pass":
        setup_str = ""
    elif "\n" in setup:
        setup_str = "setup:\n" + textwrap.indent(setup, "  ")
    else:
        setup_str = f"setup: {setup}"
    parts = [title, spec.get("description") or "", setup_str]
    return "\n".join(f"{x}\n" if "\n" in x else x for x in parts if x)


class Timer:
    """Time ``stmt`` (a string of Python, or a callable) after running ``setup`` once.

    Args:
        stmt (str or callable): what to time. Default: ``"pass"``.
        setup (str): run once before timing. Default: ``"pass"``.
        timer (callable): the clock. Default: ``timeit.default_timer``.
        globals (dict, optional): the names ``stmt`` and ``setup`` see, besides ``ember`` (also
            bound to ``torch``, as in PyTorch).
        label, sub_label, description (str, optional): how :class:`Compare` groups results.
        num_threads (int): ember's thread count while timing. Default: ``1``.
        language (Language): :attr:`Language.PYTHON` only (``Language.CPP`` raises).
    """

    def __init__(
        self,
        stmt: str | Callable = "pass",
        setup: str = "pass",
        global_setup: str = "",
        timer: Callable[[], float] = timeit.default_timer,
        globals: dict | None = None,
        label: str | None = None,
        sub_label: str | None = None,
        description: str | None = None,
        env: str | None = None,
        num_threads: int = 1,
        language: Language | str = Language.PYTHON,
    ):
        if language not in (Language.PYTHON, "py", "python"):
            # torch compiles C++ statements against libtorch; ember has no C++ frontend
            raise ValueError(
                f"Timer: language={language!r} is not supported: ember times Python statements "
                "only (Language.PYTHON)"
            )
        if not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"Timer: num_threads must be a positive int, got {num_threads!r}")
        import ember

        # as torch.utils.benchmark does for ``torch``: the statement can name the library
        # without importing it; ``torch`` too, for statements ported with ``import ember as torch``
        namespace = {"torch": ember, "ember": ember, **(globals or {})}
        if global_setup:
            exec(global_setup, namespace)  # noqa: S102 - the caller's own setup code
        # torch dedents both: setup is usually an indented triple-quoted block
        if isinstance(stmt, str):
            stmt = textwrap.dedent(stmt).strip() or "pass"
        if isinstance(setup, str):
            setup = textwrap.dedent(setup).strip() or "pass"
        self._timer = timeit.Timer(stmt=stmt, setup=setup, timer=timer, globals=namespace)
        text = stmt if isinstance(stmt, str) else getattr(stmt, "__name__", repr(stmt))
        self._spec = {
            "stmt": textwrap.dedent(text).strip(),
            "setup": setup,
            "label": label,
            "sub_label": sub_label,
            "description": description,
            "env": env,
            "num_threads": num_threads,
        }

    def _run(self, number: int) -> float:
        import ember

        before = ember.get_num_threads()
        ember.set_num_threads(self._spec["num_threads"])
        try:
            return self._timer.timeit(number)
        finally:
            ember.set_num_threads(before)

    def timeit(self, number: int = 1000000) -> Measurement:
        """Run ``stmt`` ``number`` times (after one warm-up run): one block."""
        self._run(1)
        return Measurement(number, [self._run(number)], self._spec)

    def _block_size(self, min_block: float) -> int:
        """The smallest power of ten of executions that takes at least ``min_block`` s."""
        number = 1
        while self._run(number) < min_block and number < 10**9:
            number *= 10
        return number

    def blocked_autorange(
        self, callback: Callable[[int, float], None] | None = None, min_run_time: float = 0.2
    ) -> Measurement:
        """Blocks of a size that takes >= 1 ms each, until ``min_run_time`` s have been spent
        (``callback(number, time)`` after each block)."""
        number = self._block_size(1e-3)
        times, total = [], 0.0
        while total < min_run_time or not times:
            t = self._run(number)
            times.append(t)
            total += t
            if callback is not None:
                callback(number, t)
        return Measurement(number, times, self._spec)

    def collect_callgrind(self, *args, **kwargs):
        """Not available: torch counts instructions with Valgrind's Callgrind over libtorch."""
        raise NotImplementedError(
            "Timer.collect_callgrind: ember has no Callgrind integration; time the statement "
            "with blocked_autorange() or adaptive_autorange() instead"
        )

    def adaptive_autorange(
        self,
        threshold: float = 0.1,
        *,
        min_run_time: float = 0.01,
        max_run_time: float = 10.0,
        callback: Callable[[int, float], None] | None = None,
    ) -> Measurement:
        """Blocks until the IQR is under ``threshold`` of the median (at least
        ``min_run_time`` s and 3 blocks, at most ``max_run_time`` s)."""
        number = self._block_size(1e-3)
        times, total = [], 0.0
        while True:
            t = self._run(number)
            times.append(t)
            total += t
            if callback is not None:
                callback(number, t)
            m = Measurement(number, times, self._spec)
            if total >= min_run_time and len(times) >= 3 and m.iqr / m.median < threshold:
                return m
            if total >= max_run_time:
                return m


class Compare:
    """A table of measurements: one per ``label``, a row per ``sub_label`` (or statement), a
    column per ``description``; entries are medians in one unit per table."""

    def __init__(self, results: Iterable[Measurement]):
        self._results = list(results)
        self._figures: int | None = None

    def trim_significant_figures(self) -> None:
        """Print 3 significant figures."""
        self._figures = 3

    def colorize(self, rowwise: bool = False) -> None:
        """Accepted for PyTorch compatibility; the table is plain text."""

    def extend_results(self, results: Iterable[Measurement]) -> None:
        self._results.extend(results)

    def __str__(self) -> str:
        tables = {}
        for m in self._results:
            tables.setdefault(m.task_spec["label"] or "", []).append(m)
        return "\n\n".join(self._table(label, ms) for label, ms in tables.items())

    def print(self) -> None:
        print(str(self))

    def _table(self, label: str, ms: list[Measurement]) -> str:
        # PyTorch's layout: a section per thread count, a row per (env, sub_label or stmt),
        # a column per description, medians in one unit per table
        def row_of(m):
            name = m.task_spec["sub_label"] or m.task_spec["stmt"] or "[Unknown]"
            env = m.task_spec.get("env")
            return (env, name)

        cols = list(dict.fromkeys(m.task_spec["description"] or "" for m in ms))
        threads = sorted({m.task_spec["num_threads"] for m in ms})
        envs = any(m.task_spec.get("env") for m in ms)
        unit, scale = _unit(min(m.median for m in ms))
        fmt = _three_figures if self._figures else (lambda v: f"{v:.1f}")

        env_width = max((len(m.task_spec.get("env") or "") + 2 for m in ms), default=0)

        def name(row):
            env, text = row
            return (f"({env})".ljust(env_width) + "  " if envs else "") + text

        sections = []
        for t in threads:
            part = [m for m in ms if m.task_spec["num_threads"] == t]
            cell = {(row_of(m), m.task_spec["description"] or ""): m for m in part}
            rows = list(dict.fromkeys(row_of(m) for m in part))
            body = [
                [name(r)] + [fmt(cell[r, c].median * scale) if (r, c) in cell else "" for c in cols]
                for r in rows
            ]
            sections.append((t, body))
        lines_all = [b for _, body in sections for b in body] + [[""] + cols]
        widths = [max(len(line[i]) for line in lines_all) for i in range(len(cols) + 1)]
        indent = "      " if not envs else "  "

        def fmt_line(line, pad=indent):
            cells = [v.rjust(w) for v, w in zip(line[1:], widths[1:])]
            return pad + line[0].ljust(widths[0]) + "  |  " + "  |  ".join(cells)

        header = fmt_line([""] + cols)
        width = len(header)
        text = [f"[{f' {label} ':-^{width - 2}}]", header]
        for t, body in sections:
            head = f"{t} threads: "  # PyTorch's spelling, 1 included
            text.append(head + "-" * max(width - len(head), 0))
            text.extend(fmt_line(line) for line in body)
        name_of_unit = {"s": "seconds", "ms": "milliseconds", "us": "microseconds"}
        text += ["", f"Times are in {name_of_unit.get(unit, 'nanoseconds')} ({unit}).", ""]
        return "\n".join(text)


def _three_figures(v: float) -> str:
    """``v`` to 3 significant figures, without exponent notation (14600, 35.4, 0.123)."""
    if v == 0 or not math.isfinite(v):
        return f"{v:.1f}"
    digits = 2 - math.floor(math.log10(abs(v)))
    return f"{round(v, digits):.{max(digits, 0)}f}"


def _unit(seconds: float) -> tuple[str, float]:
    """The unit (and its scale from seconds) that shows ``seconds`` as 1-999."""
    for unit, scale in (("s", 1.0), ("ms", 1e3), ("us", 1e6)):
        if seconds * scale >= 1:
            return unit, scale
    return "ns", 1e9
