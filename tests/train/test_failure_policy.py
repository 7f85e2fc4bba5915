"""The Trainer's restart-or-raise policy (``train.failure_policy``), without Ray: the decisions
for each ``max_failures``, bad configurations, and a policy of one's own."""

from __future__ import annotations

import itertools

import pytest

from ember.distributed.train import FailureConfig
from ember.distributed.train.failure_policy import (
    DefaultFailurePolicy,
    FailureDecision,
    FailurePolicy,
    TrainingFailure,
    create_failure_policy,
)

RETRY, RAISE = FailureDecision.RETRY, FailureDecision.RAISE
FAILURE = TrainingFailure(rank=1, node="10.0.0.2", pid=4242, detail="KeyError: 'x'")


@pytest.mark.parametrize(
    "max_failures,decisions",
    [
        (0, [RAISE]),
        (1, [RETRY, RAISE]),
        (3, [RETRY, RETRY, RETRY, RAISE]),
    ],
)
def test_retries_max_failures_times_then_raises(max_failures, decisions):
    policy = create_failure_policy(FailureConfig(max_failures=max_failures))
    assert isinstance(policy, DefaultFailurePolicy)
    got = [policy.make_decision(FAILURE) for _ in decisions]
    assert got == decisions
    assert policy.failures == len(decisions)
    assert policy.describe() == f"{len(decisions)}/{max_failures}"


def test_minus_one_retries_forever():
    policy = DefaultFailurePolicy(FailureConfig(max_failures=-1))
    assert all(
        d is RETRY
        for d in itertools.islice((policy.make_decision(FAILURE) for _ in itertools.count()), 1000)
    )
    assert policy.describe() == "1000/inf"


@pytest.mark.parametrize("bad", [-2, 1.5, "3", True, None])
def test_bad_max_failures_is_refused(bad):
    with pytest.raises(ValueError, match="max_failures must be an int >= -1"):
        FailureConfig(max_failures=bad)
    config = FailureConfig()
    config.max_failures = bad  # changed after construction: the policy checks too
    with pytest.raises(ValueError, match=f"got {bad!r}"):
        DefaultFailurePolicy(config)


def test_bad_arguments_name_what_was_wrong():
    with pytest.raises(TypeError, match="expected a FailureConfig, got dict"):
        DefaultFailurePolicy({"max_failures": 1})
    with pytest.raises(TypeError, match="expected a TrainingFailure, got KeyError"):
        DefaultFailurePolicy(FailureConfig(1)).make_decision(KeyError("x"))


def test_a_policy_of_ones_own():
    class RetryOnlyRankZero(FailurePolicy):
        def make_decision(self, failure):
            return RETRY if failure.rank == 0 else RAISE

    policy = RetryOnlyRankZero(FailureConfig())
    assert policy.make_decision(TrainingFailure(0, None, None, "")) is RETRY
    assert policy.make_decision(FAILURE) is RAISE
    with pytest.raises(TypeError):
        FailurePolicy(FailureConfig())  # abstract


def test_module_docstring_example_runs():
    import doctest

    from ember.distributed.train import failure_policy

    globs = {**vars(failure_policy), "FailureConfig": FailureConfig}
    failed, attempted = doctest.testmod(failure_policy, globs=globs, report=False)[:2]
    assert attempted == 3 and failed == 0
