"""The API-coverage gate: how much of PyTorch's public surface ember has, namespace by namespace.

Run it next to an installed torch (test-only; ember never imports torch at run time)::

    python -m ember.utils.api_coverage              # the table
    python -m ember.utils.api_coverage --missing    # and the missing names of each namespace
    python -m ember.utils.api_coverage --namespace torch.linalg --missing

Every public name of each torch namespace below is *implemented* (ember has it under the same
path), *excluded* (listed with a one-line reason in ``api_exclusions.yaml`` beside this file:
sparse, quantized-internal, TorchScript-internal, CUDA-only internals, ...) or *missing*.
Names are PyTorch's public ones: no leading underscore, plus the dunders that change how a
tensor behaves (``__format__``, ``__array__``, ...), which must be ember's own, not object's.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import inspect
import os
import sys
from dataclasses import dataclass, field

#: The namespaces the gate covers, in report order.
NAMESPACES = [
    "torch",
    "torch.Tensor",
    "torch.nn",
    "torch.nn.functional",
    "torch.nn.init",
    "torch.nn.utils",
    "torch.nn.utils.rnn",
    "torch.nn.utils.parametrize",
    "torch.nn.utils.parametrizations",
    "torch.optim",
    "torch.optim.lr_scheduler",
    "torch.optim.swa_utils",
    "torch.autograd",
    "torch.autograd.functional",
    "torch.autograd.graph",
    "torch.autograd.forward_ad",
    "torch.utils.data",
    "torch.linalg",
    "torch.fft",
    "torch.special",
    "torch.distributions",
    "torch.testing",
    "torch.backends",
    "torch.cuda",
    "torch.random",
]

#: Tensor dunders that change behaviour a user sees; ember must define them itself.
TENSOR_DUNDERS = [
    "__format__",
    "__array__",
    "__array_wrap__",
    "__len__",
    "__iter__",
    "__contains__",
    "__reversed__",
    "__bool__",
    "__float__",
    "__int__",
    "__index__",
    "__complex__",
    "__deepcopy__",
    "__reduce_ex__",
    "__setstate__",
    "__dlpack__",
    "__dlpack_device__",
    "__lshift__",
    "__rshift__",
    "__rlshift__",
    "__rrshift__",
    "__ilshift__",
    "__irshift__",
    "__iand__",
    "__ior__",
    "__ixor__",
]

EXCLUSIONS_FILE = os.path.join(os.path.dirname(__file__), "api_exclusions.yaml")


@dataclass
class Coverage:
    """One namespace's names, split three ways."""

    namespace: str
    implemented: list[str] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)  # name -> reason
    missing: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.implemented) + len(self.excluded) + len(self.missing)

    def percent(self, n: int) -> float:
        return 100.0 * n / self.total if self.total else 100.0


def load_exclusions(path: str = EXCLUSIONS_FILE) -> dict[str, dict[str, str]]:
    """``{namespace: {name_or_glob: reason}}``; every entry must give a reason."""
    import yaml

    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    for ns, entries in data.items():
        if ns not in NAMESPACES:
            raise ValueError(f"{path}: unknown namespace {ns!r} (known: {', '.join(NAMESPACES)})")
        for name, reason in (entries or {}).items():
            if not isinstance(reason, str) or not reason.strip():
                raise ValueError(f"{path}: {ns}.{name} has no reason")
    return {ns: dict(entries or {}) for ns, entries in data.items()}


