"""Fine-tune a GPT-2 checkpoint on tinyshakespeare with the Trainer, and save it for Hugging Face.

    python examples/finetune/gpt2_shakespeare.py --tiny               # anywhere: a tiny random
    python examples/finetune/gpt2_shakespeare.py --model ~/gpt2 --strategy fsdp --steps 200

``--model`` is a directory in Hugging Face's layout (``config.json`` + ``model.safetensors``,
e.g. ``huggingface-cli download gpt2 --local-dir ~/gpt2``). ``--tiny`` instead builds a tiny
random ``GPT2Config`` and ``save_pretrained``'s it under ``OUT/base`` first, so the example runs
with no download. Text is tokenized with the checkpoint's ``tokenizer.json`` when it has one,
else as UTF-8 bytes (token id = byte value; the vocabulary must have >= 256 entries).

``--workers`` Ray actors train together (``--strategy ddp``: replicas with averaged gradients;
``fsdp``: parameters, gradients and optimizer state sharded). The forward pass runs under
``ember.autocast`` in bfloat16 (``--amp bf16``, the default; ember supports it on the CPU and
on CUDA, see docs/amp.md) or float32 (``--amp off``). Before and after training the workers
measure the perplexity of a held-out slice (the last 10% of the text), each its share of the
windows. Rank 0 then writes the model with ``save_pretrained`` (gathered first under FSDP) as
the run's checkpoint; the driver copies it to ``OUT/model``, loads it back with
``from_pretrained`` and checks its logits equal the trained model's.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

import ember
from ember.distributed import train
from ember.utils.data import DataLoader, Dataset

sys.path.append(str(Path(__file__).resolve().parent.parent))  # examples/_common.py
from _common import nonneg_int, positive_float, positive_int  # noqa: E402

DEFAULT_TEXT = Path(__file__).resolve().parents[3] / "shared" / "data" / "tinyshakespeare.txt"
CHECK_TOKENS = 16  # positions of the first held-out window whose logits the driver re-checks


class TokenWindows(Dataset):
    """Non-overlapping windows of ``block_size + 1`` token ids (inputs and shifted labels)."""

    def __init__(self, ids: np.ndarray, block_size: int) -> None:
        self.ids, self.block = ids, block_size
        self.n = (len(ids) - 1) // block_size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> ember.Tensor:
        return ember.tensor(self.ids[i * self.block : (i + 1) * self.block + 1], dtype=ember.int64)


def tokenize(text_path: str, model_dir: str, vocab_size: int) -> tuple[np.ndarray, str]:
    """(token ids of the whole text, the tokenizer's name)."""
    raw = Path(text_path).read_bytes()
    if os.path.isfile(os.path.join(model_dir, "tokenizer.json")):
        from ember.models import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model_dir)
        return np.asarray(tok.encode(raw.decode("utf-8")), dtype=np.int64), "tokenizer.json"
    if vocab_size < 256:
        raise ValueError(
            f"byte-level tokens need a vocabulary of >= 256, the checkpoint has "
            f"{vocab_size} (give it a tokenizer.json)"
        )
    return np.frombuffer(raw, dtype=np.uint8).astype(np.int64), "bytes"


def unwrap(model):
    """The GPT2LMHeadModel inside DDP (FSDP keeps the original names in its state_dict)."""
    return getattr(model, "module", model)


