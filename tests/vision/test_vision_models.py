"""ember.vision.models: torchvision's key names and eval outputs, weights loading via ember.hub.

``golden/models.npz`` holds torchvision 0.29.1's outputs for weights that ``make_golden.py``
wrote from ember's state_dict (torchvision loaded them with ``strict=True``), and its
state_dict key order.
"""

from __future__ import annotations

import hashlib
import os
import sys

import numpy as np
import pytest

import ember
from ember.vision import models

sys.path.insert(0, os.path.dirname(__file__))
import golden_cases as gc  # noqa: E402

GOLDEN = np.load(os.path.join(os.path.dirname(__file__), "golden", "models.npz"))
_CI = {"resnet18", "mobilenet_v3_small"}  # the rest run with EMBER_FULL_TESTS=1


def _build(name, kwargs):
    model = getattr(models, name)(**kwargs)
    sd = model.state_dict()
    weights = gc.fill_state([(k, tuple(v.shape)) for k, v in sd.items()])
    model.load_state_dict({k: ember.from_numpy(v) for k, v in weights.items()})
    return model.eval()


@pytest.mark.parametrize(
    "name,kwargs,shape",
    [
        pytest.param(*c, marks=() if c[0] in _CI else pytest.mark.full, id=c[0])
        for c in gc.MODEL_CASES
    ],
)
def test_matches_torchvision(name, kwargs, shape):
    model = _build(name, kwargs)
    assert list(model.state_dict()) == list(GOLDEN[f"{name}.keys"])
    with ember.no_grad():
        y = model(ember.from_numpy(gc.model_input(shape))).numpy()
    np.testing.assert_allclose(y, GOLDEN[name], rtol=1e-4, atol=1e-4)


def test_bad_checkpoint_lists_missing_and_unexpected_keys():
    model = models.mobilenet_v3_small(num_classes=10)
    sd = model.state_dict()
    sd.pop("classifier.3.bias")
    sd["classifier.3.extra"] = ember.zeros(1)
    pattern = r"(?s)Missing key.*classifier\.3\.bias.*Unexpected key.*classifier\.3\.extra"
    with pytest.raises(RuntimeError, match=pattern):
        model.load_state_dict(sd)
    sd = model.state_dict()
    sd["classifier.3.weight"] = ember.zeros(3, 1024)
    with pytest.raises(RuntimeError, match=r"size mismatch for classifier\.3\.weight"):
        model.load_state_dict(sd)


def test_weights_enum_loads_pth_from_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(ember.hub, "_hub_dir", str(tmp_path))
    ref = models.mobilenet_v3_small()
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    # The file name torchvision's URL gives; a cached file is used without downloading.
    # (ember.save writes PyTorch's zip format; reading torch-written files is serialization's
    # own test.)
    ember.save(ref.state_dict(), folder / "mobilenet_v3_small-047dcff4.pth")
    model = models.mobilenet_v3_small(weights=models.MobileNet_V3_Small_Weights.DEFAULT).eval()
    x = ember.randn(1, 3, 32, 32)
    with ember.no_grad():
        np.testing.assert_allclose(model(x).numpy(), ref.eval()(x).numpy(), rtol=1e-5, atol=1e-6)
    bad = ref.state_dict()
    bad.pop("classifier.3.bias")
    ember.save(bad, folder / "mobilenet_v3_small-047dcff4.pth")
    with pytest.raises(RuntimeError, match=r"Missing key\(s\) in state_dict: \"classifier"):
        models.mobilenet_v3_small(weights="DEFAULT")
    with pytest.raises(ValueError, match="num_classes"):
        models.resnet18(weights="IMAGENET1K_V1", num_classes=10)
    with pytest.raises(ValueError, match="IMAGENET1K_V9"):
        models.resnet18(weights="IMAGENET1K_V9")
    assert models.get_weight("ResNet50_Weights.DEFAULT") is models.ResNet50_Weights.IMAGENET1K_V2


def test_hub_download_checks_hash(tmp_path, monkeypatch):
    import functools
    import http.server
    import threading

    www = tmp_path / "www"
    www.mkdir()
    ember.save({"w": ember.arange(4.0)}, www / "tmp.pt")
    digest = hashlib.sha256((www / "tmp.pt").read_bytes()).hexdigest()
    os.rename(www / "tmp.pt", www / f"net-{digest[:8]}.pt")
    (www / "bad-00000000.pt").write_bytes((www / f"net-{digest[:8]}.pt").read_bytes())
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0),
        functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www)),
    )
    httpd.RequestHandlerClass.log_message = lambda *a: None
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/"
        sd = ember.hub.load_state_dict_from_url(
            url + f"net-{digest[:8]}.pt",
            model_dir=str(tmp_path / "c"),
            check_hash=True,
            progress=False,
        )
        np.testing.assert_array_equal(sd["w"].numpy(), np.arange(4.0))
        assert os.path.isfile(tmp_path / "c" / f"net-{digest[:8]}.pt")
        with pytest.raises(RuntimeError, match="invalid hash value"):
            ember.hub.load_state_dict_from_url(
                url + "bad-00000000.pt",
                model_dir=str(tmp_path / "c"),
                check_hash=True,
                progress=False,
            )
        assert not os.path.exists(tmp_path / "c" / "bad-00000000.pt")
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_hub_load_local_hubconf(tmp_path):
    (tmp_path / "mylayers.py").write_text(
        "import ember\n\n\ndef make(n):\n    return ember.nn.Linear(4, n)\n"
    )
    (tmp_path / "hubconf.py").write_text(
        'from mylayers import make\n\n\ndef tiny(num_classes=3):\n    """A tiny head."""\n'
        "    return make(num_classes)\n\n\ndef _private():\n    pass\n"
    )
    m = ember.hub.load(str(tmp_path), "tiny", num_classes=5)
    assert tuple(m.weight.shape) == (5, 4)
    assert "tiny" in ember.hub.list(str(tmp_path)) and "_private" not in ember.hub.list(
        str(tmp_path)
    )
    assert ember.hub.help(str(tmp_path), "tiny") == "A tiny head."
    with pytest.raises(RuntimeError, match="Cannot find callable nope"):
        ember.hub.load(str(tmp_path), "nope")
    with pytest.raises(ValueError, match="source='local'"):
        ember.hub.load("pytorch/vision", "resnet18", source="github")
    with pytest.raises(FileNotFoundError, match="hubconf.py"):
        ember.hub.load(str(tmp_path / "missing"), "tiny")
