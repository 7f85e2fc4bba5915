"""The ``ember`` command line: launch, up/down/status, submit/job (experiment arrives with its
issue)."""

from __future__ import annotations

import argparse
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ember",
        description="ember: PyTorch's API on NumPy/CuPy, distributed training on Ray.",
    )
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    from . import doctor, experiment, launch, serve_cmd, submit, up

    launch.add_parser(sub)
    experiment.add_parser(sub)
    up.add_parser(sub)
    submit.add_parser(sub)
    serve_cmd.add_parser(sub)
    doctor.add_parser(sub)
    return p


def _version() -> str:
    from ember import version

    return f"ember {version.ember} (PyTorch API {version.torch_api})"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from ember.distributed.train._internal.ray_cluster import RayStartError

    from .config import ConfigError
    from .hosts import HostError

    try:
        return args.func(args)
    except ConfigError as e:  # a bad cluster config: the file, every bad key and why
        print(f"ember {args.command}: {e}", file=sys.stderr)
        return 2
    except HostError as e:  # a host that cannot be reached or whose command failed
        if e.detail and os.environ.get("EMBER_VERBOSE"):
            print(e.detail, file=sys.stderr)
        print(f"ember {args.command}: {e}", file=sys.stderr)
        return 1
    except RayStartError as e:  # no local Ray could start, or the address did not answer
        print(f"ember {args.command}: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a file or directory ember cannot read or write (state, token)
        where = f": {e.filename}" if e.filename else ""
        print(f"ember {args.command}: {e.strerror or e}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
