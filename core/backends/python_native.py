"""``ember.backends.python_native``: switches for Python-DSL kernel overrides (Triton,
CuTe DSL). ember registers no DSL kernels: the lists are empty and the switches recorded."""

from __future__ import annotations

import contextlib

__all__ = [
    "all_dsls",
    "available_dsls",
    "disable_dispatch_keys",
    "disable_operations",
    "enable_dispatch_keys",
    "enable_operations",
    "get_dsl_operations",
    "is_dsl_disabled",
    "is_operation_disabled",
    "operations_disabled",
]

all_dsls: list[str] = []
available_dsls: list[str] = []
_disabled_ops: set[str] = set()
_disabled_keys: set[str] = set()


def disable_operations(*op_symbols: str) -> None:
    _disabled_ops.update(op_symbols)


def enable_operations(*op_symbols: str) -> None:
    _disabled_ops.difference_update(op_symbols)


def disable_dispatch_keys(*dispatch_keys: str) -> None:
    _disabled_keys.update(dispatch_keys)


def enable_dispatch_keys(*dispatch_keys: str) -> None:
    _disabled_keys.difference_update(dispatch_keys)


def is_operation_disabled(op_symbol: str) -> bool:
    return op_symbol in _disabled_ops


def is_dsl_disabled(dsl_name: str) -> bool:
    return dsl_name not in available_dsls


def get_dsl_operations(dsl_name: str) -> list[str]:
    return []


@contextlib.contextmanager
def operations_disabled(*op_symbols: str):
    added = [s for s in op_symbols if s not in _disabled_ops]
    disable_operations(*added)
    try:
        yield
    finally:
        enable_operations(*added)
