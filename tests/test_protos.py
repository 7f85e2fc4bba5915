"""The committed generated protobuf/gRPC modules match their .proto files and import cleanly."""

from __future__ import annotations

import importlib
import pathlib
import re
import sys
import warnings

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "protos"))
try:
    import generate  # protos/generate.py, the one script that produces the committed files
finally:
    sys.path.pop(0)


def _without_tool_version(text: str) -> str:
    """The generated code without the line that records which grpcio-tools wrote it: a newer
    patch release of the tools (the test extra allows any 1.x from 1.85.1) writes the same code
    under another version number."""
    return re.sub(r"(?m)^GRPC_GENERATED_VERSION = .*$", "GRPC_GENERATED_VERSION = ...", text)


def test_committed_generated_code_is_fresh(tmp_path):
    pytest.importorskip("grpc_tools")
    for fresh in generate.generate(tmp_path):
        committed = ROOT / "protos" / fresh.name
        assert committed.exists(), f"{committed.name} is missing: run python protos/generate.py"
        assert _without_tool_version(committed.read_text()) == _without_tool_version(
            fresh.read_text()
        ), f"protos/{committed.name} is stale: run python protos/generate.py"


@pytest.mark.parametrize("name", ["store_pb2", "store_pb2_grpc", "peer_pb2", "peer_pb2_grpc"])
def test_generated_modules_import_with_installed_runtime(name):
    # The protobuf/grpc runtimes warn or raise when the generated code is newer than they are.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module = importlib.import_module(f"ember.protos.{name}")
    assert module is not None


def test_generated_imports_are_package_relative():
    for path in (ROOT / "protos").glob("*_pb2_grpc.py"):
        text = path.read_text()
        assert "from ember.protos import" in text
        assert "\nimport store_pb2" not in text and "\nimport peer_pb2" not in text


def test_messages_round_trip():
    from ember.protos import peer_pb2, store_pb2

    req = store_pb2.WaitRequest(keys=["a", "b"], timeout_ms=5)
    assert store_pb2.WaitRequest.FromString(req.SerializeToString()).keys == ["a", "b"]
    frame = peer_pb2.Frame(src=3, header=b"h", payload=b"\x00" * 10)
    assert peer_pb2.Frame.FromString(frame.SerializeToString()).payload == b"\x00" * 10
