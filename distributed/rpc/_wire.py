"""How RPC payloads are pickled: ember tensors travel as (array, requires_grad, kind).

A message is pickled with ``dumps`` / ``loads``. Tensors are taken out of the stream through
pickle's persistent ids, so that each travels as its host array plus its ``requires_grad`` flag
(a non-leaf arrives as a leaf, as in PyTorch's RPC pickler) and so that distributed autograd
learns which tensors left (``sent``) or arrived (``received``) in a message. Functions and
classes are pickled by reference, as with ``pickle``: both sides must import them.

Frames on a connection: a length-prefixed header pickle, the payload's pickle, then its
out-of-band array buffers as raw bytes (``send_frame`` / ``recv_frame``); an error
travels as its type and PyTorch's text (``remote_error`` / ``remote_exception``).
"""

from __future__ import annotations

import importlib
import io
import pickle
import socket
import struct
import sys
import threading
import traceback
import types

import ember
from ember import _interop
from ember.nn import Parameter

from .._runtime import _transport
from .options import WorkerInfo

_PLAIN = (ember.Tensor, Parameter)
_FUNCTIONS = (types.FunctionType, types.BuiltinFunctionType)
# Where a public ember function may be found when its __module__/__qualname__ lead to another
# object (ember.add is a wrapper installed over the op module's add): the calls' targets
# (``rpc_sync("w1", ember.add, ...)``) are then sent by their public name.
_NAMESPACES = ("ember", "ember.nn.functional", "ember.linalg", "ember.special", "ember.fft")


def _public_name(fn) -> tuple | None:
    mod = sys.modules.get(getattr(fn, "__module__", None) or "")
    obj = mod
    for part in getattr(fn, "__qualname__", "<").split("."):
        obj = getattr(obj, part, None)
    if obj is fn:
        return None  # pickle finds it by reference
    name = getattr(fn, "__name__", "")
    for ns in _NAMESPACES:
        if getattr(sys.modules.get(ns), name, None) is fn:
            return (ns, name)
    return None


class _Pickler(pickle.Pickler):
    def __init__(self, buf, buffers: list) -> None:
        # contiguous arrays travel out of band: no copy into the pickle stream
        super().__init__(buf, protocol=5, buffer_callback=buffers.append)
        self.tensors: list = []

    def persistent_id(self, obj):
        if type(obj) in _PLAIN:
            arr = _interop.array_of(obj)
            if not hasattr(arr, "__array_interface__"):  # a CuPy array: through host memory
                arr = arr.get()
            self.tensors.append(obj)
            kind = "p" if type(obj) is Parameter else "t"
            return ("ember.tensor", kind, arr, bool(obj.requires_grad))
        if isinstance(obj, _FUNCTIONS):
            where = _public_name(obj)
            if where is not None:
                return ("ember.function", *where)
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, buf, buffers) -> None:
        super().__init__(buf, buffers=buffers)
        self.tensors: list = []

    def persistent_load(self, pid):
        if pid[0] == "ember.function":
            return getattr(importlib.import_module(pid[1]), pid[2])
        tag, kind, arr, requires_grad = pid
        if tag != "ember.tensor":
            raise pickle.UnpicklingError(f"unknown persistent id {tag!r} in an RPC message")
        t = _interop.wrap(arr)
        if kind == "p":
            t = Parameter(t, requires_grad=requires_grad)
        elif requires_grad:
            t.requires_grad_(True)
        self.tensors.append(t)
        return t


_pickling = threading.local()


def in_rpc_pickling() -> bool:
    """Whether this thread is pickling an RPC message (``RemoteModule`` pickles only then)."""
    return getattr(_pickling, "depth", 0) > 0


def dumps(obj) -> tuple[tuple, list]:
    """``obj`` as a payload ``(pickle bytes, out-of-band buffers)``, and the tensors it holds
    (in stream order)."""
    buf, buffers = io.BytesIO(), []
    p = _Pickler(buf, buffers)
    _pickling.depth = getattr(_pickling, "depth", 0) + 1
    try:
        p.dump(obj)
    finally:
        _pickling.depth -= 1
    return (buf.getvalue(), [b.raw() for b in buffers]), p.tensors


def loads(payload: tuple) -> tuple[object, list]:
    """The object, and the tensors rebuilt for it (fresh leaves, in stream order)."""
    body, buffers = payload
    u = _Unpickler(io.BytesIO(body), buffers)
    obj = u.load()
    return obj, u.tensors


def grad_tensors(tensors: list) -> list:
    """Those of ``tensors`` that autograd follows."""
    return [t for t in tensors if t.requires_grad]


# ---- frames on a connection, and errors as they travel ----------------------------------------
_LEN = struct.Struct("<Q")
_SMALL = 1 << 16  # bodies up to this size go out in one write with the header


def send_frame(sock: socket.socket, lock: threading.Lock, frame: tuple) -> None:
    """Send ``frame``: small fields, then a payload from ``dumps`` (its buffers unpickled)."""
    *meta, (body, buffers) = frame
    head = pickle.dumps((tuple(meta), len(body), [b.nbytes for b in buffers]), protocol=5)
    prefix = _LEN.pack(len(head)) + head
    with lock:
        if len(body) <= _SMALL:
            sock.sendall(prefix + body)
        else:
            sock.sendall(prefix)
            sock.sendall(body)
        for b in buffers:
            sock.sendall(b)


def _recv(sock: socket.socket, n: int) -> bytearray:
    data = bytearray(n)
    if n:
        _transport.recv_exact(sock, memoryview(data))
    return data


def recv_frame(sock: socket.socket) -> tuple:
    """The next frame: its fields, the payload last."""
    meta, nbody, sizes = pickle.loads(_recv(sock, _LEN.unpack(_recv(sock, _LEN.size))[0]))
    body = _recv(sock, nbody)
    return (*meta, (body, [_recv(sock, n) for n in sizes]))


def remote_error(exc: BaseException, where: WorkerInfo) -> tuple:
    """An error raised by a call, as sent back: its type (if picklable) and the text with the
    worker's name and the remote traceback (PyTorch's format)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    msg = f"On {where!r}:\n{exc!r}\n{text}"
    try:
        return (pickle.dumps((type(exc), msg)), [])
    except Exception:
        return (pickle.dumps((None, msg)), [])


def remote_exception(payload: tuple) -> BaseException:
    """The exception to raise on the caller for an error answer."""
    exc_type, msg = pickle.loads(payload[0])
    try:
        err = exc_type(msg) if exc_type is not None else RuntimeError(msg)
    except Exception:
        err = RuntimeError(msg)
    if not isinstance(err, BaseException):
        err = RuntimeError(msg)
    return err
