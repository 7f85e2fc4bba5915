"""A custom handler in TorchServe's shape: the default tensor handler plus class labels.

    ember serve examples/serve/handler.py:DigitsHandler --name digits-top
    (reads the artifact from $EMBER_SERVE_ARTIFACT, default runs/serve_digits/digits.ep)

``initialize`` loads the artifact itself (a handler may build its model however it likes);
``postprocess`` turns logits into the top class and its probability per image.
"""

import os

import numpy as np

from ember.serve import BaseHandler


class DigitsHandler(BaseHandler):
    def initialize(self, context):
        path = os.environ.get("EMBER_SERVE_ARTIFACT", "runs/serve_digits/digits.ep")
        with open(path, "rb") as f:
            context.artifact = f.read()
        context.kind = "export"
        super().initialize(context)

    def postprocess(self, outputs):
        per_request = super().postprocess(outputs)
        result = []
        for (logits,) in per_request:
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            result.append([np.stack([p.argmax(1), p.max(1)], 1)])
        return result
