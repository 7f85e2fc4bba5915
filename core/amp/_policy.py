"""Autocast's per-op cast policy, per device type, as PyTorch's (aten/src/ATen/autocast_mode.cpp).

``LOWER``: run in the autocast dtype (float32 inputs are cast down). ``FP32``: run in float32
(float16/bfloat16 inputs are cast up). ``PROMOTE``: run in the widest floating dtype among the
inputs. Ops not listed run in whatever dtype their inputs have. float64 inputs are never cast.
Names are ATen's (``cross_entropy_loss`` is ``F.cross_entropy``), as torch's lists spell them.
"""

from __future__ import annotations

LOWER, FP32, PROMOTE = 1, 2, 3

_CUDA_LOWER = (
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "prelu", "addmm", "addmv", "addr", "matmul", "einsum", "mm", "mv", "linear", "addbmm",
    "baddbmm", "bmm", "chain_matmul", "linalg_multi_dot", "lstm_cell", "gru_cell",
    "rnn_tanh_cell", "rnn_relu_cell", "scaled_dot_product_attention",
)
_CUDA_FP32 = (
    "acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p",
    "reciprocal", "rsqrt", "sinh", "tan", "pow", "softplus", "layer_norm", "group_norm", "norm",
    "cosine_similarity", "poisson_nll_loss", "cosine_embedding_loss", "nll_loss",
    "hinge_embedding_loss", "kl_div", "l1_loss", "smooth_l1_loss", "huber_loss", "mse_loss",
    "margin_ranking_loss", "multilabel_margin_loss", "soft_margin_loss", "triplet_margin_loss",
    "multi_margin_loss", "binary_cross_entropy_with_logits", "dist", "pdist", "cdist", "renorm",
    "logsumexp", "cross_entropy_loss", "interpolate",
    # fp32_set_opt_dtype in torch (run with dtype=float32 unless a dtype is given)
    "prod", "softmax", "log_softmax", "cumprod", "cumsum", "sum", "linalg_vector_norm",
    "linalg_matrix_norm",
)
_CUDA_PROMOTE = ("addcdiv", "addcmul", "atan2", "bilinear", "cross", "dot", "tensordot",
                 "scatter_add", "cat", "stack", "index_copy")

_CPU_LOWER = (
    "conv1d", "conv2d", "conv3d", "bmm", "mm", "linalg_vecdot", "baddbmm", "addmm", "addbmm",
    "linear", "matmul", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "prelu",
    "scaled_dot_product_attention",
    # composite in torch: they reach mm/bmm, which cast (so they do on CUDA's list too)
    "einsum", "tensordot", "chain_matmul", "linalg_multi_dot",
)
_CPU_FP32 = (
    "avg_pool3d", "binary_cross_entropy", "grid_sampler", "polar", "prod", "quantile",
    "nanquantile", "stft", "cdist", "trace", "view_as_complex", "cholesky", "cholesky_inverse",
    "cholesky_solve", "inverse", "lu_solve", "orgqr", "ormqr", "pinverse", "max_pool3d",
    "max_unpool2d", "max_unpool3d", "adaptive_avg_pool3d", "reflection_pad1d",
    "reflection_pad2d", "replication_pad1d", "replication_pad2d", "replication_pad3d",
    "mse_loss", "cosine_embedding_loss", "nll_loss", "nll_loss2d", "hinge_embedding_loss",
    "poisson_nll_loss", "smooth_l1_loss", "cross_entropy_loss", "l1_loss", "huber_loss",
    "margin_ranking_loss", "soft_margin_loss", "triplet_margin_loss", "multi_margin_loss",
    "ctc_loss", "kl_div", "multilabel_margin_loss", "binary_cross_entropy_with_logits",
    "fft_fft", "fft_ifft", "fft_rfft", "fft_irfft", "fft_fftn", "fft_ifftn", "fft_rfftn",
    "fft_irfftn", "fft_fft2", "fft_ifft2", "fft_rfft2", "fft_irfft2", "fft_hfft", "fft_ihfft",
    "linalg_cond", "linalg_matrix_rank", "linalg_solve", "linalg_cholesky", "linalg_svdvals",
    "linalg_eigvals", "linalg_eigvalsh", "linalg_inv", "linalg_householder_product",
    "linalg_tensorinv", "linalg_tensorsolve", "fake_quantize_per_tensor_affine", "geqrf",
    "qr", "svd", "triangular_solve", "fractional_max_pool2d", "fractional_max_pool3d",
    "adaptive_max_pool3d", "linalg_qr", "linalg_cholesky_ex", "linalg_svd", "linalg_eig",
    "linalg_eigh", "linalg_lstsq", "linalg_inv_ex",
)
_CPU_PROMOTE = ("stack", "cat", "index_copy")


def _table(lower, fp32, promote) -> dict[str, int]:
    table = dict.fromkeys(lower, LOWER)
    table.update(dict.fromkeys(fp32, FP32))
    table.update(dict.fromkeys(promote, PROMOTE))
    return table


# "xpu", "mps", ... share the CUDA policy in torch; ember's GPU is CUDA only.
POLICIES: dict[str, dict[str, int]] = {
    "cuda": _table(_CUDA_LOWER, _CUDA_FP32, _CUDA_PROMOTE),
    "cpu": _table(_CPU_LOWER, _CPU_FP32, _CPU_PROMOTE),
}
