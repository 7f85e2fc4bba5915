"""What the examples share: command-line options, checkpoints and a clean stop on Ctrl-C.

Each example keeps its model, its train loop and its evaluation loop in its own file; only the
plumbing that is the same in all of them lives here.

A checkpoint is one file, ``OUT/checkpoint.pt``, written atomically by ``ember.save`` (a crash
while saving leaves the previous checkpoint intact). It holds everything a run needs to go on
exactly as if it had never stopped: model, optimizer and scheduler state, the default random
generator's state, the training DataLoader's position (which may be in the middle of an epoch),
the epoch and step counters, and the options the run was started with.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

import ember

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TEXT = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
CHECKPOINT_NAME = "checkpoint.pt"
# The digits examples hold out the same 20% of the images, chosen at random, whatever --seed says.
SPLIT_SEED = 1234

# Options that say where and how fast a run goes rather than what it computes: they may change
# on --resume without a warning (though another device, thread or worker count can round or
# draw differently, so bitwise equality with an uninterrupted run needs the same ones).
_RUN_CONTROL = {"resume", "max_steps", "out", "num_workers", "device", "threads"}


def make_parser(
    description: str, *, name: str, epochs: int, batch_size: int, lr: float, text: bool = False
) -> argparse.ArgumentParser:
    """The options every example has; an example adds its own before parsing."""
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--epochs", type=int, default=epochs, help="epochs to train")
    p.add_argument("--batch-size", type=int, default=batch_size, help="samples per batch")
    p.add_argument("--lr", type=float, default=lr, help="(peak) learning rate")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs") / name,
        help="directory for the checkpoint and the TensorBoard logs",
    )
    p.add_argument(
        "--resume", action="store_true", help=f"continue the run saved in OUT/{CHECKPOINT_NAME}"
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="stop after this many optimizer steps in all, writing a checkpoint "
        "there (--resume continues from it)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of ember's default generator")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS threads on the CPU (default: the BLAS library's choice; 1 is "
        "faster when other programs keep the cores busy)",
    )
    if text:
        p.add_argument(
            "--data", type=Path, default=DEFAULT_TEXT, help="the text file to train on (UTF-8)"
        )
    return p


def parse_args(
    parser: argparse.ArgumentParser, argv: list[str] | None, positive: tuple[str, ...] = ()
) -> argparse.Namespace:
    """Parse and check the options; bad values end the program with a message naming them.

    ``positive`` names further options (``dest`` names) that must be > 0.
    """
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "lr", *positive):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.max_steps is not None and args.max_steps <= 0:
        parser.error(f"--max-steps must be positive, got {args.max_steps}")
    if args.num_workers < 0:
        parser.error(f"--num-workers must be >= 0, got {args.num_workers}")
    if args.threads is not None:
        if args.threads <= 0:
            parser.error(f"--threads must be positive, got {args.threads}")
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.threads, user_api="blas")  # for the rest of the process
    data = getattr(args, "data", None)
    if data is not None and not data.is_file():
        parser.error(
            f"--data: text file not found: {data} (ember downloads nothing; "
            "pass the path of a local UTF-8 text file, e.g. tinyshakespeare.txt)"
        )
    if args.device is None:
        args.device = "cuda" if ember.cuda.is_available() else "cpu"
    try:
        args.device = ember.device(args.device)
    except (RuntimeError, ValueError) as exc:
        parser.error(f"--device: {exc}")
    if args.device.type == "cuda" and not ember.cuda.is_available():
        parser.error(
            f"--device {args.device}: CUDA is not available here (ember needs CuPy and "
            "a GPU: pip install 'ember[gpu]')"
        )
    return args


def digits_split(flatten: bool = False, train_transform=None) -> tuple:
    """(train, test) subsets of all 1,797 of scikit-learn's digits: a fixed random 80/20 split.

    ``flatten`` gives 64-vectors (for MLPs) instead of ``(1, 8, 8)`` images;
    ``train_transform`` applies to the training images only (augmentation).
    """
    from ember.utils.data import Subset, random_split
    from ember.utils.data.datasets import Digits

    plain = Digits(train=None, flatten=flatten)
    train_idx, test_idx = random_split(
        range(len(plain)), [0.8, 0.2], generator=ember.Generator().manual_seed(SPLIT_SEED)
    )
    train = (
        plain
        if train_transform is None
        else Digits(train=None, flatten=flatten, transform=train_transform)
    )
    return Subset(train, train_idx.indices), Subset(plain, test_idx.indices)


def _plain(args: argparse.Namespace) -> dict[str, Any]:
    """The options as JSON-friendly values (stored in the checkpoint)."""
    out = {}
    for k, v in vars(args).items():
        out[k] = v if v is None or isinstance(v, (bool, int, float, str)) else str(v)
    return out


def checkpoint_path(args: argparse.Namespace) -> Path:
    return args.out / CHECKPOINT_NAME


def save_checkpoint(
    args: argparse.Namespace,
    *,
    model,
    optimizer,
    scheduler,
    loader,
    epoch: int,
    step: int,
    **extra: Any,
) -> Path:
    """Write the whole training state to ``OUT/checkpoint.pt`` in one atomic ``ember.save``.

    ``epoch`` is the epoch in progress (or the next one, at an epoch's end); the loader's own
    state says how far into it the run got.
    """
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": ember.get_rng_state(),
        "cuda_rng": ember.cuda.get_rng_state_all(),  # [] without CUDA
        "loader": loader.state_dict(),
        "epoch": epoch,
        "step": step,
        "args": _plain(args),
        **extra,
    }
    path = checkpoint_path(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    ember.save(state, path)
    return path


def load_checkpoint(
    args: argparse.Namespace, *, model, optimizer, scheduler, loader
) -> dict[str, Any]:
    """Restore everything :func:`save_checkpoint` wrote into the given objects.

    Call it after building model, optimizer, scheduler and loader (building them draws random
    numbers; the restored generator state then replaces whatever they left). Returns the
    checkpoint (``epoch``, ``step`` and any extras).
    """
    path = checkpoint_path(args)
    if not path.is_file():
        raise SystemExit(
            f"--resume: no checkpoint at {path} (start the run without --resume, "
            "or pass the --out directory of the run to continue)"
        )
    state = ember.load(path, map_location="cpu")
    now = _plain(args)
    changed = [
        f"{k}: {v!r} -> {now.get(k)!r}"
        for k, v in state["args"].items()
        if k not in _RUN_CONTROL and now.get(k) != v
    ]
    if changed:
        print(
            "warning: resuming with options that differ from the checkpoint's (the restored "
            f"scheduler keeps its saved settings): {', '.join(changed)}",
            file=sys.stderr,
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    loader.load_state_dict(state["loader"])
    ember.set_rng_state(state["rng"])
    ember.cuda.set_rng_state_all(state.get("cuda_rng", []))  # (older checkpoints: none)
    return state


class StopRequest:
    """Turns Ctrl-C (SIGINT) and SIGTERM into a request the train loop checks between steps.

    The loop then writes a checkpoint and exits (status ``128 + signal``) instead of dying in
    the middle of an update; ``--resume`` continues exactly there. A second Ctrl-C interrupts
    at once. Outside the main thread (where Python cannot install handlers) it does nothing.
    """

    def __init__(self, max_steps: int | None = None) -> None:
        self.max_steps = max_steps
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        print(
            f"\n{signal.Signals(signum).name}: stopping after this step and saving a "
            "checkpoint (Ctrl-C again to abort at once)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def should_stop(self, step: int) -> bool:
        """Whether the loop should checkpoint and stop now, after ``step`` optimizer steps."""
        return self.signal is not None or (self.max_steps is not None and step >= self.max_steps)

    def exit(self, path: Path, step: int) -> None:
        """Report where the run stopped and end the program (status 0 for ``--max-steps``)."""
        print(f"stopped after step {step}; checkpoint: {path} (continue with --resume)", flush=True)
        raise SystemExit(0 if self.signal is None else 128 + self.signal)


def unigram_entropy(ids: ember.Tensor) -> float:
    """Entropy, in nats, of the character frequencies of ``ids``: the loss of a model that
    ignores context. A language model should end up well below it."""
    counts = np.bincount(ids.numpy())
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def format_metrics(**metrics: float) -> str:
    """``name value`` pairs for a one-line epoch summary."""
    return "  ".join(f"{k.replace('_', ' ')} {v:.4g}" for k, v in metrics.items())


# argparse ``type``s for the options the DDP examples define themselves: a bad value ends the
# program with one line naming the option and what it must be, never a traceback from deep
# inside the run.
def _number(kind, text: str, low, strict: bool):
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not (value > low if strict else value >= low):
        raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low:g}, got {text}")
    return value


def positive_int(text: str) -> int:
    return _number(int, text, 0, strict=True)


def nonneg_int(text: str) -> int:
    return _number(int, text, 0, strict=False)


def positive_float(text: str) -> float:
    return _number(float, text, 0.0, strict=True)
