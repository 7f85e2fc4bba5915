"""Load a saved program and predict, with no access to the model's class or source.

    python examples/export/predict.py MODEL_FILE INPUTS.npy [OUT.npy]

``MODEL_FILE`` is either ``ember.export.save``'s or ``ember.jit.save``'s output (the file's
header says which). Prints the predicted classes; writes the logits to ``OUT.npy`` if given.
"""

from __future__ import annotations

import sys
import zipfile

import numpy as np

import ember


def load_any(path: str):
    """A callable model from either kind of saved file."""
    with zipfile.ZipFile(path) as z:
        kind = z.namelist()[0].split("/")[0]
    if kind == "export":
        return ember.export.load(path).module()
    return ember.jit.load(path)


def main(path: str, inputs: str, out: str | None = None) -> None:
    model = load_any(path)
    x = ember.from_numpy(np.load(inputs))
    with ember.no_grad():
        logits = model(x)
    print("predicted classes:", logits.argmax(1).tolist()[:16], "...")
    if out:
        np.save(out, logits.numpy())


def _cli(argv: list[str] | None = None) -> None:
    import argparse
    import os

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="ember.export.save's or ember.jit.save's file")
    ap.add_argument("inputs", help="a .npy file of inputs (N, ...)")
    ap.add_argument("out", nargs="?", help="write the logits here (.npy)")
    args = ap.parse_args(argv)
    for name in ("model", "inputs"):
        if not os.path.isfile(getattr(args, name)):
            ap.error(f"{name.upper()}: file not found: {getattr(args, name)}")
    if not zipfile.is_zipfile(args.model):
        ap.error(
            f"MODEL: {args.model} is not a saved ember program (ember.export.save or "
            "ember.jit.save output)"
        )
    main(args.model, args.inputs, args.out)


if __name__ == "__main__":
    _cli(sys.argv[1:])
