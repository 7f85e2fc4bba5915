"""``torch.utils._foreach_utils``: grouping tensor lists by device and dtype before the
``_foreach_*`` list ops (optimizer libraries import it: pytorch_optimizer's foreach paths).

ember's ``_foreach_*`` ops accept any list, so the grouping only matters to callers that
rely on its shape: ``{(device, dtype): (tensorlistlist, indices)}``.
"""

from __future__ import annotations

from typing import Any

from ..autograd.grad_mode import no_grad
from ..tensor import Tensor

__all__: list[str] = []

TensorListList = list[list["Tensor | None"]]
Indices = list[int]
_foreach_supported_types = [Tensor]


def _get_foreach_kernels_supported_devices() -> list[str]:
    """The device types with foreach kernels (torch's list; ember's run on every device)."""
    return ["cuda", "xpu", "mtia", "privateuseone"]


def _get_fused_kernels_supported_devices() -> list[str]:
    """The device types with fused optimizer kernels (torch's list)."""
    return ["mps", "cuda", "xpu", "hpu", "cpu", "mtia", "privateuseone"]


@no_grad()
def _group_tensors_by_device_and_dtype(
    tensorlistlist: TensorListList, with_indices: bool = False
) -> dict[tuple[Any, Any], tuple[TensorListList, Indices]]:
    """Split aligned tensor lists into groups keyed by the first list's ``(device, dtype)``.

    Args:
        tensorlistlist: lists of equal length; the first holds tensors, the others may hold
            ``None``.
        with_indices: kept for torch's signature; the positions in the original lists are
            always returned as the second element of each group.

    Returns:
        ``{(device, dtype): ([list_0_part, list_1_part, ...], indices)}``, groups in order of
        first appearance.
    """
    if not tensorlistlist:
        return {}
    n = len(tensorlistlist[0])
    for lst in tensorlistlist:
        if len(lst) != n:
            raise RuntimeError(
                "_group_tensors_by_device_and_dtype: all tensor lists must have the same "
                f"length, got {len(lst)} and {n}"
            )
        for t in lst:
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(
                    "_group_tensors_by_device_and_dtype(): incompatible function arguments: "
                    f"expected lists of tensors or None, got {type(t).__name__}"
                )
    groups: dict[tuple[Any, Any], tuple[TensorListList, Indices]] = {}
    for i, t in enumerate(tensorlistlist[0]):
        key = (t.device, t.dtype)
        group = groups.get(key)
        if group is None:
            group = groups[key] = ([[] for _ in tensorlistlist], [])
        for part, lst in zip(group[0], tensorlistlist):
            part.append(lst[i])
        group[1].append(i)
    return groups


def _device_has_foreach_support(device: Any) -> bool:
    return device.type in (_get_foreach_kernels_supported_devices() + ["cpu"])


def _has_foreach_support(tensors: list[Tensor], device: Any) -> bool:
    return _device_has_foreach_support(device) and all(
        t is None or type(t) in _foreach_supported_types for t in tensors
    )
