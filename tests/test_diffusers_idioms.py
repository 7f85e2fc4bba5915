"""Idioms HuggingFace ``diffusers`` (0.42) and ``peft`` (0.21) reach in torch when they run on
ember, each a small program of our own checked against torch (neither library is a test
dependency; docs/porting_examples.md records the programs run through them):

- names read at import: ``torch.Stream`` / ``torch.cuda.Stream | None`` in annotations,
  ``torch.cuda.CUDAGraph`` / ``torch.cuda.graph``, ``torch.utils._pytree._dict_flatten`` (and
  ``_dict_unflatten`` / ``_dict_flatten_with_keys``, used to register output classes),
  ``torch.distributed._functional_collectives``, ``torch.distributed._composable.fsdp``,
  ``torch.distributed.tensor._utils``, ``torch._dynamo.assume_constant_result``;
- ``@torch.no_grad`` without parentheses on a method;
- ``generator.device.type`` (diffusers' ``randn_tensor``);
- a sigma schedule: ``lerp`` through ``-inf`` log-sigmas and ``argmax(axis=0)`` (KDPM2);
- a diffusion training step of our own: sinusoidal timestep embedding, GroupNorm/SiLU
  residual blocks with a timestep projection, attention through
  ``scaled_dot_product_attention``, nearest upsampling, the DDPM ``add_noise`` and
  ``step`` arithmetic, AdamW under a cosine schedule with warmup, an EMA with warmup, and a
  LoRA adapter (frozen base, low-rank trainable pair) as peft injects it.
"""

from __future__ import annotations

import math
import socket
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
LIBS = {"ember": ember, "torch": torch}


def _np(t):
    return t.detach().cpu().numpy()


# ---- names read at import --------------------------------------------------------------------
def test_stream_and_event_are_device_generic_types():
    s = ember.Stream()
    assert isinstance(s, ember.Stream) and not isinstance(object(), ember.Stream)
    assert isinstance(ember.cpu.current_stream(), ember.Stream)
    assert isinstance(ember.Event(), ember.Event)
    # diffusers' group-offloading config annotates a field this way at class creation
    ann = ember.cuda.Stream | ember.Stream | None
    assert ann is not None
    s.synchronize()
    assert s.query()


def test_cuda_graph_types_exist_and_check_their_arguments():
    assert isinstance(ember.cuda.CUDAGraph, type)  # (annotations and isinstance checks)
    with pytest.raises(TypeError, match="expects a CUDAGraph"):
        ember.cuda.graph(None)


@dataclass
class _Out(OrderedDict):
    sample: object = None
    extra: object = None

    def __post_init__(self):
        for k in ("sample", "extra"):
            if getattr(self, k) is not None:
                self[k] = getattr(self, k)


@pytest.mark.parametrize("name", ["ember", "torch"])
def test_output_class_registered_with_dict_flatten(name):
    lib = LIBS[name]
    pt = lib.utils._pytree

    class Out(_Out):
        pass

    # diffusers' BaseOutput.__init_subclass__ / transformers' ModelOutput, our own class
    pt.register_pytree_node(
        Out,
        pt._dict_flatten,
        lambda values, context: Out(**pt._dict_unflatten(values, context)),
        serialized_type_name=f"test.{name}.Out",
        flatten_with_keys_fn=pt._dict_flatten_with_keys,
    )
    o = Out(sample=lib.ones(2), extra=lib.zeros(1))
    leaves, spec = pt.tree_flatten(o)
    assert len(leaves) == 2
    doubled = pt.tree_map(lambda t: t * 2, o)
    assert isinstance(doubled, Out) and list(doubled.keys()) == ["sample", "extra"]
    np.testing.assert_array_equal(_np(doubled.sample), [2.0, 2.0])
    paths = [pt.keystr(p) for p, _ in pt.tree_flatten_with_path(o)[0]]
    assert paths == ["['sample']", "['extra']"]
    assert pt._list_flatten([1, 2])[0] == [1, 2] and pt._tuple_flatten((1, 2))[0] == [1, 2]


def test_dynamo_assume_constant_result_is_a_decorator():
    @ember._dynamo.assume_constant_result
    def probe():
        return 3

    assert probe() == 3


