"""A small character-level GPT on tinyshakespeare (or any UTF-8 text file).

Token and learned position embeddings, a stack of pre-norm ``nn.TransformerEncoderLayer`` blocks
under a causal mask (each position attends only to earlier ones), a final LayerNorm and a
linear head. Training and checkpointing follow ``char_lstm.py``: random ``--block-size`` windows,
``--steps-per-epoch`` steps per epoch, validation under ``ember.no_grad()`` on the last 10% of
the text, a generated sample, TensorBoard logs, a checkpoint every epoch and an exact
``--resume`` (Ctrl-C saves one too). AdamW with weight decay on the weight matrices only (two
parameter groups), and a linear warm-up followed by cosine decay, stepped after every batch::

    python examples/char_gpt.py              # ~30 s on 2 cores: val loss ~2.3 nats (unigram 3.3)
    python examples/char_gpt.py --epochs 20 --steps-per-epoch 200 --layers 4
    python examples/char_gpt.py --resume     # after a Ctrl-C: go on from runs/char_gpt
"""

from __future__ import annotations

import time

import _common  # examples/_common.py: options, checkpoints, Ctrl-C handling

import ember
from ember import nn
from ember.nn import functional as F
from ember.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR
from ember.utils.data import DataLoader, RandomSampler, Subset
from ember.utils.data.datasets import CharDataset
from ember.utils.progress import progress
from ember.utils.tensorboard import SummaryWriter


class CharGPT(nn.Module):
    """Decoder-only transformer over characters; ``forward`` gives next-character logits."""

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        d_model: int = 128,
        nhead: int = 4,
        layers: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.block_size = block_size
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(block_size, d_model)
        self.drop = nn.Dropout(dropout)
        block = nn.TransformerEncoderLayer(
            d_model,
            nhead,
            dim_feedforward=4 * d_model,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(
            block, layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
        )
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, x: ember.Tensor) -> ember.Tensor:
        """``x``: (N, T) character ids, T <= block_size -> (N, T, vocab) logits."""
        t = x.shape[1]
        if t > self.block_size:
            raise ValueError(f"CharGPT: sequence length {t} exceeds block_size {self.block_size}")
        h = self.drop(self.tok(x) + self.pos(ember.arange(t, device=x.device)))
        causal = nn.Transformer.generate_square_subsequent_mask(t, device=x.device)
        return self.head(self.blocks(h, mask=causal, is_causal=True))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay for the weight matrices; none for biases, norms and embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        is_matrix = p.dim() >= 2 and not name.startswith(("tok.", "pos."))
        (decay if is_matrix else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def evaluate(model: CharGPT, loader: DataLoader, device) -> float:
    """Mean next-character cross-entropy (nats) over ``loader``."""
    model.eval()
    total, count = 0.0, 0
    with ember.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
            count += y.numel()
    return total / count


def generate(
    model: CharGPT, dataset: CharDataset, prompt: str, length: int, temperature: float, device
) -> str:
    """``prompt`` continued by ``length`` sampled characters (the context is the last
    ``block_size`` characters, run through the model again for each new one)."""
    model.eval()
    ids = dataset.encode(prompt)
    with ember.no_grad():
        for _ in range(length):
            context = ember.tensor([ids[-model.block_size :]], device=device)
            logits = model(context)[:, -1] / temperature
            nxt = ember.multinomial(F.softmax(logits, dim=-1), 1)  # the default generator
            ids.append(int(nxt.item()))
    return dataset.decode(ids)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = _common.make_parser(
        __doc__.splitlines()[0], name="char_gpt", epochs=3, batch_size=32, lr=3e-3, text=True
    )
    parser.add_argument("--steps-per-epoch", type=int, default=60, help="batches per epoch")
    parser.add_argument("--block-size", type=int, default=64, help="context length")
    parser.add_argument("--d-model", type=int, default=128, help="embedding width")
    parser.add_argument("--nhead", type=int, default=4, help="attention heads")
    parser.add_argument("--layers", type=int, default=2, help="transformer blocks")
    parser.add_argument("--dropout", type=float, default=0.1, help="dropout probability")
    parser.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up steps")
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
            "d_model",
            "nhead",
            "layers",
            "clip",
            "eval_batches",
            "temperature",
        ),
    )
    total_steps = args.epochs * args.steps_per_epoch
    if not 0 <= args.warmup < total_steps:
        parser.error(
            f"--warmup must be in [0, {total_steps}) (epochs x steps per epoch), got {args.warmup}"
        )
    device = args.device
    ember.manual_seed(args.seed)

    train_set = CharDataset(args.data, args.block_size, split="train")
    val_set = CharDataset(args.data, args.block_size, split="val")
    try:
        train_set.encode(args.prompt)
    except KeyError as exc:
        parser.error(f"--prompt: {exc.args[0]}")
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

    model = CharGPT(
        train_set.vocab_size, args.block_size, args.d_model, args.nhead, args.layers, args.dropout
    ).to(device)
    print(f"CharGPT: {sum(p.numel() for p in model.parameters()):,} parameters")
    optimizer = ember.optim.AdamW(
        param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.95)
    )
    scheduler = SequentialLR(
        optimizer,
        [
            LinearLR(optimizer, start_factor=0.05, total_iters=args.warmup),
            CosineAnnealingLR(optimizer, T_max=total_steps - args.warmup, eta_min=args.lr / 10),
        ],
        milestones=[args.warmup],
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
                    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
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
