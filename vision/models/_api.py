"""``Weights`` / ``WeightsEnum``: torchvision's pretrained-weights descriptors.

A weights entry carries torchvision's URL, its preprocessing and metadata; ``get_state_dict``
downloads through ``ember.hub.load_state_dict_from_url`` (local cache, SHA-256 prefix check
from the file name) and ``ember.load`` reads PyTorch's ``.pth`` files without torch.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from typing import Any

__all__ = ["Weights", "WeightsEnum", "get_weight", "load_weights"]


@dataclass(eq=False)
class Weights:
    """One set of pretrained weights: where the file comes from (``url``; ember never downloads
    at run time, see docs/vision.md), the ``transforms`` that prepare an input for it, and
    ``meta`` (categories, metrics, the recipe)."""

    url: str
    transforms: Callable
    meta: dict[str, Any] = field(default_factory=dict)


class WeightsEnum(Enum):
    """An enum of ``Weights``; ``DEFAULT`` aliases the recommended entry."""

    @classmethod
    def verify(cls, obj):
        if obj is None:
            return None
        if isinstance(obj, str):
            try:
                obj = cls[obj.replace(cls.__name__ + ".", "")]
            except KeyError:
                raise ValueError(
                    f"Failed to find Weights {obj!r} in {cls.__name__}; choose "
                    f"from {[m for m in cls.__members__]}"
                ) from None
        elif not isinstance(obj, cls):
            raise TypeError(
                f"Invalid Weight class provided; expected {cls.__name__} but "
                f"received {obj.__class__.__name__}."
            )
        return obj

    def get_state_dict(self, progress: bool = True, check_hash: bool = True, **kwargs):
        from ember.hub import load_state_dict_from_url

        return load_state_dict_from_url(
            self.url, progress=progress, check_hash=check_hash, **kwargs
        )

    @property
    def url(self) -> str:
        return self.value.url

    @property
    def transforms(self) -> Callable:
        return self.value.transforms

    @property
    def meta(self) -> dict[str, Any]:
        return self.value.meta

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}.{self._name_}"


def get_weight(name: str) -> WeightsEnum:
    """``get_weight("ResNet50_Weights.IMAGENET1K_V2")``."""
    import importlib

    enum_name, _, value = name.partition(".")
    enum = None
    # torchvision looks in the models package and its subpackages (video, detection, ...)
    for pkg_name in _PACKAGES:
        try:
            enum = vars(importlib.import_module(pkg_name)).get(enum_name)
        except ImportError:
            continue
        if enum is not None:
            break
    if enum is None or not isinstance(enum, type) or not issubclass(enum, WeightsEnum):
        raise ValueError(
            f"The weight enum '{enum_name}' for the specific method couldn't be retrieved."
        )
    return enum.verify(value)


def check_state_dict(model, state_dict) -> None:
    """Raise before copying anything when ``state_dict`` does not fit ``model`` (missing or
    unexpected keys, shape mismatches), so a bad checkpoint leaves the model untouched."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"size mismatch for {k}: copying a param with shape {tuple(v.shape)} from "
        f"checkpoint, the shape in current model is {tuple(own[k].shape)}."
        for k, v in state_dict.items()
        # (quantized models hold non-tensor entries too: a packed-params dtype, a tuple)
        if k in own
        and hasattr(v, "shape")
        and hasattr(own[k], "shape")
        and tuple(v.shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing))
        if unexpected:
            parts.append(
                "Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected)
            )
        parts += shapes
        raise RuntimeError(
            f"Error(s) in loading state_dict for {type(model).__name__}:\n\t" + "\n\t".join(parts)
        )


def load_weights(model, weights: WeightsEnum | None, progress: bool):
    if weights is not None:
        state_dict = weights.get_state_dict(progress=progress, check_hash=True)
        check_state_dict(model, state_dict)
        model.load_state_dict(state_dict)
    return model