def test_distributed_import_paths():
    from ember.distributed import fsdp
    from ember.distributed._composable.fsdp import MixedPrecisionPolicy, fully_shard

    assert fully_shard is fsdp.fully_shard and MixedPrecisionPolicy is fsdp.MixedPrecisionPolicy
    from ember.distributed._functional_collectives import AsyncCollectiveTensor
    from ember.distributed.tensor._utils import compute_local_shape_and_global_offset

    assert not isinstance(ember.ones(1), AsyncCollectiveTensor)
    assert callable(compute_local_shape_and_global_offset)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_functional_collectives_single_rank():
    import ember.distributed as dist
    import ember.distributed._functional_collectives as funcol
    from ember.distributed.device_mesh import init_device_mesh
    from ember.distributed.tensor import Shard
    from ember.distributed.tensor._utils import compute_local_shape_and_global_offset

    dist.init_process_group(init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        x = ember.arange(6.0).reshape(2, 3)
        mesh = init_device_mesh("cpu", (1,))
        for out in (
            funcol.all_gather_tensor(x, 1, mesh),
            funcol.all_reduce(x, "sum", None),
            funcol.reduce_scatter_tensor(x, "avg", 1, (mesh, 0)),
            funcol.all_to_all_single(x, None, None, None),
            funcol.permute_tensor(x, [0], None),
        ):
            np.testing.assert_array_equal(_np(funcol.wait_tensor(out)), _np(x))
            assert out is not x
        with pytest.raises(ValueError, match="unknown reduceOp"):
            funcol.all_reduce(x, "mean", None)
        y = ember.randn(4, 3, requires_grad=True)
        (
            funcol.all_to_all_single_autograd(y, None, None, None) * ember.arange(3.0)
        ).sum().backward()
        np.testing.assert_array_equal(_np(y.grad), np.tile(np.arange(3.0), (4, 1)))
        assert compute_local_shape_and_global_offset((5, 4), mesh, [Shard(1)]) == ((5, 4), (0, 0))
    finally:
        dist.destroy_process_group()


# ---- call-site idioms ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ember", "torch"])
def test_no_grad_without_parentheses(name):
    lib = LIBS[name]

    class Converter:
        @lib.no_grad
        def convert(self, x):
            return x * 2

        @lib.enable_grad
        def with_grad(self, x):
            return x * 2

    x = lib.ones(2, requires_grad=True)
    assert not Converter().convert(x).requires_grad
    assert Converter.convert.__name__ == "convert"
    with lib.no_grad():
        assert Converter().with_grad(x).requires_grad


def test_no_grad_rejects_a_non_callable():
    with pytest.raises(TypeError, match="no_grad"):
        ember.no_grad(3)


@pytest.mark.parametrize("name", ["ember", "torch"])
def test_generator_device_is_a_device(name):
    lib = LIBS[name]
    g = lib.Generator().manual_seed(0)
    assert g.device.type == "cpu"
    assert isinstance(g.device, lib.device)
    a = lib.randn((2, 3), generator=g, device=g.device)
    b = lib.randn((2, 3), generator=lib.Generator().manual_seed(0))
    np.testing.assert_array_equal(_np(a), _np(b))


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # (torch's, on NumPy 2)
@pytest.mark.parametrize("name", ["ember", "torch"])
def test_sigma_schedule_idioms(name):
    # KDPM2's interpolated sigmas: lerp of log-sigmas ending in log(0) = -inf keeps -inf
    # (torch computes from ``end`` when weight >= 0.5), and numpy's argmax(axis=...) spelling
    # on a tensor that np.cumsum returned
    lib = LIBS[name]
    sigmas = lib.tensor([14.6, 5.1, 0.57, 0.0])
    with np.errstate(divide="ignore", invalid="ignore"):  # ember's NumPy warnings
        interp = sigmas.log().lerp(sigmas.roll(1).log(), 0.5).exp()
    got = _np(interp)
    assert np.isnan(got[0]) and got[-1] == 0.0
    np.testing.assert_allclose(got[1:3], [np.sqrt(14.6 * 5.1), np.sqrt(5.1 * 0.57)], rtol=1e-5)
    w = lib.tensor([0.25, 0.75])
    np.testing.assert_allclose(_np(lib.lerp(lib.zeros(2), lib.full((2,), 4.0), w)), [1.0, 3.0])
    log_sigmas = lib.tensor([-3.0, -1.0, 0.5, 2.0])
    dists = lib.tensor([0.1, 1.2]) - log_sigmas[:, None]
    low = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=2)
    np.testing.assert_array_equal(_np(low), [1, 2])
    x = lib.tensor([[1.0, 5.0], [3.0, 2.0]])
    np.testing.assert_array_equal(_np(x.argmin(axis=1, keepdims=True)), [[0], [1]])
    np.testing.assert_array_equal(_np(x.max(axis=0).values), [3.0, 5.0])
    np.testing.assert_array_equal(_np(lib.amin(x, axis=0)), [1.0, 2.0])


