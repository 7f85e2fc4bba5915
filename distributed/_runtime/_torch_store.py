"""A small client of PyTorch's ``TCPStore`` wire protocol (no torch import).

torchrun's agent hosts a ``TCPStore`` on ``MASTER_PORT`` and tells its workers so
(``TORCHELASTIC_USE_AGENT_STORE=True``). ember does not take that port over or serve its own
store there: rank 0 hosts ember's store on a free port and publishes its address through the
agent's store, which the other ranks read (see ``_launch_env.py``). This module speaks just
enough of the protocol for that: validate and ping on connect, then ``set``, ``get`` (wait,
then get), ``add`` and ``check``.

The protocol, as PyTorch's client and servers (classic and libuv) speak it: every request is a
one-byte query type followed by its arguments; strings and byte vectors are a ``uint64``
length then the bytes; integers are native-endian (little-endian on every platform torch
ships for).
"""

from __future__ import annotations

import os
import socket
import struct
import time

from ..errors import DistNetworkError, DistStoreError

_MAGIC = 0x3C85F7CE
# QueryType values (an enum of uint8 in torch's TCPStoreBackend.hpp, stable since torch 1.x;
# PING was appended in 2.x).
_VALIDATE, _SET, _GET, _ADD, _CHECK, _WAIT, _PING = 0, 1, 3, 4, 5, 6, 13
_READY = 0  # CheckResponseType::READY
_STOP_WAITING = 0  # WaitResponseType::STOP_WAITING


def _string(data: bytes) -> bytes:
    return struct.pack("<Q", len(data)) + data


def _key(key: str) -> bytes:
    # torch's TCPStore client stores every key under "/" + key; do the same so that a torch
    # process and this client see one key space.
    return _string(("/" + key).encode())


class TorchStoreClient:
    """A connection to a PyTorch ``TCPStore`` at ``host:port``.

    Args:
        host, port: where the store listens (torchrun: ``MASTER_ADDR``, ``MASTER_PORT``).
        timeout: seconds to keep trying to connect, and to wait in ``get``.
    """

    def __init__(self, host: str, port: int, timeout: float = 300.0) -> None:
        self.address = f"{host}:{port}"
        self.timeout = float(timeout)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self._sock = socket.create_connection(
                    (host, int(port)), timeout=min(10.0, self.timeout)
                )
                break
            except OSError as e:
                if time.monotonic() >= deadline:
                    raise DistNetworkError(
                        f"could not reach the launcher's TCPStore at {self.address} within "
                        f"{self.timeout:g} s ({e}): is MASTER_ADDR/MASTER_PORT right?"
                    ) from None
                time.sleep(0.1)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.settimeout(self.timeout)
        try:
            self._send(struct.pack("<BI", _VALIDATE, _MAGIC))
            nonce = int.from_bytes(os.urandom(4), "little")
            self._send(struct.pack("<BI", _PING, nonce))
            (echo,) = struct.unpack("<I", self._recv(4))
        except DistStoreError:
            self.close()
            raise DistStoreError(
                f"the service at {self.address} does not speak PyTorch's TCPStore protocol"
            ) from None
        if echo != nonce:
            self.close()
            raise DistStoreError(
                f"the service at {self.address} answered a TCPStore ping "
                "wrongly: it is not a PyTorch TCPStore"
            )

    # ---- bytes on the wire ----------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as e:
            raise DistStoreError(f"lost the launcher's TCPStore at {self.address}: {e}") from None

    def _recv(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self._sock.recv(n - len(buf))
            except TimeoutError:
                self.close()  # a late reply would answer the next request: never reuse
                raise DistStoreError(
                    f"the launcher's TCPStore at {self.address} did not "
                    f"answer within {self.timeout:g} s"
                ) from None
            except OSError as e:
                raise DistStoreError(
                    f"lost the launcher's TCPStore at {self.address}: {e}"
                ) from None
            if not chunk:
                raise DistStoreError(
                    f"the launcher's TCPStore at {self.address} closed the connection"
                )
            buf += chunk
        return bytes(buf)

    # ---- the operations -------------------------------------------------------------------
    def set(self, key: str, value) -> None:
        value = value.encode() if isinstance(value, str) else bytes(value)
        self._send(bytes([_SET]) + _key(key) + _string(value))

    def get(self, key: str) -> bytes:
        """The value of ``key``, waiting (up to ``timeout``) until some process sets it."""
        self._send(bytes([_WAIT]) + struct.pack("<Q", 1) + _key(key))
        if self._recv(1)[0] != _STOP_WAITING:
            raise DistStoreError(f"unexpected reply to a wait on {key!r} from {self.address}")
        self._send(bytes([_GET]) + _key(key))
        (size,) = struct.unpack("<Q", self._recv(8))
        return self._recv(size) if size else b""

    def add(self, key: str, amount: int) -> int:
        self._send(bytes([_ADD]) + _key(key) + struct.pack("<q", int(amount)))
        return struct.unpack("<q", self._recv(8))[0]

    def check(self, keys: list[str]) -> bool:
        """Whether every key is set, without waiting."""
        msg = bytes([_CHECK]) + struct.pack("<Q", len(keys))
        self._send(msg + b"".join(_key(k) for k in keys))
        return self._recv(1)[0] == _READY

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    def __enter__(self) -> TorchStoreClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