def handle_legacy_interface(
    weights_enum: type[WeightsEnum] | Callable[[dict], WeightsEnum] | None,
) -> Callable:
    """Accept torchvision's pre-0.13 ``pretrained=`` argument on a builder (also positional,
    ``resnet18(True)``), with torchvision's deprecation warnings: ``pretrained=True`` means
    ``weights=<Enum>.IMAGENET1K_V1``, ``False`` means ``weights=None``. Older programs
    (``models.resnet152(pretrained=True)``) call builders this way. ``weights_enum`` None: the
    builder has no weights entry, and ``pretrained=True`` is refused; a function of the call's
    keyword arguments: it names the entry (the quantized builders pick the quantized or the
    float weights by ``quantize=``)."""

    def outer(builder: Callable) -> Callable:
        @functools.wraps(builder)
        def inner(*args: Any, **kwargs: Any):
            name = builder.__name__
            if args:
                if len(args) > 1 or not isinstance(args[0], bool) or "pretrained" in kwargs:
                    raise TypeError(
                        f"{name}() takes keyword arguments only (weights=..., progress=...); "
                        f"got positional {args!r}"
                    )
                warnings.warn(
                    "Using 'pretrained' as positional parameter(s) is deprecated since 0.13 "
                    "and may be removed in the future. Please use keyword parameter(s) "
                    "instead.",
                    UserWarning,
                    stacklevel=2,
                )
                kwargs["pretrained"] = args[0]
            if "pretrained" not in kwargs:
                return builder(**kwargs)
            pretrained = kwargs.pop("pretrained")
            if "weights" in kwargs:
                raise ValueError(
                    f"{name}(): pass either weights= or the deprecated pretrained=, not both"
                )
            if not isinstance(pretrained, bool):
                raise TypeError(f"{name}(): pretrained must be a bool, got {pretrained!r}")
            if pretrained and weights_enum is None:
                raise ValueError(f"{name}: ember has no pretrained weights entry for {name}")
            if pretrained:
                if isinstance(weights_enum, type):
                    weights = weights_enum["IMAGENET1K_V1"]
                else:
                    weights = weights_enum(kwargs)
                now = f"weights={weights!r}"
                also = (
                    f" You can also use `weights={type(weights).__name__}.DEFAULT` to get "
                    "the most up-to-date weights."
                )
            else:
                weights, now, also = None, "weights=None", ""
            warnings.warn(
                "The parameter 'pretrained' is deprecated since 0.13 and may be removed in the "
                "future, please use 'weights' instead.",
                UserWarning,
                stacklevel=2,
            )
            warnings.warn(
                "Arguments other than a weight enum or `None` for 'weights' are deprecated "
                "since 0.13 and may be removed in the future. The current behavior is "
                f"equivalent to passing `{now}`.{also}",
                UserWarning,
                stacklevel=2,
            )
            return builder(weights=weights, **kwargs)

        return inner

    return outer


def _ovewrite_named_param(kwargs: dict[str, Any], param: str, new_value) -> None:
    if param in kwargs:
        if kwargs[param] != new_value:
            raise ValueError(
                f"The parameter '{param}' expected value {new_value} but got "
                f"{kwargs[param]} instead."
            )
    else:
        kwargs[param] = new_value


def _imagenet_transforms(crop_size: int = 224, resize_size: int = 256, interpolation=None):
    from ember.vision.transforms import functional as F
    from ember.vision.transforms._presets import ImageClassification

    return partial(
        ImageClassification,
        crop_size=crop_size,
        resize_size=resize_size,
        interpolation=interpolation or F.InterpolationMode.BILINEAR,
    )


# --- the model registry: torchvision's get_model / list_models -------------------------------

BUILTIN_MODELS: dict[str, Callable] = {}
_SCANNED = False
# the packages whose public builders make up the registry (torchvision names the quantized
# builders ``quantized_<name>``)
_PACKAGES = {
    "ember.vision.models": "",
    "ember.vision.models.detection": "",
    "ember.vision.models.optical_flow": "",
    "ember.vision.models.quantization": "quantized_",
    "ember.vision.models.segmentation": "",
    "ember.vision.models.video": "",
}


def register_model(name: str | None = None) -> Callable:
    """Decorator: register a model builder under ``name`` (its function name by default)."""

    def wrapper(fn: Callable) -> Callable:
        key = name if name is not None else fn.__name__
        if key in BUILTIN_MODELS and BUILTIN_MODELS[key] is not fn:
            raise ValueError(f"An entry is already registered under the name '{key}'.")
        BUILTIN_MODELS[key] = fn
        return fn

    return wrapper


