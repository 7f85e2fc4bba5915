"""Batching rules of ``nn.functional`` and of random ops (see ``_vmap_tensor.py``).

Three kinds: *folding* (convolutions, pooling and other N-first ops take every batch dim folded
into N; an ensemble's batched weights are folded into the channels as groups), *decomposition*
(norms, losses and attention written as batched ops, so the composite is batched by the rules of
its parts). Dropout and random ops are in ``_vmap_random.py``.
"""

from __future__ import annotations

import math

from ..tensor import Tensor
from ._vmap_dispatch import RULES
from ._vmap_rules import elementwise
from ._vmap_tensor import align, is_batched, level_size, levels_of, merge_levels, unwrapped, wrap


def _em():
    import ember

    return ember


def _F():
    from ..nn import functional

    return functional


def _prod(shape) -> int:
    return math.prod(shape)


# ---- folding the batch into N ---------------------------------------------------------------
def fold_n(full_nd: int):
    """N-first ops of a fixed rank (``full_nd`` with N): every batch dim folds into N."""

    def rule(orig, args, kwargs):
        x = args[0]
        if not is_batched(x) or any(is_batched(a) for a in list(args[1:]) + list(kwargs.values())):
            raise RuntimeError(
                f"vmap: {getattr(orig, '__name__', orig)} supports a batched "
                "input only (its other tensor arguments unbatched)"
            )
        levels = levels_of(x)
        k, nd = len(levels), x.dim()
        batch = tuple(x._data.shape[:k])
        with unwrapped(x):
            has_n = nd == full_nd
            q = x.reshape((-1,) + tuple(x.shape[k + 1 :] if has_n else x.shape[k:]))
            out = orig(q, *args[1:], **kwargs)

            def back(t):
                if has_n:
                    return t.reshape(batch + (x.shape[k],) + tuple(t.shape[1:]))
                return t.reshape(batch + tuple(t.shape[1:]))

            out = tuple(back(t) for t in out) if isinstance(out, tuple) else back(out)
        return wrap(out, levels)

    return rule


def conv_rule(nsp: int):
    def rule(orig, args, kwargs):
        args = list(args)
        x = args[0]
        w = args[1] if len(args) > 1 else kwargs.pop("weight")
        b = args[2] if len(args) > 2 else kwargs.pop("bias", None)
        rest = args[3:]
        stride = kwargs.pop("stride", rest[0] if len(rest) > 0 else 1)
        padding = kwargs.pop("padding", rest[1] if len(rest) > 1 else 0)
        dilation = kwargs.pop("dilation", rest[2] if len(rest) > 2 else 1)
        groups = kwargs.pop("groups", rest[3] if len(rest) > 3 else 1)
        if not is_batched(w) and not is_batched(b):
            return fold_n(nsp + 2)(orig, (x, w, b, stride, padding, dilation, groups), {})
        # batched weights (model ensembling): the G = prod(batch) models become conv groups
        target = merge_levels(levels_of(x), levels_of(w), levels_of(b))
        has_n = x.dim() == nsp + 2
        with unwrapped(x, w, b) as lv:
            k = len(target)
            batch = tuple(level_size(lv_) for lv_ in target)
            g = _prod(batch)
            p = align(x, lv.get(id(x), ()), target, expand=True)
            p = p.reshape((g,) + tuple(p.shape[k:]))
            if not has_n:
                p = p.unsqueeze(1)
            n, c = p.shape[1], p.shape[2]
            p = p.movedim(0, 1).reshape((n, g * c) + tuple(p.shape[3:]))
            q = align(w, lv.get(id(w), ()), target, expand=True)
            o = q.shape[k]
            q = q.reshape((g * o,) + tuple(q.shape[k + 1 :]))
            bb = None
            if b is not None:
                bb = align(b, lv.get(id(b), ()), target, expand=True).reshape((g * o,))
            out = orig(p, q, bb, stride, padding, dilation, groups * g)
            out = out.reshape((n, g, o) + tuple(out.shape[2:])).movedim(1, 0)
            out = out.reshape(batch + ((n,) if has_n else ()) + tuple(out.shape[2:]))
        return wrap(out, target)

    return rule


