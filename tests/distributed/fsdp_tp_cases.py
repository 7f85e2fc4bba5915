"""Rank-side scenarios of tests/distributed/test_fsdp2_tp.py (module-level, so spawned ranks
import them by name): the fsdp_tp plan on ``tp_models.ember_gpt``, training next to one process,
``_StridedShard`` layouts, DCP, the docs program, mixed precision."""

from __future__ import annotations

import os
import time

import numpy as np
import tp_models

STEPS = 3


def _plan(sequence_parallel: bool):
    """The fsdp_tp example's plan on ``tp_models.ember_gpt`` (rowwise embedding, colwise
    q/k/v/fc1, rowwise o/fc2, colwise head; with sequence parallelism the norms run on
    sequence shards)."""
    from ember.distributed.tensor import Replicate, Shard
    from ember.distributed.tensor.parallel import (
        ColwiseParallel,
        PrepareModuleInput,
        RowwiseParallel,
        SequenceParallel,
    )

    seq = Shard(1) if sequence_parallel else Replicate()
    plan = {
        "tok": RowwiseParallel(input_layouts=Replicate(), output_layouts=seq),
        "block.attn.q": ColwiseParallel(),
        "block.attn.k": ColwiseParallel(),
        "block.attn.v": ColwiseParallel(),
        "block.attn.o": RowwiseParallel(output_layouts=seq),
        "block.mlp.fc1": ColwiseParallel(),
        "block.mlp.fc2": RowwiseParallel(output_layouts=seq),
        "head": ColwiseParallel(input_layouts=seq, output_layouts=Replicate()),
    }
    if sequence_parallel:
        gather = PrepareModuleInput(input_layouts=Shard(1), desired_input_layouts=Replicate())
        plan.update({"block.ln1": SequenceParallel(), "block.ln2": SequenceParallel()})
        plan.update({"norm": SequenceParallel(), "block.attn": gather, "block.mlp": gather})
    return plan


def _mesh(hsdp: bool):
    """(mesh, the data-parallel mesh, the dp group): 2x2 (dp, tp), or for HSDP 2x1x2
    (rep, shard, tp)."""
    from ember.distributed.tensor import init_device_mesh

    if not hsdp:
        mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
        return mesh, mesh["dp"], mesh.get_group("dp")
    mesh = init_device_mesh("cpu", (2, 1, 2), mesh_dim_names=("rep", "shard", "tp"))
    return mesh, mesh["rep", "shard"], mesh.get_group("rep")


def _fsdp_tp_model(mesh, dp_mesh, sequence_parallel: bool):
    from ember.distributed.fsdp import fully_shard
    from ember.distributed.tensor.parallel import parallelize_module

    model = tp_models.ember_gpt()
    parallelize_module(model, mesh["tp"], _plan(sequence_parallel))
    fully_shard(model.block, mesh=dp_mesh)
    fully_shard(model, mesh=dp_mesh)
    return model


