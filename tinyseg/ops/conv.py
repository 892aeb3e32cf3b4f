"""Convolution as matrix multiplication: im2col and col2im.

Notation (lecture style)
------------------------
x      input,  shape (N, C, H, W)
kh, kw kernel height and width
s      stride, p padding, d dilation (the atrous rate; d = 1 is ordinary conv)

Output size
-----------
A kernel of size k with dilation d spans d(k-1)+1 input pixels. Sliding it over
the padded input (size H + 2p) in steps of s gives

    H_out = floor((H + 2p - d(k-1) - 1) / s) + 1

im2col
------
im2col copies every receptive field into a column. For output position (ho, wo)
and kernel tap (c, i, j) it reads

    x_cols[n, (c, i, j), (ho, wo)] = x_pad[n, c, ho*s + i*d, wo*s + j*d]

so ``x_cols`` has shape (N, C*kh*kw, H_out*W_out). It is built with one strided
slice per kernel tap (kh*kw slices), never with a loop over pixels:

    x_cols[:, :, i, j] = x_pad[:, :, i*d : i*d + s*(H_out-1)+1 : s,
                                     j*d : j*d + s*(W_out-1)+1 : s]

col2im
------
col2im is the *adjoint* (transpose) of im2col, not its inverse. im2col is a
linear map that copies each input pixel into every column whose window covers
it; its transpose therefore *adds* every column entry back onto the pixel it
came from:

    x[n, c, ho*s + i*d, wo*s + j*d] += x_cols[n, (c, i, j), (ho, wo)]

The same kh*kw strided slices as im2col, with ``+=`` instead of ``=``. Where
windows overlap (k > s), a pixel receives several contributions: that is what
the backward pass of a convolution needs, and it is why col2im(im2col(x)) is
not x. The adjoint identity, for any x and y of the right shapes, is

    <im2col(x), y> = <x, col2im(y)>

and the tests check exactly that.

The rest of this module (conv2d, conv_transpose2d, their naive loops) builds on
these two functions; every convolution flavour in tinyseg goes through them.
"""

from __future__ import annotations

from ..backend import xp_of
from .validate import check_ndim, pair


def conv_output_size(size: int, kernel: int, stride: int = 1, pad: int = 0, dilation: int = 1) -> int:
    """H_out = floor((H + 2p - d(k-1) - 1) / s) + 1 for one spatial axis."""
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def _geometry(x_shape, kh, kw, stride, pad, dilation):
    """Normalise the arguments and compute (H_out, W_out), with clear errors."""
    sh, sw = pair(stride, "stride", minimum=1)
    ph, pw = pair(pad, "padding")
    dh, dw = pair(dilation, "dilation", minimum=1)
    _, _, H, W = x_shape
    H_out = conv_output_size(H, kh, sh, ph, dh)
    W_out = conv_output_size(W, kw, sw, pw, dw)
    if H_out <= 0 or W_out <= 0:
        raise ValueError(
            f"kernel {kh}x{kw} with dilation {(dh, dw)} does not fit the input {H}x{W} "
            f"padded by {(ph, pw)}: the output would be {H_out}x{W_out}"
        )
    return (sh, sw), (ph, pw), (dh, dw), (H_out, W_out)


def im2col(x, kh: int, kw: int, stride=1, pad=0, dilation=1):
    """Unfold (N, C, H, W) into x_cols of shape (N, C*kh*kw, H_out*W_out).

    Row (c, i, j) of x_cols holds kernel tap (i, j) of channel c at every output
    position. ``stride``, ``pad`` and ``dilation`` are ints or (h, w) pairs.
    """
    check_ndim(x, 4, "x", "(N, C, H, W)")
    xp = xp_of(x)
    N, C, H, W = x.shape
    (sh, sw), (ph, pw), (dh, dw), (H_out, W_out) = _geometry(x.shape, kh, kw, stride, pad, dilation)
    x_pad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
    x_cols = xp.empty((N, C, kh, kw, H_out, W_out), dtype=x.dtype)
    # BEGIN SOLUTION im2col
    for i in range(kh):
        top = i * dh
        for j in range(kw):
            left = j * dw
            x_cols[:, :, i, j] = x_pad[
                :, :, top : top + sh * (H_out - 1) + 1 : sh, left : left + sw * (W_out - 1) + 1 : sw
            ]
    # END SOLUTION
    return x_cols.reshape(N, C * kh * kw, H_out * W_out)


def col2im(x_cols, x_shape, kh: int, kw: int, stride=1, pad=0, dilation=1):
    """The adjoint of im2col: fold (N, C*kh*kw, H_out*W_out) back to x_shape, summing overlaps."""
    xp = xp_of(x_cols)
    if len(x_shape) != 4:
        raise ValueError(f"x_shape must be (N, C, H, W), got {x_shape}")
    N, C, H, W = x_shape
    (sh, sw), (ph, pw), (dh, dw), (H_out, W_out) = _geometry(x_shape, kh, kw, stride, pad, dilation)
    expected = (N, C * kh * kw, H_out * W_out)
    if tuple(x_cols.shape) != expected:
        raise ValueError(f"x_cols must have shape {expected} for x_shape {tuple(x_shape)}, got {x_cols.shape}")
    x_cols = x_cols.reshape(N, C, kh, kw, H_out, W_out)
    x_pad = xp.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=x_cols.dtype)
    # BEGIN SOLUTION col2im
    for i in range(kh):
        top = i * dh
        for j in range(kw):
            left = j * dw
            x_pad[
                :, :, top : top + sh * (H_out - 1) + 1 : sh, left : left + sw * (W_out - 1) + 1 : sw
            ] += x_cols[:, :, i, j]
    # END SOLUTION
    return x_pad[:, :, ph : ph + H, pw : pw + W]


def im2col_naive(x, kh: int, kw: int, stride=1, pad=0, dilation=1):
    """im2col by the definition: one Python loop iteration per (n, c, i, j, ho, wo)."""
    check_ndim(x, 4, "x", "(N, C, H, W)")
    xp = xp_of(x)
    N, C, H, W = x.shape
    (sh, sw), (ph, pw), (dh, dw), (H_out, W_out) = _geometry(x.shape, kh, kw, stride, pad, dilation)
    x_cols = xp.zeros((N, C * kh * kw, H_out * W_out), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    row = (c * kh + i) * kw + j
                    for ho in range(H_out):
                        for wo in range(W_out):
                            y = ho * sh + i * dh - ph  # position in the unpadded input
                            z = wo * sw + j * dw - pw
                            if 0 <= y < H and 0 <= z < W:
                                x_cols[n, row, ho * W_out + wo] = x[n, c, y, z]
    return x_cols