# ---- a diffusion training step of our own -----------------------------------------------------
def _program(lib):
    """Build a tiny timestep-conditioned UNet with LoRA on its attention projections."""
    nn, F = lib.nn, lib.nn.functional

    def timestep_embedding(t, dim):
        half = dim // 2
        freqs = lib.exp(-math.log(10000) * lib.arange(half, dtype=lib.float32) / half)
        args = t[:, None].float() * freqs[None]
        return lib.cat([lib.sin(args), lib.cos(args)], dim=-1)

    class LoRALinear(nn.Module):
        def __init__(self, base, r=2, alpha=4):
            super().__init__()
            self.base = base
            self.lora_A = nn.Linear(base.in_features, r, bias=False)
            self.lora_B = nn.Linear(r, base.out_features, bias=False)
            self.scaling = alpha / r

        def forward(self, x):
            return self.base(x) + self.lora_B(self.lora_A(x)) * self.scaling

    class Res(nn.Module):
        def __init__(self, cin, cout, temb):
            super().__init__()
            self.norm1, self.conv1 = nn.GroupNorm(4, cin), nn.Conv2d(cin, cout, 3, padding=1)
            self.proj = nn.Linear(temb, cout)
            self.norm2, self.conv2 = nn.GroupNorm(4, cout), nn.Conv2d(cout, cout, 3, padding=1)
            self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

        def forward(self, x, temb):
            h = self.conv1(F.silu(self.norm1(x)))
            h = h + self.proj(F.silu(temb))[:, :, None, None]
            h = self.conv2(F.silu(self.norm2(h)))
            return self.skip(x) + h

    class Attn(nn.Module):
        def __init__(self, c, heads=2):
            super().__init__()
            self.norm, self.heads = nn.GroupNorm(4, c), heads
            # no key bias: softmax cancels it, so its gradient is rounding noise that Adam
            # would scale up to full steps (differently in each framework)
            self.to_q, self.to_v = nn.Linear(c, c), nn.Linear(c, c)
            self.to_k = nn.Linear(c, c, bias=False)
            self.to_out = nn.ModuleList([nn.Linear(c, c), nn.Dropout(0.0)])

        def forward(self, x):
            b, c, h, w = x.shape
            s = self.norm(x).view(b, c, h * w).transpose(1, 2)
            q, k, v = (
                p(s).view(b, -1, self.heads, c // self.heads).transpose(1, 2)
                for p in (self.to_q, self.to_k, self.to_v)
            )
            o = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False)
            o = o.transpose(1, 2).reshape(b, -1, c)
            for m in self.to_out:
                o = m(o)
            return x + o.transpose(-1, -2).reshape(b, c, h, w)

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.temb = nn.Sequential(nn.Linear(8, 16), nn.SiLU(), nn.Linear(16, 16))
            self.conv_in = nn.Conv2d(3, 8, 3, padding=1)
            self.down = Res(8, 16, 16)
            self.downsample = nn.Conv2d(16, 16, 3, stride=2, padding=1)
            self.mid, self.attn = Res(16, 16, 16), Attn(16)
            self.up = Res(32, 8, 16)
            self.conv_out = nn.Conv2d(8, 3, 3, padding=1)

        def forward(self, x, t):
            temb = self.temb(timestep_embedding(t, 8).to(x.dtype))
            h0 = self.down(self.conv_in(x), temb)
            h = self.attn(self.mid(self.downsample(h0), temb))
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            return self.conv_out(F.silu(self.up(lib.cat([h, h0], dim=1), temb)))

    return UNet, LoRALinear


def _add_lora(lib, model, LoRALinear):
    # peft's injection: swap the named Linear layers for a wrapper holding the frozen base
    model.requires_grad_(False)
    for name in ("to_q", "to_k", "to_v"):
        setattr(model.attn, name, LoRALinear(getattr(model.attn, name)))
    model.attn.to_out[0] = LoRALinear(model.attn.to_out[0])


def _cosine_with_warmup(warmup, total):
    def f(step):
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return f


