"""PyTorch's post-local SGD hook
(``torch.distributed.algorithms.ddp_comm_hooks.post_localSGD_hook``).

For the first ``start_localSGD_iter`` iterations the hook averages gradients over the whole
group, as DDP does; after that only within ``subgroup`` (default: the ranks of this node,
made with ``new_subgroups()`` on first use), or not at all with
``post_local_gradient_allreduce=False``. Pair it with a model averager
(``PeriodicModelAverager``) that averages parameters over the world every few steps.
"""

from __future__ import annotations

import logging

from ... import _c10d_extras
from ...distributed_c10d import get_world_size
from ...work import Future
from ..grad_bucket import GradBucket
from .default_hooks import _all_reduce_future, _div_by_world_size_

__all__ = ["PostLocalSGDState", "post_localSGD_hook"]

logger = logging.getLogger(__name__)


class PostLocalSGDState:
    r"""The state of :func:`post_localSGD_hook`.

    Args:
        process_group: the group of the global allreduce before local SGD starts
            (``None``: the default group).
        subgroup: the group local SGD averages within (``None``: one per node, made on first
            use).
        start_localSGD_iter: the iteration from which only ``subgroup`` is averaged.
        post_local_gradient_allreduce: whether gradients are averaged within ``subgroup``
            after ``start_localSGD_iter`` (``False``: purely local steps).
    """

    __slots__ = [
        "process_group",
        "subgroup",
        "start_localSGD_iter",
        "post_local_gradient_allreduce",
        "iter",
    ]

    def __init__(
        self,
        process_group,
        subgroup,
        start_localSGD_iter: int,
        post_local_gradient_allreduce: bool = True,
    ) -> None:
        if not isinstance(start_localSGD_iter, int) or start_localSGD_iter < 0:
            raise ValueError(
                "PostLocalSGDState: start_localSGD_iter must be a non-negative int, got "
                f"{start_localSGD_iter!r}"
            )
        logger.info("Local SGD will be started after %s iterations", start_localSGD_iter)
        self.process_group = process_group
        self.subgroup = subgroup
        self.start_localSGD_iter = start_localSGD_iter
        self.post_local_gradient_allreduce = post_local_gradient_allreduce
        self.iter = 0

    def maybe_increase_iter(self, bucket: GradBucket) -> None:
        # an iteration ends with its last bucket
        if bucket.is_last():
            self.iter += 1
        if self.iter == self.start_localSGD_iter:
            logger.info("Start to apply local SGD after %s iterations.", self.iter)


def _average(group, tensor) -> Future:
    _div_by_world_size_(tensor, get_world_size(group))
    return _all_reduce_future(group, tensor).then(lambda fut: fut.value()[0])


def post_localSGD_hook(state: PostLocalSGDState, bucket: GradBucket) -> Future:
    r"""Average the bucket over ``state.process_group`` before ``state.start_localSGD_iter``,
    then over ``state.subgroup`` only (or leave it local).

    Example::
        >>> state = PostLocalSGDState(process_group=None, subgroup=None,
        ...                           start_localSGD_iter=10)  # doctest: +SKIP
        >>> ddp_model.register_comm_hook(state, post_localSGD_hook)  # doctest: +SKIP
    """
    tensor = bucket.buffer()
    if state.iter < state.start_localSGD_iter:
        state.maybe_increase_iter(bucket)
        return _average(state.process_group, tensor)
    if not state.post_local_gradient_allreduce:
        fut = Future()
        fut.set_result(tensor)
        return fut
    if state.subgroup is None:
        state.subgroup, _ = _c10d_extras.new_subgroups()
    return _average(state.subgroup, tensor)
