"""Pooling and unpooling: how a segmentation net shrinks its maps and puts them back.

Resizing (nearest and bilinear) is the other way to grow a map: ``resize.py``.

Notation (lecture style)
------------------------
x      input, shape (N, C, H, W); every op works on each (n, c) plane alone
k      kernel size (kh, kw), s stride (sh, sw), p padding (ph, pw)
dout   upstream gradient dL/d(out), the shape of out
<a, b> sum of a * b over all elements

Output size of a pooling window sliding over the padded input (as in conv2d):

    H_out = floor((H + 2p - k) / s) + 1        (stride defaults to k)

As in PyTorch the padding may be at most half the kernel (2p <= k), so that
every window holds at least one real pixel.

Max pooling
-----------
Unfold the input with the one ``im2col`` of ``conv.py``: x_cols[n, c, t, l] is
tap t = i*kw + j of window l = ho*W_out + wo. Max pooling is the maximum down
each column,

    out[n, c, l] = max_t x_cols[n, c, t, l],   t*[n, c, l] = argmax_t x_cols[n, c, t, l]

The padding must never win, so x is padded with -inf by hand and then unfolded
with pad=0 (im2col itself pads with zeros, which would beat negative inputs).
``argmax`` returns the first maximum, and the taps of a window are in row-major
order, so ties go to the first maximum in row-major order, as in PyTorch. The
winning tap (i, j) sits at row y = ho*sh + i - ph, column z = wo*sw + j - pw of
the unpadded plane; its flat index ``y*W + z`` is what ``return_indices`` gives.

Backward. Away from ties, out[l] = x_cols[t*, l] is locally a copy of one
entry, so d out[l] / d x_cols[t, l] = [t = t*]. The chain rule through the max
is a one-hot column,

    dx_cols[n, c, t, l] = dout[n, c, l] * [t = t*[n, c, l]]

and the chain rule through im2col is its adjoint col2im (see ``conv.py``):

    dx = col2im(dx_cols)

col2im *adds* the columns back. That matters when windows overlap (s < k): one
pixel can be the maximum of several windows and must receive the sum of their
gradients.

Average pooling
---------------
With ``count_include_pad=True`` (PyTorch's default) every window divides by
kh*kw, padded zeros included:

    out[n, c, l] = (1 / (kh kw)) sum_t x_cols[n, c, t, l]

That is a depthwise convolution whose kernel is the constant 1/(kh kw), so it
is linear, and its backward is its transpose: spread each dout evenly over the
window, then fold with col2im,

    dx_cols[n, c, t, l] = dout[n, c, l] / (kh kw),     dx = col2im(dx_cols)

Global average pooling is the special case k = (H, W): out[n, c] is the mean of
the plane, and dx[n, c, h, w] = dout[n, c] / (H W).

Unpooling: max unpooling (SegNet) and bed of nails
--------------------------------------------------
Max unpooling takes pooled values x (N, C, H, W) and the pooling indices, and
puts each value back where its maximum came from, zeros elsewhere:

    out[n, c].flat[indices[n, c, h, w]] = x[n, c, h, w]

The output size defaults to (H - 1)s - 2p + k. That is the size the pooling
came from only when s divides H_in + 2p - k; otherwise the pooling's floor
dropped the last rows, and the default is smaller (a 5x5 map pooled with
k = s = 2 is 2x2 and unpools to 4x4): pass ``output_size`` to get 5x5 back.

SegNet keeps the encoder's indices for its decoder so that the boundaries the
encoder found are put back in the right place; plain upsampling would smear
them. With non-overlapping pooling (s = k, SegNet's case) no index repeats.
Where windows overlap (k > s) one pixel can be the maximum of two windows, so
two entries of x name it. As PyTorch, the pixel is written, not summed: the
last entry in row-major order wins (for max-pooling indices both entries hold
the same value, so the pixel gets that value once; a sum would double it).

Backward, derived. Let last(q) be the entry that wins pixel q. Then
out[q] = x[last(q)], so d out[q] / d x[j] = [j = last(q)]: an entry that was
overwritten does not reach the output at all, and its gradient is 0,

    dx[n, c, h, w] = dout[n, c].flat[indices[n, c, h, w]] * [entry (h, w) won its pixel]

a gather, masked (gradcheck, which perturbs one entry at a time, agrees).
PyTorch's backward omits the mask and hands dout to every entry, so after
max_pool2d the duplicated pixel receives dout twice; tinyseg's mask gives
the composite unpool(max_pool(x)) its true gradient, dout once. Without
repeated indices the mask is all ones and the two agree.

"Bed of nails" unpooling needs no indices: each value goes to the top-left
corner of its s x s block,

    out[n, c, h*sh, w*sw] = x[n, c, h, w], zeros elsewhere;   dx = dout[:, :, ::sh, ::sw]

Shapes
------
max_pool2d / avg_pool2d:  x (N, C, H, W) -> out (N, C, H_out, W_out)
max_pool2d indices:       int64, (N, C, H_out, W_out), values in [0, H*W)
global_avg_pool2d:        (N, C, H, W) -> (N, C, 1, 1)
max_unpool2d:             x, indices (N, C, H, W) -> (N, C, H_out, W_out)
bed_of_nails_unpool2d:    (N, C, H, W) -> (N, C, H*sh, W*sw)
"""

