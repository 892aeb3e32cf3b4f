"""Losses: the numbers that training makes small, and their gradients.

Every loss here is a pair ``<loss>_forward(input, target, ...) -> (loss, cache)``
and ``<loss>_backward(dout, cache) -> grad``, plus a slow loop ``<loss>_naive``.
All take ``reduction``, with PyTorch's meaning:

* ``"none"``: one loss per element (per pixel, or per class for Dice);
* ``"sum"``:  their sum, a scalar;
* ``"mean"``: their mean, a scalar (cross-entropy divides by a *weighted count*, below).

Reductions and the upstream gradient
------------------------------------
Write l_i for the unreduced losses and L for what the function returns. The
backward pass receives ``dout`` = dE/dL for whatever E sits downstream (a
scalar for "mean"/"sum", an array of l's shape for "none"), so by the chain rule
each element's upstream gradient is

    none:  dE/dl_i = dout_i
    sum:   dE/dl_i = dout                  (L = sum_i l_i)
    mean:  dE/dl_i = dout / M              (L = sum_i l_i / M, M elements)

and every backward below is "local derivative dl_i/dx_i times dE/dl_i".

Softmax cross-entropy
---------------------
Logits x of shape (N, K) or (N, K, H, W) (any (N, K, d1, ..., dk)), integer
labels y of shape (N) or (N, H, W). Per pixel i, with z = x_i (a K-vector):

    log p_c = z_c - log sum_k exp(z_k)             (log-softmax)
    l_i     = -w_{y_i} log p_{y_i}                 (w = class weights, 1 if none)

Stability: exp(z_k) overflows for z_k > 88 in float32. Subtract the row maximum
m = max_k z_k first; log-softmax does not change, since

    log sum_k exp(z_k) = m + log sum_k exp(z_k - m)

and now every exponent is <= 0 (no overflow) and the sum is >= 1 (no log 0).

Ignored pixels (y_i == ignore_index) get l_i = 0. Let v_i = 1 for a counted pixel
and 0 for an ignored one. The mean is PyTorch's weighted mean

    L = sum_i v_i w_{y_i} (-log p_{y_i}) / sum_i v_i w_{y_i}

so without weights it divides by the number of counted pixels, not by N*H*W. If
no pixel counts the denominator is 0 and L is NaN, exactly as in PyTorch (the
gradient is then 0, again as in PyTorch).

Backward. With p = softmax(z), dp_c/dz_k = p_c (delta_ck - p_k), so

    d(-log p_y)/dz_k = -(1/p_y) p_y (delta_yk - p_k) = p_k - delta_yk

"softmax minus one-hot". Scaled by the pixel's weight and its upstream gradient:

    dx_i = s_i (p - onehot(y_i)),   s_i = v_i w_{y_i} * dE/dl_i

where for "mean" dE/dl_i = dout / sum_j v_j w_{y_j}. Ignored pixels get s_i = 0.

Binary cross-entropy with logits
--------------------------------
Logits x, targets t in [0, 1], both of any shape (N, ...). With sigma the sigmoid,

    l = -[pw t log sigma(x) + (1 - t) log(1 - sigma(x))]

with pw the positive weight (``pos_weight``, 1 if none). Since
log sigma(x) = -softplus(-x) and log(1 - sigma(x)) = -x - softplus(-x),

    l = (1 - t) x + (1 + (pw - 1) t) softplus(-x)

and softplus(-x) = log(1 + exp(-x)) = log1p(exp(-|x|)) + max(-x, 0): the
exponent is never positive, so nothing overflows at x = +-1e4. ``weight``
multiplies l elementwise; ``weight`` and ``pos_weight`` broadcast against x as
arrays do (a (K,) pos_weight lines up with the LAST axis, as in PyTorch; for
(N, K, H, W) logits pass shape (K, 1, 1)). "mean" divides by the element count.

Backward. d softplus(-x)/dx = -sigma(-x), so with lw = 1 + (pw - 1) t

    dl/dx = (1 - t) - lw sigma(-x)          (= sigma(x) - t when pw = 1)

The sigmoid itself is computed from e = exp(-|x|) <= 1:
sigma(x) = 1/(1+e) for x >= 0, e/(1+e) for x < 0 (and sigma(-x) the other way).

Sigmoid focal loss (Lin et al. 2017; torchvision's definition)
--------------------------------------------------------------
Same shapes as BCE. With p = sigma(x) and ce = BCE-with-logits(x, t):

    p_t  = p t + (1 - p)(1 - t)        (the probability given to the true label)
    l    = a_t ce (1 - p_t)^gamma,     a_t = alpha t + (1 - alpha)(1 - t)

and a_t = 1 when alpha < 0. The factor (1 - p_t)^gamma is near 0 for an easy
example (p_t near 1): the thousands of easy background anchors of a detector
stop drowning out the few hard ones.

Backward. Write q = 1 - p_t = p (1 - t) + (1 - p) t (computed in that form, from
a stably computed 1 - p = sigma(-x)). The pieces:

    dp/dx  = p (1 - p)
    dce/dx = p - t                                      (BCE above, pw = 1)
    dq/dx  = (1 - t) dp/dx - t dp/dx = (1 - 2t) p (1 - p)

and by the product rule

    dl/dx = a_t [ (p - t) q^gamma + ce gamma q^(gamma-1) (1 - 2t) p (1 - p) ].

The second term is taken as 0 where q = 0: that happens only when p = t in {0, 1},
where p (1 - p) = 0, so its limit is 0 even for gamma < 1 where q^(gamma-1) blows up.

Soft Dice loss
--------------
Probabilities P of shape (N, K, H, W) (any (N, K, d1, ..., dk); already
softmaxed, NOT logits) and a target G of the same shape (one-hot or soft), or an
integer label map y of shape (N, H, W) that is one-hot encoded inside:
G[n, c, h, w] = 1 if y[n, h, w] == c. Pixels with y == ignore_index drop out:
a mask v (1 counted, 0 ignored) multiplies both P and G. For each class c, sums run
over the whole batch and all pixels ("batch Dice"):

    I_c = sum v P G,   S_c = sum v P + sum v G + eps
    l_c = 1 - (2 I_c + eps) / S_c

``reduction`` then acts on the K class losses: "none" gives l (K,), "mean" their
average (the Dice loss), "sum" their sum. eps (> 0, default 1) keeps an absent,
unpredicted class at l_c = 0 instead of 0/0.

Backward. Write r_c = (2 I_c + eps) / S_c. By the quotient rule, for one pixel,

    dl_c/dP = -[2 v G S_c - (2 I_c + eps) v] / S_c^2 = v (r_c - 2 G) / S_c,

times dE/dl_c. Only P is differentiated; the target gets no gradient.

Smooth L1 and MSE
-----------------
Input x and target y of the same shape, d = x - y. Smooth L1 with parameter
beta >= 0 is quadratic near 0 and linear beyond beta:

    l = 0.5 d^2 / beta   if |d| < beta,        dl/dd = d / beta
    l = |d| - 0.5 beta   otherwise,            dl/dd = sign(d)

The two pieces meet with equal value and slope at |d| = beta. beta = 0 is plain
L1 (no division by 0 is made). Detection box heads use beta = 1/9. The mean
squared error is l = d^2 with dl/dd = 2 d. Both are differentiated with respect
to x AND y: since d = x - y, dl/dy = -dl/dx.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

from ..backend import to_numpy, xp_of
from ..validate import check_float, check_same_shape

REDUCTIONS = ("none", "mean", "sum")


# ----- shared helpers -------------------------------------------------------------------
def _check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def _reduce(losses, reduction):
    """The reduction of elementwise losses: as they are, their sum, or their mean."""
    if reduction == "none":
        return losses
    xp = xp_of(losses)
    total = losses.sum()
    if reduction == "mean":
        total = total / losses.size
    return xp.asarray(total, dtype=losses.dtype)


def _unreduce(dout, shape, reduction):
    """dE/dl for every element: the backward of ``_reduce`` (see the module docstring)."""
    xp = xp_of(dout)
    dout = xp.asarray(dout)
    if reduction == "none":
        return dout
    if reduction == "mean":
        dout = dout / math.prod(shape)
    return xp.broadcast_to(dout.reshape(()), shape)


def _sigmoid(x):
    """sigma(x) from e = exp(-|x|), which never overflows."""
    xp = xp_of(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softplus(x):
    """log(1 + exp(x)) = log1p(exp(-|x|)) + max(x, 0), without overflow."""
    xp = xp_of(x)
    return xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(x, 0)


def _as_dtype(a, dtype, name):
    """An optional float argument (weight, pos_weight) cast to the input's dtype."""
    if a is None:
        return None
    check_float(a, name)
    return a.astype(dtype, copy=False)


