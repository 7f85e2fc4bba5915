"""Tensor and sequence parallelism (``ember.distributed.tensor.parallel``) on 2 real ranks.

A GPT block (attention + MLP, ember.nn) parallelized 2-way (colwise q/k/v and fc1, rowwise
out-proj and fc2; then with SequenceParallel on the norms) must give the single-process
forward output and parameter gradients (float64); the single-process block itself is checked
against torch.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import tp_models  # noqa: E402

WORLD = 2
DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "distributed.md"


def _plan(sequence_parallel: bool):
    from ember.distributed.tensor import Replicate, Shard
    from ember.distributed.tensor.parallel import (
        ColwiseParallel,
        PrepareModuleInput,
        RowwiseParallel,
        SequenceParallel,
    )

    out = Shard(1) if sequence_parallel else Replicate()
    plan = {
        "attn.q": ColwiseParallel(),
        "attn.k": ColwiseParallel(),
        "attn.v": ColwiseParallel(),
        "attn.o": RowwiseParallel(output_layouts=out),
        "mlp.fc1": ColwiseParallel(),
        "mlp.fc2": RowwiseParallel(output_layouts=out),
    }
    if sequence_parallel:
        gather = PrepareModuleInput(input_layouts=Shard(1), desired_input_layouts=Replicate())
        plan.update({"ln1": SequenceParallel(), "ln2": SequenceParallel()})
        plan.update({"attn": gather, "mlp": gather})
    return plan


@contextlib.contextmanager
def _counting(calls: dict, phase: str):
    """Count the collectives DTensor code calls (by name) while the block runs."""
    import ember.distributed.collectives as c

    names = ("all_reduce", "all_gather", "reduce_scatter_tensor")
    saved = {n: getattr(c, n) for n in names}

    def counted(name):
        def fn(*args, **kwargs):
            calls[phase, name] = calls.get((phase, name), 0) + 1
            return saved[name](*args, **kwargs)

        return fn

    for n in names:
        setattr(c, n, counted(n))
    try:
        yield
    finally:
        for n in names:
            setattr(c, n, saved[n])


def case_block(sequence_parallel: bool):
    import ember
    from ember.distributed.tensor import DTensor, Shard, init_device_mesh
    from ember.distributed.tensor.parallel import DTensorParameter, parallelize_module

    mesh = init_device_mesh("cpu", (WORLD,), mesh_dim_names=("tp",))
    x = tp_models.inputs()
    w_out = np.random.RandomState(2).standard_normal(x.shape)
    # single process: the whole block on the whole batch
    ref = tp_models.ember_block()
    ref_out = ref(ember.tensor(x))
    (ref_out * ember.tensor(w_out)).sum().backward()
    ref_grads = {n: p.grad.numpy() for n, p in ref.named_parameters()}

    block = parallelize_module(tp_models.ember_block(), mesh, _plan(sequence_parallel))
    calls = {}
    if sequence_parallel:  # each rank holds its half of the sequence
        rank = mesh.get_local_rank()
        lo, hi = rank * x.shape[1] // WORLD, (rank + 1) * x.shape[1] // WORLD
        with _counting(calls, "forward"):
            out = block(ember.tensor(x[:, lo:hi]))
        with _counting(calls, "backward"):
            (out * ember.tensor(w_out[:, lo:hi])).sum().backward()
        full = DTensor.from_local(out.detach(), mesh, [Shard(1)]).full_tensor()
    else:
        out = block(ember.tensor(x))
        (out * ember.tensor(w_out)).sum().backward()
        full = out.detach()
    grads, kinds = {}, {}
    for name, p in block.named_parameters():
        if isinstance(p, DTensorParameter):
            grads[name] = p.grad_dtensor().full_tensor().numpy()
            kinds[name] = str(p.placements[0])
        else:
            grads[name] = p.grad.numpy()
            kinds[name] = "plain"
    return {
        "out_err": float(np.abs(full.numpy() - ref_out.detach().numpy()).max()),
        "ref_out": ref_out.detach().numpy(),
        "grad_err": {n: float(np.abs(grads[n] - ref_grads[n]).max()) for n in ref_grads},
        "kinds": kinds,
        "local_shapes": {n: tuple(p.shape) for n, p in block.named_parameters()},
        "calls": calls,
    }


@pytest.fixture(scope="module")
def block_results(pools):
    pool = pools(WORLD, "shm")
    return {sp: pool.run(case_block, sp, timeout=120) for sp in (False, True)}


@pytest.mark.parametrize("sequence_parallel", [False, True], ids=["tp", "tp+sp"])
def test_gpt_block_matches_single_process(block_results, sequence_parallel):
    for rank, r in enumerate(block_results[sequence_parallel]):
        assert r["out_err"] < 1e-12, (rank, r["out_err"])
        bad = {n: e for n, e in r["grad_err"].items() if e > 1e-12}
        assert not bad, (rank, bad)
        assert len(r["grad_err"]) == 16
        assert r["kinds"]["attn.q.weight"] == "S(0)" and r["kinds"]["mlp.fc2.weight"] == "S(1)"
        assert r["kinds"]["mlp.fc2.bias"] == "R"
        assert r["kinds"]["ln1.weight"] == ("R" if sequence_parallel else "plain")
        assert r["local_shapes"]["attn.q.weight"] == (tp_models.D // WORLD, tp_models.D)
        assert r["local_shapes"]["mlp.fc2.weight"] == (tp_models.D, tp_models.HIDDEN // WORLD)


def test_sequence_parallel_communication(block_results):
    # Megatron's pattern: forward all-gathers before attention and the MLP and
    # reduce-scatters after them; backward all-gathers for those reduce-scatters and
    # all-reduces 2 activation gradients (q/k/v share one), 2 rowwise biases, 4 norm params
    want = {
        ("forward", "all_gather"): 2,
        ("forward", "reduce_scatter_tensor"): 2,
        ("backward", "all_gather"): 2,
        ("backward", "all_reduce"): 8,
    }
    for r in block_results[True]:
        assert r["calls"] == want, r["calls"]


def test_single_process_block_matches_torch(block_results):
    torch = pytest.importorskip("torch")
    # the reference the parallel block is held to is torch's forward
    want = tp_models.torch_block_output(torch, tp_models.inputs())
    np.testing.assert_allclose(block_results[False][0]["ref_out"], want, rtol=0, atol=1e-12)


def case_docs_example(code: str):
    namespace = {"__name__": "docs_example"}
    exec(compile(code, "docs/distributed.md", "exec"), namespace)
    namespace["tp_example"]()
    return True


def test_docs_example_runs(pools):
    text = DOC.read_text()
    section = text[text.index("## Tensor and sequence parallelism") :]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    assert pools(WORLD, "shm").run(case_docs_example, code, timeout=120) == [True] * WORLD


def case_gpt_loss_parallel():
    """torchtitan's plan end to end: a vocab-sharded embedding that leaves the sequence
    sharded, the block with sequence parallelism, a sequence-parallel final norm, and a
    colwise LM head whose vocab-sharded logits go straight into ``loss_parallel``."""
    import copy

    import ember
    import ember.nn.functional as F
    from ember.distributed.tensor import Replicate, Shard, init_device_mesh
    from ember.distributed.tensor.parallel import (
        ColwiseParallel,
        DTensorParameter,
        RowwiseParallel,
        SequenceParallel,
        loss_parallel,
        parallelize_module,
    )

    mesh = init_device_mesh("cpu", (WORLD,))
    model = tp_models.ember_gpt()
    ref = copy.deepcopy(model)
    toks = tp_models.tokens()
    idx, target = ember.tensor(toks[:, :-1]), ember.tensor(toks[:, 1:].reshape(-1))
    want = F.cross_entropy(ref(idx).reshape(-1, tp_models.VOCAB), target)
    want.backward()

    plan = {
        "tok": RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1)),
        "norm": SequenceParallel(),
        "head": ColwiseParallel(input_layouts=Shard(1), use_local_output=False),
    }
    plan.update({f"block.{k}": v for k, v in _plan(True).items()})
    parallelize_module(model, mesh, plan)
    logits = model(idx)  # a DTensor [B, S, V], Shard(2)
    with loss_parallel():
        loss = F.cross_entropy(logits.reshape(-1, tp_models.VOCAB), target)
        loss.backward()
    errs = {}
    for (name, p), (_, r) in zip(model.named_parameters(), ref.named_parameters()):
        g = p.grad_dtensor().full_tensor() if isinstance(p, DTensorParameter) else p.grad
        errs[name] = float((g - r.grad).abs().max().item())
    return {
        "loss_err": abs(loss.full_tensor().item() - want.item()),
        "logits": (tuple(logits.shape), logits.placements),
        "grad_err": errs,
    }


def test_gpt_with_vocab_parallel_embedding_and_loss(pools):
    for res in pools(WORLD, "shm").run(case_gpt_loss_parallel, timeout=120):
        assert res["loss_err"] < 1e-12, res["loss_err"]
        assert len(res["grad_err"]) == 20
        assert max(res["grad_err"].values()) < 1e-12, res["grad_err"]
        shape, placements = res["logits"]
        assert shape == (tp_models.BATCH, tp_models.SEQ, tp_models.VOCAB)
        assert [str(p) for p in placements] == ["S(2)"]


def case_dp_tp():
    """2-d mesh (dp=2, tp=2): the block tensor-parallel over mesh["tp"], each dp rank on its
    half of the batch, gradients averaged over the dp group (what DDP does; ember's DDP
    cannot wrap a group without global rank 0 yet: it broadcasts from src=0)."""
    import ember
    import ember.distributed as dist
    from ember.distributed.tensor import init_device_mesh
    from ember.distributed.tensor.parallel import DTensorParameter, parallelize_module

    mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    x = tp_models.inputs()
    w_out = np.random.RandomState(2).standard_normal(x.shape)
    ref = tp_models.ember_block()
    ((ref(ember.tensor(x)) * ember.tensor(w_out)).sum() / 2).backward()
    block = parallelize_module(tp_models.ember_block(), mesh["tp"], _plan(False))
    half = slice(mesh.get_local_rank("dp"), mesh.get_local_rank("dp") + 1)
    (block(ember.tensor(x[half])) * ember.tensor(w_out[half])).sum().backward()
    errs = {}
    for (name, p), (_, r) in zip(block.named_parameters(), ref.named_parameters()):
        dist.all_reduce(p.grad, op=dist.ReduceOp.AVG, group=mesh.get_group("dp"))
        g = p.grad_dtensor().full_tensor() if isinstance(p, DTensorParameter) else p.grad
        errs[name] = float((g - r.grad).abs().max().item())
    return errs


def test_tensor_parallel_on_a_2d_mesh(pools):
    for errs in pools(4, "shm").run(case_dp_tp, timeout=120):
        assert len(errs) == 16 and max(errs.values()) < 1e-12, errs


def case_prepare_input_output():
    import copy

    import ember
    from ember import nn
    from ember.distributed.tensor import Replicate, Shard, init_device_mesh
    from ember.distributed.tensor.parallel import (
        ColwiseParallel,
        PrepareModuleInputOutput,
        parallelize_module,
    )

    mesh = init_device_mesh("cpu", (WORLD,))
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8, dtype=ember.float64))
    ref = copy.deepcopy(model)
    x = ember.tensor(np.random.RandomState(3).standard_normal((6, 4)))
    parallelize_module(model, mesh, {"0": ColwiseParallel()})
    # each rank passes its half of the batch; the module sees the whole batch and hands back
    # the whole output (gathered from the column shards)
    style = PrepareModuleInputOutput(
        input_layouts=Shard(0),
        desired_input_layouts=Replicate(),
        use_local_input=True,
        output_layouts=Shard(-1),
        desired_output_layouts=Replicate(),
    )
    parallelize_module(model, mesh, style)
    rank = mesh.get_local_rank()
    out = model(x[rank * 3 : (rank + 1) * 3])
    out.sum().backward()
    want = ref(x)
    want.sum().backward()
    grad = model[0].weight.grad_dtensor().full_tensor()
    return (
        tuple(out.shape),
        float((out - want).abs().max().item()),
        float((grad - ref[0].weight.grad).abs().max().item()),
    )


def test_prepare_module_input_output(pools):
    for shape, out_err, grad_err in pools(WORLD, "shm").run(case_prepare_input_output):
        assert shape == (6, 8) and out_err < 1e-12 and grad_err < 1e-12


def case_errors():
    from ember import nn
    from ember.distributed.tensor import init_device_mesh
    from ember.distributed.tensor.parallel import (
        ColwiseParallel,
        DTensorParameter,
        RowwiseParallel,
        SequenceParallel,
        parallelize_module,
    )

    mesh = init_device_mesh("cpu", (WORLD,))
    errors = {}

    def attempt(key, fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - compared by the test
            errors[key] = (type(e).__name__, str(e))

    block = tp_models.ember_block()
    # the valid entry comes first: nothing may be applied when a later one is bad
    attempt(
        "missing",
        lambda: parallelize_module(
            block, mesh, {"attn.q": ColwiseParallel(), "attn.qq": ColwiseParallel()}
        ),
    )
    errors["untouched"] = not any(isinstance(p, DTensorParameter) for p in block.parameters())
    odd = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 7))
    attempt("divisible", lambda: parallelize_module(odd, mesh, {"1": ColwiseParallel()}))
    attempt("wrong_module", lambda: parallelize_module(block, mesh, {"ln1": RowwiseParallel()}))
    attempt("sp_module", lambda: parallelize_module(block, mesh, {"attn": SequenceParallel()}))
    mesh2 = init_device_mesh("cpu", (1, WORLD))
    attempt("mesh_2d", lambda: parallelize_module(block, mesh2, {"attn.q": ColwiseParallel()}))
    return errors


def test_bad_plans_name_what_is_wrong(pools):
    errs = pools(WORLD, "shm").run(case_errors, timeout=120)[0]
    kind, msg = errs["missing"]
    assert kind == "ValueError" and "'attn.qq'" in msg and "'attn'" in msg and "'qq'" in msg
    assert "['q', 'k', 'v', 'o']" in msg
    assert errs["untouched"] is True
    kind, msg = errs["divisible"]
    assert kind == "ValueError" and "'1.weight'" in msg and "dimension 0 of size 7" in msg
    assert "mesh size 2" in msg
    assert (
        errs["wrong_module"][0] == "NotImplementedError"
        and "LayerNorm 'ln1'" in errs["wrong_module"][1]
    )
    assert "Attention 'attn'" in errs["sp_module"][1]
    assert errs["mesh_2d"][0] == "ValueError" and "2-d mesh of shape (1, 2)" in errs["mesh_2d"][1]


def case_custom_norm_sequence_parallel():
    """A model's own RMSNorm (a leaf module written with tensor methods, as in PyTorch's Llama
    examples) under SequenceParallel: its forward runs on each rank's half of the sequence and
    the replicated weight's gradient is the sum over the ranks (``to_local(grad_placements=
    [Partial()])``)."""
    import ember
    from ember import nn
    from ember.distributed.tensor import DTensor, Shard, init_device_mesh
    from ember.distributed.tensor.parallel import SequenceParallel, parallelize_module

    class MyRMSNorm(nn.Module):
        def __init__(self, dim, eps=1e-6):
            super().__init__()
            self.eps = eps
            self.weight = nn.Parameter(ember.ones(dim, dtype=ember.float64) * 1.5)

        def forward(self, x):
            return x * ember.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

    mesh = init_device_mesh("cpu", (WORLD,))
    x = tp_models.inputs()
    w_out = np.random.RandomState(3).standard_normal(x.shape)
    ref = MyRMSNorm(x.shape[-1])
    ref_out = ref(ember.tensor(x))
    (ref_out * ember.tensor(w_out)).sum().backward()

    norm = parallelize_module(MyRMSNorm(x.shape[-1]), mesh, SequenceParallel())
    rank = mesh.get_local_rank()
    lo, hi = rank * x.shape[1] // WORLD, (rank + 1) * x.shape[1] // WORLD
    out = norm(ember.tensor(x[:, lo:hi]))
    (out.to_local() * ember.tensor(w_out[:, lo:hi])).sum().backward()
    full = DTensor.from_local(out.to_local().detach(), mesh, [Shard(1)]).full_tensor()
    return (
        type(out).__name__,
        float(np.abs(full.numpy() - ref_out.detach().numpy()).max()),
        float(np.abs(norm.weight.grad.numpy() - ref.weight.grad.numpy()).max()),
    )


def test_sequence_parallel_runs_a_models_own_norm(pools):
    for kind, out_err, grad_err in pools(WORLD, "shm").run(case_custom_norm_sequence_parallel):
        assert kind == "DTensor" and out_err < 1e-12 and grad_err < 1e-12