def case_train(sequence_parallel: bool, hsdp: bool = False):
    """STEPS AdamW steps on the 2x2 mesh (each dp rank on its half of the batch) next to the
    single-process model on the whole batch."""
    import ember
    import ember.distributed as dist
    import ember.nn.functional as F
    from ember.distributed.tensor import DTensor
    from ember.distributed.tensor.parallel import DTensorParameter

    mesh, dp_mesh, dp_group = _mesh(hsdp)
    ref = tp_models.ember_gpt()
    model = _fsdp_tp_model(mesh, dp_mesh, sequence_parallel)
    toks = tp_models.tokens()
    dp = mesh.get_coordinate()[0]
    opt = ember.optim.AdamW(model.parameters(), lr=0.05)
    ref_opt = ember.optim.AdamW(ref.parameters(), lr=0.05)
    placements = {n: str(p.placements) for n, p in model.named_parameters()}
    kinds = {n: type(p).__name__ for n, p in model.named_parameters()}
    t0 = time.process_time()
    for m in (model, model.block):  # the TP layout is back while unsharded
        m.unshard()
    unsharded = {n: str(getattr(p, "placements", None)) for n, p in model.named_parameters()}
    for m in (model, model.block):
        m.reshard()
    from ember.nn.utils import clip_grad_norm_

    losses, ref_losses, grad_err, norms, ref_norms = [], [], 0.0, [], []
    for _ in range(STEPS):
        idx, target = toks[dp : dp + 1, :-1], toks[dp : dp + 1, 1:].reshape(-1)
        loss = F.cross_entropy(
            model(ember.tensor(idx)).reshape(-1, tp_models.VOCAB), ember.tensor(target)
        )
        loss.backward()
        ref_loss = F.cross_entropy(
            ref(ember.tensor(toks[:, :-1])).reshape(-1, tp_models.VOCAB),
            ember.tensor(toks[:, 1:].reshape(-1)),
        )
        ref_loss.backward()
        mean = loss.detach().clone()
        dist.all_reduce(mean, op=dist.ReduceOp.AVG, group=dp_group)
        losses.append(mean.item())
        ref_losses.append(ref_loss.item())
        for (name, p), (_, r) in zip(model.named_parameters(), ref.named_parameters()):
            assert isinstance(p, DTensorParameter), name
            g = p.grad_dtensor().full_tensor()
            grad_err = max(grad_err, float((g - r.grad).abs().max().item()))
        # the norm over whole parameters (pieces reduced over the mesh), then the same clip
        for norm_type in (float("inf"), 2.0):
            norms.append(float(clip_grad_norm_(model.parameters(), 1e9, norm_type)))
            ref_norms.append(float(clip_grad_norm_(ref.parameters(), 1e9, norm_type)))
        norms.append(float(clip_grad_norm_(model.parameters(), 0.5 * ref_norms[-1])))
        ref_norms.append(float(clip_grad_norm_(ref.parameters(), 0.5 * ref_norms[-1])))
        opt.step()
        ref_opt.step()
        opt.zero_grad()
        ref_opt.zero_grad()
    param_err = max(
        float((p.full_tensor() - r).abs().max().item())
        for p, r in zip(model.parameters(), ref.parameters())
    )
    sd = model.state_dict()
    params = {n: p.full_tensor().detach().numpy() for n, p in model.named_parameters()}
    return {
        "params": params,
        "cpu_s": time.process_time() - t0,
        "losses": losses,
        "ref_losses": ref_losses,
        "grad_err": grad_err,
        "param_err": param_err,
        "norms": norms,
        "ref_norms": ref_norms,
        "sp": sequence_parallel,
        "placements": placements,
        "unsharded": unsharded,
        "kinds": set(kinds.values()),
        "state_dict": {k: (type(v).__name__, str(v.placements)) for k, v in sd.items()},
        "sd_is_dtensor": all(isinstance(v, DTensor) for v in sd.values()),
    }


def case_mixed_precision():
    """``MixedPrecisionPolicy(float32)`` over the float64 model with sequence parallelism:
    float32 gathers and reductions, float64 shards and gradients."""
    import ember
    import ember.nn.functional as F
    from ember.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from ember.distributed.tensor.parallel import parallelize_module

    mesh, dp_mesh, _ = _mesh(False)
    model = tp_models.ember_gpt()
    parallelize_module(model, mesh["tp"], _plan(True))
    mp = MixedPrecisionPolicy(param_dtype=ember.float32, reduce_dtype=ember.float32)
    fully_shard(model.block, mesh=dp_mesh, mp_policy=mp)
    fully_shard(model, mesh=dp_mesh, mp_policy=mp)
    ref, toks = tp_models.ember_gpt(), tp_models.tokens()
    dp = mesh.get_coordinate()[0]
    logits = model(ember.tensor(toks[dp : dp + 1, :-1])).reshape(-1, tp_models.VOCAB)
    F.cross_entropy(logits.double(), ember.tensor(toks[dp : dp + 1, 1:].reshape(-1))).backward()
    logits = ref(ember.tensor(toks[:, :-1])).reshape(-1, tp_models.VOCAB)
    F.cross_entropy(logits, ember.tensor(toks[:, 1:].reshape(-1))).backward()
    grads = [
        (p.grad_dtensor().full_tensor(), r.grad)
        for p, r in zip(model.parameters(), ref.parameters())
    ]
    return {
        "logits_dtype": str(logits.dtype),
        "grad_dtypes": {str(g.dtype) for g, _ in grads},
        "grad_err": max(float((g - r).abs().max().item()) for g, r in grads),
    }


