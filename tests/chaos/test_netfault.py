"""Chaos: a lossy or slow link between two "hosts" (network namespaces), and a host lost.

Packet loss (nftables ``numgen random`` drops on one namespace's input and output, so each
direction loses that share once; ``tc netem`` is not available on these kernels) and a bandwidth
cap (``tc tbf``) are ridden out by TCP: the data-parallel loop ends with weights bitwise equal to
an uninterrupted run. A host lost for good (link cut, every process of its namespace SIGKILLed,
so no FIN or RST arrives) is reported by the other rank within the grace period, naming the lost
rank and its address. CI runs 5 % loss and the lost host; 1 % loss and the 10 mbit cap carry
``full``. See linkcut.py and benchmarks/chaos.py.
"""

from __future__ import annotations

import shutil

import pytest
from linkcut import ADDRS, NetnsPair, available, reference_weights, run_scenario

pytestmark = pytest.mark.multinode

DIM = 512  # 128 KiB of gradients per step: the link's loss and rate matter


@pytest.fixture
def pair():
    if not available() or shutil.which("nft") is None or shutil.which("tc") is None:
        pytest.skip("needs root, `ip netns`, nft and tc")
    with NetnsPair() as p:
        yield p


@pytest.fixture(scope="module")
def reference():
    pytest.importorskip("threadpoolctl")
    return reference_weights(dim=DIM)


@pytest.mark.parametrize(
    "fault",
    [
        "loss 5%",
        pytest.param("loss 1%", marks=pytest.mark.full),
        pytest.param("10mbit", marks=pytest.mark.full),
    ],
)
def test_lossy_or_capped_link_is_ridden_out_bitwise(pair, reference, fault):
    if fault.startswith("loss"):
        pair.packet_loss(0, int(fault[5:-1]))  # ns 0's input and output: each direction once
    else:
        for side in (0, 1):
            pair.bandwidth_cap(side, fault)
    out = run_scenario(pair, 0, dim=DIM, sleep=0)
    assert out.returncodes == [0, 0], out.errors
    assert out.weights[0] == reference and out.weights[1] == reference
    assert out.leaked_bytes == 0


@pytest.mark.parametrize("grace_s", [5])
def test_host_lost_is_reported_naming_it_within_the_grace(pair, grace_s):
    out = run_scenario(pair, 0, grace_s=grace_s, lose=1)
    assert out.returncodes[0] == 3 and out.returncodes[1] == -9, out.errors
    err = out.errors[0]
    assert "rank 1 (host" in err and ADDRS[1] in err, err
    assert "unreachable" in err and "probably exited" not in err, err
    assert grace_s - 0.5 <= out.detect_s <= grace_s + 4, out.detect_s
    assert out.leaked_bytes == 0
