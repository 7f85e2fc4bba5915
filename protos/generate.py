"""Regenerate the committed protobuf/gRPC modules from the ``.proto`` files in this folder.

Run ``python protos/generate.py`` after editing a ``.proto``. It runs
``python -m grpc_tools.protoc`` (grpcio-tools, a test extra) and rewrites the generated
``import x_pb2`` lines to package-relative ``from ember.protos import x_pb2`` so the modules
import as part of the ``ember`` package. ``tests/test_protos.py`` regenerates into a temporary
folder and fails when the committed files are stale.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
PROTOS = ("store.proto", "peer.proto")
_IMPORT = re.compile(r"^import (\w+_pb2) as (\w+)$", re.MULTILINE)


def generate(out_dir: pathlib.Path = HERE) -> list[pathlib.Path]:
    """Generate ``*_pb2.py`` and ``*_pb2_grpc.py`` for every proto into ``out_dir``."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{HERE}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(HERE / p) for p in PROTOS),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"protoc failed ({' '.join(cmd)}):\n{result.stderr}")
    written = []
    for proto in PROTOS:
        stem = proto[: -len(".proto")]
        for name in (f"{stem}_pb2.py", f"{stem}_pb2_grpc.py"):
            path = out_dir / name
            text = _IMPORT.sub(r"from ember.protos import \1 as \2", path.read_text())
            path.write_text(text)
            written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=HERE,
        help="output folder (default: next to the .proto files)",
    )
    for path in generate(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