def case_layouts():
    """``_StridedShard`` on its own: distribute / full_tensor / redistribute against NumPy's
    chunk-of-chunk; and the errors of bad compositions."""
    import ember
    from ember import nn
    from ember.distributed.fsdp import fully_shard
    from ember.distributed.tensor import (
        DTensor,
        Replicate,
        Shard,
        distribute_tensor,
        init_device_mesh,
    )
    from ember.distributed.tensor.parallel import ColwiseParallel, parallelize_module
    from ember.distributed.tensor.placement_types import _StridedShard

    mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    dp, tp = mesh.get_coordinate()
    full = np.arange(11 * 3, dtype=np.float64).reshape(11, 3)  # uneven: tp 6+5, dp 3+3 / 3+2
    places = (_StridedShard(0, 2), Shard(0))
    dt = distribute_tensor(ember.tensor(full), mesh, places)
    tp_piece = np.array_split(full, 2)[tp]  # torch.chunk's pieces of these sizes
    want = tp_piece[[0, 3][dp] : [3, 6][dp]]
    out = {
        "local_ok": np.array_equal(dt.to_local().numpy(), want),
        "full_ok": np.array_equal(dt.full_tensor().numpy(), full),
        "from_local_ok": np.array_equal(
            DTensor.from_local(ember.tensor(want), mesh, places, shape=full.shape)
            .full_tensor()
            .numpy(),
            full,
        ),
    }
    moved = dt.redistribute(mesh, (Shard(0), Replicate()))
    out["redistribute_ok"] = np.array_equal(
        moved.to_local().numpy(), np.array_split(full, 2)[dp]
    ) and np.array_equal(moved.redistribute(mesh, places).to_local().numpy(), want)
    out["eq"] = (_StridedShard(0, 2) == Shard(0), Shard(0) == _StridedShard(0, 2))

    errors = {}

    def attempt(key, fn):
        try:
            fn()
        except (ValueError, NotImplementedError) as e:
            errors[key] = f"{type(e).__name__}: {e}"

    attempt("split_factor", lambda: distribute_tensor(ember.tensor(full), mesh,
                                                      (_StridedShard(0, 3), Shard(0))))  # fmt: skip
    other = init_device_mesh("cpu", (2, 2), mesh_dim_names=("a", "b"))

    def two_meshes():
        m = parallelize_module(nn.Sequential(nn.Linear(4, 4)), mesh["tp"], {"0": ColwiseParallel()})
        fully_shard(m, mesh=other["a"])

    def unnamed():
        m = parallelize_module(nn.Sequential(nn.Linear(4, 4)), mesh["tp"], {"0": ColwiseParallel()})
        fully_shard(m, mesh=init_device_mesh("cpu", (4,)))

    def tp_first():
        flip = init_device_mesh("cpu", (2, 2), mesh_dim_names=("tp", "dp"))
        m = parallelize_module(nn.Sequential(nn.Linear(4, 4)), flip["tp"], {"0": ColwiseParallel()})
        fully_shard(m, mesh=flip["dp"])

    attempt("two_meshes", two_meshes)
    attempt("unnamed", unnamed)
    attempt("tp_first", tp_first)
    out["errors"] = errors
    return out


def case_dcp(path: str):
    """Save the FSDP+TP model with DCP; load into a fresh FSDP+TP model and into a plain
    (unsharded) model on every rank."""
    import ember
    import ember.distributed.checkpoint as dcp

    mesh, dp_mesh, _ = _mesh(False)
    model = _fsdp_tp_model(mesh, dp_mesh, False)
    with ember.no_grad():  # values unlike a fresh model's
        for i, p in enumerate(model.parameters()):
            p.mul_(1.5).add_(0.1 * i)
    want = {n: p.full_tensor().detach().numpy() for n, p in model.named_parameters()}
    dcp.save(model.state_dict(), checkpoint_id=path)

    fresh = _fsdp_tp_model(mesh, dp_mesh, False)
    sd = fresh.state_dict()
    dcp.load(sd, checkpoint_id=path)
    fresh.load_state_dict(sd)
    sharded_err = max(
        float(np.abs(p.full_tensor().detach().numpy() - want[n]).max())
        for n, p in fresh.named_parameters()
    )
    plain = tp_models.ember_gpt()
    sd = plain.state_dict()
    dcp.load(sd, checkpoint_id=path)
    plain.load_state_dict(sd)
    plain_err = max(
        float(np.abs(p.detach().numpy() - want[n]).max()) for n, p in plain.named_parameters()
    )
    return {"sharded_err": sharded_err, "plain_err": plain_err, "n": len(want)}


def case_docs_example(code: str):
    """docs/sharding.md's fsdp_tp program on the 2x2 mesh, next to one process training the
    same model on both dp ranks' batches (FSDP averages the gradients over dp)."""
    import ember

    ns = {"__name__": "docs_example"}
    exec(compile(code, "docs/sharding.md", "exec"), ns)
    losses = ns["fsdp_tp_example"](steps=STEPS)
    ref = ns["build_model"]()
    opt = ember.optim.AdamW(ref.parameters(), lr=3e-3)
    dp = int(os.environ["RANK"]) // 2
    ref_losses = []
    for step in range(STEPS):
        per_dp = [ref(ns["batch"](step, r)).sum() for r in range(2)]
        ((per_dp[0] + per_dp[1]) / 2).backward()
        opt.step()
        opt.zero_grad()
        ref_losses.append(per_dp[dp].item())
    return losses, ref_losses


