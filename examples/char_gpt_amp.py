"""The character GPT of ``char_gpt.py`` trained in mixed precision with activation checkpointing.

The forward pass and the loss run under ``ember.autocast`` (bfloat16 by default; float16 adds a
``GradScaler`` that scales the loss, skips steps whose gradients overflow and adapts the scale).
With ``--checkpoint`` each transformer block keeps only its input and recomputes its activations
during backward (``ember.utils.checkpoint``, under the autocast state of the forward)::

    python examples/char_gpt_amp.py                          # bf16 autocast
    python examples/char_gpt_amp.py --amp fp16 --checkpoint  # fp16 + GradScaler + checkpointing
    python examples/char_gpt_amp.py --device cuda --amp fp16 --layers 6 --d-model 384
"""

from __future__ import annotations

import time

import _common  # examples/_common.py: options, device and threads
from char_gpt import CharGPT, evaluate, param_groups

import ember
from ember import nn
from ember.nn import functional as F
from ember.utils.checkpoint import checkpoint
from ember.utils.data import DataLoader, RandomSampler, Subset
from ember.utils.data.datasets import CharDataset


class CheckpointedCharGPT(CharGPT):
    """``CharGPT`` whose blocks recompute their activations in backward."""

    def forward(self, x: ember.Tensor) -> ember.Tensor:
        t = x.shape[1]
        h = self.drop(self.tok(x) + self.pos(ember.arange(t, device=x.device)))
        causal = nn.Transformer.generate_square_subsequent_mask(t, device=x.device)
        for block in self.blocks.layers:
            h = checkpoint(block, h, causal, None, True, use_reentrant=False)
        return self.head(self.blocks.norm(h))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = _common.make_parser(
        __doc__.splitlines()[0], name="char_gpt_amp", epochs=2, batch_size=32, lr=3e-3, text=True
    )
    parser.add_argument(
        "--amp",
        choices=("bf16", "fp16", "off"),
        default="bf16",
        help="autocast dtype (fp16 also scales the loss); off: float32",
    )
    parser.add_argument(
        "--checkpoint", action="store_true", help="recompute each block's activations in backward"
    )
    parser.add_argument("--steps-per-epoch", type=int, default=40, help="batches per epoch")
    parser.add_argument("--block-size", type=int, default=64, help="context length")
    parser.add_argument("--d-model", type=int, default=128, help="embedding width")
    parser.add_argument("--nhead", type=int, default=4, help="attention heads")
    parser.add_argument("--layers", type=int, default=2, help="transformer blocks")
    parser.add_argument("--eval-batches", type=int, default=8, help="validation batches")
    args = _common.parse_args(
        parser,
        argv,
        positive=("steps_per_epoch", "block_size", "d_model", "nhead", "layers", "eval_batches"),
    )
    device = args.device
    device_type = "cuda" if str(device).startswith("cuda") else "cpu"
    ember.manual_seed(args.seed)

    train_set = CharDataset(args.data, args.block_size, split="train")
    val_set = CharDataset(args.data, args.block_size, split="val")
    sampler = RandomSampler(train_set, num_samples=args.steps_per_epoch * args.batch_size)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler)
    val_windows = range(0, len(val_set), args.block_size)[: args.eval_batches * args.batch_size]
    val_loader = DataLoader(Subset(val_set, val_windows), batch_size=args.batch_size)

    cls = CheckpointedCharGPT if args.checkpoint else CharGPT
    model = cls(train_set.vocab_size, args.block_size, args.d_model, args.nhead, args.layers).to(
        device
    )
    optimizer = ember.optim.AdamW(param_groups(model, 0.1), lr=args.lr, betas=(0.9, 0.95))
    dtype = {"bf16": ember.bfloat16, "fp16": ember.float16}.get(args.amp)
    # float16's range needs loss scaling; bfloat16 has float32's exponent and does without
    scaler = ember.amp.GradScaler(device_type, enabled=args.amp == "fp16")
    print(
        f"{cls.__name__}: {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"amp {args.amp}, checkpointing {'on' if args.checkpoint else 'off'}"
    )

    metrics: dict[str, float] = {}
    step = 0
    for epoch in range(args.epochs):
        model.train()
        started = time.perf_counter()
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            with ember.autocast(device_type, dtype=dtype, enabled=dtype is not None):
                loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
            optimizer.zero_grad()
            scaler.scale(loss).backward()  # backward outside the autocast region
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            if args.max_steps is not None and step >= args.max_steps:
                break
        ms = (time.perf_counter() - started) * 1e3 / max(1, args.steps_per_epoch)
        with ember.autocast(device_type, dtype=dtype, enabled=dtype is not None):
            val_loss = evaluate(model, val_loader, device)
        metrics = {"val_loss": val_loss, "ms_per_step": ms, "scale": scaler.get_scale()}
        print(f"epoch {epoch + 1}/{args.epochs}  " + _common.format_metrics(**metrics), flush=True)
    return metrics


if __name__ == "__main__":
    main()