def perplexity(model, windows, amp_dtype) -> tuple[float, float]:
    """Summed next-token cross-entropy and token count over ``windows``, summed over ranks.

    Every rank runs the same number of forwards (FSDP gathers parameters collectively)."""
    import ember.distributed as dist

    model.eval()
    total, count = 0.0, 0
    with ember.no_grad():
        for batch in DataLoader(windows, batch_size=8):
            batch = batch.to(train.get_device())
            with ember.autocast(batch.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                out = model(batch[:, :-1])
            logits = out.logits.float().flatten(0, 1)
            loss = ember.nn.functional.cross_entropy(
                logits, batch[:, 1:].flatten(), reduction="sum"
            )
            total += loss.item()
            count += batch[:, 1:].numel()
    model.train()
    t = ember.tensor([total, count], dtype=ember.float64)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t[0].item(), t[1].item()


def train_loop(config: dict) -> None:
    from ember.models import AutoConfig, GPT2LMHeadModel

    ctx = train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    amp_dtype = ember.bfloat16 if config["amp"] == "bf16" else None
    ember.manual_seed(config["seed"])
    model = GPT2LMHeadModel.from_pretrained(config["model"])
    model.train()
    hf_config = AutoConfig.from_pretrained(config["model"])
    ids, _ = tokenize(config["data"], config["model"], hf_config.vocab_size)
    cut = int(len(ids) * 0.9)
    train_set = TokenWindows(ids[:cut], config["block_size"])
    val_set = TokenWindows(ids[cut:], config["block_size"])
    # The same number of validation windows on every rank (FSDP's forwards are collective).
    n_val = min(len(val_set), config["eval_windows"]) // world * world
    my_val = [val_set[i] for i in range(rank, n_val, world)]

    model = train.prepare_model(model)
    optimizer = ember.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=0.01)
    loader = train.prepare_data_loader(
        DataLoader(train_set, batch_size=config["batch_size"], shuffle=True, drop_last=True)
    )
    total, count = perplexity(model, my_val, amp_dtype)
    before = math.exp(total / count)

    stream, step, losses = iter(loader), 0, []
    while step < config["steps"]:
        try:
            batch = next(stream)
        except StopIteration:
            stream = iter(loader)
            continue
        with ember.autocast(batch.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = model(batch[:, :-1])
        # The loss in float32 outside the autocast region, over the shifted window.
        loss = ember.nn.functional.cross_entropy(
            out.logits.float().flatten(0, 1), batch[:, 1:].flatten()
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        step += 1
    total, count = perplexity(model, my_val, amp_dtype)
    after = math.exp(total / count)

    # The full weights: DDP's replica, or FSDP's gathered state_dict (a collective: all ranks).
    state = unwrap(model).state_dict() if config["strategy"] == "ddp" else model.state_dict()
    with tempfile.TemporaryDirectory() as d:
        ckpt = None
        metrics = {
            "steps": step,
            "train_loss": float(np.mean(losses[-5:])),
            "val_ppl_before": before,
            "val_ppl_after": after,
            "val_tokens": count,
        }
        if rank == 0:
            plain = GPT2LMHeadModel(hf_config)
            plain.load_state_dict({k: v.cpu() for k, v in state.items()})
            plain.eval()
            plain.save_pretrained(d)
            for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
                if os.path.isfile(os.path.join(config["model"], name)):
                    shutil.copy(os.path.join(config["model"], name), d)
            # Logits the driver compares with the reloaded copy (float32, no autocast).
            with ember.no_grad():
                check = plain(val_set[0][None, :CHECK_TOKENS]).logits
            metrics["check_logits"] = check.numpy().tolist()
            ckpt = train.Checkpoint.from_directory(d)
        train.report(metrics, checkpoint=ckpt)


def make_tiny(path: Path, seed: int) -> None:
    """A tiny random GPT-2 with a byte vocabulary, written as a Hugging Face checkpoint."""
    from ember.models import GPT2Config, GPT2LMHeadModel

    ember.manual_seed(seed)
    config = GPT2Config(
        vocab_size=256,
        n_positions=128,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=10,
        eos_token_id=10,
    )  # "\n"
    GPT2LMHeadModel(config).save_pretrained(path)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", type=Path, help="GPT-2 checkpoint directory (HF layout)")
    src.add_argument("--tiny", action="store_true", help="build a tiny random GPT-2 first")
    ap.add_argument("--data", type=Path, default=DEFAULT_TEXT, help="UTF-8 text to train on")
    ap.add_argument("--workers", type=positive_int, default=2, help="Ray training workers")
    ap.add_argument("--strategy", choices=("ddp", "fsdp"), default="ddp")
    ap.add_argument(
        "--amp", choices=("bf16", "off"), default="bf16", help="autocast dtype of the forward pass"
    )
    ap.add_argument("--steps", type=positive_int, default=100, help="optimizer steps")
    ap.add_argument("--batch-size", type=positive_int, default=8, help="windows per worker")
    ap.add_argument("--block-size", type=positive_int, default=64, help="tokens per window")
    ap.add_argument("--lr", type=positive_float, default=3e-4)
    ap.add_argument(
        "--eval-windows",
        type=positive_int,
        default=64,
        help="held-out windows, shared out among the workers",
    )
    ap.add_argument("--seed", type=nonneg_int, default=0)
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "ember_finetune",
        help="run directory; the fine-tuned model goes to OUT/model",
    )
    args = ap.parse_args(argv)
    if not args.data.is_file():
        ap.error(
            f"--data: text file not found: {args.data} (ember downloads nothing; pass the "
            "path of a local UTF-8 text file, e.g. tinyshakespeare.txt)"
        )
    from ember.models import AutoConfig, GPT2LMHeadModel

    args.out = args.out.resolve()
    if args.tiny:
        args.model = args.out / "base"
        make_tiny(args.model, args.seed)
    elif not (args.model / "config.json").is_file():
        ap.error(
            f"--model: no config.json in {args.model} (a directory written by "
            "save_pretrained, or a Hugging Face snapshot)"
        )
    hf_config = AutoConfig.from_pretrained(args.model)
    if hf_config.model_type != "gpt2":
        ap.error(f"--model: {args.model} holds a {hf_config.model_type!r} model, not gpt2")
    if args.block_size > hf_config.n_positions:
        ap.error(
            f"--block-size {args.block_size} exceeds the model's n_positions "
            f"{hf_config.n_positions}"
        )
    try:
        ids, tokenizer = tokenize(str(args.data), str(args.model), hf_config.vocab_size)
    except ValueError as exc:
        ap.error(f"--model: {exc}")
    if len(ids) // 10 < (args.block_size + 1) * args.workers:
        ap.error(
            f"--data: {args.data} is too short for a held-out slice of "
            f"{args.workers} windows of {args.block_size + 1} tokens"
        )

    config = {
        "model": str(args.model.resolve()),
        "data": str(args.data.resolve()),
        **{
            k: getattr(args, k)
            for k in (
                "strategy",
                "amp",
                "steps",
                "batch_size",
                "block_size",
                "lr",
                "eval_windows",
                "seed",
            )
        },
    }
    result = train.Trainer(
        train_loop,
        config,
        strategy=args.strategy,
        scaling_config=train.ScalingConfig(num_workers=args.workers),
        run_config=train.RunConfig(name="gpt2_shakespeare", storage_path=str(args.out), verbose=0),
    ).fit()
    m = result.metrics
    saved = args.out / "model"
    shutil.rmtree(saved, ignore_errors=True)
    result.checkpoint.to_directory(str(saved))
    # The saved directory is a plain Hugging Face checkpoint: load it back and re-check.
    again = GPT2LMHeadModel.from_pretrained(saved)
    val = TokenWindows(ids[int(len(ids) * 0.9) :], args.block_size)
    with ember.no_grad():
        logits = again(val[0][None, :CHECK_TOKENS]).logits.numpy()
    diff = float(np.abs(logits - np.asarray(m["check_logits"], dtype=np.float32)).max())
    if diff > 1e-5:
        raise SystemExit(f"the reloaded model's logits differ from the trained model's by {diff}")
    print(
        f"fine-tuned {args.model} for {m['steps']} steps on {args.workers} workers "
        f"({args.strategy}, amp {args.amp}, {tokenizer} tokens): held-out perplexity "
        f"{m['val_ppl_before']:.2f} -> {m['val_ppl_after']:.2f} over {int(m['val_tokens'])} "
        f"tokens; saved to {saved} (reloaded, max |logit diff| {diff:.1e})",
        flush=True,
    )
    return {"before": m["val_ppl_before"], "after": m["val_ppl_after"], "path": saved, "diff": diff}


if __name__ == "__main__":
    main()
