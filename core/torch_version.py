"""``ember.torch_version``: ``TorchVersion``, a version string that compares as a version
(``ember.__version__ >= "2.0"``, ``>= (2, 0)``)."""

from __future__ import annotations

import re

__all__ = ["TorchVersion"]


def _parts(v) -> tuple:
    if isinstance(v, (tuple, list)):
        return tuple(int(x) for x in v)
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", str(v))
    if m is None:
        raise ValueError(f"Invalid version: '{v}'")
    nums = tuple(int(x) for x in m.group(1).split("."))
    rest = str(v)[m.end() :]
    # a pre-release (1.0a1, 1.0rc1, 1.0.dev0) sorts before its release; +local tags are ignored
    pre = -1 if re.match(r"[.-]?(a|b|rc|dev|alpha|beta)", rest) else 0
    return nums, pre


def _cmp_key(a, b):
    (na, pa), (nb, pb) = _parts(a), _parts(b)
    width = max(len(na), len(nb))
    na, nb = na + (0,) * (width - len(na)), nb + (0,) * (width - len(nb))
    return (na, pa), (nb, pb)


class TorchVersion(str):
    """A ``str`` whose comparisons follow version order."""

    def _pair(self, other):
        if isinstance(other, (tuple, list)):
            other = ".".join(str(x) for x in other)
        return _cmp_key(self, other)

    def __lt__(self, other):
        a, b = self._pair(other)
        return a < b

    def __le__(self, other):
        a, b = self._pair(other)
        return a <= b

    def __gt__(self, other):
        a, b = self._pair(other)
        return a > b

    def __ge__(self, other):
        a, b = self._pair(other)
        return a >= b

    def __eq__(self, other):
        try:
            a, b = self._pair(other)
        except ValueError:
            return str.__eq__(self, other)
        return a == b

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = str.__hash__
