"""The Ray Serve deployment: a FastAPI ingress in front of a batched handler.

Every model is one Serve application named after it, routed at ``/<name>``. Requests are
validated and decoded in the ingress (so a client mistake never reaches the model and answers
4xx), then queued into ``@serve.batch``; the batch runs the handler on a worker thread so the
event loop keeps accepting (and batching) requests while the model computes.
"""

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from ._codec import RequestError, decode_inputs, dumps, encode_arrays, parse_body
from ._handler import BaseHandler, Context, load_handler_class

logger = logging.getLogger("ray.serve")

app = FastAPI(
    title="ember serve",
    description='POST /predict with {"inputs": ...}; GET /healthz; GET /metadata',
)


class _HandlerError(Exception):
    """A handler failure, carried back to the request that was in the failed batch."""

    def __init__(self, cls_name: str, message: str) -> None:
        super().__init__(message)
        self.cls_name = cls_name


class _FastJSON(JSONResponse):
    """A JSONResponse rendered with orjson (NumPy arrays written directly) when present."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": kind, "message": message})


@serve.deployment(max_ongoing_requests=64)
@serve.ingress(app)
class EmberModel:
    """One replica: loads the artifact or handler named in ``spec`` once, then serves it."""

    def __init__(self, spec: dict) -> None:
        self.name = spec["name"]
        self.version = spec["version"]
        self.max_request_bytes = int(spec["max_request_bytes"])
        ctx = Context(
            model_name=self.name,
            version=self.version,
            kind=spec["kind"],
            artifact=spec.get("artifact"),
            model_obj=spec.get("model_obj"),
            model_dir=spec.get("model_dir"),
            device=spec.get("device", "cpu"),
            input_dtype=spec.get("input_dtype"),
            pad_sequences=bool(spec.get("pad_sequences", False)),
            manifest={"model": {"modelName": self.name, "modelVersion": self.version}},
            system_properties={"gpu_id": 0 if spec.get("device") == "cuda" else None},
        )
        if spec["kind"] == "handler":
            cls = load_handler_class(
                spec["handler_source"], spec["handler_file"], spec["handler_class"]
            )
        else:
            cls = BaseHandler
        self.handler = cls()
        self.handler.initialize(ctx)
        self.context = ctx
        # A BaseHandler gets decoded arrays; any other handler gets the raw JSON "inputs".
        self.arrays = isinstance(self.handler, BaseHandler)
        meta = (
            self.handler.metadata()
            if callable(getattr(self.handler, "metadata", None))
            else {"inputs": [], "outputs": []}
        )
        self.meta = {
            "name": self.name,
            "version": self.version,
            "kind": spec["kind"],
            "max_batch_size": int(spec["max_batch_size"]),
            "batch_wait_ms": float(spec["batch_wait_ms"]),
            "max_request_bytes": self.max_request_bytes,
            "pad_sequences": ctx.pad_sequences,
            **meta,
        }
        self._batch.set_max_batch_size(int(spec["max_batch_size"]))
        self._batch.set_batch_wait_timeout_s(float(spec["batch_wait_ms"]) / 1000.0)
        # One inference thread: the model runs one batch at a time per replica.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ember-serve")
        self._lock = threading.Lock()

    # -- batching -------------------------------------------------------------------------
    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _batch(self, bodies: list[Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        try:
            outs = await loop.run_in_executor(self._pool, self._run, bodies)
        except Exception as e:  # every request of the batch reports the handler's failure
            logger.exception(
                "ember serve %s: handler raised on a batch of %d", self.name, len(bodies)
            )
            err = _HandlerError(type(e).__name__, str(e))
            return [err] * len(bodies)
        if len(outs) != len(bodies):
            err = _HandlerError(
                "RuntimeError",
                f"handler returned {len(outs)} results for a batch of {len(bodies)} requests",
            )
            return [err] * len(bodies)
        return [(o, len(bodies)) for o in outs]

    def _run(self, bodies: list[Any]) -> list[Any]:
        requests = [{"body": b, "data": b} for b in bodies]
        with self._lock:
            if callable(getattr(self.handler, "handle", None)):
                return self.handler.handle(requests, self.context)
            h = self.handler
            return h.postprocess(h.inference(h.preprocess(requests)))

    def _decode(self, value: Any) -> Any:
        if not self.arrays:
            return value
        specs = self.meta.get("inputs") or [None]
        return decode_inputs(value, specs[0])

    async def _infer(self, body: Any) -> dict:
        result = await self._batch(body)
        if isinstance(result, _HandlerError):
            raise result
        out, batch_size = result
        outputs = encode_arrays(out) if self.arrays else out
        return {
            "outputs": outputs,
            "model": self.name,
            "version": self.version,
            "batch_size": batch_size,
        }

    # -- HTTP -----------------------------------------------------------------------------
    @app.post("/predict")
    async def predict(self, request: Request) -> JSONResponse:
        try:
            length = int(request.headers.get("content-length") or 0)
            if length > self.max_request_bytes:
                raise RequestError(
                    f"payload of {length} bytes exceeds the limit of "
                    f"{self.max_request_bytes} bytes",
                    413,
                )
            body = parse_body(await request.body(), self.max_request_bytes)
            value = self._decode(body["inputs"])
        except RequestError as e:
            return _error(e.status, "RequestError", str(e))
        try:
            return _FastJSON(await self._infer(value))
        except _HandlerError as e:
            return _error(500, e.cls_name, str(e))

    @app.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok", "model": self.name, "version": self.version, "pid": os.getpid()}

    @app.get("/metadata")
    async def metadata(self) -> dict:
        return self.meta

    # -- Python callers (DeploymentHandle) ------------------------------------------------
    async def infer(self, inputs: Any) -> dict:
        """``inputs`` as in the HTTP body (nested list, b64 object) or a NumPy array."""
        if isinstance(inputs, np.ndarray) and self.arrays:
            from ._codec import check_against

            specs = self.meta.get("inputs") or [None]
            if specs[0]:
                check_against(inputs, specs[0])
            value = inputs
        else:
            value = self._decode(inputs)
        result = await self._batch(value)
        if isinstance(result, _HandlerError):
            raise RuntimeError(f"{result.cls_name}: {result}")
        out, batch_size = result
        return {
            "outputs": out if not self.arrays else (out[0] if len(out) == 1 else out),
            "model": self.name,
            "version": self.version,
            "batch_size": batch_size,
        }