from __future__ import annotations

from typing import NamedTuple

from ..backend import scatter_add, xp_of
from ..validate import check_float, check_ndim, check_same_shape, pair
from .conv import col2im, conv_output_size, im2col

# ----- caches: what each backward needs from its forward ---------------------------


class MaxPool2dCache(NamedTuple):
    arg: object  # int (N, C, H_out*W_out): the winning tap t = i*kw + j of each window
    x_shape: tuple
    kernel_size: tuple  # (kh, kw)
    stride: tuple  # (sh, sw)
    pad: tuple  # (ph, pw)


class AvgPool2dCache(NamedTuple):
    x_shape: tuple
    kernel_size: tuple
    stride: tuple
    pad: tuple


# ----- argument checks -------------------------------------------------------------


def _pool_geometry(x_shape, kernel_size, stride, pad):
    """(kh, kw), (sh, sw), (ph, pw), (H_out, W_out) of a pooling window, with clear errors."""
    kh, kw = pair(kernel_size, "kernel_size", minimum=1)
    sh, sw = (kh, kw) if stride is None else pair(stride, "stride", minimum=1)
    ph, pw = pair(pad, "padding")
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError(
            f"padding must be at most half of kernel_size {(kh, kw)}, got padding {(ph, pw)}"
        )
    _, _, H, W = x_shape
    H_out = conv_output_size(H, kh, sh, ph)
    W_out = conv_output_size(W, kw, sw, pw)
    if H_out <= 0 or W_out <= 0:
        raise ValueError(
            f"kernel_size {(kh, kw)} does not fit the input {H}x{W} padded by {(ph, pw)}: "
            f"the output would be {H_out}x{W_out}"
        )
    return (kh, kw), (sh, sw), (ph, pw), (H_out, W_out)


def check_pool_input(x):
    check_ndim(x, 4, "x", "(N, C, H, W)")
    check_float(x, "x")


def plane_scatter_add(shape, flat_index, values):
    """zeros(shape) with ``values`` (N, C, L) added at ``flat_index`` (broadcasts to (N, C, L)).

    ``flat_index`` is a position h*W + w inside each (n, c) plane of
    ``shape = (N, C, H, W)``; repeated positions add (``backend.scatter_add``).
    The nearest resize's backward and max unpooling both scatter into planes.
    """
    xp = xp_of(values)
    N, C, H, W = shape
    plane_start = (xp.arange(N * C, dtype=xp.int64) * (H * W)).reshape(N, C, 1)
    out = xp.zeros(shape, dtype=values.dtype)
    scatter_add(out, plane_start + flat_index, values)
    return out




# ----- max pooling -----------------------------------------------------------------


