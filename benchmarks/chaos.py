"""Chaos table: two ranks on two "hosts" (network namespaces) train while the link is cut.

    sudo python benchmarks/chaos.py                      # cuts of 2, 8, 15, 30 s, then one past
                                                         # a 5 s grace period
    sudo python benchmarks/chaos.py --cuts 8 --beyond-grace 0

Each scenario starts a fresh pair of ranks (a data-parallel loop, gradients averaged with
``all_reduce`` over the socket data plane), drops every packet on the veth pair in both
namespaces with nftables once rank 0 has done 3 steps, restores the link after the cut, and
reports: the outcome (survived, or failed with the first error), the time from the cut to the
first rank's error (failures) or from the link's return to the next finished step (survivals),
the bytes left in ``/dev/shm`` and the ranks' temp directory, and whether the final weights are
bitwise equal to the same loop computed in one process. Needs root, ``ip netns`` and ``nft``.
The scenarios live in tests/chaos/linkcut.py, which the chaos tests share.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "chaos"))
from _common import table  # noqa: E402


def _cuts(text: str) -> list[float]:
    try:
        cuts = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--cuts wants seconds like 2,8,15, got {text!r}"
        ) from None
    if any(c <= 0 for c in cuts):
        raise argparse.ArgumentTypeError(f"--cuts must be positive seconds, got {text!r}")
    return cuts


def _cause(err: str | None) -> str:
    if err is None:
        return "?"
    # the peer and the reason, not the explanation and call site (in docs/failure_modes.md)
    err = err.split(" while ")[0].split(" (no reply")[0].split(" (reported by")[0]
    return err if len(err) <= 120 else err[:117] + "..."


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cuts", type=_cuts, default=[2, 8, 15, 30], help="cut lengths, seconds")
    p.add_argument(
        "--beyond-grace",
        type=float,
        default=5.0,
        help="also cut for 30 s with this grace period (EMBER_NET_GRACE_S); 0 skips it",
    )
    p.add_argument(
        "--how",
        choices=("drop", "down"),
        default="drop",
        help="drop: nftables drops every packet; down: `ip link set down` on both ends",
    )
    args = p.parse_args(argv)
    from linkcut import NetnsPair, available, reference_weights, run_scenario

    if not available():
        sys.exit("benchmarks/chaos.py needs root and `ip netns` (run it with sudo)")
    ref = reference_weights()
    plan = [(c, None) for c in args.cuts]
    if args.beyond_grace > 0:
        plan.append((30.0, args.beyond_grace))
    rows = []
    for cut, grace in plan:
        with NetnsPair() as pair:
            out = run_scenario(pair, cut, grace, how=args.how)
        how = "" if args.how == "drop" else ", link down"
        name = f"link cut {cut:g} s (grace {grace or 60:g} s{how})"
        if out.survived:
            outcome = "survived"
            timing = (
                f"resumed {out.resume_s:.1f} s after the link returned" if out.resume_s else "-"
            )
        else:
            failed = [r for r, rc in enumerate(out.returncodes) if rc != 0]
            cause = _cause(next((e for e in out.errors if e), None))
            outcome = f"failed on ranks {failed}: {cause}"
            timing = f"{out.detect_s:.1f} s after the cut" if out.detect_s is not None else "-"
        equal = all(w == ref for w in out.weights) if out.survived else "n/a (failed)"
        rows.append([name, outcome, timing, out.leaked_bytes, equal])
        print(f"done: {name}: {outcome}", file=sys.stderr, flush=True)
    print(
        table(
            rows,
            [
                "scenario",
                "outcome",
                "time to detect / resume",
                "bytes leaked",
                "weights bitwise equal",
            ],
        )
    )


if __name__ == "__main__":
    main()
