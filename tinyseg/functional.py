"""Differentiable functions with torch.nn.functional's names, arguments and defaults.

Each function wraps one forward/backward pair from ``tinyseg.ops`` in a
``Function``: forward runs ``<op>_forward`` and keeps its cache on ctx, backward
runs ``<op>_backward``. No math lives here: to learn how an op works, read its
module in ``tinyseg/ops``.

Every function accepts Tensors or raw arrays (NCHW layout throughout).
"""

from __future__ import annotations

import inspect

from .autograd import Function, Tensor


def _pair_function(forward, backward, name):
    """A Function class whose forward is ``forward(*inputs, **params)`` and backward ``backward``.

    ``backward(dout, cache)`` returns the gradients of the leading positional
    arguments in order (a single array when there is one); the rest get None.
    If ``backward`` takes a ``needs_input_grad`` argument it is handed
    ``ctx.needs_input_grad`` (known before forward ran), so that it can skip
    the gradients nobody wants; either way an unwanted gradient becomes None.
    """
    takes_flags = "needs_input_grad" in inspect.signature(backward).parameters

    def fwd(ctx, *args, **params):
        out, ctx.cache = forward(*args, **params)
        return out

    def bwd(ctx, dout, *unused):
        needs = ctx.needs_input_grad
        if takes_flags:
            grads = backward(dout, ctx.cache, needs_input_grad=needs)
        else:
            grads = backward(dout, ctx.cache)
        grads = grads if isinstance(grads, tuple) else (grads,)
        grads = tuple(g if need else None for g, need in zip(grads, needs))
        return grads + (None,) * (len(needs) - len(grads))

    return type(name, (Function,), {"forward": staticmethod(fwd), "backward": staticmethod(bwd)})


def _as_tensor_or_none(a):
    return a if a is None or isinstance(a, Tensor) else Tensor(a)


# ===== conv (tinyseg/ops/conv.py) =====
from .ops import conv as _conv  # noqa: E402  (each section imports its own ops module)

_Conv2d = _pair_function(_conv.conv2d_forward, _conv.conv2d_backward, "Conv2d")
_ConvTranspose2d = _pair_function(
    _conv.conv_transpose2d_forward, _conv.conv_transpose2d_backward, "ConvTranspose2d"
)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation), as ``torch.nn.functional.conv2d``.

    :param x: (N, C_in, H, W)
    :param weight: (C_out, C_in/groups, kh, kw)
    :param bias: (C_out,) or None
    :param stride: int or (sh, sw)
    :param padding: zero padding, int or (ph, pw)
    :param dilation: spacing of the kernel taps, int or (dh, dw)
    :param groups: channel groups; divides C_in and C_out
    :return: (N, C_out, H_out, W_out) with H_out = floor((H + 2p - d(k-1) - 1)/s) + 1
    """
    return _Conv2d.apply(
        x, weight, bias, stride=stride, pad=padding, dilation=dilation, groups=groups
    )


def conv_transpose2d(
    x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1
):
    """Transposed convolution, the adjoint of conv2d, as ``torch.nn.functional.conv_transpose2d``.

    :param x: (N, C_in, H, W)
    :param weight: (C_in, C_out/groups, kh, kw)
    :param bias: (C_out,) or None
    :param stride: int or (sh, sw): the upsampling factor
    :param padding: int or (ph, pw), cropped from each border of the output
    :param output_padding: extra rows/cols at the bottom/right; < stride or < dilation
    :param groups: channel groups; divides C_in
    :param dilation: int or (dh, dw)
    :return: (N, C_out, H_out, W_out) with
        H_out = (H-1)*s - 2p + d(k-1) + output_padding + 1
    """
    return _ConvTranspose2d.apply(
        x,
        weight,
        bias,
        stride=stride,
        pad=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
    )


# ===== end conv =====

# ===== pool (tinyseg/ops/pool.py) =====
from .ops import pool as _pool  # noqa: E402
from .ops import resize as _resize  # noqa: E402

_MaxPool2d = _pair_function(_pool.max_pool2d_forward, _pool.max_pool2d_backward, "MaxPool2d")
_AvgPool2d = _pair_function(_pool.avg_pool2d_forward, _pool.avg_pool2d_backward, "AvgPool2d")
_GlobalAvgPool2d = _pair_function(
    _pool.global_avg_pool2d_forward, _pool.global_avg_pool2d_backward, "GlobalAvgPool2d"
)
_MaxUnpool2d = _pair_function(
    _pool.max_unpool2d_forward, _pool.max_unpool2d_backward, "MaxUnpool2d"
)
_BedOfNailsUnpool2d = _pair_function(
    _pool.bed_of_nails_unpool2d_forward, _pool.bed_of_nails_unpool2d_backward,
    "BedOfNailsUnpool2d",
)
_UpsampleNearest2d = _pair_function(
    _resize.upsample_nearest2d_forward, _resize.upsample_nearest2d_backward, "UpsampleNearest2d"
)
_BilinearResize2d = _pair_function(
    _resize.bilinear_resize2d_forward, _resize.bilinear_resize2d_backward, "BilinearResize2d"
)


def max_pool2d(x, kernel_size, stride=None, padding=0, return_indices=False):
    """Max pooling; with ``return_indices=True`` also the flat ``h*W + w`` argmax indices.

    The indices are an int64 Tensor without gradient, ready for ``max_unpool2d``.
    """
    out, indices = _MaxPool2d.apply(x, kernel_size, stride, padding)
    return (out, indices) if return_indices else out


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Average pooling; padded zeros count in the mean (torch's count_include_pad=True)."""
    return _AvgPool2d.apply(x, kernel_size, stride, padding)


