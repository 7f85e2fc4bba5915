"""generate() tokens/s with a KV cache: ember.models vs transformers, same weights, same run.

GPT-2-small-shaped (n_embd 768, 12 heads, vocab 50257) and Llama-shaped (hidden 768, 12 heads,
4 KV heads) decoders with reduced depth, random weights written by transformers and loaded
by both; greedy decoding of ``--new`` tokens after a ``--prompt``-token prompt, batch
``--batch``. Both generate the same tokens (checked). Threads pinned (default 1).

    python benchmarks/hf_generate.py --layers 2 --new 64
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
from _common import pin_threads, table  # noqa: E402

# benchmarks/kernels.py would shadow the `kernels` package that transformers imports
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    pin_threads(args.threads)
    import numpy as np
    import torch
    import transformers

    import ember
    from ember import models

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfgs = {
        "gpt2": transformers.GPT2Config(n_layer=args.layers, eos_token_id=None),
        "llama": transformers.LlamaConfig(
            hidden_size=768,
            intermediate_size=2048,
            num_hidden_layers=args.layers,
            num_attention_heads=12,
            num_key_value_heads=4,
            vocab_size=32000,
            eos_token_id=None,
        ),
    }
    heads = {"gpt2": transformers.GPT2LMHeadModel, "llama": transformers.LlamaForCausalLM}
    rows = []
    for arch, cfg in cfgs.items():
        with tempfile.TemporaryDirectory() as d:
            heads[arch](cfg).save_pretrained(d)
            ref = heads[arch].from_pretrained(d).eval()
            ours = models.AutoModelForCausalLM.from_pretrained(d)
        ids = np.random.RandomState(0).randint(0, cfg.vocab_size, (args.batch, args.prompt))
        t_ids, e_ids = torch.tensor(ids), ember.tensor(ids)

        def run_ref(t_ids=t_ids, ref=ref):
            with torch.no_grad():
                return ref.generate(
                    t_ids,
                    max_new_tokens=args.new,
                    min_new_tokens=args.new,
                    do_sample=False,
                    pad_token_id=0,
                )

        def run_ours(e_ids=e_ids, ours=ours):
            return ours.generate(e_ids, max_new_tokens=args.new)

        assert run_ref().tolist() == run_ours().tolist(), f"{arch}: tokens differ"
        best = {"ember": float("inf"), "transformers": float("inf")}
        for _ in range(args.repeat):  # alternate, so load changes hit both alike
            for name, fn in (("ember", run_ours), ("transformers", run_ref)):
                t0 = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t0)
        tps = {k: args.batch * args.new / v for k, v in best.items()}
        rows.append(
            [
                arch,
                args.layers,
                args.batch,
                f"{tps['ember']:.1f}",
                f"{tps['transformers']:.1f}",
                f"{tps['ember'] / tps['transformers']:.2f}",
            ]
        )
    print(table(rows, ["model", "layers", "batch", "ember tok/s", "transformers tok/s", "ratio"]))


if __name__ == "__main__":
    main()
