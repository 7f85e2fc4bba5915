"""The draw behind a dropout mask inside a fused op (attention's dropout on its weights)."""

from __future__ import annotations

from ..random import gen_for, torch_stream


def dropout_draw(generator, xp, shape, dtype, p: float):
    """An array of ``shape`` whose elements are ``>= p`` exactly where dropout keeps.

    On NumPy this is torch's CPU draw for ``dropout(x, p)``: ``bernoulli_(1 - p)`` from the
    generator's stream (1 = keep), so seeded runs drop the same weights as torch's math
    attention, which applies ``dropout`` to the softmax. Elsewhere a uniform of ``dtype``.
    """
    stream = torch_stream(generator, xp)
    if stream is not None:
        return stream.bernoulli_scalar(tuple(shape), 1.0 - p).astype(dtype)
    return gen_for(generator, xp).random(shape, dtype=dtype)


__all__ = ["dropout_draw"]
