"""The models users bring (issue 23): one training step (forward + backward) per model, ember vs
torch in one process, small inputs, to find the pathological slow paths rather than tune.

    python benchmarks/models.py                          # every model, 1 thread (~10 min)
    python benchmarks/models.py --models resnet18 efficientnet_v2_s --repeat 5
    python benchmarks/models.py --threads 2 --clock wall
    python benchmarks/models.py --models mobilenet_v3_large --layers   # gap by layer kind

The torch side runs the *same* architecture: torchvision cannot be imported beside torch here,
so ember's own model source (``vision/models/*.py`` and the ``vision/ops`` blocks it uses) is
rewritten into a scratch package with ``ember`` replaced by ``torch`` and imported there (its
twin); ember's weights are copied into the twin, and the eval outputs' largest difference is
printed beside the times as a check that both sides compute the same thing. Detection models
have no twin (ember only). The language models are written once against PyTorch's API and
built from either library.

Both frameworks alternate model by model and round by round, so a load spike on the shared
machine hits both; each time is the best of ``--repeat`` rounds of ``time.process_time`` (at
one thread; wall time with ``--clock wall``, which is the honest clock at two threads).
"""

from __future__ import annotations

import argparse
import importlib
import math
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from _common import table  # noqa: E402

_ROOT = Path(__file__).resolve().parents[1]
_TWIN = "_ember_twin_models"

# (name, module of vision/models, builder kwargs, image size); batch 2 everywhere
VISION = [
    ("resnet18", "resnet", {}, 64),
    ("resnet50", "resnet", {}, 64),
    ("mobilenet_v2", "mobilenetv2", {}, 64),
    ("mobilenet_v3_small", "mobilenetv3", {}, 64),
    ("mobilenet_v3_large", "mobilenetv3", {}, 64),
    ("efficientnet_b0", "efficientnet", {}, 64),
    ("efficientnet_v2_s", "efficientnet_v2", {}, 64),
    ("convnext_tiny", "convnext", {}, 64),
    ("vit_b_16", "vision_transformer", {"image_size": 64}, 64),
    ("vgg11", "vgg", {}, 64),
    ("googlenet", "googlenet", {"aux_logits": False, "init_weights": False}, 64),
    ("inception_v3", "inception", {"aux_logits": False, "init_weights": False}, 80),
    ("densenet121", "densenet", {}, 64),
    ("squeezenet1_1", "squeezenet", {}, 64),
    ("shufflenet_v2_x1_0", "shufflenetv2", {}, 64),
    ("mnasnet1_0", "mnasnet", {}, 64),
    ("regnet_y_400mf", "regnet", {}, 64),
    ("swin_t", "swin_transformer", {}, 64),
]
OTHER = ["fasterrcnn_resnet50_fpn", "lstm_lm", "gru_lm", "transformer_lm"]


def torch_twins():
    """The scratch package of torch twins of ``ember.vision.models`` (see the docstring)."""
    if _TWIN in sys.modules:
        return sys.modules[_TWIN]
    pkg = Path(tempfile.mkdtemp(prefix="ember_twins_")) / _TWIN
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    files = [p for p in (_ROOT / "vision" / "models").glob("*.py") if p.name != "__init__.py"]
    files += [
        _ROOT / "vision" / "ops" / "misc.py",
        _ROOT / "vision" / "ops" / "stochastic_depth.py",
    ]
    for f in files:
        text = f.read_text().replace("from ember.tensor import Tensor", "from torch import Tensor")
        text = text.replace("from ..ops.misc import", "from ._ops_misc import")
        text = text.replace(
            "from ..ops.stochastic_depth import", "from ._ops_stochastic_depth import"
        )
        text = re.sub(r"from \.\.(\w)", r"from ember.vision.\1", text)  # transforms' enums
        text = text.replace("ember.vision", "EMBER_VISION")
        text = re.sub(r"\bember\b", "torch", text).replace("EMBER_VISION", "ember.vision")
        name = f.name if f.parent.name == "models" else f"_ops_{f.name}"
        (pkg / name).write_text(text)
    sys.path.insert(0, str(pkg.parent))
    return importlib.import_module(_TWIN)