def max_pool2d_forward(x, kernel_size, stride=None, pad=0):
    """Max pooling with argmax indices, via im2col on the -inf padded input.

    The "out" of this op is the pair ``(out, indices)``, so that
    ``F.max_pool2d(..., return_indices=True)`` can hand both back from one
    Function: ``out`` carries the gradient, the integer ``indices`` none.

    :param x: input (N, C, H, W), floating point.
    :param kernel_size: int or (kh, kw).
    :param stride: int or (sh, sw); None means kernel_size.
    :param pad: int or (ph, pw), at most half the kernel; padding counts as -inf.
    :returns: ``((out, indices), cache)``; out (N, C, H_out, W_out) of x's dtype,
        indices int64 of the same shape, flat ``h*W + w`` in each unpadded plane.
    """
    check_pool_input(x)
    xp = xp_of(x)
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw), (H_out, W_out) = _pool_geometry(x.shape, kernel_size, stride, pad)
    # BEGIN SOLUTION max_pool2d_forward
    x_pad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-xp.inf)
    x_cols = im2col(x_pad, kh, kw, (sh, sw), 0).reshape(N, C, kh * kw, H_out * W_out)
    arg = x_cols.argmax(axis=2)  # winning tap t = i*kw + j; the first one on ties
    out = xp.take_along_axis(x_cols, arg[:, :, None, :], axis=2)[:, :, 0, :]
    i, j = arg // kw, arg % kw
    rows = xp.arange(H_out).repeat(W_out) * sh + i - ph  # y of the winner, unpadded
    cols = xp.tile(xp.arange(W_out), H_out) * sw + j - pw
    indices = (rows * W + cols).astype(xp.int64)
    # END SOLUTION
    out = out.reshape(N, C, H_out, W_out)
    indices = indices.reshape(N, C, H_out, W_out)
    cache = MaxPool2dCache(arg, x.shape, (kh, kw), (sh, sw), (ph, pw))
    return (out, indices), cache


def max_pool2d_backward(dout, cache):
    """dx: each dout goes to its window's argmax; overlapping windows add (col2im).

    :param dout: (N, C, H_out, W_out), the gradient of ``out`` (not of indices).
    :param cache: the ``MaxPool2dCache`` of ``max_pool2d_forward``.
    :returns: dx (N, C, H, W).
    """
    arg, (kh, kw) = cache.arg, cache.kernel_size
    x_shape, stride, pad = cache.x_shape, cache.stride, cache.pad
    xp = xp_of(dout)
    N, C, L = arg.shape
    # BEGIN SOLUTION max_pool2d_backward
    taps = xp.arange(kh * kw).reshape(1, 1, kh * kw, 1)
    one_hot = taps == arg[:, :, None, :]  # (N, C, kh*kw, L): where each max came from
    dx_cols = one_hot * dout.reshape(N, C, 1, L)
    dx = col2im(dx_cols.reshape(N, C * kh * kw, L), x_shape, kh, kw, stride, pad)
    # END SOLUTION
    return dx


def max_pool2d_naive(x, kernel_size, stride=None, pad=0):
    """Max pooling by loops over every output pixel and window tap; returns (out, indices)."""
    check_pool_input(x)
    xp = xp_of(x)
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw), (H_out, W_out) = _pool_geometry(x.shape, kernel_size, stride, pad)
    out = xp.zeros((N, C, H_out, W_out), dtype=x.dtype)
    indices = xp.zeros((N, C, H_out, W_out), dtype=xp.int64)
    for n in range(N):
        for c in range(C):
            for ho in range(H_out):
                for wo in range(W_out):
                    best, where = -float("inf"), -1
                    for i in range(kh):
                        for j in range(kw):
                            y, z = ho * sh + i - ph, wo * sw + j - pw
                            if 0 <= y < H and 0 <= z < W:
                                value = x[n, c, y, z].item()
                                if value > best:  # strict: the first maximum wins ties
                                    best, where = value, y * W + z
                    out[n, c, ho, wo] = best
                    indices[n, c, ho, wo] = where
    return out, indices