def global_avg_pool2d(x):
    """The mean of each (n, c) plane: (N, C, H, W) -> (N, C, 1, 1)."""
    return _GlobalAvgPool2d.apply(x)


def adaptive_avg_pool2d(x, output_size):
    """torch's adaptive_avg_pool2d, for ``output_size`` 1 or (1, 1) only (global average)."""
    if output_size not in (1, (1, 1), [1, 1]):
        raise ValueError(
            f"adaptive_avg_pool2d supports only output_size 1 or (1, 1) (global average "
            f"pooling), got output_size={output_size!r}"
        )
    return _GlobalAvgPool2d.apply(x)


def max_unpool2d(x, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Put each value of ``x`` back at its max_pool2d index, zeros elsewhere (SegNet).

    ``indices`` gets no gradient. Repeated indices (overlapping windows) add.
    """
    return _MaxUnpool2d.apply(x, indices, kernel_size, stride, padding, output_size)


def bed_of_nails_unpool2d(x, stride):
    """Each value to the top-left corner of a ``stride`` block of zeros."""
    return _BedOfNailsUnpool2d.apply(x, stride)


def _interpolate_size(shape, size, scale_factor):
    """The output (H_out, W_out) from exactly one of size and an integer scale_factor."""
    if (size is None) == (scale_factor is None):
        raise ValueError(
            "give exactly one of size and scale_factor, got "
            f"size={size!r}, scale_factor={scale_factor!r}"
        )
    if size is not None:
        return size
    pair_given = isinstance(scale_factor, (tuple, list))
    factors = tuple(scale_factor) if pair_given else (scale_factor, scale_factor)
    if len(factors) != 2 or not all(
        (isinstance(f, (int, float)) or hasattr(f, "__index__"))  # numpy ints too
        and not isinstance(f, bool) and f >= 1 and float(f).is_integer()
        for f in factors
    ):
        raise ValueError(
            f"scale_factor must be an integer >= 1 or a pair of them, got {scale_factor!r}; "
            f"use size=(H_out, W_out) for other sizes"
        )
    return shape[2] * int(factors[0]), shape[3] * int(factors[1])


def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """Resize (N, C, H, W) maps, as torch.nn.functional.interpolate, modes "nearest" and "bilinear".

    Exactly one of ``size`` (int or (H_out, W_out)) and ``scale_factor`` (an integer or a
    pair of integers) is given. ``align_corners`` may be set only for "bilinear", where it
    defaults to False.
    """
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"mode must be 'nearest' or 'bilinear', got {mode!r}")
    if align_corners is not None and mode != "bilinear":
        raise ValueError(
            f"align_corners can only be set with mode='bilinear', got mode={mode!r} "
            f"and align_corners={align_corners!r}"
        )
    if getattr(x, "ndim", None) != 4:
        raise ValueError(f"x must have shape (N, C, H, W), got {getattr(x, 'shape', type(x))}")
    out_size = _interpolate_size(x.shape, size, scale_factor)
    if mode == "nearest":
        return _UpsampleNearest2d.apply(x, out_size)
    return _BilinearResize2d.apply(x, out_size, False if align_corners is None else align_corners)


# ===== end pool =====

# ===== activation (tinyseg/ops/activation.py) =====
from .ops import activation as _activation  # noqa: E402

_ReLU = _pair_function(_activation.relu_forward, _activation.relu_backward, "ReLU")
_LeakyReLU = _pair_function(
    _activation.leaky_relu_forward, _activation.leaky_relu_backward, "LeakyReLU"
)
_Sigmoid = _pair_function(_activation.sigmoid_forward, _activation.sigmoid_backward, "Sigmoid")
_Tanh = _pair_function(_activation.tanh_forward, _activation.tanh_backward, "Tanh")
_Softmax = _pair_function(_activation.softmax_forward, _activation.softmax_backward, "Softmax")
_LogSoftmax = _pair_function(
    _activation.log_softmax_forward, _activation.log_softmax_backward, "LogSoftmax"
)
_Dropout = _pair_function(_activation.dropout_forward, _activation.dropout_backward, "Dropout")
_Linear = _pair_function(_activation.linear_forward, _activation.linear_backward, "Linear")


def relu(x):
    """max(x, 0), elementwise."""
    return _ReLU.apply(x)


def leaky_relu(x, negative_slope=0.01):
    """x where x > 0, else negative_slope * x."""
    return _LeakyReLU.apply(x, negative_slope=negative_slope)


def sigmoid(x):
    """1 / (1 + exp(-x)), without overflow for large |x|."""
    return _Sigmoid.apply(x)


def tanh(x):
    """Hyperbolic tangent, elementwise."""
    return _Tanh.apply(x)


def softmax(x, dim=None):
    """Softmax along ``dim``. ``dim`` must be given (e.g. dim=1 for class scores (N, K, H, W))."""
    return _Softmax.apply(x, dim=dim)


def log_softmax(x, dim=None):
    """log(softmax(x)) along ``dim`` by the log-sum-exp trick; ``dim`` must be given."""
    return _LogSoftmax.apply(x, dim=dim)


def dropout(x, p=0.5, training=True, *, seed=None):
    """Inverted dropout: zero each value with probability p, scale the rest by 1 / (1 - p).

    The identity when ``training=False``. ``seed`` (an int or a generator of x's
    backend) fixes the mask; by default the backend's global random state is used.
    """
    return _Dropout.apply(x, p=p, training=training, seed=seed)


def linear(x, weight, bias=None):
    """x @ weight.T + bias, with weight (out_features, in_features) and x (..., in_features)."""
    return _Linear.apply(x, weight, bias)


# ===== end activation =====

# ===== norm (tinyseg/ops/norm.py) =====
from .ops import norm as _norm  # noqa: E402


def _batch_norm_backward(dout, cache):
    # running_mean and running_var (positions 1 and 2) get no gradient
    dx, dweight, dbias = _norm.batch_norm_backward(dout, cache)
    return dx, None, None, dweight, dbias


_BatchNorm = _pair_function(_norm.batch_norm_forward, _batch_norm_backward, "BatchNorm")


def batch_norm(
    x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
):
    """Batch normalisation of (N, C), (N, C, L) or (N, C, H, W) over every axis but 1.

    ``running_mean`` / ``running_var`` are raw arrays or Tensors of shape (C,);
    in training mode their underlying arrays are updated in place (torch's rule,
    unbiased variance). They may be None in training mode.
    """
    return _BatchNorm.apply(
        x, running_mean, running_var, weight, bias, training=training, momentum=momentum, eps=eps
    )


# ===== end norm =====

# ===== loss (tinyseg/ops/loss.py) =====
from .ops import loss as _loss  # noqa: E402


def _const(a):
    """The array inside a Tensor (class weights are constants, never differentiated)."""
    return a.data if isinstance(a, Tensor) else a


_CrossEntropy = _pair_function(
    _loss.cross_entropy_forward, _loss.cross_entropy_backward, "CrossEntropy"
)
_BCEWithLogits = _pair_function(
    _loss.bce_with_logits_forward, _loss.bce_with_logits_backward, "BCEWithLogits"
)
_SigmoidFocalLoss = _pair_function(
    _loss.sigmoid_focal_loss_forward, _loss.sigmoid_focal_loss_backward, "SigmoidFocalLoss"
)
_DiceLoss = _pair_function(_loss.dice_loss_forward, _loss.dice_loss_backward, "DiceLoss")
_SmoothL1Loss = _pair_function(
    _loss.smooth_l1_loss_forward, _loss.smooth_l1_loss_backward, "SmoothL1Loss"
)
_MSELoss = _pair_function(_loss.mse_loss_forward, _loss.mse_loss_backward, "MSELoss")


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Softmax cross-entropy of logits (N, K, ...) against integer labels (N, ...).

    Pixels labelled ``ignore_index`` are left out of the loss and of the mean's
    denominator; with class ``weight`` (K,) the mean divides by the summed
    weights of the counted pixels (PyTorch). All pixels ignored: "mean" is NaN.
    """
    return _CrossEntropy.apply(
        input, target, weight=_const(weight), ignore_index=ignore_index, reduction=reduction
    )


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """Sigmoid + binary cross-entropy in one stable formula; only ``input`` gets a gradient.

    ``weight`` and ``pos_weight`` broadcast against ``input`` (a (K,) pos_weight
    lines up with the last axis, as in PyTorch).
    """
    return _BCEWithLogits.apply(
        input, target, weight=_const(weight), reduction=reduction, pos_weight=_const(pos_weight)
    )


def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision's focal loss: alpha_t * BCE-with-logits * (1 - p_t)^gamma, elementwise.

    ``alpha`` < 0 turns the alpha_t weighting off. Only ``inputs`` gets a gradient.
    """
    return _SigmoidFocalLoss.apply(inputs, targets, alpha=alpha, gamma=gamma, reduction=reduction)


def dice_loss(input, target, eps=1.0, ignore_index=-100, reduction="mean"):
    """Soft batch Dice loss of probabilities (N, K, ...) (already softmaxed, not logits).

    Per class c, with sums over the batch and every pixel,
    ``l_c = 1 - (2 sum(P G) + eps) / (sum(P) + sum(G) + eps)``; "mean" averages
    the K class losses, "none" returns them (K,). ``target`` is an integer label
    map (N, ...) (one-hot encoded, ``ignore_index`` pixels left out) or a float
    one-hot/soft array of input's shape. Only ``input`` gets a gradient.
    """
    return _DiceLoss.apply(input, target, eps=eps, ignore_index=ignore_index, reduction=reduction)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (d = input - target; beta = 0 is L1)."""
    return _SmoothL1Loss.apply(input, target, reduction=reduction, beta=beta)


def mse_loss(input, target, reduction="mean"):
    """(input - target)^2, reduced; both input and target get gradients."""
    return _MSELoss.apply(input, target, reduction=reduction)


# ===== end loss =====

# ===== roi (tinyseg/ops/roi.py) =====
from .ops import roi as _roi  # noqa: E402

_RoIAlign = _pair_function(_roi.roi_align_forward, _roi.roi_align_backward, "RoIAlign")
_RoIPool = _pair_function(_roi.roi_pool_forward, _roi.roi_pool_backward, "RoIPool")


def _boxes_const(boxes):
    """The raw arrays of ``boxes``, (K, 5) or a list of (L, 4): constants, no gradient."""
    return [_const(b) for b in boxes] if isinstance(boxes, (list, tuple)) else _const(boxes)


def roi_align(x, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """RoIAlign as ``torchvision.ops.roi_align``: (N, C, H, W) features -> (K, C, PH, PW).

    :param x: features (N, C, H, W); the only input that gets a gradient.
    :param boxes: (K, 5) [batch_index, x1, y1, x2, y2] or a list of N (L_i, 4)
        xyxy boxes, in image pixels (arrays or Tensors, used as constants).
    :param output_size: int or (PH, PW).
    :param spatial_scale: feature pixels per image pixel, e.g. 1/16.
    :param sampling_ratio: bilinear samples per bin and axis; <= 0 is adaptive.
    :param aligned: shift the boxes by -0.5 pixel so they refer to pixel centres.
    """
    return _RoIAlign.apply(
        x, _boxes_const(boxes), output_size, spatial_scale, sampling_ratio, aligned
    )


def roi_pool(x, boxes, output_size, spatial_scale=1.0):
    """RoIPool as ``torchvision.ops.roi_pool``: the box rounded to the grid, max per bin.

    :param x: features (N, C, H, W); the only input that gets a gradient.
    :param boxes: (K, 5) [batch_index, x1, y1, x2, y2] or a list of N (L_i, 4) boxes.
    :param output_size: int or (PH, PW).
    :param spatial_scale: feature pixels per image pixel, e.g. 1/16.
    """
    return _RoIPool.apply(x, _boxes_const(boxes), output_size, spatial_scale)


# ===== end roi =====