def _lm(lib, kind: str):
    nn = lib.nn

    class LM(nn.Module):
        def __init__(self, vocab=1000, dim=128):
            super().__init__()
            self.embed = nn.Embedding(vocab, dim)
            if kind == "transformer":
                layer = nn.TransformerEncoderLayer(dim, 4, 4 * dim, dropout=0.0, batch_first=True)
                self.body = nn.TransformerEncoder(layer, 2)
            else:
                self.body = getattr(nn, kind.upper())(dim, dim, num_layers=2, batch_first=True)
            self.head = nn.Linear(dim, vocab)

        def forward(self, tokens):
            h = self.embed(tokens)
            if kind == "transformer":
                n = tokens.shape[1]
                mask = nn.Transformer.generate_square_subsequent_mask(n)
                h = self.body(h, mask=mask, is_causal=True)
            else:
                h = self.body(h)[0]
            return self.head(h)

    return LM()


def build(lib, name: str, seed: int = 0):
    """(model, input) for ``name`` built from ``lib`` (ember or torch); None where no twin."""
    rng = np.random.default_rng(seed)
    if name.endswith("_lm"):
        lib.manual_seed(seed)
        tokens = rng.integers(0, 1000, (4, 64))
        return _lm(lib, name[: -len("_lm")]), lib.from_numpy(tokens)
    if name == "fasterrcnn_resnet50_fpn":
        if lib.__name__ != "ember":
            return None
        from ember.vision.models import detection

        model = detection.fasterrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, min_size=128, max_size=160, num_classes=5
        )
        img = rng.random((3, 128, 160), dtype=np.float32)
        return model, [lib.from_numpy(img), lib.from_numpy(img[:, ::-1].copy())]
    module, kwargs, size = next((m, k, s) for n, m, k, s in VISION if n == name)
    if lib.__name__ == "ember":
        from ember.vision import models as zoo
    else:
        zoo = importlib.import_module(f"{torch_twins().__name__}.{module}")
    lib.manual_seed(seed)
    x = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    return getattr(zoo, name)(num_classes=10, **kwargs), lib.from_numpy(x)


def _step_fn(lib, model, x):
    if isinstance(x, list):  # detection: the training losses need targets
        boxes = lib.tensor([[10.0, 20.0, 70.0, 90.0], [40.0, 30.0, 120.0, 110.0]])
        targets = [{"boxes": boxes, "labels": lib.tensor([1, 3])} for _ in x]

        def step():
            loss = sum(model(x, targets).values())
            loss.backward()

        return step

    def step():
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        out.float().square().mean().backward()

    return step


def _copy_weights(src, dst) -> None:
    import torch

    state = {k: torch.from_numpy(np.array(v.detach().numpy())) for k, v in src.state_dict().items()}
    dst.load_state_dict(state)


def _max_diff(em, tm, ex, tx) -> float:
    import torch

    import ember

    em.eval(), tm.eval()
    with ember.no_grad(), torch.no_grad():
        a, b = em(ex), tm(tx)
    em.train(), tm.train()
    return float(np.abs(a.numpy() - b.numpy()).max())


def measure(name: str, repeat: int, clock) -> dict:
    import torch

    import ember

    sides = {"ember": build(ember, name), "torch": build(torch, name)}
    row = {"model": name}
    if sides["torch"] is not None and not name.endswith("_lm"):
        _copy_weights(sides["ember"][0], sides["torch"][0])
        row["diff"] = _max_diff(*sides["ember"][:1], *sides["torch"][:1], sides["ember"][1],
                                sides["torch"][1])  # fmt: skip
    steps = {}
    for lib_name, side in sides.items():
        if side is not None:
            side[0].train()
            steps[lib_name] = _step_fn(ember if lib_name == "ember" else torch, *side)
            steps[lib_name]()  # warm-up (compiled kernels, MKL's load, caches)
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(repeat):
        for lib_name, step in steps.items():  # interleaved: ember, torch, ember, ...
            t = clock()
            step()
            best[lib_name] = min(best[lib_name], clock() - t)
    row.update({f"{k}_ms": v * 1e3 for k, v in best.items()})
    return row


def _layer_kind(m, x) -> str:
    kind = type(m).__name__
    if kind.startswith("Conv") and hasattr(m, "groups"):
        dw = m.groups == m.in_channels > 1
        kind += f" k{m.kernel_size[0]} s{m.stride[0]}"
        kind += " dw" if dw else (f" g{m.groups}" if m.groups > 1 else "")
        kind += " 1px" if math.prod(x.shape[2:]) == 1 else ""
    return kind


