"""``ember.nn.functional``: gathered from one private file per family."""

from ..._torch_function import install_tensor_like_dispatch as _install
from ._activation import *  # noqa: F403  (D1: activations)
from ._attention import multi_head_attention_forward, scaled_dot_product_attention  # (D3)
from ._conv import conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d
from ._ctc import ctc_loss  # (nn breadth)
from ._extra import *  # noqa: F403  (nn breadth: shuffle, LRN, LP pool, unpool, gumbel, ...)
from ._fractional import *  # noqa: F403  (nn breadth: fractional max pooling)
from ._grid import *  # noqa: F403  (nn breadth: affine_grid, grid_sample)
from ._linear import *  # noqa: F403  (D1: linear, embedding, dropout, distances)
from ._loss import *  # noqa: F403  (D1: losses)
from ._loss_extra import *  # noqa: F403  (nn breadth: margin losses)
from ._normalization import *  # noqa: F403  (D1: normalisation)
from ._pooling import (
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    adaptive_avg_pool3d,
    adaptive_max_pool1d,
    adaptive_max_pool2d,
    adaptive_max_pool3d,
    avg_pool1d,
    avg_pool2d,
    avg_pool3d,
    max_pool1d,
    max_pool1d_with_indices,
    max_pool2d,
    max_pool2d_with_indices,
    max_pool3d,
    max_pool3d_with_indices,
)
from ._vision import (
    fold,
    interpolate,
    pad,
    pixel_shuffle,
    pixel_unshuffle,
    unfold,
    upsample,
    upsample_bilinear,
    upsample_nearest,
)

# Every public function hands a tensor-like (non-Tensor) first argument to its
# ``__torch_function__`` (DTensor); ``embedding``'s weight counts too (core/_torch_function.py).
_install(
    globals(),
    [n for n in list(globals()) if not n.startswith("_")],
    # these test in their own body (hot on small tensors: a wrapper's frame costs ~8%)
    inline=(
        "relu tanh sigmoid leaky_relu hardtanh embedding max_pool2d avg_pool2d "
        "adaptive_avg_pool2d batch_norm rms_norm"
    ).split(),
    relevant={"embedding": 2, "embedding_bag": 2},
)
del _install