def _check_broadcasts(a, shape, name):
    """``a`` must broadcast to ``shape`` without growing it."""
    if a is None:
        return
    ok = a.ndim <= len(shape) and all(
        s == 1 or s == full for s, full in zip(a.shape[::-1], shape[::-1])
    )
    if not ok:
        raise ValueError(
            f"{name} must broadcast to the input's shape {tuple(shape)}, got {a.shape}"
        )


def _check_labels(input, target, ignore_index, weight=None):
    """int64 labels (N, d1, ...) for (N, K, d1, ...) scores, and the counted mask; the class
    ``weight`` (K,), if given, must be finite and >= 0 (else a NaN mean): one host read."""
    xp = xp_of(input)
    if getattr(getattr(target, "dtype", None), "kind", None) not in ("i", "u"):
        raise TypeError(
            f"target must be an integer array of class indices, got dtype "
            f"{getattr(target, 'dtype', type(target))}"
        )
    expected = (input.shape[0],) + tuple(input.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"target must have shape {expected} for input of shape {input.shape}, "
            f"got {target.shape}"
        )
    K = input.shape[1]
    labels = target.astype(xp.int64)  # uint8 masks with 255 compare safely with ignore_index
    valid = labels != ignore_index
    bad = xp.any(valid & ((labels < 0) | (labels >= K))).astype(xp.int64)
    if weight is not None:
        bad = bad + 2 * xp.any(~((weight >= 0) & (weight < math.inf)))  # NaN fails both
    bad = int(bad)
    if bad & 2:
        w = to_numpy(weight)
        k = int((~((w >= 0) & (w < math.inf))).argmax())
        raise ValueError(f"weight must hold finite class weights >= 0, got {w[k]!r} for class {k}")
    if bad:
        raise ValueError(
            f"target values must lie in [0, {K}) (K = input.shape[1]) or equal "
            f"ignore_index={ignore_index}"
        )
    return labels, valid