def layer_table(name: str, repeat: int, clock) -> list[list]:
    """Forward + backward of each leaf module of ``name`` on the input it saw in a forward
    pass, ember's module against its twin's, summed by layer kind (largest gap first): where a
    model's gap to torch comes from, without a profiler's attribution noise."""
    import torch

    import ember

    (em, ex), (tm, _) = build(ember, name), build(torch, name)
    _copy_weights(em, tm)
    em.train(), tm.train()
    leaves = {n: m for n, m in em.named_modules() if not list(m.children())}
    seen = {}

    def record(n):
        def hook(mod, args, out):  # returns None: a forward hook's value would replace out
            seen.setdefault(n, [a.detach().numpy().copy() for a in args if hasattr(a, "shape")])

        return hook

    hooks = [m.register_forward_hook(record(n)) for n, m in leaves.items()]
    em(ex)
    for h in hooks:
        h.remove()
    twins = dict(tm.named_modules())

    def step(lib, mod, arrays):
        leaves_in = [lib.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]

        def run():  # a clone per call: in-place activations may not touch a leaf
            y = mod(*[t.clone() for t in leaves_in])
            if y.requires_grad:
                y.float().square().mean().backward()

        return run

    kinds = {}
    for n, arrays in seen.items():
        if not arrays:
            continue
        fe, ft = step(ember, leaves[n], arrays), step(torch, twins[n], arrays)
        fe(), ft()
        best = [float("inf")] * 2
        for _ in range(repeat):
            for i, f in enumerate((fe, ft)):
                t = clock()
                f()
                best[i] = min(best[i], clock() - t)
        k = kinds.setdefault(_layer_kind(leaves[n], arrays[0]), [0.0, 0.0, 0])
        k[0], k[1], k[2] = k[0] + best[0], k[1] + best[1], k[2] + 1
    rows = sorted(kinds.items(), key=lambda kv: kv[1][1] - kv[1][0])
    return [
        [kind, c, f"{e * 1e3:.2f}", f"{t * 1e3:.2f}", f"{(e - t) * 1e3:+.2f}", f"{e / t:.2f}"]
        for kind, (e, t, c) in rows
    ]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=[n for n, *_ in VISION] + OTHER)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=["cpu", "wall"], default=None)
    p.add_argument("--layers", action="store_true", help="per layer kind, vision models only")
    args = p.parse_args(argv)
    known = {n for n, *_ in VISION} | set(OTHER)
    bad = [m for m in args.models if m not in known]
    if bad:
        p.error(f"unknown model(s) {', '.join(bad)}; choose from {', '.join(sorted(known))}")
    import torch

    import ember

    ember.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    clock_name = args.clock or ("cpu" if args.threads == 1 else "wall")
    clock = time.process_time if clock_name == "cpu" else time.perf_counter
    if args.layers:
        for name in args.models:
            if name in OTHER:
                p.error(f"--layers needs a vision model with a twin, not {name}")
            print(f"\n{name}: leaf modules, forward + backward, {clock_name} clock")
            head = ["layer kind", "n", "ember ms", "torch ms", "gap ms", "ratio"]
            print(table(layer_table(name, args.repeat, clock), head))
        return
    rows = []
    for name in args.models:
        try:
            r = measure(name, args.repeat, clock)
        except Exception as e:  # one broken model must not hide the others' numbers
            print(f"{name}: {type(e).__name__}: {e}", flush=True)
            continue
        e_ms, t_ms = r.get("ember_ms"), r.get("torch_ms")
        row = [name, f"{e_ms:.1f}", "-" if t_ms is None else f"{t_ms:.1f}"]
        row += [
            "-" if t_ms is None else f"{e_ms / t_ms:.2f}",
            f"{r['diff']:.1e}" if "diff" in r else "-",
        ]
        rows.append(row)
        print(" | ".join(row), flush=True)
    print(f"\ntrain step (forward + backward), {args.threads} thread(s), {clock_name} clock, "
          f"best of {args.repeat}")  # fmt: skip
    print(table(rows, ["model", "ember ms", "torch ms", "ratio", "eval max |diff|"]))


if __name__ == "__main__":
    main()
