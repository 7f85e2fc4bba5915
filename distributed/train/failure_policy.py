"""Restart-or-raise after a failure, decided in one place (Ray Train's ``FailurePolicy``).

The ``Trainer`` runs an attempt; when a worker fails it describes the failure as a
``TrainingFailure`` and asks its policy ``make_decision(failure)``: ``RETRY`` restarts the
whole group from the latest checkpoint, ``RAISE`` ends ``fit()`` with ``TrainingFailedError``.
The policy holds the count, so it is an ordinary object to test (no Ray, no workers):

    >>> policy = DefaultFailurePolicy(FailureConfig(max_failures=1))
    >>> failure = TrainingFailure(rank=1, node="10.0.0.2", pid=4242, detail="Traceback ...")
    >>> policy.make_decision(failure), policy.make_decision(failure)
    (<FailureDecision.RETRY: 'RETRY'>, <FailureDecision.RAISE: 'RAISE'>)

``FailureConfig.max_failures`` keeps Ray's meaning: failures to recover from (0: none, raise at
the first; -1: every one). A ``KeyboardInterrupt`` on the driver is not a failure: it ends
``fit()`` without asking the policy.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass

from .config import FailureConfig

__all__ = [
    "FailureDecision",
    "TrainingFailure",
    "FailurePolicy",
    "DefaultFailurePolicy",
    "create_failure_policy",
]


class FailureDecision(enum.Enum):
    """What to do after a failure."""

    RETRY = "RETRY"  # restart the worker group from the latest checkpoint
    RAISE = "RAISE"  # give up: fit() raises TrainingFailedError


@dataclass(frozen=True)
class TrainingFailure:
    """One failed attempt: the first worker to fail (its rank, node and pid) and its error
    (the worker's traceback)."""

    rank: int | None
    node: str | None
    pid: int | None
    detail: str


class FailurePolicy(abc.ABC):
    """Decides, failure by failure, whether a run restarts or raises."""

    def __init__(self, failure_config: FailureConfig) -> None:
        if not isinstance(failure_config, FailureConfig):
            raise TypeError(
                f"{type(self).__name__}: expected a FailureConfig, got "
                f"{type(failure_config).__name__}"
            )
        self.failure_config = failure_config

    @abc.abstractmethod
    def make_decision(self, failure: TrainingFailure) -> FailureDecision:
        """``RETRY`` or ``RAISE`` after ``failure`` (called once per failed attempt)."""


class DefaultFailurePolicy(FailurePolicy):
    """Retry while the failures so far are at most ``max_failures`` (-1: always)."""

    def __init__(self, failure_config: FailureConfig) -> None:
        super().__init__(failure_config)
        limit = failure_config.max_failures
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < -1:
            raise ValueError(
                f"FailureConfig.max_failures must be an int >= -1 (-1: retry "
                f"forever), got {limit!r}"
            )
        self.failures = 0

    @property
    def retry_limit(self) -> float:
        limit = self.failure_config.max_failures
        return float("inf") if limit == -1 else limit

    def make_decision(self, failure: TrainingFailure) -> FailureDecision:
        if not isinstance(failure, TrainingFailure):
            raise TypeError(
                f"make_decision: expected a TrainingFailure, got {type(failure).__name__}"
            )
        self.failures += 1
        return FailureDecision.RETRY if self.failures <= self.retry_limit else FailureDecision.RAISE

    def describe(self) -> str:
        """``"2/3"``: failures so far / allowed (``inf`` for -1), for the driver's log."""
        limit = self.failure_config.max_failures
        return f"{self.failures}/{'inf' if limit == -1 else limit}"


def create_failure_policy(failure_config: FailureConfig) -> FailurePolicy:
    """The policy a ``Trainer`` with this ``FailureConfig`` uses."""
    return DefaultFailurePolicy(failure_config)