def _check_scores(input, name):
    check_float(input, name)
    if input.ndim < 2:
        raise ValueError(f"{name} must have shape (N, K) or (N, K, d1, ..., dk), got {input.shape}")


def _check_cross_entropy(input, target, weight, ignore_index, reduction):
    _check_scores(input, "input")
    K = input.shape[1]
    if weight is not None:
        check_float(weight, "weight")  # before the value check of _check_labels
    if weight is not None and tuple(weight.shape) != (K,):
        raise ValueError(f"weight must have shape (K,) = ({K},), one per class, got {weight.shape}")
    labels, valid = _check_labels(input, target, ignore_index, weight)
    _check_reduction(reduction)
    return labels, valid, _as_dtype(weight, input.dtype, "weight")


def _ratio(total, denom):
    """total / denom, and NaN (PyTorch's answer) where denom is 0, with no warning."""
    xp = xp_of(total)
    positive = denom > 0
    return xp.where(positive, total / xp.where(positive, denom, 1), xp.nan)


# ----- softmax cross-entropy --------------------------------------------------------------
class CrossEntropyCache(NamedTuple):
    p: object  # (M, K) softmax of the logits, one row per pixel
    y: object  # (M,) the target classes (ignored pixels mapped to 0)
    w: object  # (M,) v_i w_{y_i}: 0 for ignored pixels
    denom: object  # sum of w, the "mean" divisor
    reduction: str
    x_shape: tuple


