"""``nn.factory_kwargs``: validate and canonicalise ``device`` / ``dtype`` / ``memory_format``
keyword arguments of a module's ``__init__`` for the tensor factories."""

from __future__ import annotations

from typing import Any


def factory_kwargs(kwargs: dict[str, Any] | None) -> dict[str, Any]:
    r"""The factory keyword arguments in ``kwargs``, with those of an explicit
    ``factory_kwargs`` entry merged in (it names values that clash with the caller's own
    arguments, e.g. ``f(dtype1, factory_kwargs={"dtype": dtype2})``).

    Raises ``TypeError`` for any other key, or a key given both ways."""
    if kwargs is None:
        return {}
    simple_keys = {"device", "dtype", "memory_format"}
    expected_keys = simple_keys | {"factory_kwargs"}
    if not kwargs.keys() <= expected_keys:
        raise TypeError(f"unexpected kwargs {kwargs.keys() - expected_keys}")
    r = dict(kwargs.get("factory_kwargs", {}))
    for k in simple_keys:
        if k in kwargs:
            if k in r:
                raise TypeError(f"{k} specified twice, in **kwargs and in factory_kwargs")
            r[k] = kwargs[k]
    return r
