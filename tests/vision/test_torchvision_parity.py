"""ember.vision's models against torchvision's own, where a torchvision is importable.

CI has no torchvision (its wheels need torch's CUDA libraries for their compiled operators), so
these are skipped there. To run them here: unpack the ``torchvision==0.28.0`` wheel (``pip
download --no-deps``), delete its ``*.so`` files, empty ``_meta_registrations.py`` (it
registers fake kernels for the missing operators), and put the folder on ``PYTHONPATH``: the
models are pure Python. docs/vision.md records what this found.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
try:  # pragma: no cover - depends on the machine
    import torchvision
except Exception as e:  # ImportError, or the compiled part failing to load
    pytest.skip(f"no usable torchvision: {type(e).__name__}", allow_module_level=True)

import ember  # noqa: E402
from ember.vision import models  # noqa: E402
from ember.vision.models import feature_extraction as efe  # noqa: E402

MODELS = {
    "resnet18": (1, 3, 64, 64),
    "mobilenet_v3_small": (1, 3, 64, 64),
    "efficientnet_b1": (1, 3, 64, 64),
    "convnext_tiny": (1, 3, 64, 64),
    "swin_t": (1, 3, 64, 64),
    "vit_b_32": (1, 3, 224, 224),
    "maxvit_t": (1, 3, 224, 224),
    "regnet_y_400mf": (1, 3, 64, 64),
    "r2plus1d_18": (1, 3, 4, 32, 32),
    "deeplabv3_mobilenet_v3_large": (1, 3, 64, 64),
}


def _pair(name):
    kw = {"weights_backbone": None} if name.startswith("deeplab") else {}
    torch.manual_seed(0)
    tm = torchvision.models.get_model(name, **kw).eval()
    em = models.get_model(name, **kw).eval()
    em.load_state_dict({k: ember.tensor(v.numpy()) for k, v in tm.state_dict().items()})
    return tm, em


@pytest.mark.parametrize("name", list(MODELS))
def test_outputs_equal_torchvisions(name):
    tm, em = _pair(name)
    assert list(tm.state_dict()) == list(em.state_dict())
    x = np.random.default_rng(0).standard_normal(MODELS[name]).astype(np.float32)
    with torch.no_grad():
        ref = tm(torch.tensor(x))
    with ember.no_grad():
        out = em(ember.tensor(x))
    if isinstance(ref, dict):
        ref, out = ref["out"], out["out"]
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-4, atol=1e-5 * ref.abs().max())


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "swin_t", "vit_b_32"])
def test_feature_extraction_names_equal_torchvisions(name):
    from torchvision.models import feature_extraction as tfe

    tm, em = _pair(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert efe.get_graph_node_names(em) == tfe.get_graph_node_names(tm)
