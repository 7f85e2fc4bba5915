"""``ember.fft``: discrete Fourier transforms with gradients (PyTorch's torch.fft), split by family
(every name stays importable from here).

- ``fft_nd``: the three transform Functions (complex-to-complex, real-to-complex,
  complex-to-real), resizing and dispatch, and the n-dimensional transforms;
- ``fft_1d_2d``: the one- and two-dimensional transforms (fft, rfft, hfft, fft2, ... and their
  inverses);
- ``fft_freq``: fftshift/ifftshift and the sample frequencies fftfreq/rfftfreq.
"""

from __future__ import annotations

from .fft_1d_2d import (  # noqa: F401
    fft,
    fft2,
    hfft,
    hfft2,
    ifft,
    ifft2,
    ihfft,
    ihfft2,
    irfft,
    irfft2,
    rfft,
    rfft2,
)
from .fft_freq import (  # noqa: F401
    _freq,
    _shift,
    fftfreq,
    fftshift,
    ifftshift,
    rfftfreq,
)
from .fft_nd import (  # noqa: F401
    _COMPLEX,
    _DUAL,
    C2C,
    C2R,
    R2C,
    _as_complex,
    _as_real,
    _c2c,
    _dims_sizes,
    _norm,
    _r2c,
    _resize,
    _resized,
    _ToComplex,
    fftn,
    hfftn,
    ifftn,
    ihfftn,
    irfftn,
    rfftn,
)
