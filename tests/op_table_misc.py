"""Op-table records of the misc family (assembled into tests/op_table.py's OPS)."""

from __future__ import annotations

import numpy as np  # noqa: F401
from op_support import OpSpec, S, T  # noqa: F401

OPS: list[OpSpec] = []
