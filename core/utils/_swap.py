"""``ember.utils.swap_tensors`` (torch.utils.swap_tensors): two tensor objects exchange
everything they hold, so every reference to one (an optimizer's param list, a module's
attribute) now sees the other's data, class and attributes."""

from __future__ import annotations

__all__ = ["swap_tensors"]


def _slot_names(cls: type) -> list[str]:
    names = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__weakref__", "__dict__") and name not in names:
                names.append(name)
    return names


def swap_tensors(t1, t2) -> None:
    """Swap the contents of ``t1`` and ``t2`` in place: data, autograd state (``grad``,
    ``requires_grad``, ``grad_fn``), Python class and instance attributes.

    Both must have the same object layout (the same slots); a plain tensor and an
    ``nn.Parameter`` swap, as in torch.
    """
    from ember.tensor import Tensor

    for name, t in (("t1", t1), ("t2", t2)):
        if not isinstance(t, Tensor):
            raise TypeError(f"swap_tensors: expected {name} to be a Tensor, got {type(t).__name__}")
    if t1 is t2:
        return
    c1, c2 = type(t1), type(t2)
    has_dict = hasattr(t1, "__dict__"), hasattr(t2, "__dict__")
    if c1 is not c2 and (has_dict[0] != has_dict[1] or _slot_names(c1) != _slot_names(c2)):
        raise RuntimeError(
            f"swap_tensors: cannot swap a {c1.__name__} with a {c2.__name__}: their object "
            "layouts differ (their classes define different slots)"
        )
    missing = object()
    for name in _slot_names(c1):
        v1, v2 = getattr(t1, name, missing), getattr(t2, name, missing)
        for t, v in ((t1, v2), (t2, v1)):
            if v is missing:
                try:
                    object.__delattr__(t, name)
                except AttributeError:
                    pass
            else:
                object.__setattr__(t, name, v)
    if has_dict[0]:
        d1, d2 = dict(t1.__dict__), dict(t2.__dict__)
        t1.__dict__.clear()
        t1.__dict__.update(d2)
        t2.__dict__.clear()
        t2.__dict__.update(d1)
    if c1 is not c2:
        t1.__class__, t2.__class__ = c2, c1
