"""A character-level LSTM language model on tinyshakespeare (or any UTF-8 text file).

Each step trains on a batch of random ``--block-size`` windows of the text, predicting every
next character; an "epoch" is ``--steps-per-epoch`` such steps (a full pass over the ~1M
windows would take hours on a CPU). After each epoch: validation loss under ``ember.no_grad()``
on held-out text (the last 10%), a generated sample, TensorBoard logs and a checkpoint that
``--resume`` continues from exactly (Ctrl-C saves one too). The learning rate follows a cosine
schedule stepped after every batch::

    python examples/char_lstm.py             # ~25 s on 2 cores: val loss ~1.9 nats (unigram 3.3)
    python examples/char_lstm.py --epochs 20 --steps-per-epoch 200   # better samples
    python examples/char_lstm.py --resume    # after a Ctrl-C: go on from runs/char_lstm
"""

from __future__ import annotations

import time

import _common  # examples/_common.py: options, checkpoints, Ctrl-C handling

import ember
from ember import nn
from ember.nn import functional as F
from ember.optim.lr_scheduler import CosineAnnealingLR
from ember.utils.data import DataLoader, RandomSampler, Subset
from ember.utils.data.datasets import CharDataset
from ember.utils.progress import progress
from ember.utils.tensorboard import SummaryWriter


class CharLSTM(nn.Module):
    """Embedding -> LSTM -> linear scores over the vocabulary, at every position."""

    def __init__(
        self, vocab_size: int, embed: int = 64, hidden: int = 256, layers: int = 1
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, x: ember.Tensor, state=None):
        """``x``: (N, T) character ids -> ((N, T, vocab) logits, the LSTM's (h, c))."""
        out, state = self.lstm(self.embed(x), state)
        return self.head(out), state


def evaluate(model: CharLSTM, loader: DataLoader, device) -> float:
    """Mean next-character cross-entropy (nats) over ``loader``."""
    model.eval()
    total, count = 0.0, 0
    with ember.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits, _ = model(x)
            total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
            count += y.numel()
    return total / count


def generate(
    model: CharLSTM, dataset: CharDataset, prompt: str, length: int, temperature: float, device
) -> str:
    """``prompt`` continued by ``length`` sampled characters; the LSTM state carries the
    context, so each new character costs one step."""
    model.eval()
    ids = dataset.encode(prompt)
    with ember.no_grad():
        logits, state = model(ember.tensor([ids], device=device))
        for _ in range(length):
            probs = F.softmax(logits[:, -1] / temperature, dim=-1)
            nxt = ember.multinomial(probs, 1)  # (1, 1), drawn from the default generator
            ids.append(int(nxt.item()))
            logits, state = model(nxt.to(device), state)
    return dataset.decode(ids)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = _common.make_parser(
        __doc__.splitlines()[0], name="char_lstm", epochs=3, batch_size=32, lr=5e-3, text=True
    )
    parser.add_argument("--steps-per-epoch", type=int, default=80, help="batches per epoch")
    parser.add_argument("--block-size", type=int, default=64, help="characters per window")
    parser.add_argument("--embed", type=int, default=64, help="embedding size")
    parser.add_argument("--hidden", type=int, default=256, help="LSTM hidden size")
    parser.add_argument("--layers", type=int, default=1, help="stacked LSTM layers")
    parser.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping")
    parser.add_argument("--eval-batches", type=int, default=8, help="validation batches")
    parser.add_argument(
        "--sample-chars",
        type=int,
        default=200,
        help="characters generated after each epoch (0: none)",
    )
    parser.add_argument(
        "--prompt", default="\n", help="start of the generated samples (default: %(default)r)"
    )
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature")
    args = _common.parse_args(
        parser,
        argv,
        positive=(
            "steps_per_epoch",
            "block_size",
            "embed",
            "hidden",
            "layers",
            "clip",
            "eval_batches",
            "temperature",
        ),
    )
    device = args.device
    ember.manual_seed(args.seed)

    train_set = CharDataset(args.data, args.block_size, split="train")
    val_set = CharDataset(args.data, args.block_size, split="val")
    try:
        train_set.encode(args.prompt)
    except KeyError as exc:
        parser.error(f"--prompt: {exc.args[0]}")
    # Random windows, a fresh draw every epoch; validation uses fixed, non-overlapping ones.
    sampler = RandomSampler(train_set, num_samples=args.steps_per_epoch * args.batch_size)
    train_loader = DataLoader(
        train_set, batch_size=args.batch_size, sampler=sampler, num_workers=args.num_workers
    )
    val_windows = range(0, len(val_set), args.block_size)[: args.eval_batches * args.batch_size]
    val_loader = DataLoader(Subset(val_set, val_windows), batch_size=args.batch_size)
    unigram = _common.unigram_entropy(train_set.data)
    print(
        f"{args.data}: {len(train_set.data):,} training characters, vocabulary "
        f"{train_set.vocab_size}, unigram entropy {unigram:.3f} nats"
    )

    model = CharLSTM(train_set.vocab_size, args.embed, args.hidden, args.layers).to(device)
    optimizer = ember.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = CosineAnnealingLR(
        optimizer, T_max=args.epochs * args.steps_per_epoch, eta_min=args.lr / 10
    )  # stepped after every batch
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "loader": train_loader}

    epoch, step = 0, 0
    if args.resume:
        state = _common.load_checkpoint(args, **parts)
        epoch, step = state["epoch"], state["step"]
        print(f"resumed from {_common.checkpoint_path(args)} at epoch {epoch + 1}, step {step}")
    writer = SummaryWriter(args.out, purge_step=step + 1 if args.resume else None)
    if not args.resume:
        writer.add_text("args", str(vars(args)))

    metrics: dict[str, float] = {}
    with writer, _common.StopRequest(args.max_steps) as stop:
        while epoch < args.epochs:
            started = time.perf_counter()
            model.train()
            with progress(train_loader, desc=f"epoch {epoch + 1}/{args.epochs}") as bar:
                for x, y in bar:
                    x, y = x.to(device), y.to(device)
                    logits, _ = model(x)
                    loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
                    optimizer.zero_grad()
                    loss.backward()
                    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), args.clip)
                    optimizer.step()
                    step += 1
                    writer.add_scalar("train/loss", loss, step)
                    writer.add_scalar("train/grad_norm", grad_norm, step)
                    writer.add_scalar("lr", scheduler.get_last_lr()[0], step)
                    scheduler.step()
                    bar.set_metrics(loss=loss)
                    if stop.should_stop(step):
                        path = _common.save_checkpoint(args, **parts, epoch=epoch, step=step)
                        stop.exit(path, step)

            val_loss = evaluate(model, val_loader, device)
            writer.add_scalar("val/loss", val_loss, step)
            if args.sample_chars > 0:
                sample = generate(
                    model, train_set, args.prompt, args.sample_chars, args.temperature, device
                )
                writer.add_text("sample", sample, step)
                print(f"--- sample ---\n{sample.strip()}\n---")
            epoch += 1
            _common.save_checkpoint(args, **parts, epoch=epoch, step=step)
            metrics = {"val_loss": val_loss, "unigram_entropy": unigram}
            print(
                f"epoch {epoch}/{args.epochs}  "
                + _common.format_metrics(**metrics)
                + f"  ({time.perf_counter() - started:.1f} s)",
                flush=True,
            )
    return metrics


if __name__ == "__main__":
    main()
