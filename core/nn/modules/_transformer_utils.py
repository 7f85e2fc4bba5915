"""Module-level helpers of ``transformer.py``: the causal mask, its detection, activation
lookup, layer cloning (PyTorch's private helpers of ``torch.nn.modules.transformer``).

The layer classes stay in ``transformer.py`` (pickles name them there), which re-exports these.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from ...backend.dtype import bool_
from ...creation import ones
from ...ops import equal, triu
from ...tensor import Tensor
from ..functional._activation import gelu, relu
from ..module import Module
from .container import ModuleList


def _generate_square_subsequent_mask(sz: int, device=None, dtype=None) -> Tensor:
    """(sz, sz) float mask: -inf above the diagonal, 0 elsewhere."""
    import ember  # through the namespace, so graph capture records a symbolic ``sz``

    return ember.triu(ember.full((sz, sz), float("-inf"), dtype=dtype, device=device), diagonal=1)


def _get_activation_fn(activation: str) -> Callable[[Tensor], Tensor]:
    if activation == "relu":
        return relu
    if activation == "gelu":
        return gelu
    raise RuntimeError(f"activation should be relu/gelu, not {activation}")


def _get_clones(module: Module, n: int) -> ModuleList:
    return ModuleList([copy.deepcopy(module) for _ in range(n)])


def _get_seq_len(src: Tensor, batch_first: bool) -> int | None:
    if src.dim() == 2:  # unbatched: S, E
        return src.shape[0]
    return src.shape[1 if batch_first else 0]


def _detect_is_causal_mask(
    mask: Tensor | None, is_causal: bool | None = None, size: int | None = None
) -> bool:
    """PyTorch's rule: an explicit ``is_causal`` wins; else compare with the causal mask."""
    make_causal = is_causal is True
    if is_causal is None and mask is not None:
        sz = size if size is not None else mask.shape[-2]
        if mask.dim() == 2 and mask.shape[0] == sz and mask.shape[1] == sz:
            # tensor ops rather than NumPy on the data, so ember.jit.script compiles the test
            # the causal mask in the mask's own dtype (for bool: True above the diagonal)
            if mask.dtype == bool_:
                causal = triu(ones((sz, sz), dtype=bool_, device=mask.device), diagonal=1)
            else:
                causal = _generate_square_subsequent_mask(sz, mask.device, mask.dtype)
            make_causal = bool(equal(mask, causal))
    return make_causal


def _nested_fast_path_refusal(layer: Module) -> str:
    """Why PyTorch's encoder would not use nested tensors with ``layer`` ("" if it would).

    ``TransformerEncoder`` warns with this reason and clears ``use_nested_tensor``, as torch
    does: programs read the flag, and the language-model tutorial prints the warning.
    """
    from .transformer import TransformerEncoderLayer

    if not isinstance(layer, TransformerEncoderLayer):
        return "encoder_layer was not TransformerEncoderLayer"
    attn = layer.self_attn
    checks = (
        (layer.norm_first, "encoder_layer.norm_first was True"),
        (
            not attn.batch_first,
            "encoder_layer.self_attn.batch_first was not True"
            "(use batch_first for better inference performance)",
        ),
        (
            not attn._qkv_same_embed_dim,
            "encoder_layer.self_attn._qkv_same_embed_dim was not True",
        ),
        (attn.in_proj_bias is None, "encoder_layer.self_attn was passed bias=False"),
        (
            not layer.activation_relu_or_gelu,
            "encoder_layer.activation_relu_or_gelu was not True",
        ),
        (
            layer.norm1.eps != layer.norm2.eps,
            "encoder_layer.norm1.eps was not equal to encoder_layer.norm2.eps",
        ),
        (attn.num_heads % 2 == 1, "encoder_layer.self_attn.num_heads is odd"),
    )
    return next((why for failed, why in checks if failed), "")