# ----- average pooling -------------------------------------------------------------


def avg_pool2d_forward(x, kernel_size, stride=None, pad=0):
    """Average pooling (padding zeros count, as PyTorch's count_include_pad=True).

    :param x: input (N, C, H, W), floating point.
    :param kernel_size: int or (kh, kw).
    :param stride: int or (sh, sw); None means kernel_size.
    :param pad: int or (ph, pw), at most half the kernel.
    :returns: ``(out, cache)``, out (N, C, H_out, W_out).
    """
    check_pool_input(x)
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw), (H_out, W_out) = _pool_geometry(x.shape, kernel_size, stride, pad)
    # BEGIN SOLUTION avg_pool2d_forward
    x_cols = im2col(x, kh, kw, (sh, sw), (ph, pw)).reshape(N, C, kh * kw, H_out * W_out)
    out = x_cols.mean(axis=2).reshape(N, C, H_out, W_out)
    # END SOLUTION
    cache = AvgPool2dCache(x.shape, (kh, kw), (sh, sw), (ph, pw))
    return out, cache


def avg_pool2d_backward(dout, cache):
    """dx: each dout spread evenly, 1/(kh kw), over its window; overlaps add (col2im).

    :param dout: (N, C, H_out, W_out).
    :param cache: the ``AvgPool2dCache`` of ``avg_pool2d_forward``.
    :returns: dx (N, C, H, W).
    """
    x_shape, (kh, kw) = cache.x_shape, cache.kernel_size
    stride, pad = cache.stride, cache.pad
    xp = xp_of(dout)
    N, C = x_shape[:2]
    L = dout.shape[2] * dout.shape[3]
    # BEGIN SOLUTION avg_pool2d_backward
    share = dout.reshape(N, C, 1, L) / (kh * kw)
    dx_cols = xp.broadcast_to(share, (N, C, kh * kw, L)).reshape(N, C * kh * kw, L)
    dx = col2im(dx_cols, x_shape, kh, kw, stride, pad)
    # END SOLUTION
    return dx


