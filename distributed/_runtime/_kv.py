"""The in-memory key-value table behind both the gRPC store server and ``HashStore``."""

from __future__ import annotations

import threading
import time


class KeyValueTable:
    """A thread-safe dict of bytes with blocking waits (the semantics of PyTorch's stores)."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._cv = threading.Condition()

    def set(self, key: str, value: bytes) -> None:
        with self._cv:
            self._data[key] = bytes(value)
            self._cv.notify_all()

    def get(self, key: str, timeout: float) -> bytes | None:
        """The value of ``key``, waiting up to ``timeout`` seconds; ``None`` if still unset."""
        with self._cv:
            if key not in self._data and timeout > 0:
                self._cv.wait_for(lambda: key in self._data, timeout)
            return self._data.get(key)

    def wait(self, keys: list[str], timeout: float) -> list[str]:
        """Wait until every key is set; return those still missing after ``timeout`` seconds."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cv:
            while True:
                missing = [k for k in keys if k not in self._data]
                remaining = deadline - time.monotonic()
                if not missing or remaining <= 0:
                    return missing
                self._cv.wait(remaining)

    def add(self, key: str, amount: int) -> int:
        with self._cv:
            old = self._data.get(key, b"0")
            try:
                value = int(old) + int(amount)
            except ValueError:
                raise ValueError(
                    f"store key {key!r} holds {old[:32]!r}, not an integer, so it "
                    "cannot be incremented with add()"
                ) from None
            self._data[key] = str(value).encode()
            self._cv.notify_all()
            return value

    def compare_set(self, key: str, expected: bytes, desired: bytes) -> bytes:
        with self._cv:
            current = self._data.get(key)
            if (current is None and expected == b"") or current == expected:
                self._data[key] = bytes(desired)
                self._cv.notify_all()
                return bytes(desired)
            return expected if current is None else current

    def delete(self, key: str) -> bool:
        with self._cv:
            return self._data.pop(key, None) is not None

    def num_keys(self) -> int:
        with self._cv:
            return len(self._data)

    def multi_get(self, keys: list[str]) -> list[bytes | None]:
        with self._cv:
            return [self._data.get(k) for k in keys]