# ---- decompositions --------------------------------------------------------------------------
def linear_rule(orig, args, kwargs):
    x = args[0]
    w = args[1] if len(args) > 1 else kwargs["weight"]
    b = args[2] if len(args) > 2 else kwargs.get("bias")
    out = _em().matmul(x, w.transpose(-1, -2))
    return out if b is None else out + b


def layer_norm_rule(orig, args, kwargs):
    x, shape = args[0], args[1] if len(args) > 1 else kwargs["normalized_shape"]
    w = args[2] if len(args) > 2 else kwargs.get("weight")
    b = args[3] if len(args) > 3 else kwargs.get("bias")
    eps = args[4] if len(args) > 4 else kwargs.get("eps", 1e-5)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    dims = tuple(range(-len(shape), 0))
    mean = x.mean(dims, keepdim=True)
    xc = x - mean
    var = (xc * xc).mean(dims, keepdim=True)
    y = xc * (var + eps).rsqrt()
    if w is not None:
        y = y * w
    return y if b is None else y + b


def rms_norm_rule(orig, args, kwargs):
    x, shape = args[0], args[1] if len(args) > 1 else kwargs["normalized_shape"]
    w = args[2] if len(args) > 2 else kwargs.get("weight")
    eps = args[3] if len(args) > 3 else kwargs.get("eps")
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if eps is None:
        eps = float(_em().finfo(x.dtype).eps)
    dims = tuple(range(-len(shape), 0))
    y = x * ((x * x).mean(dims, keepdim=True) + eps).rsqrt()
    return y if w is None else y * w


def batch_norm_rule(orig, args, kwargs):
    names = (
        "input",
        "running_mean",
        "running_var",
        "weight",
        "bias",
        "training",
        "momentum",
        "eps",
    )
    a = dict(zip(names, args))
    a.update(kwargs)
    x, training = a["input"], a.get("training", False)
    eps = a.get("eps", 1e-5)
    rm, rv = a.get("running_mean"), a.get("running_var")
    nd = x.dim()
    shape = (-1,) + (1,) * (nd - 2)
    if training:
        if rm is not None:
            raise RuntimeError(
                "vmap: batch_norm in training mode would update running_mean in place with "
                "per-sample statistics; use track_running_stats=False or eval() under vmap"
            )
        dims = (0,) + tuple(range(2, nd))
        mean = x.mean(dims, keepdim=True)
        xc = x - mean
        y = xc * ((xc * xc).mean(dims, keepdim=True) + eps).rsqrt()
    else:
        y = (x - rm.reshape(shape)) * (rv.reshape(shape) + eps).rsqrt()
    w, b = a.get("weight"), a.get("bias")
    if w is not None:
        y = y * w.reshape(shape)
    return y if b is None else y + b.reshape(shape)


def group_norm_rule(orig, args, kwargs):
    x, groups = args[0], args[1] if len(args) > 1 else kwargs["num_groups"]
    w = args[2] if len(args) > 2 else kwargs.get("weight")
    b = args[3] if len(args) > 3 else kwargs.get("bias")
    eps = args[4] if len(args) > 4 else kwargs.get("eps", 1e-5)
    n = x.shape[0]
    g = x.reshape(n, groups, -1)
    mean = g.mean(-1, keepdim=True)
    gc = g - mean
    y = (gc * ((gc * gc).mean(-1, keepdim=True) + eps).rsqrt()).reshape(x.shape)
    shape = (-1,) + (1,) * (x.dim() - 2)
    if w is not None:
        y = y * w.reshape(shape)
    return y if b is None else y + b.reshape(shape)


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"{reduction} is not a valid value for reduction")