def _step(model, opt, toks, dp: int) -> None:
    import ember
    import ember.nn.functional as F

    idx, target = toks[dp : dp + 1, :-1], toks[dp : dp + 1, 1:].reshape(-1)
    logits = model(ember.tensor(idx)).reshape(-1, tp_models.VOCAB)
    F.cross_entropy(logits, ember.tensor(target)).backward()
    opt.step()
    opt.zero_grad()


def case_dcp_state_dict(path: str):
    """``get_state_dict`` / DCP / ``set_state_dict`` with the optimizer: into a fresh FSDP+TP
    model and optimizer (which then steps exactly as the original) and into a plain one; and
    ``full_state_dict`` whole tensors back into an FSDP+TP model."""
    import ember
    import ember.distributed.checkpoint as dcp
    from ember.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_state_dict,
        set_model_state_dict,
        set_state_dict,
    )
    from ember.distributed.tensor import DTensor

    def full(v):
        return (v.full_tensor() if isinstance(v, DTensor) else v).detach().numpy()

    def restore(model, opt):
        msd, osd = get_state_dict(model, opt)
        dcp.load({"model": msd, "optim": osd}, checkpoint_id=path)
        set_state_dict(model, opt, model_state_dict=msd, optim_state_dict=osd)

    mesh, dp_mesh, _ = _mesh(False)
    dp, toks = mesh.get_coordinate()[0], tp_models.tokens()
    model = _fsdp_tp_model(mesh, dp_mesh, False)
    opt = ember.optim.AdamW(model.parameters(), lr=0.05)
    _step(model, opt, toks, dp)
    msd, osd = get_state_dict(model, opt)
    out = {
        "model_kind": {type(v).__name__ for v in msd.values()},
        "exp_avg": str(osd["state"]["block.attn.q.weight"]["exp_avg"].placements),
    }
    want = {k: full(v) for k, v in msd.items()}
    want_avg = {k: full(v["exp_avg"]) for k, v in osd["state"].items()}
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=path)

    fresh = _fsdp_tp_model(mesh, dp_mesh, False)
    fresh_opt = ember.optim.AdamW(fresh.parameters(), lr=0.05)
    restore(fresh, fresh_opt)
    _step(model, opt, toks, dp)
    _step(fresh, fresh_opt, toks, dp)
    out["resumed_err"] = max(
        float(np.abs(full(p) - full(q)).max())
        for p, q in zip(model.parameters(), fresh.parameters())
    )
    plain = tp_models.ember_gpt()
    plain_opt = ember.optim.AdamW(plain.parameters(), lr=0.05)
    restore(plain, plain_opt)
    out["plain_err"] = max(
        max(float(np.abs(full(p) - want[n]).max()) for n, p in plain.named_parameters()),
        max(
            float(np.abs(full(plain_opt.state[p]["exp_avg"]) - want_avg[n]).max())
            for n, p in plain.named_parameters()
        ),
    )
    whole = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    other = _fsdp_tp_model(mesh, dp_mesh, False)
    set_model_state_dict(other, whole)
    out["full_err"] = max(
        float(np.abs(full(p) - full(q)).max())
        for p, q in zip(model.parameters(), other.parameters())
    )
    out["whole_kind"] = {type(v).__name__ for v in whole.values()}
    return out


