"""DTensor's collectives, labelled as PyTorch's functional collectives.

PyTorch's DTensor communicates through ``torch.ops.c10d_functional`` (``all_reduce``,
``all_gather_into_tensor``, ``reduce_scatter_tensor``), and ``CommDebugMode`` counts them under
those keys, while a direct ``dist.all_reduce`` counts as ``c10d.allreduce_``. ember's DTensor
calls the ordinary collectives; these wrappers mark the calls so that ``CommDebugMode`` keys
them as PyTorch does. The keys themselves (``ember.ops.c10d_functional.all_reduce``,
``ember.ops.c10d.allreduce_`` ...) are defined here too.
"""

from __future__ import annotations

from contextlib import contextmanager

from .. import collectives as _c

__all__: list[str] = []

# the functional collective a running ember collective stands for (None: a plain c10d call)
_LABEL: list = [None]


class CommOp:
    """A collective's key in ``CommDebugMode.get_comm_counts()``: ``ember.ops.<ns>.<name>``,
    printed as PyTorch prints its op packets (``c10d_functional.all_reduce``)."""

    __slots__ = ("_ns", "_name", "__name__")

    def __init__(self, ns: str, name: str) -> None:
        self._ns, self._name, self.__name__ = ns, name, name

    def name(self) -> str:
        return f"{self._ns}::{self._name}"

    @property
    def default(self) -> CommOp:
        """The key itself (``torch.ops.c10d_functional.all_reduce.default``, as libraries
        spell it in their dispatch tables)."""
        return self

    def __str__(self) -> str:
        return f"{self._ns}.{self._name}"

    def __repr__(self) -> str:
        return f"<OpOverloadPacket(op='{self._ns}.{self._name}')>"

    def __call__(self, *args, **kwargs):
        raise NotImplementedError(
            f"ember.ops.{self} is a key for CommDebugMode's counts, not a callable op; use "
            "ember.distributed's collectives (or DTensor) to communicate"
        )


_FUNCOL_NAMES = (
    "all_gather_into_tensor",
    "all_gather_into_tensor_coalesced",
    "all_reduce",
    "all_reduce_coalesced",
    "all_to_all_single",
    "broadcast",
    "reduce_scatter_tensor",
    "reduce_scatter_tensor_coalesced",
)
# ember's collective (its name in collectives._call) -> PyTorch's c10d op
_C10D_NAMES = {
    "all_reduce": "allreduce_",
    "reduce": "reduce_",
    "reduce_scatter": "reduce_scatter_",
    "reduce_scatter_tensor": "_reduce_scatter_base_",
    "broadcast": "broadcast_",
    "all_gather": "allgather_",
    "all_gather_into_tensor": "_allgather_base_",
    "gather": "gather_",
    "scatter": "scatter_",
    "all_to_all": "alltoall_",
    "all_to_all_single": "alltoall_base_",
}

FUNCOL = {n: CommOp("c10d_functional", n) for n in _FUNCOL_NAMES}
C10D = {ember_name: CommOp("c10d", n) for ember_name, n in _C10D_NAMES.items()}
SHARD_DIM_ALLTOALL = CommOp("_dtensor", "shard_dim_alltoall")


def _publish() -> None:
    """Make the keys reachable as ``ember.ops.c10d_functional.<name>`` / ``ember.ops.c10d.<name>``
    (an op namespace's instance attributes win over its registry lookup)."""
    from ember.library._namespace import namespace

    for key in (*FUNCOL.values(), *C10D.values(), SHARD_DIM_ALLTOALL):
        setattr(namespace(key._ns), key._name, key)


_publish()


def key_of(ember_name: str):
    """The ``CommDebugMode`` key of the ember collective ``ember_name`` now running, or None
    for one PyTorch's mode does not count (barrier)."""
    label = _LABEL[0]
    if label is not None:
        return FUNCOL[label]
    return C10D.get(ember_name)


@contextmanager
def _as(label: str):
    prev, _LABEL[0] = _LABEL[0], label
    try:
        yield
    finally:
        _LABEL[0] = prev


def all_reduce(tensor, op=None, group=None) -> None:
    """``funcol.all_reduce`` (in place on ``tensor``)."""
    with _as("all_reduce"):
        if op is None:
            _c.all_reduce(tensor, group=group)
        else:
            _c.all_reduce(tensor, op=op, group=group)


def all_gather(parts: list, tensor, group=None) -> None:
    """``funcol.all_gather_into_tensor`` (into the list ``parts``)."""
    with _as("all_gather_into_tensor"):
        _c.all_gather(parts, tensor, group=group)


def reduce_scatter_tensor(output, input, group=None) -> None:  # noqa: A002 - PyTorch's name
    """``funcol.reduce_scatter_tensor``."""
    with _as("reduce_scatter_tensor"):
        _c.reduce_scatter_tensor(output, input, group=group)