def _resolve(path: str):
    """The object at a dotted path (a module, or a class inside one), or None."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        except Exception:  # a module that fails to import is not there for a user either
            return None
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return None
        return obj
    return None


def public_names(torch_ns) -> list[str]:
    """A torch namespace's public names (modules included: ``torch.backends.cudnn`` counts)."""
    names = [n for n in dir(torch_ns) if not n.startswith("_")]
    if inspect.ismodule(torch_ns):
        exported = getattr(torch_ns, "__all__", None)
        # a module's names are its own: its __all__ where it has one, else what it defines
        # (not the modules and typing helpers it happens to import)
        if exported is not None:
            names = sorted(
                set(exported)
                | {
                    n
                    for n in names
                    if inspect.ismodule(getattr(torch_ns, n, None))
                    and getattr(torch_ns, n).__name__.startswith(torch_ns.__name__ + ".")
                }
            )
        else:
            # no __all__: drop what the module merely imports (typing's Optional, ...)
            names = [n for n in names if _defined_by_torch(getattr(torch_ns, n, None))]
        names = [
            n
            for n in names
            if not n.startswith("_") and not _foreign_module(torch_ns, getattr(torch_ns, n, None))
        ]
    else:
        names += [d for d in TENSOR_DUNDERS if hasattr(torch_ns, d)]
    return sorted(set(names))


def _foreign_module(ns, obj) -> bool:
    """A module imported into ``ns`` that is not one of its submodules (``torch.os``)."""
    return inspect.ismodule(obj) and not obj.__name__.startswith(ns.__name__ + ".")


def _defined_by_torch(obj) -> bool:
    module = getattr(obj, "__module__", None)
    if inspect.ismodule(obj) or not isinstance(module, str):
        return True  # modules are judged by _foreign_module; constants count
    return module.startswith("torch")


def _has(ember_ns, name: str) -> bool:
    if ember_ns is None:
        return False
    if name.startswith("__"):
        # the dunder must be ember's own, not object's default
        return any(name in vars(k) for k in getattr(ember_ns, "__mro__", ()) if k is not object)
    try:
        return hasattr(ember_ns, name)
    except Exception:
        return False


def coverage(namespace: str, exclusions: dict[str, dict[str, str]] | None = None) -> Coverage:
    """Compare one torch namespace with ember's namespace of the same path."""
    if exclusions is None:
        exclusions = load_exclusions()
    torch_ns = _resolve(namespace)
    if torch_ns is None:
        raise RuntimeError(
            f"{namespace} does not import: is torch installed? (pip install -e '.[parity]')"
        )
    ember_ns = _resolve("ember" + namespace[len("torch") :])
    rules = exclusions.get(namespace, {})
    cov = Coverage(namespace)
    for name in public_names(torch_ns):
        if _has(ember_ns, name):
            cov.implemented.append(name)
            continue
        reason = rules.get(name) or next(
            (r for pat, r in rules.items() if fnmatch.fnmatchcase(name, pat)), None
        )
        if reason is not None:
            cov.excluded[name] = reason
        else:
            cov.missing.append(name)
    return cov


def report(namespaces=NAMESPACES, show_missing: bool = False, out=sys.stdout) -> list[Coverage]:
    """Print the table (and optionally the missing names); return the coverages."""
    exclusions = load_exclusions()
    rows = [coverage(ns, exclusions) for ns in namespaces]
    head = (
        f"{'namespace':34s} {'public':>6s} {'implemented':>16s} {'excluded':>14s} {'missing':>14s}"
    )
    print(head, file=out)
    print("-" * len(head), file=out)
    for c in rows:
        print(
            f"{c.namespace:34s} {c.total:6d} {len(c.implemented):7d} "
            f"({c.percent(len(c.implemented)):5.1f}%) {len(c.excluded):5d} "
            f"({c.percent(len(c.excluded)):5.1f}%) {len(c.missing):5d} "
            f"({c.percent(len(c.missing)):5.1f}%)",
            file=out,
        )
    if show_missing:
        for c in rows:
            if c.missing:
                print(f"\n{c.namespace} missing ({len(c.missing)}):", file=out)
                print("  " + " ".join(c.missing), file=out)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ember.utils.api_coverage", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--namespace", action="append", choices=NAMESPACES, help="only this namespace (repeatable)"
    )
    parser.add_argument("--missing", action="store_true", help="list the missing names")
    args = parser.parse_args(argv)
    try:
        rows = report(args.namespace or NAMESPACES, args.missing)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 1 if any(c.missing for c in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
