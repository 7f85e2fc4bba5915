"""Devices, dtypes and the numpy/cupy dispatch: the only place that knows about CuPy."""

from . import _cupy
from .device import CPU, as_device, device, device_count, device_of, get_array_module, is_available
from .dtype import (
    dtype,
    from_numpy_dtype,
    get_default_dtype,
    promote_types,
    result_type_of,
    scalar_dtype,
    set_default_dtype,
    to_dtype,
)