def _run(lib, state, data, lora):
    UNet, LoRALinear = _program(lib)
    model = UNet()
    if lora:
        _add_lora(lib, model, LoRALinear)
    model.load_state_dict({k: lib.tensor(v) for k, v in state.items()})
    betas = lib.linspace(1e-4, 0.02, 1000, dtype=lib.float32)
    alphas_cumprod = lib.cumprod(1.0 - betas, dim=0)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = lib.optim.AdamW(params, lr=1e-2, weight_decay=1e-2)
    sched = lib.optim.lr_scheduler.LambdaLR(opt, _cosine_with_warmup(1, 4))
    ema = [p.detach().clone() for p in params]
    out = {"loss": []}
    for step, (clean, noise, ts) in enumerate(data):
        clean, noise, ts = lib.tensor(clean), lib.tensor(noise), lib.tensor(ts)
        a = alphas_cumprod.to(clean.device)[ts].flatten()
        while a.dim() < clean.dim():
            a = a.unsqueeze(-1)
        noisy = a**0.5 * clean + (1 - a) ** 0.5 * noise  # DDPM add_noise
        loss = lib.nn.functional.mse_loss(model(noisy, ts).float(), noise.float())
        loss.backward()
        lib.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        decay = min(0.999, 1 - (1 + step + 1) ** -0.75)  # EMA warmup (inv_gamma 1, power 3/4)
        with lib.no_grad():
            for e, p in zip(ema, params):
                e.sub_((1 - decay) * (e - p))
        out["loss"].append(loss.item())
    # one reverse DDPM step from the last noisy batch, with a given variance noise
    with lib.no_grad():
        t = int(ts[0])
        eps = model(noisy, ts)
        a_t, a_prev = alphas_cumprod[t], alphas_cumprod[t - 1]
        x0 = ((noisy - (1 - a_t) ** 0.5 * eps) / a_t**0.5).clamp(-1, 1)
        beta_t = 1 - a_t / a_prev
        mean = (a_prev**0.5 * beta_t / (1 - a_t)) * x0 + (
            (1 - beta_t) ** 0.5 * (1 - a_prev) / (1 - a_t)
        ) * noisy
        var = (1 - a_prev) / (1 - a_t) * beta_t
        out["prev"] = _np(mean + var.clamp(min=1e-20) ** 0.5 * lib.tensor(data[0][1]))
    out["ema"] = [_np(e) for e in ema]
    out["frozen"] = _np(model.conv_in.weight)
    out["lr"] = sched.get_last_lr()[0]
    return out


@pytest.fixture
def _torch_one_thread():
    # a tiny model: torch's thread pool on a shared 2-core runner costs seconds per step
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("lora", [False, True], ids=["all_weights", "lora"])
def test_diffusion_training_step_matches_torch(lora, _torch_one_thread):
    torch.manual_seed(0)
    UNet, LoRALinear = _program(torch)
    ref = UNet()
    if lora:
        _add_lora(torch, ref, LoRALinear)
        with torch.no_grad():  # a nonzero B, so the adapters change the first forward
            for n, p in ref.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.1)
    state = {k: v.numpy().copy() for k, v in ref.state_dict().items()}
    rng = np.random.default_rng(0)
    data = [
        (
            rng.uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32),
            rng.standard_normal((2, 3, 8, 8)).astype(np.float32),
            rng.integers(1, 1000, (2,)),
        )
        for _ in range(3)
    ]
    got, want = _run(ember, state, data, lora), _run(torch, state, data, lora)
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-4)
    np.testing.assert_allclose(got["prev"], want["prev"], rtol=1e-4, atol=1e-5)
    for g, w in zip(got["ema"], want["ema"]):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-6)
    assert got["lr"] == pytest.approx(want["lr"])
    if lora:  # the frozen base is untouched by the optimizer
        np.testing.assert_array_equal(got["frozen"], state["conv_in.weight"])
        assert len(got["ema"]) == 8  # only the four adapters' A/B pairs were trained


def test_doc_snippet_runs():
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "porting_examples.md"), encoding="utf-8") as f:
        section = f.read().split("## HuggingFace diffusers and peft", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(snippet, "docs/porting_examples.md", "exec"), {})


def test_cuda_graph_capture_needs_a_device_as_torch_cpu_build():
    import torch

    if ember.cuda.is_available():
        pytest.skip("a CUDA device is present: tests/test_cuda_graphs_gpu.py covers capture")
    for fw in (ember, torch):
        with pytest.raises(RuntimeError):
            fw.cuda.CUDAGraph()
        with pytest.raises(RuntimeError):
            fw.cuda.graph_pool_handle()