def pointwise_loss(orig, args, kwargs):
    """Losses that are elementwise before their reduction: the elementwise rule with
    ``reduction='none'``, then the reduction as a batched op."""
    kwargs = dict(kwargs)
    reduction = kwargs.pop("reduction", "mean")
    if kwargs.get("size_average") is not None or kwargs.get("reduce") is not None:
        raise RuntimeError("vmap: size_average/reduce are deprecated; pass reduction")
    out = elementwise(orig, args, dict(kwargs, reduction="none"))
    if reduction == "batchmean":
        return out.sum() / (out.shape[0] if out.dim() else 1)
    return _reduce(out, reduction)


def nll_loss_rule(orig, args, kwargs):
    names = ("input", "target", "weight", "size_average", "ignore_index", "reduce", "reduction")
    a = dict(zip(names, args))
    a.update(kwargs)
    return _nll(
        a["input"],
        a["target"],
        a.get("weight"),
        a.get("ignore_index", -100),
        a.get("reduction", "mean"),
    )


def _nll(logp, target, weight, ignore_index, reduction):
    cdim = 1 if logp.dim() >= 2 else 0
    em = _em()
    valid = target != ignore_index
    safe = em.where(valid, target, 0)
    picked = em.gather(logp, cdim, safe.unsqueeze(cdim)).squeeze(cdim)
    w = valid.to(logp.dtype)
    if weight is not None:
        w = w * weight[safe]
    loss = -picked * w
    if reduction == "mean":
        return loss.sum() / w.sum()
    return _reduce(loss, reduction)


def cross_entropy_rule(orig, args, kwargs):
    names = (
        "input",
        "target",
        "weight",
        "size_average",
        "ignore_index",
        "reduce",
        "reduction",
        "label_smoothing",
    )
    a = dict(zip(names, args))
    a.update(kwargs)
    x, target = a["input"], a["target"]
    if a.get("label_smoothing", 0.0):
        raise RuntimeError("vmap: cross_entropy with label_smoothing has no batching rule")
    cdim = 1 if x.dim() >= 2 else 0
    logp = _em().log_softmax(x, cdim)
    reduction = a.get("reduction", "mean")
    if target.is_floating_point():  # class probabilities
        prod = target * logp
        w = a.get("weight")
        if w is not None:
            prod = prod * w.reshape((-1,) + (1,) * (x.dim() - cdim - 1))
        loss = -prod.sum(cdim)
        return _reduce(loss, reduction)
    return _nll(logp, target, a.get("weight"), a.get("ignore_index", -100), reduction)


def embedding_rule(orig, args, kwargs):
    idx = args[0]
    w = args[1] if len(args) > 1 else kwargs.pop("weight")
    if kwargs.get("max_norm") is not None or (len(args) > 3 and args[3] is not None):
        raise RuntimeError(
            "vmap: embedding with max_norm renormalizes the weight in place; "
            "not supported under vmap"
        )
    if not is_batched(w):
        levels = levels_of(idx)
        with unwrapped(idx):
            out = orig(idx, w, *args[2:], **kwargs)
        return wrap(out, levels)
    return w[idx]


def one_hot_rule(orig, args, kwargs):
    n = args[1] if len(args) > 1 else kwargs.get("num_classes", -1)
    if n is None or n < 0:
        raise RuntimeError(
            "vmap: one_hot needs an explicit num_classes under vmap (the number "
            "of classes would depend on the data)"
        )
    levels = levels_of(args[0])
    with unwrapped(args[0]):
        out = orig(args[0], n)
    return wrap(out, levels)


