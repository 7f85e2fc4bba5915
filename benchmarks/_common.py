"""Shared benchmark helpers: pin threads BEFORE numpy/torch load, time with repeats."""

from __future__ import annotations

import os
import time


def pin_threads(n: int) -> None:
    """Pin BLAS/OpenMP pools to ``n`` threads; call before importing numpy or torch."""
    for var in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
        "NUMEXPR_NUM_THREADS",
    ):
        os.environ[var] = str(n)


def best_of(fn, *, repeat: int = 5, number: int | None = None, min_time: float = 0.2) -> float:
    """Seconds per call: the best of ``repeat`` rounds of ``number`` calls (auto-calibrated)."""
    if number is None:
        number = 1
        while True:
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            if time.perf_counter() - t0 >= min_time / 5 or number >= 1 << 20:
                break
            number *= 2
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def table(rows: list[list], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join([line, sep, *body])


# --- argument validation: bad values end in one argparse line naming the valid ones -----------


def _norm(name: str) -> str:
    # torch and ember spell ops differently (all_reduce / allreduce): compare without separators
    return name.strip().lower().replace("_", "").replace("-", "")


def choice_list(choices, aliases: dict | None = None):
    """An argparse ``type`` for a comma-separated list of ``choices``.

    Matching ignores case, ``_`` and ``-`` (so torch's ``all_reduce`` is ``allreduce``);
    ``aliases`` maps further spellings to a choice, and ``all`` selects every choice. Returns
    the canonical names, in the order given, without repeats.
    """
    import argparse

    choices = tuple(choices)
    table_ = {_norm(c): c for c in choices}
    table_.update({_norm(a): c for a, c in (aliases or {}).items()})

    def parse(text: str) -> list:
        out = []
        for item in text.split(","):
            if _norm(item) == "all":
                names = list(choices)
            elif _norm(item) in table_:
                names = [table_[_norm(item)]]
            else:
                raise argparse.ArgumentTypeError(
                    f"invalid choice: {item.strip()!r} (choose from {', '.join(choices)}; "
                    "comma-separated, or all)"
                )
            out += [n for n in names if n not in out]
        return out

    parse.__name__ = "choice list"
    return parse


def int_at_least(low: int):
    """An argparse ``type``: an integer >= ``low``."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite float > 0."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


positive_int = int_at_least(1)
nonneg_int = int_at_least(0)
