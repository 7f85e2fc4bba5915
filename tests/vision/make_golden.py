"""Regenerate ``tests/vision/golden/*.npz``: torchvision's outputs for ember's parity tests.

torchvision cannot live beside the parity torch 2.13 (its wheels are CUDA builds; 0.28 fails to
load with torch 2.13), so the references come from a side environment outside the repo:

    python -m venv /work/tvenv
    /work/tvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 safetensors
    python tests/vision/make_golden.py --tv-python /work/tvenv/bin/python

Run with ember's Python, this script builds each model of ``MODEL_CASES`` in ember, fills it
with deterministic weights (``golden_cases.fill_state``), writes the state_dict to a
safetensors file and then re-runs itself under ``--tv-python``. That side loads each file into
torchvision's model of the same name with ``strict=True`` (key names and shapes must match
exactly), records the eval-mode output, and records every transform case's output.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import golden_cases as gc  # noqa: E402

GOLDEN = os.path.join(HERE, "golden")


def _to_numpy(out) -> np.ndarray:
    import torch

    if isinstance(out, (tuple, list)):
        return np.stack([_to_numpy(o) for o in out])
    if isinstance(out, torch.Tensor):
        return out.numpy()
    return np.asarray(out)  # PIL image


def torchvision_side(weights_dir: str, models: list[str]) -> None:
    import torch
    import torchvision
    import torchvision.transforms.functional as F
    from PIL import Image
    from safetensors.numpy import load_file

    torch.set_num_threads(1)
    inputs = gc.input_arrays()
    u8 = torch.from_numpy(inputs["u8"])
    imgs = {
        "u8": u8,
        "f32": F.convert_image_dtype(u8, torch.float32),
        "pil": Image.fromarray(inputs["u8"].transpose(1, 2, 0)),
    }
    out = {"input_u8": inputs["u8"]}
    for name, kind, fn in gc.TRANSFORM_CASES:
        out[name] = _to_numpy(fn(F, imgs[kind]))
    from torchvision.transforms import autoaugment as aa

    for op, mag in gc.AUG_OPS:
        for kind in ("u8", "pil"):
            fill = [0.0, 0.0, 0.0] if kind == "u8" else None
            out[f"aug_{op}[{kind}]"] = _to_numpy(
                aa._apply_op(imgs[kind], op, mag, F.InterpolationMode.NEAREST, fill)
            )
    # The tables behind the classes, recorded as JSON.
    tables = {"autoaugment_imagenet": aa.AutoAugment().policies}
    for name, cls, args in (
        ("randaugment", aa.RandAugment(), (31, (18, 22))),
        ("trivialaugmentwide", aa.TrivialAugmentWide(), (31,)),
        ("autoaugment_space", aa.AutoAugment(), (10, (18, 22))),
    ):
        space = cls._augmentation_space(*args)
        tables[name] = {k: [v[0].tolist(), bool(v[1])] for k, v in space.items()}
    out["aug_tables_json"] = np.array(json.dumps(tables))
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional as F2

    xyxy = tv_tensors.BoundingBoxes(
        torch.from_numpy(gc.BOXES_XYXY), format="XYXY", canvas_size=(18, 22)
    )
    mask = tv_tensors.Mask(torch.from_numpy(gc.mask_array()))
    for fmt in ("XYXY", "XYWH", "CXCYWH"):
        boxes = F2.convert_bounding_box_format(xyxy, new_format=fmt)
        for op, make in gc.V2_OPS:
            res = make(F2)(boxes)
            out[f"v2_{op}[{fmt}]"] = res.numpy()
            out[f"v2_{op}[{fmt}].canvas"] = np.array(res.canvas_size)
    for op, make in gc.V2_OPS:
        out[f"v2_{op}[mask]"] = make(F2)(mask).numpy()
    np.savez_compressed(os.path.join(GOLDEN, "transforms.npz"), **out)
    print(
        f"transforms.npz: {len(gc.TRANSFORM_CASES)} cases, versions torch {torch.__version__} "
        f"torchvision {torchvision.__version__}"
    )

    res = {}
    for name, kwargs, shape in gc.MODEL_CASES:
        if name not in models:
            continue
        model = getattr(torchvision.models, name)(**kwargs).eval()
        ember_sd = load_file(os.path.join(weights_dir, f"{name}.safetensors"))
        tv_sd = model.state_dict()
        with open(os.path.join(weights_dir, f"{name}.keys.json")) as f:
            ember_keys = json.load(f)  # safetensors sorts keys: the order travels beside it
        if ember_keys != list(tv_sd):
            missing = sorted(set(tv_sd) - set(ember_sd))
            extra = sorted(set(ember_sd) - set(tv_sd))
            raise SystemExit(
                f"{name}: key mismatch; missing {missing[:10]}, unexpected "
                f"{extra[:10]} (or a different order)"
            )
        bad = [k for k in tv_sd if tuple(tv_sd[k].shape) != ember_sd[k].shape]
        if bad:
            raise SystemExit(f"{name}: shape mismatch at {bad[:10]}")
        model.load_state_dict({k: torch.from_numpy(v) for k, v in ember_sd.items()}, strict=True)
        with torch.no_grad():
            y = model(torch.from_numpy(gc.model_input(shape)))
        res[name] = y.numpy()
        res[f"{name}.keys"] = np.array(list(tv_sd))
        print(f"{name}: {len(tv_sd)} keys match; output {tuple(y.shape)}")
    if res:
        path = os.path.join(GOLDEN, "models.npz")
        if os.path.exists(path):  # keep models not regenerated this time
            res = {**dict(np.load(path)), **res}
        np.savez_compressed(path, **res)


def ember_side(tv_python: str, models: list[str]) -> None:
    from safetensors.numpy import save_file

    import ember
    from ember.vision import models as em

    with tempfile.TemporaryDirectory() as tmp:
        for name, kwargs, _ in gc.MODEL_CASES:
            if name not in models:
                continue
            model = getattr(em, name)(**kwargs)
            sd = model.state_dict()
            weights = gc.fill_state([(k, tuple(v.shape)) for k, v in sd.items()])
            save_file(weights, os.path.join(tmp, f"{name}.safetensors"))
            with open(os.path.join(tmp, f"{name}.keys.json"), "w") as f:
                json.dump(list(sd), f)
        del ember
        subprocess.run(
            [tv_python, __file__, "--torchvision-side", tmp, "--models", *models], check=True
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--tv-python",
        default="/work/tvenv/bin/python",
        help="Python of the environment that has torchvision",
    )
    p.add_argument("--torchvision-side", metavar="WEIGHTS_DIR", help=argparse.SUPPRESS)
    p.add_argument("--models", nargs="*", default=[m[0] for m in gc.MODEL_CASES])
    args = p.parse_args()
    os.makedirs(GOLDEN, exist_ok=True)
    if args.torchvision_side:
        torchvision_side(args.torchvision_side, args.models)
    else:
        ember_side(args.tv_python, args.models)


if __name__ == "__main__":
    main()
