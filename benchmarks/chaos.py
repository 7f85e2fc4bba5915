"""Chaos table: faults injected into training and checkpointing, each with its measured outcome.

    sudo python benchmarks/chaos.py                 # link cuts of 2, 8, 15, 30 s, then one past
                                                    # a 5 s grace period
    sudo python benchmarks/chaos.py --all           # every family below
    sudo python benchmarks/chaos.py --only netfault,diskfull,savekill
    sudo python benchmarks/chaos.py --cuts 8 --beyond-grace 0

Families (the scenarios live in tests/chaos/, which the chaos tests share):

* ``linkcut``: two ranks on two "hosts" (network namespaces joined by a veth pair) train a
  data-parallel loop (``all_reduce`` over the socket data plane); once rank 0 has done 3 steps
  every packet on the link is dropped (nftables) for the cut's length (linkcut.py).
* ``netfault``: the same loop (a 64x512 layer: 128 KiB of gradients a step, 40 steps, no sleep)
  over a link losing 1 % / 5 % of its packets in each direction (nftables ``numgen`` in one
  namespace, input and output) or capped at 10 mbit in each direction (``tc tbf``),
  each run after a clean-link run in the same invocation; the step time is rank 0's mean.
* ``hostlost``: at step 3 the link to rank 1's namespace is cut for good and every process in
  it SIGKILLed (no FIN/RST arrives); rank 0 must fail within the grace period naming rank 1.
* ``trainkill``: a Trainer run (2 workers, checkpoint every epoch, ``get_checkpoint`` +
  ``set_epoch``) with rank 1 SIGKILLed at 3 random batches (trainkill.py; needs Ray).
* ``diskfull``: a 2 MiB tmpfs as the checkpoint directory; a first checkpoint fits, the next
  does not (ember.save in both formats, DCP, the Trainer's checkpoint) (diskfull.py).
* ``savekill``: ``ember.save`` of a large state dict SIGKILLed mid-save N times (savekill.py).
* ``flood``: silent connections and bad-token handshakes against a running 2-rank job's data
  listener and store, quiet and flooded phases alternating (tests/chaos/flood.py).

Every row: the outcome (survived / failed with its cause), the time to detect or resume, the
bytes left behind in ``/dev/shm`` and the temp directories, and whether the final weights are
bitwise equal to an uninterrupted run. Needs root, ``ip netns``, ``nft`` and ``tc``.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "chaos"))
from _common import choice_list, table  # noqa: E402

FAMILIES = ("linkcut", "netfault", "hostlost", "trainkill", "diskfull", "savekill", "flood")
HEADER = ["scenario", "outcome", "time to detect / resume", "bytes leaked", "weights bitwise equal"]


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


def _failed(out) -> str:
    failed = [r for r, rc in enumerate(out.returncodes) if rc != 0]
    return f"failed on ranks {failed}: {_cause(next((e for e in out.errors if e), None))}"


# ---- families --------------------------------------------------------------------------------
def linkcut_rows(args) -> list[list]:
    from linkcut import NetnsPair, reference_weights, run_scenario

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
            outcome = _failed(out)
            timing = f"{out.detect_s:.1f} s after the cut" if out.detect_s is not None else "-"
        equal = all(w == ref for w in out.weights) if out.survived else "n/a (failed)"
        rows.append([name, outcome, timing, out.leaked_bytes, equal])
    return rows


NETFAULTS = (("packet loss 1 %", "loss", 1), ("packet loss 5 %", "loss", 5))
NETFAULTS += (("bandwidth cap 10 mbit", "rate", "10mbit"),)


def netfault_rows(args) -> list[list]:
    from linkcut import NetnsPair, reference_weights, run_scenario

    dim, steps = 512, 40
    ref = reference_weights(steps, dim=dim)

    def run(fault):
        with NetnsPair() as pair:
            if fault is not None and fault[1] == "loss":
                pair.packet_loss(0, fault[2])  # ns 0's input and output: each direction once
            elif fault is not None:
                for side in (0, 1):
                    pair.bandwidth_cap(side, fault[2])
            return run_scenario(pair, 0, steps=steps, dim=dim, sleep=0)

    rows = []
    for fault in NETFAULTS:
        clean, faulty = [], []
        for _ in range(args.repeats):  # alternate, so the machine's load hits both alike
            c, f = run(None), run(fault)
            clean.append(c.step_s)
            faulty.append(f)
        ok = all(f.survived for f in faulty)
        outcome = "survived" if ok else _failed(next(f for f in faulty if not f.survived))
        c_ms = statistics.mean(clean) * 1e3
        f_ms = statistics.mean(f.step_s for f in faulty if f.step_s) * 1e3
        timing = f"step {f_ms:.1f} ms vs {c_ms:.1f} ms clean (x{f_ms / c_ms:.2f})"
        equal = all(w == ref for f in faulty for w in f.weights) if ok else "n/a (failed)"
        leaked = sum(f.leaked_bytes for f in faulty)
        rows.append(
            [f"{fault[0]} (each direction, {args.repeats} runs)", outcome, timing, leaked, equal]
        )
    return rows


def hostlost_rows(args) -> list[list]:
    from linkcut import NetnsPair, run_scenario

    grace = args.beyond_grace or 5.0
    with NetnsPair() as pair:
        out = run_scenario(pair, 0, grace_s=grace, lose=1)
    named = "rank 1 (host" in (out.errors[0] or "")
    if out.returncodes[0] == 3 and named:
        outcome = f"failed on rank 0 naming the lost rank: {_cause(out.errors[0])}"
    else:
        outcome = f"NOT detected as expected: rc {out.returncodes}, {_cause(out.errors[0])}"
    timing = f"{out.detect_s:.1f} s after the loss" if out.detect_s is not None else "-"
    name = f"host lost (rank 1's namespace: link cut for good + SIGKILL, grace {grace:g} s)"
    return [[name, outcome, timing, out.leaked_bytes, "n/a (failed, as it should)"]]


def trainkill_rows(args) -> list[list]:
    from trainkill import run_trainer_kills

    out = run_trainer_kills(kills=3, seed=args.seed)
    if out.survived:
        outcome = f"survived, epochs reported {out.epochs}"
        timing = (
            f"{out.per_kill_s:.1f} s per kill (run {out.killed_s:.0f} s vs {out.clean_s:.0f} s)"
        )
    else:
        outcome = f"failed: {_cause(out.error)}" if out.error else "weights differ"
        timing = "-"
    leaked = f"{out.leaked_bytes}" + (f" + stray {out.stray_files}" if out.stray_files else "")
    name = f"3 SIGKILLs of rank 1 in one Trainer run (at (epoch, batch) {out.kill_at})"
    return [[name, outcome, timing, leaked, out.bitwise_equal]]


def diskfull_rows(args) -> list[list]:
    from diskfull import KINDS, run_disk_full

    rows = []
    for kind in KINDS:
        if kind == "Trainer checkpoint" and not args.with_ray:
            continue
        out = run_disk_full(kind)
        if out.error is None:
            outcome = "NOT failed: the save into a full disk returned"
        else:
            named = "ENOSPC named" if "ENOSPC" in out.error else "ENOSPC NOT named"
            prev = "previous loads" if out.previous_loads else "previous LOST"
            outcome = f"failed ({named}, {prev}): {_cause(out.error)}"
        leaked = f"{out.leaked_bytes}" + (f" + {out.leftovers}" if out.leftovers else "")
        rows.append(
            [f"disk full: {kind} (2 MiB tmpfs)", outcome, f"{out.detect_s:.2f} s", leaked, "n/a"]
        )
    return rows


def savekill_rows(args) -> list[list]:
    from savekill import run_save_kills

    rows = []
    for when, kills, mb in (("writing", 3, 64), ("random", args.save_kills, 256)):
        out = run_save_kills(kills=kills, size_mb=mb, seed=args.seed, when=when)
        where = "while writing" if when == "writing" else "at random points"
        outcome = (
            f"previous file loaded after {kills - out.unloadable}/{kills} kills "
            f"({out.mid_save} hit a save in progress); {out.stale_after_kills} B of temp files "
            "left before the next save, which removed them"
        )
        if out.errors:
            outcome += f"; {out.errors[0]}"
        rows.append(
            [
                f"SIGKILL during ember.save of {mb} MiB x{kills} ({where})",
                outcome,
                f"save {out.save_s:.2f} s",
                out.leaked_bytes,
                "yes (each version bit for bit)" if out.unloadable == 0 else "no",
            ]
        )
    return rows


def flood_rows(args) -> list[list]:
    try:
        from flood import run_flood
    except ImportError:
        return [["flood", "not measured: tests/chaos/flood.py is missing", "-", "-", "-"]]
    out = run_flood(phases=4, steps=30)
    ok = out.returncodes == [0, 0]
    outcome = "survived" if ok else f"failed: rc {out.returncodes}"
    wall = statistics.mean(out.flooded_wall) / statistics.mean(out.quiet_wall)
    outcome += (
        f"; throughput flooded/quiet {out.cpu_ratio:.2f} per CPU-s, {1 / wall:.2f} wall "
        f"({out.handshakes} bad handshakes, {out.store_calls} bad store calls, "
        f"{out.refusal_lines} refusal log lines)"
    )
    return [["flood: 32 silent connections + bad-token handshakes", outcome, "-", "-", "n/a"]]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--all", action="store_true", help="every family")
    p.add_argument(
        "--only", type=choice_list(FAMILIES), default=None, help=f"families: {','.join(FAMILIES)}"
    )
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
    p.add_argument("--repeats", type=int, default=3, help="netfault: runs per fault (and clean)")
    p.add_argument("--save-kills", type=int, default=10, help="savekill: kills at random points")
    p.add_argument("--seed", type=int, default=0, help="random kill points")
    p.add_argument(
        "--with-ray", action="store_true", help="diskfull: also the Trainer's checkpoint (Ray)"
    )
    args = p.parse_args(argv)
    families = list(FAMILIES) if args.all else (args.only or ["linkcut"])
    from linkcut import available

    if not available():
        sys.exit("benchmarks/chaos.py needs root and `ip netns` (run it with sudo)")
    rows = []
    for family in families:
        try:
            new = globals()[f"{family}_rows"](args)
        except Exception as e:  # one family that cannot run (no Ray, no tc) keeps the others
            new = [[family, f"not measured: {_cause(f'{type(e).__name__}: {e}')}", "-", "-", "-"]]
        for r in new:
            print(f"done: {r[0]}: {r[1]}", file=sys.stderr, flush=True)
        rows += new
    print(table(rows, HEADER))


if __name__ == "__main__":
    main()