def _torch_gpt(torch, ember_model):
    """``tp_models.ember_gpt`` in torch, with the ember model's weights."""
    import math

    nn = torch.nn
    D, H, V = tp_models.D, tp_models.HEADS, tp_models.VOCAB

    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(D, D, dtype=torch.float64) for _ in "qkvo")

        def forward(self, x):
            b, s, _ = x.shape

            def heads(t):  # -1: under tensor parallelism each rank holds H / tp heads
                return t.reshape(b, s, -1, D // H).transpose(1, 2)

            q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
            att = (q @ k.transpose(-2, -1)) / math.sqrt(D // H)
            att = att.masked_fill(torch.triu(torch.ones(s, s, dtype=torch.bool), 1), -math.inf)
            return self.o((att.softmax(-1) @ v).transpose(1, 2).reshape(b, s, -1))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(D, tp_models.HIDDEN, dtype=torch.float64)
            self.fc2 = nn.Linear(tp_models.HIDDEN, D, dtype=torch.float64)

        def forward(self, x):
            return self.fc2(nn.functional.gelu(self.fc1(x)))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.attn = nn.LayerNorm(D, dtype=torch.float64), Attn()
            self.ln2, self.mlp = nn.LayerNorm(D, dtype=torch.float64), MLP()

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(V, D, dtype=torch.float64)
            self.block = Block()
            self.norm = nn.LayerNorm(D, dtype=torch.float64)
            self.head = nn.Linear(D, V, bias=False, dtype=torch.float64)

        def forward(self, idx):
            return self.head(self.norm(self.block(self.tok(idx))))

    model = GPT()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(dict(ember_model.named_parameters())[name].detach().numpy()))
    return model


def torch_fsdp_tp_rank(rank: int, port: int, out: str) -> None:
    """PyTorch's own FSDP2 + TP run of ``case_train(False)`` (gloo, 4 CPU processes): rank 0
    saves the dp-mean losses and the full parameters to ``out`` (an .npz)."""
    import torch
    import torch.distributed as tdist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    tdist.init_process_group("gloo", rank=rank, world_size=4)
    model = _torch_gpt(torch, tp_models.ember_gpt())
    mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    rep = Replicate()
    plan = {"tok": RowwiseParallel(input_layouts=rep, output_layouts=rep),
            "head": ColwiseParallel(output_layouts=rep)}  # fmt: skip
    for name in ("attn.q", "attn.k", "attn.v", "mlp.fc1"):
        plan[f"block.{name}"] = ColwiseParallel()
    for name in ("attn.o", "mlp.fc2"):
        plan[f"block.{name}"] = RowwiseParallel()
    parallelize_module(model, mesh["tp"], plan)
    fully_shard(model.block, mesh=mesh["dp"])
    fully_shard(model, mesh=mesh["dp"])
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    toks, dp = torch.from_numpy(tp_models.tokens()), mesh.get_local_rank("dp")
    losses = []
    for _ in range(STEPS):
        logits = model(toks[dp : dp + 1, :-1]).reshape(-1, tp_models.VOCAB)
        loss = torch.nn.functional.cross_entropy(logits, toks[dp : dp + 1, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad()
        mean = loss.detach().clone()
        tdist.all_reduce(mean, group=mesh.get_group("dp"))
        losses.append(mean.item() / 2)
    params = {n: p.full_tensor().detach().numpy() for n, p in model.named_parameters()}
    if rank == 0:
        np.savez(out, losses=np.array(losses), **params)
    tdist.destroy_process_group()


def case_ddp_tp():
    """DDP over the dp row of a 2x2 (dp, tp) mesh (``device_mesh=mesh["dp"]``) around the TP
    model: STEPS AdamW steps next to one process; and DDP's argument checks."""
    import ember
    import ember.nn.functional as F
    from ember.distributed.tensor import init_device_mesh
    from ember.distributed.tensor.parallel import parallelize_module
    from ember.nn.parallel import DistributedDataParallel as DDP

    mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    ref, model = tp_models.ember_gpt(), tp_models.ember_gpt()
    parallelize_module(model, mesh["tp"], _plan(False))
    ddp = DDP(model, device_mesh=mesh["dp"])
    errors = []
    for kwargs in ({"device_mesh": mesh}, {"device_mesh": mesh["dp"], "process_group": 1}):
        try:
            DDP(tp_models.ember_gpt(), **kwargs)
        except RuntimeError as e:
            errors.append(str(e))
    toks = tp_models.tokens()
    dp = mesh.get_coordinate()[0]
    opt = ember.optim.AdamW(ddp.parameters(), lr=0.05)
    ref_opt = ember.optim.AdamW(ref.parameters(), lr=0.05)
    for _ in range(STEPS):
        for m, o, idx, tgt in (
            (ddp, opt, toks[dp : dp + 1, :-1], toks[dp : dp + 1, 1:]),
            (ref, ref_opt, toks[:, :-1], toks[:, 1:]),
        ):
            logits = m(ember.tensor(idx)).reshape(-1, tp_models.VOCAB)
            F.cross_entropy(logits, ember.tensor(tgt.reshape(-1))).backward()
            o.step()
            o.zero_grad()
    whole = [p.full_tensor() if hasattr(p, "full_tensor") else p for p in model.parameters()]
    err = max(float((p - r).abs().max().item()) for p, r in zip(whole, ref.parameters()))
    return err, errors