def _is_builder(fn: Any) -> bool:
    import inspect

    if not inspect.isfunction(fn) or fn.__name__.startswith("_"):
        return False
    if fn.__name__ != fn.__name__.lower() or "backbone" in fn.__name__:
        return False
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    # builders take ``weights`` as a keyword-only argument; helpers such as
    # ``mobilenet_backbone`` take it positionally and are not models
    return "weights" in params and params["weights"].kind is inspect.Parameter.KEYWORD_ONLY


def _scan() -> None:
    """Register every public builder of the model packages once (the builders are plain
    functions: scanning them keeps each model file free of registry boilerplate)."""
    global _SCANNED
    if _SCANNED:
        return
    import importlib

    for pkg_name, prefix in _PACKAGES.items():
        try:
            pkg = importlib.import_module(pkg_name)
        except ImportError:
            continue
        names = getattr(pkg, "__all__", None) or [n for n in vars(pkg) if not n.startswith("_")]
        for attr in names:
            fn = getattr(pkg, attr, None)
            if _is_builder(fn) and fn.__module__.startswith(pkg_name + "."):
                BUILTIN_MODELS.setdefault(prefix + fn.__name__, fn)
    _SCANNED = True


def list_models(
    module: Any = None,
    include: str | list[str] | None = None,
    exclude: str | list[str] | None = None,
) -> list[str]:
    """The sorted names of the registered models, optionally only those of ``module`` (e.g.
    ``ember.vision.models.video``) and filtered by Unix shell-style wildcards ``include`` /
    ``exclude``."""
    import fnmatch

    _scan()
    models = {
        k
        for k, v in BUILTIN_MODELS.items()
        if module is None or v.__module__.rsplit(".", 1)[0] == module.__name__
    }
    if include:
        keep: set[str] = set()
        for pattern in [include] if isinstance(include, str) else include:
            keep |= set(fnmatch.filter(models, pattern))
        models = keep
    if exclude:
        for pattern in [exclude] if isinstance(exclude, str) else exclude:
            models -= set(fnmatch.filter(models, pattern))
    return sorted(models)


def get_model_builder(name: str) -> Callable:
    """The builder registered under ``name``."""
    _scan()
    name = name.lower()
    try:
        return BUILTIN_MODELS[name]
    except KeyError:
        raise ValueError(f"Unknown model {name}") from None


def get_model(name: str, **config: Any):
    """Build the model registered under ``name`` with the builder's keyword ``config``
    (``get_model("resnet18", weights=None, num_classes=10)``)."""
    return get_model_builder(name)(**config)


def get_model_weights(name: Callable | str) -> type[WeightsEnum]:
    """The ``WeightsEnum`` class of a builder (by name or the builder itself)."""
    import inspect
    import typing

    fn = get_model_builder(name) if isinstance(name, str) else name
    ann = inspect.signature(fn).parameters.get("weights")
    ann = None if ann is None else ann.annotation
    if isinstance(ann, str):  # postponed annotations (``from __future__ import annotations``)
        try:
            ann = typing.get_type_hints(inspect.unwrap(fn)).get("weights")
        except Exception:
            ann = None
    for t in [ann, *typing.get_args(ann)]:
        if isinstance(t, type) and issubclass(t, WeightsEnum):
            return t
    # builders without an annotation: the enum the module names after the builder (for the
    # quantized builders, the quantized enum, as torchvision's annotation lists it first)
    mod = inspect.getmodule(inspect.unwrap(fn))
    quantized = mod.__name__.startswith("ember.vision.models.quantization")
    suffix = "_quantizedweights" if quantized else "_weights"
    for v in vars(mod).values():
        if isinstance(v, type) and issubclass(v, WeightsEnum) and v is not WeightsEnum:
            stem = v.__name__.lower()
            if stem.endswith(suffix) and stem[: -len(suffix)].replace("_", "") == (
                fn.__name__.replace("_", "")
            ):
                return v
    raise ValueError(
        "The WeightsEnum class for the specific method couldn't be retrieved. Make sure the "
        "typing info is correct."
    )
