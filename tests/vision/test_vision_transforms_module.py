"""ember.vision.transforms' classes and functional ops name their public module (torchvision's
``transforms.transforms`` / ``transforms.functional``) whichever private file defines them, so
printed and pickled transforms do not depend on how the package is split into files."""

from __future__ import annotations

import inspect
import pickle

import numpy as np

import ember
from ember.vision import transforms as T
from ember.vision.transforms import functional as F

PUBLIC_CLASS_MODULES = {
    "ember.vision.transforms.transforms",
    "ember.vision.transforms.autoaugment",
    "ember.vision.transforms.functional",  # InterpolationMode
    "ember.utils.data.transforms",  # Compose, shared with ember.utils.data
}


def test_transform_classes_name_a_public_module():
    wrong = {
        name: obj.__module__
        for name in T.__all__
        if inspect.isclass(obj := getattr(T, name)) and obj.__module__ not in PUBLIC_CLASS_MODULES
    }
    assert not wrong
    assert T.ColorJitter.__module__ == "ember.vision.transforms.transforms"
    assert T.RandomInvert.__module__ == "ember.vision.transforms.transforms"


def test_functional_ops_name_the_functional_module():
    wrong = {
        name: obj.__module__
        for name in F.__all__
        if inspect.isfunction(obj := getattr(F, name))
        and obj.__module__ != "ember.vision.transforms.functional"
    }
    assert not wrong
    assert F.adjust_hue.__module__ == "ember.vision.transforms.functional"


def test_pickled_compose_names_public_modules_and_round_trips():
    pipeline = T.Compose(
        [
            T.RandomResizedCrop(12),
            T.RandomHorizontalFlip(),
            T.ColorJitter(0.4, 0.4, 0.4, 0.1),
            T.RandomGrayscale(0.5),
            T.RandomInvert(0.5),
            T.GaussianBlur(3),
            T.RandomAdjustSharpness(2.0),
        ]
    )
    blob = pickle.dumps(pipeline)
    for private in (b"_color_transforms", b"_geometry_transforms", b"_functional_color"):
        assert private not in blob
    copy = pickle.loads(blob)
    assert [type(t) for t in copy.transforms] == [type(t) for t in pipeline.transforms]
    img = ember.rand(3, 20, 24)
    ember.manual_seed(0)
    want = pipeline(img)
    ember.manual_seed(0)
    np.testing.assert_array_equal(copy(img).numpy(), want.numpy())


def test_pickled_functional_op_names_the_public_module():
    blob = pickle.dumps([F.adjust_brightness, F.erase, F.rotate])
    assert b"ember.vision.transforms.functional" in blob
    assert b"_functional_" not in blob
    assert pickle.loads(blob)[0] is F.adjust_brightness
