"""The store interface and the in-process stores, PyTorch's names: ``Store`` (the API every
store implements), ``HashStore`` (threads of one process share it) and ``PrefixStore``
(namespaces another store's keys). ``store.py`` adds the gRPC ``TCPStore`` and re-exports
these."""

from __future__ import annotations

from datetime import timedelta

from ._runtime._kv import KeyValueTable
from .errors import DistStoreError

DEFAULT_TIMEOUT = timedelta(seconds=300)


def _seconds(timeout) -> float:
    if timeout is None:
        return DEFAULT_TIMEOUT.total_seconds()
    if isinstance(timeout, timedelta):
        return timeout.total_seconds()
    return float(timeout)


def _as_bytes(value) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (list, tuple)):  # PyTorch accepts a list of byte values
        return bytes(value)
    raise TypeError(f"store values must be str or bytes, got {type(value).__name__}")


class Store:
    """The store interface (PyTorch's ``torch.distributed.Store``)."""

    def __init__(self, timeout=DEFAULT_TIMEOUT) -> None:
        self._timeout = _seconds(timeout)

    @property
    def timeout(self) -> timedelta:
        return timedelta(seconds=self._timeout)

    def set_timeout(self, timeout) -> None:
        """Default timeout of ``get`` and ``wait``."""
        self._timeout = _seconds(timeout)

    # Subclasses implement these seven.
    def set(self, key: str, value) -> None:
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        """The value of ``key``, waiting up to the store timeout for it to be set."""
        raise NotImplementedError

    def add(self, key: str, amount: int) -> int:
        raise NotImplementedError

    def compare_set(self, key: str, expected_value, desired_value) -> bytes:
        raise NotImplementedError

    def wait(self, keys: list[str], timeout=None) -> None:
        raise NotImplementedError

    def delete_key(self, key: str) -> bool:
        raise NotImplementedError

    def num_keys(self) -> int:
        raise NotImplementedError

    def multi_get_nowait(self, keys: list[str]) -> list[bytes | None]:
        """Values of ``keys`` (``None`` where unset) without waiting (ember extension)."""
        raise NotImplementedError

    # Derived conveniences.
    def check(self, keys: list[str]) -> bool:
        """Whether every key is set, without waiting."""
        return all(v is not None for v in self.multi_get_nowait(list(keys)))

    def multi_get(self, keys: list[str]) -> list[bytes]:
        self.wait(list(keys))
        return [self.get(k) for k in keys]

    def multi_set(self, keys: list[str], values: list) -> None:
        for k, v in zip(keys, values):
            self.set(k, v)

    def _timeout_error(self, keys, timeout: float) -> DistStoreError:
        return DistStoreError(
            f"wait timeout after {timeout * 1000:.0f}ms, keys: " + ", ".join("/" + k for k in keys)
        )


class HashStore(Store):
    """An in-process store (threads of one process share it), PyTorch's ``HashStore``."""

    def __init__(self) -> None:
        super().__init__()
        self._kv = KeyValueTable()

    def set(self, key, value):
        self._kv.set(key, _as_bytes(value))

    def get(self, key):
        value = self._kv.get(key, self._timeout)
        if value is None:
            raise self._timeout_error([key], self._timeout)
        return value

    def add(self, key, amount):
        return self._kv.add(key, amount)

    def compare_set(self, key, expected_value, desired_value):
        return self._kv.compare_set(key, _as_bytes(expected_value), _as_bytes(desired_value))

    def wait(self, keys, timeout=None):
        t = self._timeout if timeout is None else _seconds(timeout)
        missing = self._kv.wait(list(keys), t)
        if missing:
            raise self._timeout_error(missing, t)

    def delete_key(self, key):
        return self._kv.delete(key)

    def num_keys(self):
        return self._kv.num_keys()

    def multi_get_nowait(self, keys):
        return self._kv.multi_get(list(keys))


class PrefixStore(Store):
    """Prefixes every key with ``prefix + "/"`` before handing it to ``store``."""

    def __init__(self, prefix: str, store: Store) -> None:
        super().__init__(store.timeout)
        self.prefix = prefix
        self.underlying_store = store

    def _k(self, key: str) -> str:
        return f"{self.prefix}/{key}"

    @property
    def timeout(self) -> timedelta:
        return self.underlying_store.timeout

    def set_timeout(self, timeout) -> None:
        self.underlying_store.set_timeout(timeout)

    def set(self, key, value):
        self.underlying_store.set(self._k(key), value)

    def get(self, key):
        return self.underlying_store.get(self._k(key))

    def add(self, key, amount):
        return self.underlying_store.add(self._k(key), amount)

    def compare_set(self, key, expected_value, desired_value):
        return self.underlying_store.compare_set(self._k(key), expected_value, desired_value)

    def wait(self, keys, timeout=None):
        self.underlying_store.wait([self._k(k) for k in keys], timeout)

    def delete_key(self, key):
        return self.underlying_store.delete_key(self._k(key))

    def num_keys(self):
        return self.underlying_store.num_keys()

    def multi_get_nowait(self, keys):
        return self.underlying_store.multi_get_nowait([self._k(k) for k in keys])