def sdpa_rule(orig, args, kwargs):
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
    a = dict(zip(names, args))
    a.update(kwargs)
    q, k, v = a["query"], a["key"], a["value"]
    em = _em()
    scale = a.get("scale") or 1.0 / math.sqrt(q.shape[-1])
    s = em.matmul(q, k.transpose(-2, -1)) * scale
    mask = a.get("attn_mask")
    if a.get("is_causal"):
        mask = em.ones(q.shape[-2], k.shape[-2], dtype=em.bool).tril()
    if mask is not None:
        if mask.dtype == em.bool:
            s = s.masked_fill(~mask, float("-inf"))
        else:
            s = s + mask
    p = em.softmax(s, -1)
    if a.get("dropout_p", 0.0):
        p = _F().dropout(p, a["dropout_p"])
    return em.matmul(p, v)


POOLS = {
    "max_pool1d": 3,
    "max_pool2d": 4,
    "max_pool3d": 5,
    "avg_pool1d": 3,
    "avg_pool2d": 4,
    "avg_pool3d": 5,
    "max_pool1d_with_indices": 3,
    "max_pool2d_with_indices": 4,
    "max_pool3d_with_indices": 5,
    "adaptive_avg_pool1d": 3,
    "adaptive_avg_pool2d": 4,
    "adaptive_avg_pool3d": 5,
    "adaptive_max_pool1d": 3,
    "adaptive_max_pool2d": 4,
    "adaptive_max_pool3d": 5,
    "lp_pool1d": 3,
    "lp_pool2d": 4,
    "pixel_shuffle": 4,
    "pixel_unshuffle": 4,
    "interpolate": 0,
    "upsample": 0,
    "channel_shuffle": 4,
}


def _interp_rule(orig, args, kwargs):
    # interpolate's rank comes from its input; a sample is always (C, *spatial) or (N, C, ...)
    x = args[0]
    size = kwargs.get("size", args[1] if len(args) > 1 else None)
    sf = kwargs.get("scale_factor", args[2] if len(args) > 2 else None)
    nsp = (
        len(size)
        if isinstance(size, (tuple, list))
        else len(sf)
        if isinstance(sf, (tuple, list))
        else x.dim() - 2
    )
    return fold_n(nsp + 2)(orig, args, kwargs)


def install() -> None:
    for name, nd in POOLS.items():
        RULES["nn.functional." + name] = fold_n(nd)
        RULES.setdefault(name, fold_n(nd))
    RULES["nn.functional.interpolate"] = RULES["nn.functional.upsample"] = _interp_rule
    for n, nsp in (("conv1d", 1), ("conv2d", 2), ("conv3d", 3)):
        RULES[n] = RULES["nn.functional." + n] = conv_rule(nsp)
    for name in (
        "mse_loss",
        "l1_loss",
        "smooth_l1_loss",
        "huber_loss",
        "binary_cross_entropy",
        "binary_cross_entropy_with_logits",
        "kl_div",
        "soft_margin_loss",
        "poisson_nll_loss",
    ):
        RULES["nn.functional." + name] = pointwise_loss
        RULES.setdefault(name, pointwise_loss)
    RULES.update(
        {
            "linear": linear_rule,
            "nn.functional.linear": linear_rule,
            "layer_norm": layer_norm_rule,
            "nn.functional.layer_norm": layer_norm_rule,
            "rms_norm": rms_norm_rule,
            "nn.functional.rms_norm": rms_norm_rule,
            "batch_norm": batch_norm_rule,
            "nn.functional.batch_norm": batch_norm_rule,
            "group_norm": group_norm_rule,
            "nn.functional.group_norm": group_norm_rule,
            "nll_loss": nll_loss_rule,
            "nn.functional.nll_loss": nll_loss_rule,
            "cross_entropy": cross_entropy_rule,
            "nn.functional.cross_entropy": cross_entropy_rule,
            "embedding": embedding_rule,
            "nn.functional.embedding": embedding_rule,
            "one_hot": one_hot_rule,
            "nn.functional.one_hot": one_hot_rule,
            "scaled_dot_product_attention": sdpa_rule,
            "nn.functional.scaled_dot_product_attention": sdpa_rule,
        }
    )