def avg_pool2d_naive(x, kernel_size, stride=None, pad=0):
    """Average pooling by loops; padded positions add zero but count in kh*kw."""
    check_pool_input(x)
    xp = xp_of(x)
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw), (H_out, W_out) = _pool_geometry(x.shape, kernel_size, stride, pad)
    out = xp.zeros((N, C, H_out, W_out), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for ho in range(H_out):
                for wo in range(W_out):
                    total = 0.0
                    for i in range(kh):
                        for j in range(kw):
                            y, z = ho * sh + i - ph, wo * sw + j - pw
                            if 0 <= y < H and 0 <= z < W:
                                total += x[n, c, y, z].item()
                    out[n, c, ho, wo] = total / (kh * kw)
    return out


def global_avg_pool2d_forward(x):
    """Mean over each plane, keeping the axes: (N, C, H, W) -> (N, C, 1, 1).

    :param x: input (N, C, H, W), floating point.
    :returns: ``(out, cache)``.
    """
    check_pool_input(x)
    return x.mean(axis=(2, 3), keepdims=True), x.shape


def global_avg_pool2d_backward(dout, cache):
    """dx[n, c, h, w] = dout[n, c, 0, 0] / (H W).

    :param dout: (N, C, 1, 1).
    :param cache: x's shape.
    :returns: dx (N, C, H, W).
    """
    x_shape = cache
    xp = xp_of(dout)
    return xp.broadcast_to(dout / (x_shape[2] * x_shape[3]), x_shape).copy()


def global_avg_pool2d_naive(x):
    """The mean of each plane, by loops."""
    check_pool_input(x)
    xp = xp_of(x)
    N, C, H, W = x.shape
    out = xp.zeros((N, C, 1, 1), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            total = 0.0
            for h in range(H):
                for w in range(W):
                    total += x[n, c, h, w].item()
            out[n, c, 0, 0] = total / (H * W)
    return out


# ----- max unpooling (SegNet) ------------------------------------------------------


def _unpool_size(x_shape, kernel_size, stride, pad, output_size):
    """Default (H-1)s - 2p + k per axis; output_size (2 or 4 numbers) overrides it."""
    kh, kw = pair(kernel_size, "kernel_size", minimum=1)
    sh, sw = (kh, kw) if stride is None else pair(stride, "stride", minimum=1)
    ph, pw = pair(pad, "padding")
    H, W = x_shape[2:]
    default = ((H - 1) * sh - 2 * ph + kh, (W - 1) * sw - 2 * pw + kw)
    if output_size is None:
        size = default
    else:
        given = tuple(output_size) if isinstance(output_size, (tuple, list)) else None
        if given is None or len(given) not in (2, 4):
            raise ValueError(f"output_size must be (H, W) or (N, C, H, W), got {output_size!r}")
        size = pair(given[-2:], "output_size", minimum=1)
        for axis, s in ((0, sh), (1, sw)):
            # as PyTorch: only sizes the pooling could have come from
            if not default[axis] - s < size[axis] < default[axis] + s:
                raise ValueError(
                    f"output_size {tuple(output_size)} is invalid: axis {axis} must lie strictly "
                    f"between {default[axis] - s} and {default[axis] + s}"
                )
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(
            f"kernel_size {(kh, kw)}, stride {(sh, sw)}, padding {(ph, pw)} give an empty "
            f"output {size} for an input {H}x{W}"
        )
    return size


def _check_unpool_inputs(x, indices, kernel_size, stride, pad, output_size):
    check_pool_input(x)
    check_ndim(indices, 4, "indices", "(N, C, H, W)")
    check_same_shape(x, indices, "x", "indices")
    if getattr(indices.dtype, "kind", None) not in "iu":
        raise TypeError(f"indices must be an integer array, got dtype {indices.dtype}")
    H_out, W_out = _unpool_size(x.shape, kernel_size, stride, pad, output_size)
    # One small device-to-host read: a bad index would land in a neighbouring plane.
    if indices.size and bool(((indices < 0) | (indices >= H_out * W_out)).any()):
        raise ValueError(
            f"indices must lie in [0, {H_out * W_out}) for an output of {H_out}x{W_out}; "
            f"pass the indices of max_pool2d with the same kernel_size, stride, padding"
        )
    return H_out, W_out


class MaxUnpool2dCache(NamedTuple):
    indices: object  # int64 (N, C, H, W)
    won: object  # bool (N, C, H, W): this entry is the last write to its pixel
    x_shape: tuple


def last_writer(flat_index, plane_size: int):
    """Bool mask (N, C, L): entry l is the last, in order, of the entries naming its pixel.

    ``flat_index`` (N, C, L) positions in planes of ``plane_size``. Sorting the
    key (pixel, l) brings the entries of one pixel together in their order; the
    last of each run wins. (A scatter with repeated indices has no defined
    order on a GPU, so the order is made explicit.)
    """
    xp = xp_of(flat_index)
    N, C, L = flat_index.shape
    plane = (xp.arange(N * C, dtype=xp.int64) * plane_size).reshape(N, C, 1)
    pixel = (plane + flat_index).reshape(-1)
    order = xp.argsort(pixel * L + xp.arange(pixel.size, dtype=xp.int64) % L)
    sorted_pixel = pixel[order]
    last_of_run = xp.ones(pixel.shape, dtype=bool)
    last_of_run[:-1] = sorted_pixel[:-1] != sorted_pixel[1:]
    won = xp.zeros(pixel.shape, dtype=bool)
    won[order] = last_of_run
    return won.reshape(N, C, L)


def max_unpool2d_forward(x, indices, kernel_size, stride=None, pad=0, output_size=None):
    """Scatter each value to its pooling index in a zero plane (SegNet's decoder).

    :param x: pooled values (N, C, H, W), floating point.
    :param indices: integer (N, C, H, W), flat ``h*W_out + w`` indices from max_pool2d.
    :param kernel_size: int or (kh, kw) of that pooling.
    :param stride: int or (sh, sw); None means kernel_size.
    :param pad: int or (ph, pw) of that pooling.
    :param output_size: (H_out, W_out) or (N, C, H_out, W_out); None means
        (H-1)*stride - 2*pad + kernel_size. A repeated index is written once:
        the last entry in row-major order wins, as in PyTorch.
    :returns: ``(out, cache)``, out (N, C, H_out, W_out).
    """
    H_out, W_out = _check_unpool_inputs(x, indices, kernel_size, stride, pad, output_size)
    xp = xp_of(x, indices)
    indices = indices.astype(xp.int64, copy=False)  # uint + int would give float positions
    N, C = x.shape[:2]
    flat = indices.reshape(N, C, -1)
    won = last_writer(flat, H_out * W_out).reshape(x.shape)
    # BEGIN SOLUTION max_unpool2d_forward
    # the winners name distinct pixels, so adding them is writing them
    kept = xp.where(won, x, 0).reshape(N, C, -1)
    out = plane_scatter_add((N, C, H_out, W_out), flat, kept)
    # END SOLUTION
    return out, MaxUnpool2dCache(indices, won, x.shape)


def max_unpool2d_backward(dout, cache):
    """dx: dout read back at each index (a gather), 0 for an entry another one overwrote.

    :param dout: (N, C, H_out, W_out).
    :param cache: from ``max_unpool2d_forward``.
    :returns: dx (N, C, H, W); the indices get no gradient.
    """
    indices, won, x_shape = cache
    xp = xp_of(dout)
    N, C = x_shape[:2]
    # BEGIN SOLUTION max_unpool2d_backward
    dx = xp.take_along_axis(dout.reshape(N, C, -1), indices.reshape(N, C, -1), axis=2)
    dx = xp.where(won, dx.reshape(x_shape), 0)  # an overwritten entry reaches nothing
    # END SOLUTION
    return dx


def max_unpool2d_naive(x, indices, kernel_size, stride=None, pad=0, output_size=None):
    """Max unpooling by a loop over the input pixels."""
    H_out, W_out = _check_unpool_inputs(x, indices, kernel_size, stride, pad, output_size)
    xp = xp_of(x, indices)
    N, C, H, W = x.shape
    out = xp.zeros((N, C, H_out, W_out), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    where = int(indices[n, c, h, w])  # row-major: the last write wins
                    out[n, c, where // W_out, where % W_out] = x[n, c, h, w]
    return out


# ----- bed-of-nails unpooling ------------------------------------------------------


def bed_of_nails_unpool2d_forward(x, stride):
    """Each value to the top-left corner of an sh x sw block of zeros.

    :param x: input (N, C, H, W), floating point.
    :param stride: int or (sh, sw), the block size.
    :returns: ``(out, cache)``, out (N, C, H*sh, W*sw).
    """
    check_pool_input(x)
    sh, sw = pair(stride, "stride", minimum=1)
    xp = xp_of(x)
    N, C, H, W = x.shape
    out = xp.zeros((N, C, H * sh, W * sw), dtype=x.dtype)
    out[:, :, ::sh, ::sw] = x
    return out, (sh, sw)


def bed_of_nails_unpool2d_backward(dout, cache):
    """dx = dout at the nails, dout[:, :, ::sh, ::sw].

    :param dout: (N, C, H*sh, W*sw).
    :param cache: the stride pair.
    :returns: dx (N, C, H, W).
    """
    sh, sw = cache
    return dout[:, :, ::sh, ::sw].copy()


def bed_of_nails_unpool2d_naive(x, stride):
    """Bed-of-nails unpooling by a loop over the input pixels."""
    check_pool_input(x)
    sh, sw = pair(stride, "stride", minimum=1)
    xp = xp_of(x)
    N, C, H, W = x.shape
    out = xp.zeros((N, C, H * sh, W * sw), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    out[n, c, h * sh, w * sw] = x[n, c, h, w]
    return out
