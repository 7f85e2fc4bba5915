"""Request bodies to arrays and arrays to response JSON, with errors that name the problem.

A request body is ``{"inputs": <nested list>}`` or ``{"inputs": {"b64": ..., "dtype": ...,
"shape": [...]}}``; the first dimension of the array is the request's own batch.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np

try:  # orjson parses ~3x and writes float arrays ~20x faster than json + tolist()
    import orjson
except ImportError:  # optional: the json module gives the same results, slower
    orjson = None

_ALLOWED_DTYPES = (
    "float16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "bool",
)


class RequestError(ValueError):
    """A client mistake: carries the HTTP status the ingress answers with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def parse_body(raw: bytes, limit: int) -> Any:
    """JSON-decode a request body after checking it against the size limit (bytes)."""
    if len(raw) > limit:
        raise RequestError(
            f"payload of {len(raw)} bytes exceeds the limit of {limit} bytes "
            "(raise it with max_request_bytes / --max-request-bytes)",
            413,
        )
    try:
        body = orjson.loads(raw) if orjson is not None else json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:  # orjson's error subclasses it
        raise RequestError(f"malformed JSON body: {e}", 400) from None
    if not isinstance(body, dict) or "inputs" not in body:
        raise RequestError('the body must be a JSON object with an "inputs" field', 400)
    return body


def decode_inputs(value: Any, spec: dict | None) -> np.ndarray:
    """Turn the ``inputs`` field into an array and check it against the input ``spec``."""
    if isinstance(value, dict):
        arr = _decode_b64(value)
    else:
        arr = _decode_list(value, spec.get("dtype") if spec else None)
    if arr.ndim == 0:
        raise RequestError("inputs must have at least one dimension (the request's batch)")
    if arr.shape[0] == 0:
        raise RequestError("inputs has an empty batch dimension")
    if spec:
        check_against(arr, spec)
        if spec.get("dtype") is not None and arr.dtype != np.dtype(spec["dtype"]):
            arr = arr.astype(spec["dtype"])
    return arr


def _decode_list(value: Any, dtype: str | None) -> np.ndarray:
    if not isinstance(value, list):
        raise RequestError(
            f'"inputs" must be a nested list or a {{"b64", "dtype", "shape"}} '
            f"object, got {type(value).__name__}"
        )
    try:
        arr = np.asarray(value)
    except ValueError as e:  # ragged lists
        raise RequestError(f'"inputs" is not a rectangular nested list: {e}') from None
    if arr.dtype == object or arr.dtype.kind in "USV":
        raise RequestError(
            '"inputs" must hold numbers only (found strings, nulls or a ragged nesting)'
        )
    if dtype is None:  # PyTorch's inference: ints -> int64, floats -> float32
        return arr.astype(
            np.int64
            if arr.dtype.kind in "iub" and arr.dtype != bool
            else (bool if arr.dtype == bool else np.float32)
        )
    target = np.dtype(dtype)
    if target.kind in "iu" and arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise RequestError(
                f"inputs holds fractional numbers but the model's input dtype is {dtype}"
            )
    return arr.astype(target)


def _decode_b64(value: dict) -> np.ndarray:
    unknown = set(value) - {"b64", "dtype", "shape"}
    if "b64" not in value or unknown:
        raise RequestError(
            'an object "inputs" must have the keys "b64", "dtype" and "shape"'
            + (f" (unknown: {sorted(unknown)})" if unknown else "")
        )
    dtype, shape = value.get("dtype", "float32"), value.get("shape")
    if dtype not in _ALLOWED_DTYPES:
        raise RequestError(f"unsupported dtype {dtype!r}; use one of {list(_ALLOWED_DTYPES)}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise RequestError(f'"shape" must be a list of non-negative ints, got {shape!r}')
    try:
        raw = base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, TypeError, ValueError) as e:
        raise RequestError(f'"b64" is not valid base64: {e}') from None
    want = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if len(raw) != want:
        raise RequestError(
            f"b64 payload has {len(raw)} bytes but dtype {dtype} and shape {shape} need {want}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def check_against(arr: np.ndarray, spec: dict) -> None:
    """Rank, static dims and dtype family of ``arr`` against an input spec."""
    shape = spec.get("shape")
    name = spec.get("name", "input")
    if shape is not None:
        if arr.ndim != len(shape):
            raise RequestError(
                f"input {name!r} expects {len(shape)} dimensions {shape}, got "
                f"shape {list(arr.shape)}"
            )
        for i, (d, want) in enumerate(zip(arr.shape, shape)):
            if i > 0 and isinstance(want, int) and want >= 0 and d != want:
                raise RequestError(
                    f"input {name!r} expects size {want} at dimension {i} "
                    f"(shape {shape}), got shape {list(arr.shape)}"
                )
    dtype = spec.get("dtype")
    if dtype is not None and np.dtype(dtype).kind != arr.dtype.kind:
        if not (np.dtype(dtype).kind in "iu" and arr.dtype.kind in "iu"):
            raise RequestError(f"input {name!r} expects dtype {dtype}, got {arr.dtype}")


def encode_outputs(arrays: list[np.ndarray]) -> Any:
    """One output -> its nested list; several -> a list of nested lists."""
    lists = [a.tolist() for a in arrays]
    return lists[0] if len(lists) == 1 else lists


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):  # a dtype orjson does not write natively (float16, ...)
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def dumps(content: Any) -> bytes:
    """JSON bytes of a response body; NumPy arrays inside are written as nested lists.

    With orjson the arrays are serialized directly (no ``tolist()`` round trip); without
    it, arrays go through ``tolist()`` and the json module."""
    if orjson is not None:
        try:
            return orjson.dumps(content, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)
        except TypeError:  # what orjson refuses (non-str keys, ints over 64 bits): json's way
            pass
    return json.dumps(content, default=_default, separators=(",", ":")).encode()


def encode_arrays(arrays: list[np.ndarray]) -> Any:
    """Like :func:`encode_outputs` but keeps C-contiguous arrays for :func:`dumps`."""
    arrs = [np.ascontiguousarray(a) for a in arrays]
    return arrs[0] if len(arrs) == 1 else arrs
