"""ember.serve: models behind an HTTP endpoint on Ray Serve (docs/serve.md).

``deploy`` puts an ember.export / ember.jit artifact, an .onnx file or a TorchServe-shaped
handler behind ``POST /<name>/predict`` with server-side batching and replicas; ``predict``
calls a deployment from Python; ``shutdown`` removes one or all. Ray is imported on first use,
so ``import ember.serve`` stays cheap.
"""

from ._handler import ARTIFACT_KINDS, BaseHandler, Context, detect_kind

__all__ = [
    "ARTIFACT_KINDS",
    "BaseHandler",
    "Context",
    "deploy",
    "deploy_many",
    "detect_kind",
    "predict",
    "serve_env",
    "shutdown",
    "status",
]

_LAZY = (
    "deploy",
    "deploy_many",
    "predict",
    "shutdown",
    "status",
    "DEFAULT_MAX_REQUEST_BYTES",
    "SERVE_ENV",
    "serve_env",
)


def __getattr__(name: str):
    if name in _LAZY:  # these import Ray
        from . import _api

        return getattr(_api, name)
    raise AttributeError(f"module 'ember.serve' has no attribute {name!r}")
