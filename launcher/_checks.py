"""Small value checkers shared by the config validators; each problem is ``(key, reason)``."""

from __future__ import annotations

import difflib
import shlex


class ConfigError(ValueError):
    """A cluster config is invalid; the message names the file, every bad key and why."""

    def __init__(self, path: str, problems: list[tuple[str, str]]):
        self.path = path
        self.problems = list(problems)
        if len(self.problems) == 1:
            key, reason = self.problems[0]
            msg = f"{path}: {key}: {reason}" if key else f"{path}: {reason}"
        else:
            lines = [f"  {key}: {reason}" if key else f"  {reason}" for key, reason in problems]
            msg = f"{path}: {len(problems)} problems:\n" + "\n".join(lines)
        super().__init__(msg)


def did_you_mean(name, options) -> str:
    match = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _got(v) -> str:
    return f"got {v!r} ({type(v).__name__})"


def check_type(value, kind: str, where: str, errors: list) -> bool:
    """Check ``value`` against a kind name; append a problem and return False if it fails."""
    ok = True
    if kind == "str":
        ok = isinstance(value, str)
        expected = "a string"
    elif kind == "bool":
        ok = isinstance(value, bool)
        expected = "true or false"
    elif kind == "int":
        ok = _is_int(value)
        expected = "an integer"
    elif kind == "number":
        ok = _is_number(value)
        expected = "a number"
    elif kind == "map":
        ok = isinstance(value, dict)
        expected = "a mapping"
    elif kind == "list[str]":
        ok = isinstance(value, list) and all(isinstance(x, str) for x in value)
        expected = "a list of strings"
    elif kind == "map[str]":
        ok = isinstance(value, dict) and all(isinstance(x, str) for x in value.values())
        expected = "a mapping of strings"
    elif kind == "map[number]":
        ok = isinstance(value, dict) and all(_is_number(x) and x >= 0 for x in value.values())
        expected = "a mapping of numbers >= 0"
    elif kind == "map[scalar]":
        ok = isinstance(value, dict) and all(
            isinstance(x, (str, int, float, bool)) for x in value.values()
        )
        expected = "a mapping of strings or numbers"
    else:
        raise ValueError(f"unknown kind {kind!r}")
    if not ok:
        errors.append((where, f"expected {expected}, {_got(value)}"))
    return ok


def check_section(section: dict, spec: dict, where: str, errors: list) -> dict:
    """Check a mapping against ``{key: (kind, choices, default)}``; return it with defaults."""
    if not isinstance(section, dict):
        errors.append((where, f"expected a mapping, {_got(section)}"))
        section = {}
    out = {}
    for key in section:
        if key not in spec:
            errors.append((f"{where}.{key}", "unknown key" + did_you_mean(key, spec)))
    for key, (kind, choices, default) in spec.items():
        value = section.get(key, default)
        out[key] = value
        if key not in section or value is None:
            continue
        at = f"{where}.{key}"
        if kind == "choice":
            if value not in choices:
                errors.append(
                    (
                        at,
                        f"expected one of {', '.join(map(str, choices))}, "
                        f"{_got(value)}" + did_you_mean(value, choices),
                    )
                )
        elif kind in ("int>=1", "int>=0"):
            low = int(kind[-1])
            if not _is_int(value) or value < low:
                errors.append((at, f"expected an integer >= {low}, {_got(value)}"))
        elif kind == "number>=0":
            if not _is_number(value) or value < 0:
                errors.append((at, f"expected a number >= 0, {_got(value)}"))
        elif kind == "port":
            if not _is_int(value) or not 1 <= value <= 65535:
                errors.append((at, f"expected a port number 1-65535, {_got(value)}"))
        elif kind == "abspath":
            if not isinstance(value, str) or not value.startswith("/"):
                errors.append((at, f"expected an absolute path, {_got(value)}"))
        elif kind == "argv":
            if isinstance(value, str):
                out[key] = shlex.split(value)
            elif not (isinstance(value, list) and all(isinstance(x, str) for x in value)):
                errors.append(
                    (at, f"expected a command (string or list of strings), {_got(value)}")
                )
        elif kind == "map[scalar]":
            if check_type(value, kind, at, errors):
                out[key] = {str(k): str(v) for k, v in value.items()}
        else:
            check_type(value, kind, at, errors)
    return out
