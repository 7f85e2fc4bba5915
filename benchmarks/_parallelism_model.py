"""benchmarks/parallelism.py's GPT and how each strategy wraps it on one rank.

``build_gpt`` builds the benchmark's GPT (the same initial weights on every rank); ``_setup``
turns it into one rank's training step under ``dp``, ``fsdp``, ``tp``, ``pp`` or ``tpdp``
(the strategies are described in parallelism.py's docstring). numpy and ember load only
inside the functions, after the benchmark has pinned the BLAS threads.
"""

from __future__ import annotations


def build_gpt(cfg: dict):
    """The GPT, with the same initial weights on every rank."""
    import numpy as np

    import ember
    from ember import nn

    d, heads, seq = cfg["d"], cfg["heads"], cfg["seq"]
    mask = np.triu(np.full((seq, seq), -1e9, dtype=np.float32), 1)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = nn.Linear(d, d, bias=False)
            self.k = nn.Linear(d, d, bias=False)
            self.v = nn.Linear(d, d, bias=False)
            self.o = nn.Linear(d, d, bias=False)

        def forward(self, x):
            b, s, _ = x.shape
            hd = d // heads  # under TP each rank holds heads / tp of them: split by head size

            def split(t):
                return t.view(b, s, -1, hd).transpose(1, 2)

            q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
            att = q @ k.transpose(-2, -1) * (hd**-0.5) + ember.tensor(mask[:s, :s])
            y = att.softmax(-1) @ v
            return self.o(y.transpose(1, 2).reshape(b, s, -1))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.attn = nn.LayerNorm(d), Attention()
            self.ln2 = nn.LayerNorm(d)
            self.mlp = nn.Sequential(
                nn.Linear(d, 4 * d, bias=False), nn.GELU(), nn.Linear(4 * d, d, bias=False)
            )

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(cfg["vocab"], d)
            self.pos = nn.Embedding(seq, d)
            self.blocks = nn.ModuleList([Block() for _ in range(cfg["layers"])])
            self.ln_f = nn.LayerNorm(d)
            self.head = nn.Linear(d, cfg["vocab"], bias=False)

        def forward(self, tokens):
            h = self.tok(tokens) + self.pos.weight[: tokens.shape[1]]
            for blk in self.blocks:
                h = blk(h)
            return self.head(self.ln_f(h))

    ember.manual_seed(0)
    return GPT()


TP_PLAN = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.0", "mlp.2")


def _tp_blocks(model, mesh) -> None:
    from ember.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    plan = {k: ColwiseParallel() for k in ("attn.q", "attn.k", "attn.v", "mlp.0")}
    plan.update({k: RowwiseParallel() for k in ("attn.o", "mlp.2")})
    for blk in model.blocks:
        parallelize_module(blk, mesh, plan)


def _setup(strategy: str, cfg: dict, microbatches: int):
    """(step function, objects to measure, local parameter bytes) for one strategy."""
    import numpy as np

    import ember
    import ember.distributed as dist
    from ember import nn
    from ember.distributed.fsdp import FullyShardedDataParallel as FSDP
    from ember.distributed.tensor import init_device_mesh
    from ember.nn.parallel import DistributedDataParallel as DDP

    rank, world, v, b = dist.get_rank(), dist.get_world_size(), cfg["vocab"], cfg["batch"]
    rng = np.random.default_rng(0)  # one global batch, the same on every rank
    tokens = rng.integers(0, v, (b, cfg["seq"]))
    targets = rng.integers(0, v, (b, cfg["seq"]))

    def rows(parts: int, i: int):
        per = b // parts
        return ember.tensor(tokens[i * per : (i + 1) * per]), ember.tensor(
            targets[i * per : (i + 1) * per]
        )

    def loss_fn(logits, y):
        return nn.functional.cross_entropy(logits.reshape(-1, v), y.reshape(-1))

    model = build_gpt(cfg)
    if strategy == "pp":
        stage, n = rank, world
        per = cfg["layers"] // n
        mod = _Stage(model, stage * per, (stage + 1) * per, stage == 0, stage == n - 1)
        from ember.distributed.pipelining import PipelineStage, Schedule1F1B

        sched = Schedule1F1B(PipelineStage(mod, stage, n, "cpu"), microbatches, loss_fn=loss_fn)
        opt = ember.optim.Adam(mod.parameters(), lr=1e-3)
        x, y = rows(1, 0)

        def step():
            opt.zero_grad()
            if stage == 0:
                sched.step(x)
            elif stage == n - 1:
                sched.step(target=y)
            else:
                sched.step()
            opt.step()

        return step, (mod, opt), None
    local = None
    if strategy == "dp":
        model, x_y = DDP(model), rows(world, rank)
    elif strategy == "fsdp":
        block, top = type(model.blocks[0]), {id(model.tok), id(model.head)}

        def policy(module, recurse, nonwrapped_numel):
            return recurse or isinstance(module, block) or id(module) in top

        model, x_y = FSDP(model, auto_wrap_policy=policy), rows(world, rank)
    elif strategy == "tp":
        _tp_blocks(model, init_device_mesh("cpu", (world,), mesh_dim_names=("tp",)))
        x_y = rows(1, 0)
    else:  # tpdp
        mesh = init_device_mesh("cpu", (2, world // 2), mesh_dim_names=("dp", "tp"))
        _tp_blocks(model, mesh["tp"])
        x_y = rows(2, mesh.get_local_rank("dp"))
        local = [p.numel() * 4 for p in model.parameters()]
        dp_group = mesh.get_group("dp")
    opt = ember.optim.Adam(model.parameters(), lr=1e-3)
    x, y = x_y

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        if strategy == "tpdp":  # average over the dp row, one allreduce per parameter (the
            # analytical count's model; DDP(model, device_mesh=mesh["dp"]) buckets them instead)
            for p in model.parameters():
                dist.all_reduce(p.grad, op=dist.ReduceOp.AVG, group=dp_group)
        opt.step()

    return step, (model, opt), local


def _stage_class():
    from ember import nn

    class Stage(nn.Module):
        """Blocks ``lo:hi`` of a GPT; the first stage also embeds, the last also projects."""

        def __init__(self, gpt, lo: int, hi: int, first: bool, last: bool):
            super().__init__()
            self.first, self.last = first, last
            if first:
                self.tok, self.pos = gpt.tok, gpt.pos
            self.blocks = nn.ModuleList(list(gpt.blocks)[lo:hi])
            if last:
                self.ln_f, self.head = gpt.ln_f, gpt.head

        def forward(self, h):
            if self.first:
                h = self.tok(h) + self.pos.weight[: h.shape[1]]
            for blk in self.blocks:
                h = blk(h)
            return self.head(self.ln_f(h)) if self.last else h

    return Stage


def _Stage(*args):
    return _stage_class()(*args)
