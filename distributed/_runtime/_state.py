"""The process's distributed state (the default group's ``World``) and how ops reach it."""

from __future__ import annotations

from ..process_group import ProcessGroup
from ..work import Work

world = None  # the World of the current init_process_group, or None


class _GroupNamespace:
    """``group.WORLD`` / ``GroupMember.WORLD``: the default group once initialised."""

    NON_GROUP_MEMBER = type("NonGroupMember", (), {"__repr__": lambda s: "NON_GROUP_MEMBER"})()

    @property
    def WORLD(self):  # noqa: N802 - PyTorch's name
        return world.groups[0] if world is not None else None


#: ``group.WORLD``: the default process group once initialized (None before).
group = _GroupNamespace()
#: The same object as :data:`group`; ``GroupMember.NON_GROUP_MEMBER`` is what ``new_group``
#: returns on ranks outside the new group.
GroupMember = group


def require_world():
    """The current ``World``; PyTorch's error when ``init_process_group`` was not called."""
    if world is None:
        raise ValueError(
            "Default process group has not been initialized, please make sure to "
            "call init_process_group."
        )
    return world


def resolve_group(grp) -> ProcessGroup | None:
    """The group an op runs on: the default one for ``None``; ``None`` for non-members."""
    w = require_world()
    if grp is None or grp is group.WORLD:
        return w.groups[0]
    if grp is GroupMember.NON_GROUP_MEMBER:
        return None
    if not isinstance(grp, ProcessGroup):
        raise TypeError(f"group must be a ProcessGroup from new_group(), got {type(grp).__name__}")
    if grp.world is not w or grp.group_id not in w.groups:
        raise ValueError(f"{grp.label} was destroyed or belongs to an earlier init_process_group")
    return grp if grp.is_member else None


def execute(pg: ProcessGroup, fn, async_op: bool, outputs: list):
    """Run ``fn`` in issue order: inline for blocking calls, on the comm thread for async."""
    if async_op:
        return Work(pg.world.executor.submit(fn), outputs)
    pg.world.executor.run(fn)
    return None