def cross_entropy_forward(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Softmax cross-entropy of logits ``input`` (N, K, ...) against labels ``target`` (N, ...).

    :param input: logits, (N, K) or (N, K, d1, ..., dk), float.
    :param target: integer class indices, (N,) or (N, d1, ..., dk), in [0, K) or ignore_index.
    :param weight: optional class weights (K,).
    :param ignore_index: label whose pixels count for nothing (loss 0, left out of the mean).
    :param reduction: "none" (per-pixel losses, target's shape), "mean" or "sum".
    :returns: (loss, cache). "mean" with every pixel ignored gives NaN, as PyTorch does.
    """
    labels, valid, weight = _check_cross_entropy(input, target, weight, ignore_index, reduction)
    xp = xp_of(input)
    K = input.shape[1]
    # BEGIN SOLUTION cross_entropy_forward
    x = xp.moveaxis(input, 1, -1).reshape(-1, K)  # (M, K): one row of K logits per pixel
    y = xp.where(valid, labels, 0).reshape(-1)  # ignored pixels read class 0; their weight is 0
    z = x - x.max(axis=1, keepdims=True)  # every z <= 0: exp cannot overflow
    exp_z = xp.exp(z)
    sum_exp = exp_z.sum(axis=1)  # >= 1: log cannot meet 0
    rows = xp.arange(y.size)
    log_p = z[rows, y] - xp.log(sum_exp)  # log-softmax of the true class
    w = valid.reshape(-1).astype(input.dtype)  # v_i w_{y_i}
    if weight is not None:
        w = w * weight[y]
    losses = -w * log_p
    denom = w.sum()
    if reduction == "none":
        out = losses.reshape(target.shape)
    elif reduction == "sum":
        out = losses.sum()
    else:
        out = _ratio(losses.sum(), denom)
    p = exp_z / sum_exp[:, None]
    cache = CrossEntropyCache(p, y, w, denom, reduction, input.shape)
    return xp.asarray(out, dtype=input.dtype), cache
    # END SOLUTION


def cross_entropy_backward(dout, cache):
    """Gradient w.r.t. the logits: s_i (softmax - onehot), in the input's shape."""
    p, y, w, denom, reduction, x_shape = cache
    xp = xp_of(p)
    dout = xp.asarray(dout)
    # BEGIN SOLUTION cross_entropy_backward
    if reduction == "none":
        s = w * dout.reshape(-1)
    elif reduction == "sum":
        s = w * dout
    else:  # all-ignored: w is 0 everywhere, so the gradient is 0 (PyTorch agrees)
        s = w * (dout / xp.where(denom > 0, denom, 1))
    dx = p * s[:, None]
    dx[xp.arange(y.size), y] -= s  # one entry per row: no repeated indices
    N, K = x_shape[:2]
    dx = dx.reshape((N,) + tuple(x_shape[2:]) + (K,))
    return xp.ascontiguousarray(xp.moveaxis(dx, -1, 1)).astype(p.dtype, copy=False)
    # END SOLUTION


def cross_entropy_naive(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Loop version: one pixel at a time, log-sum-exp written out over the K classes."""
    labels, valid, weight = _check_cross_entropy(input, target, weight, ignore_index, reduction)
    xp = xp_of(input)
    K = input.shape[1]
    losses = xp.zeros(target.shape, dtype=input.dtype)
    total_weight = xp.zeros((), dtype=input.dtype)
    for pos in itertools.product(*(range(s) for s in target.shape)):
        y = int(labels[pos])
        if y == ignore_index:
            continue
        logits = [input[(pos[0], k) + pos[1:]] for k in range(K)]
        m = max(logits)
        sum_exp = 0.0
        for k in range(K):
            sum_exp = sum_exp + xp.exp(logits[k] - m)
        log_p = logits[y] - m - xp.log(sum_exp)
        w = weight[y] if weight is not None else 1.0
        losses[pos] = -w * log_p
        total_weight = total_weight + w
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return _ratio(losses.sum(), total_weight).astype(input.dtype)


# ----- binary cross-entropy with logits ----------------------------------------------------
def _check_bce(input, target, weight, pos_weight, reduction):
    check_float(input, "input")
    check_same_shape(input, target, "input", "target")
    _check_broadcasts(weight, input.shape, "weight")
    _check_broadcasts(pos_weight, input.shape, "pos_weight")
    _check_reduction(reduction)
    dtype = input.dtype
    target = target.astype(dtype, copy=False)  # bool or 0/1 integer targets are fine
    return target, _as_dtype(weight, dtype, "weight"), _as_dtype(pos_weight, dtype, "pos_weight")


class BCECache(NamedTuple):
    x: object
    t: object  # the targets in x's dtype
    weight: object  # or None
    log_weight: object  # 1 + (pos_weight - 1) t, or 1
    reduction: str


def bce_with_logits_forward(input, target, weight=None, reduction="mean", pos_weight=None):
    """Binary cross-entropy of logits ``input`` against targets in [0, 1], any shape.

    :param input: logits, float, any shape.
    :param target: targets of input's shape (float, or 0/1 integers or bools).
    :param weight: optional per-element weight, broadcast against input.
    :param reduction: "none", "mean" (over all elements) or "sum".
    :param pos_weight: optional weight of the positive term, broadcast against input
        (a (K,) array lines up with input's last axis, as in PyTorch).
    :returns: (loss, cache).
    """
    t, weight, pos_weight = _check_bce(input, target, weight, pos_weight, reduction)
    log_weight = 1 if pos_weight is None else 1 + (pos_weight - 1) * t
    losses = (1 - t) * input + log_weight * _softplus(-input)
    if weight is not None:
        losses = losses * weight
    cache = BCECache(input, t, weight, log_weight, reduction)
    return _reduce(losses, reduction), cache


def bce_with_logits_backward(dout, cache):
    """Gradient w.r.t. the logits: ((1 - t) - lw sigma(-x)) * weight * dE/dl."""
    x, t, weight, log_weight, reduction = cache
    g = _unreduce(dout, x.shape, reduction)  # dE/dl for every element
    # BEGIN SOLUTION bce_with_logits_backward
    dx = (1 - t) - log_weight * _sigmoid(-x)
    if weight is not None:
        dx = dx * weight
    return (dx * g).astype(x.dtype, copy=False)
    # END SOLUTION


def bce_with_logits_naive(input, target, weight=None, reduction="mean", pos_weight=None):
    """Loop version: -[pw t log sigma(x) + (1-t) log(1-sigma(x))], one element at a time."""
    t, weight, pos_weight = _check_bce(input, target, weight, pos_weight, reduction)
    xp = xp_of(input)
    weight = xp.broadcast_to(weight, input.shape) if weight is not None else None
    pos_weight = xp.broadcast_to(pos_weight, input.shape) if pos_weight is not None else None
    losses = xp.zeros(input.shape, dtype=input.dtype)
    for pos in itertools.product(*(range(s) for s in input.shape)):
        x, ti = input[pos], t[pos]
        # log sigma(x) and log(1 - sigma(x)), each written so that exp sees only -|x|
        log_sig = -xp.log1p(xp.exp(-x)) if x >= 0 else x - xp.log1p(xp.exp(x))
        log_one_minus = log_sig - x
        pw = pos_weight[pos] if pos_weight is not None else 1.0
        loss = -(pw * ti * log_sig + (1 - ti) * log_one_minus)
        losses[pos] = loss * weight[pos] if weight is not None else loss
    return _reduce(losses, reduction)


# ----- sigmoid focal loss -------------------------------------------------------------------
def _check_focal(inputs, targets, gamma, reduction):
    check_float(inputs, "inputs")
    check_same_shape(inputs, targets, "inputs", "targets")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    _check_reduction(reduction)
    return targets.astype(inputs.dtype, copy=False)


class FocalCache(NamedTuple):
    x: object
    t: object
    p: object  # sigmoid(x)
    p_neg: object  # sigmoid(-x) = 1 - p
    ce: object  # the per-element cross-entropy
    q: object  # 1 - p_t
    a: object  # alpha_t, or 1
    gamma: float
    reduction: str


def sigmoid_focal_loss_forward(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision's sigmoid focal loss: alpha_t * BCE * (1 - p_t)^gamma, elementwise.

    :param inputs: logits, float, any shape.
    :param targets: 0/1 (or soft) targets of inputs' shape.
    :param alpha: weight of the positives in [0, 1]; alpha < 0 turns the weighting off.
    :param gamma: focusing exponent >= 0 (0 gives alpha-weighted BCE).
    :param reduction: "none" (the default, as in torchvision), "mean" or "sum".
    :returns: (loss, cache).
    """
    t = _check_focal(inputs, targets, gamma, reduction)
    p, p_neg = _sigmoid(inputs), _sigmoid(-inputs)  # p and 1 - p, each without cancellation
    ce = (1 - t) * inputs + _softplus(-inputs)
    q = p * (1 - t) + p_neg * t  # 1 - p_t
    a = alpha * t + (1 - alpha) * (1 - t) if alpha >= 0 else 1
    losses = a * ce * q**gamma
    cache = FocalCache(inputs, t, p, p_neg, ce, q, a, gamma, reduction)
    return _reduce(losses, reduction), cache


def sigmoid_focal_loss_backward(dout, cache):
    """Gradient w.r.t. the logits: a_t [(p - t) q^gamma + ce gamma q^(gamma-1) (1-2t) p (1-p)]."""
    x, t, p, p_neg, ce, q, a, gamma, reduction = cache
    xp = xp_of(x)
    g = _unreduce(dout, x.shape, reduction)
    # BEGIN SOLUTION sigmoid_focal_loss_backward
    dce = p * (1 - t) - p_neg * t  # p - t, exact for 0/1 targets
    dq = (1 - 2 * t) * p * p_neg
    positive = q > 0
    q_pow = xp.where(positive, xp.where(positive, q, 1) ** (gamma - 1), 0)  # the q = 0 limit is 0
    dx = a * (dce * q**gamma + ce * gamma * q_pow * dq)
    return (dx * g).astype(x.dtype, copy=False)
    # END SOLUTION


def sigmoid_focal_loss_naive(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """Loop version of torchvision's formula, one element at a time."""
    t = _check_focal(inputs, targets, gamma, reduction)
    xp = xp_of(inputs)
    losses = xp.zeros(inputs.shape, dtype=inputs.dtype)
    for pos in itertools.product(*(range(s) for s in inputs.shape)):
        x, ti = inputs[pos], t[pos]
        if x >= 0:
            p = 1 / (1 + xp.exp(-x))
            ce = (1 - ti) * x + xp.log1p(xp.exp(-x))
        else:
            p = xp.exp(x) / (1 + xp.exp(x))
            ce = -ti * x + xp.log1p(xp.exp(x))
        p_t = p * ti + (1 - p) * (1 - ti)
        loss = ce * (1 - p_t) ** gamma
        if alpha >= 0:
            loss = (alpha * ti + (1 - alpha) * (1 - ti)) * loss
        losses[pos] = loss
    return _reduce(losses, reduction)


# ----- soft Dice ------------------------------------------------------------------------------
def _dice_target(input, target, ignore_index):
    """(G, v): the target as (N, K, ...) one-hot/soft values, and the counted-pixel mask or None."""
    xp = xp_of(input)
    if getattr(getattr(target, "dtype", None), "kind", None) == "f":
        check_same_shape(input, target, "input", "target")
        return target.astype(input.dtype, copy=False), None
    labels, valid = _check_labels(input, target, ignore_index)
    K = input.shape[1]
    classes = xp.arange(K).reshape((1, K) + (1,) * (input.ndim - 2))
    mask = xp.expand_dims(valid, 1).astype(input.dtype)  # (N, 1, ...)
    onehot = (xp.expand_dims(labels, 1) == classes).astype(input.dtype) * mask
    return onehot, mask


def _check_dice(input, target, eps, ignore_index, reduction):
    _check_scores(input, "input")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    _check_reduction(reduction)
    return _dice_target(input, target, ignore_index)


class DiceCache(NamedTuple):
    G: object  # one-hot targets, input's shape
    mask: object  # 1 where a pixel counts, or None
    ratio: object  # (K,) the Dice coefficient of each class
    S: object  # (K,) sum P + sum G + eps
    reduction: str
    x_shape: tuple


def dice_loss_forward(input, target, eps=1.0, ignore_index=-100, reduction="mean"):
    """Soft batch Dice loss of probabilities ``input`` (N, K, ...) against ``target``.

    l_c = 1 - (2 sum(v P G) + eps) / (sum(v P) + sum(v G) + eps), sums over N and all pixels.

    :param input: probabilities (already softmaxed), (N, K) or (N, K, d1, ..., dk).
    :param target: integer labels (N, d1, ..., dk) (one-hot encoded here; ignore_index
        pixels are left out), or float one-hot/soft targets of input's shape.
    :param eps: smoothing > 0 added to numerator and denominator.
    :param ignore_index: label of pixels to leave out (integer targets only).
    :param reduction: over the K class losses: "none" (K,), "mean" or "sum".
    :returns: (loss, cache).
    """
    G, mask = _check_dice(input, target, eps, ignore_index, reduction)
    axes = (0,) + tuple(range(2, input.ndim))
    P = input if mask is None else input * mask
    intersection = (P * G).sum(axis=axes)  # (K,)
    S = P.sum(axis=axes) + G.sum(axis=axes) + eps
    ratio = (2 * intersection + eps) / S
    cache = DiceCache(G, mask, ratio, S, reduction, input.shape)
    return _reduce(1 - ratio, reduction), cache


def dice_loss_backward(dout, cache):
    """Gradient w.r.t. the probabilities: v (r_c - 2G) / S_c * dE/dl_c."""
    G, mask, ratio, S, reduction, x_shape = cache
    K = x_shape[1]
    g = _unreduce(dout, (K,), reduction)  # dE/dl_c for each class
    # BEGIN SOLUTION dice_loss_backward
    per_class = (1, K) + (1,) * (len(x_shape) - 2)
    dP = (ratio.reshape(per_class) - 2 * G) * (g / S).reshape(per_class)
    if mask is not None:
        dP = dP * mask
    return dP.astype(G.dtype, copy=False)
    # END SOLUTION


def dice_loss_naive(input, target, eps=1.0, ignore_index=-100, reduction="mean"):
    """Loop version: the three sums of each class, accumulated pixel by pixel."""
    _check_dice(input, target, eps, ignore_index, reduction)
    xp = xp_of(input)
    K = input.shape[1]
    integer_labels = target.dtype.kind != "f"
    losses = xp.zeros(K, dtype=input.dtype)
    for c in range(K):
        intersection = p_sum = g_sum = 0.0
        for pos in itertools.product(*(range(s) for s in input.shape[:1] + input.shape[2:])):
            where = (pos[0], c) + pos[1:]
            if integer_labels:
                if int(target[pos]) == ignore_index:
                    continue
                g = 1.0 if int(target[pos]) == c else 0.0
            else:
                g = target[where]
            intersection = intersection + input[where] * g
            p_sum = p_sum + input[where]
            g_sum = g_sum + g
        losses[c] = 1 - (2 * intersection + eps) / (p_sum + g_sum + eps)
    return _reduce(losses, reduction)


# ----- smooth L1 and MSE -----------------------------------------------------------------------
def _check_regression(input, target, reduction):
    check_float(input, "input")
    check_float(target, "target")
    check_same_shape(input, target, "input", "target")
    _check_reduction(reduction)


class SmoothL1Cache(NamedTuple):
    d: object  # input - target
    beta: float
    reduction: str


def smooth_l1_loss_forward(input, target, reduction="mean", beta=1.0):
    """Smooth L1 (Huber / beta) loss of ``input`` against ``target``, same shapes.

    :param beta: >= 0; quadratic for |d| < beta, linear beyond. beta = 0 is L1.
    :returns: (loss, cache).
    """
    _check_regression(input, target, reduction)
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    xp = xp_of(input)
    d = input - target.astype(input.dtype, copy=False)
    ad = xp.abs(d)
    if beta == 0:
        losses = ad
    else:
        small = ad < beta
        d_small = xp.where(small, d, 0)  # squares only |d| < beta: no overflow for huge d
        losses = xp.where(small, 0.5 * d_small * d_small / beta, ad - 0.5 * beta)
    cache = SmoothL1Cache(d, beta, reduction)
    return _reduce(losses, reduction), cache


def smooth_l1_loss_backward(dout, cache):
    """Gradients w.r.t. (input, target): (dl/dd * dE/dl, -dl/dd * dE/dl)."""
    d, beta, reduction = cache
    xp = xp_of(d)
    g = _unreduce(dout, d.shape, reduction)
    # BEGIN SOLUTION smooth_l1_loss_backward
    dd = xp.sign(d) if beta == 0 else xp.where(xp.abs(d) < beta, d / beta, xp.sign(d))
    dx = (dd * g).astype(d.dtype, copy=False)
    return dx, -dx
    # END SOLUTION


def smooth_l1_loss_naive(input, target, reduction="mean", beta=1.0):
    """Loop version of the two-piece definition."""
    _check_regression(input, target, reduction)
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    xp = xp_of(input)
    losses = xp.zeros(input.shape, dtype=input.dtype)
    for pos in itertools.product(*(range(s) for s in input.shape)):
        d = input[pos] - target[pos]
        losses[pos] = 0.5 * d * d / beta if abs(d) < beta else abs(d) - 0.5 * beta
    return _reduce(losses, reduction)


class MSECache(NamedTuple):
    d: object  # input - target
    reduction: str


def mse_loss_forward(input, target, reduction="mean"):
    """Mean squared error (x - y)^2 of ``input`` against ``target``, same shapes."""
    _check_regression(input, target, reduction)
    d = input - target.astype(input.dtype, copy=False)
    return _reduce(d * d, reduction), MSECache(d, reduction)


def mse_loss_backward(dout, cache):
    """Gradients w.r.t. (input, target): (2 d dE/dl, -2 d dE/dl)."""
    d, reduction = cache
    dx = (2 * d * _unreduce(dout, d.shape, reduction)).astype(d.dtype, copy=False)
    return dx, -dx


def mse_loss_naive(input, target, reduction="mean"):
    """Loop version: (x - y)^2 one element at a time."""
    _check_regression(input, target, reduction)
    xp = xp_of(input)
    losses = xp.zeros(input.shape, dtype=input.dtype)
    for pos in itertools.product(*(range(s) for s in input.shape)):
        losses[pos] = (input[pos] - target[pos]) ** 2
    return _reduce(losses, reduction)
