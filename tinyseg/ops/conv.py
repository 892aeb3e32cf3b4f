"""Convolution as matrix multiplication: im2col, col2im, conv2d, conv_transpose2d.

This module tells the whole story of convolution in tinyseg: how a sliding
window becomes one matrix product (im2col), why the backward pass needs the
transpose of that unfolding (col2im), how conv2d's forward and backward are
three matrix products, and why the transposed ("up-") convolution is nothing
but the backward pass of conv2d run forwards.

Notation (lecture style)
------------------------
x        input, shape (N, C_in, H, W)
w        weight, shape (C_out, C_in/G, kh, kw) for conv2d
b        bias, shape (C_out,)
kh, kw   kernel height and width
s        stride, p padding, d dilation (the atrous rate; d = 1 is ordinary conv)
G        groups: the channels split into G independent convolutions
dout     upstream gradient dL/d(out), the shape of out
<a, b>   sum of a * b over all elements (the Frobenius inner product)

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

conv2d: the forward pass
------------------------
By definition (cross-correlation, as in every deep-learning library), with
C_g = C_in/G input channels per group and g = co // (C_out/G) the group of
output channel co:

    out[n, co, ho, wo] = b[co] + sum_{c < C_g, i < kh, j < kw}
                         w[co, c, i, j] * x_pad[n, g*C_g + c, ho*s + i*d, wo*s + j*d]

(``conv2d_naive`` is this formula as seven loops.) The sum runs over exactly
one column of x_cols, so with L = H_out*W_out and K = C_g*kh*kw it is a matrix
product per image n and group g:

    W_g = w[group g].reshape(C_out/G, K)                  (C_out/G, K)
    X   = im2col(x)[n, group g rows]                      (K, L)
    out[n, group g] = W_g @ X + b                         (C_out/G, L)

In code the weight is viewed as (G, C_out/G, K) and x_cols as (N, G, K, L);
one batched matmul does all N*G products and writes (N, G, C_out/G, L), which
*is* out's memory layout (N, C_out, H_out, W_out): no transpose, no copy.
Cost: 2 * N * C_out * K * L floating-point operations.

conv2d: the backward pass, derived
----------------------------------
Take one image and one group; write Y = W X + b 1^T with X = x_cols[n] and
dY = dout[n] (both (., L)). The scalar loss changes, to first order, by

    dL = <dY, dW X> + <dY, W dX> + <dY, db 1^T>

Move each perturbation to stand alone with the trace rule
<A, B C> = <A C^T, B> = <B^T A, C>:

    <dY, dW X>    = <dY X^T, dW>      so  dL/dW     = dY X^T       (C_out/G, K)
    <dY, W dX>    = <W^T dY, dX>      so  dL/dX     = W^T dY       (K, L)
    <dY, db 1^T>  = <dY 1, db>        so  dL/db     = dY 1         (C_out,)

The weight is shared by every image, so its gradient sums over n; the bias is
shared by every position and image, so db = dout.sum over (n, ho, wo):

    dw     = sum_n dout_mat[n] @ x_cols[n]^T    (one batched matmul, then a sum over N)
    dx_cols = w_mat^T @ dout_mat                 (N, G, K, L)
    db     = dout.sum(axis=(0, 2, 3))

Last step: x_cols = im2col(x) is linear in x, so the chain rule through it is
its transpose, <dx_cols, im2col(dx)> = <col2im(dx_cols), dx>:

    dx = col2im(dx_cols)            (``conv_data_grad``)

Overlapping windows (k > s) send a pixel's gradient from every window that
read it, and col2im's ``+=`` sums them. The forward keeps x_cols for the
backward, trading memory (kh*kw times the input) for one less im2col.

Dilation and groups
-------------------
Dilation d (atrous convolution, DeepLab) spaces the kh*kw taps d pixels apart:
the receptive field grows to d(k-1)+1 with no more weights and no more FLOPs.
A 3x3 kernel with rate d and padding d keeps the size at stride 1. Dilation
lives entirely in im2col's slices (``i*d``), so conv2d's matrices do not change.

Groups G split the input and output channels into G blocks; block g of the
output sees only block g of the input. The weight therefore holds C_in/G input
channels, and the matrix W is block-diagonal: the code keeps only its G
diagonal blocks, as the leading G axis of the batched matmul. G = C_in = C_out
is the depthwise convolution of MobileNet.

conv_transpose2d: the adjoint of conv2d
---------------------------------------
For a fixed weight w, conv2d without bias is a linear map x -> A x from
(N, C, H_big, W_big) to (N, C', H, W). Its transpose A^T goes back the other
way: small map in, big map out. That is the transposed convolution, the
learned upsampling of FCN and U-Net:

    conv_transpose2d(x, w) = A^T x + b,   so   <conv2d(u, w), y> = <u, conv_transpose2d(y, w)>

for every u and y (the tests check this identity). A^T is exactly what
conv2d's backward applies to dout to get dx, so the forward of conv_transpose2d
is the data gradient of conv2d, run forwards. In code this is literally one
function, ``conv_data_grad``, called by conv2d_backward for dx and by
conv_transpose2d_forward for out:

    cols = w_mat^T @ x_mat           (N, G, C_out/G*kh*kw, H*W)
    out  = col2im(cols) + b          (N, C_out, H_out, W_out)

Picture it as a scatter (``conv_transpose2d_naive``): each input pixel paints
a copy of the kernel, scaled by its value, into the output, the copies placed
s pixels apart and summed where they overlap. With s = 2 and k = 2 the copies
tile the output: 2x upsampling.

Weight layout. The same array w serves conv2d (C_out', C_in'/G, kh, kw) and its
adjoint; seen from the transposed side the first axis is the *input* channels.
Hence conv_transpose2d's weight is (C_in, C_out/G, kh, kw), as in PyTorch.

Output size. Inverting H = floor((H_out + 2p - d(k-1) - 1)/s) + 1 gives

    H_out = (H-1)*s - 2p + d(k-1) + output_padding + 1

With s > 1 the floor hides s different sizes H_out that all conv down to H;
``output_padding`` in [0, s) picks one (typically so the up-path matches a
skip connection). PyTorch also accepts output_padding < d; then the conv of
the H_out map has floor(output_padding/s) extra outputs, and we treat x as
having that many zero rows (columns) at the bottom (right): they paint nothing,
and their gradient is dropped. output_padding adds no values of its own: the
extra rows hold what col2im places there (or zeros) plus the bias.

Backward, derived. With C = W^T X (per image and group) and out = col2im(C) + b:

    dC = im2col(dout)                  (the adjoint of col2im is im2col)
    dX = W dC                          (from <dC, W^T dX> = <W dC, dX>)
    dW = sum_n X[n] dC[n]^T            (from <dC, dW^T X> = <X dC^T, dW>)
    db = dout.sum(axis=(0, 2, 3))

so dx is conv2d(dout, w): the backward of the transposed convolution is an
ordinary convolution, as adjointness promises.

Shapes, all functions
---------------------
conv2d_forward            x (N, C_in, H, W), w (C_out, C_in/G, kh, kw), b (C_out,)
                          -> out (N, C_out, H_out, W_out)
conv_transpose2d_forward  x (N, C_in, H, W), w (C_in, C_out/G, kh, kw), b (C_out,)
                          -> out (N, C_out, H_out, W_out)
conv_data_grad            dout (N, C_out, H_out, W_out), w, x_shape -> dx (x_shape)
Each ``*_forward`` returns ``(out, cache)``, the cache a NamedTuple
(``Conv2dCache``, ``ConvTranspose2dCache``). Each
``*_backward(dout, cache, needs_input_grad=(True, True, True))`` returns
(dx, dw, db): None for a gradient the flags say nobody needs, and db None when
there was no bias. Every function returns the dtype of x (float32 or float64) and
runs on NumPy or CuPy alike.
"""

from __future__ import annotations

from typing import NamedTuple

from ..backend import xp_of
from ..validate import check_float, check_ndim, pair


def conv_output_size(
    size: int, kernel: int, stride: int = 1, pad: int = 0, dilation: int = 1
) -> int:
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
        raise ValueError(
            f"x_cols must have shape {expected} for x_shape {tuple(x_shape)}, got {x_cols.shape}"
        )
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


# ----- conv2d -------------------------------------------------------------------

# conv2d_backward makes the columns of dx a few images at a time, about this many bytes:
# small enough to stay in a CPU's last-level cache until col2im folds them.
_CHUNK_BYTES = 4 << 20


def _check_groups(groups) -> int:
    if isinstance(groups, bool) or not hasattr(groups, "__index__") or int(groups) < 1:
        raise ValueError(f"groups must be an int >= 1, got {groups!r}")
    return int(groups)


def _check_conv_inputs(x, w, b, groups, transposed):
    """Validate x, w, b and groups; return (G, C_out). Every error names its argument."""
    G = _check_groups(groups)
    check_ndim(x, 4, "x", "(N, C_in, H, W)")
    check_float(x, "x")
    layout = "(C_in, C_out/groups, kh, kw)" if transposed else "(C_out, C_in/groups, kh, kw)"
    check_ndim(w, 4, "weight w", layout)
    if w.dtype != x.dtype:
        raise TypeError(f"weight w has dtype {w.dtype} but x has {x.dtype}; cast one of them")
    C_in = x.shape[1]
    if C_in % G:
        raise ValueError(f"groups={G} must divide the input channels C_in={C_in} of x")
    if transposed:
        if w.shape[0] != C_in:
            raise ValueError(
                f"weight w must have shape {layout} with C_in={C_in} (x.shape[1]), got {w.shape}"
            )
        C_out = w.shape[1] * G
    else:
        C_out = w.shape[0]
        if C_out % G:
            raise ValueError(f"groups={G} must divide the output channels C_out={C_out} of w")
        if w.shape[1] * G != C_in:
            raise ValueError(
                f"weight w must have shape {layout}: x has C_in={C_in}, so with groups={G} "
                f"w.shape[1] must be {C_in // G}, got {w.shape}"
            )
    if b is not None:
        check_ndim(b, 1, "bias b", f"(C_out,) = ({C_out},)")
        if b.shape[0] != C_out:
            raise ValueError(f"bias b must have shape (C_out,) = ({C_out},), got {b.shape}")
        if b.dtype != x.dtype:
            raise TypeError(f"bias b has dtype {b.dtype} but x has {x.dtype}; cast one of them")
    return G, C_out


class Conv2dCache(NamedTuple):
    """What conv2d_forward keeps for conv2d_backward."""

    x_cols: object  # im2col(x), (N, C_in*kh*kw, H_out*W_out)
    w: object
    has_bias: bool
    x_shape: tuple
    stride: tuple
    pad: tuple
    dilation: tuple
    groups: int


def conv2d_forward(x, w, b=None, stride=1, pad=0, dilation=1, groups=1):
    """out = conv2d(x, w) + b by im2col and one batched matrix product.

    :param x: input, (N, C_in, H, W), float32 or float64
    :param w: weight, (C_out, C_in/groups, kh, kw), the dtype of x
    :param b: bias, (C_out,), or None
    :param stride: int or (sh, sw), >= 1
    :param pad: zero padding, int or (ph, pw), >= 0
    :param dilation: spacing of the kernel taps, int or (dh, dw), >= 1
    :param groups: number of channel groups G; divides C_in and C_out
    :return: ``(out, cache)``, out of shape (N, C_out, H_out, W_out), cache a ``Conv2dCache``
    """
    G, C_out = _check_conv_inputs(x, w, b, groups, transposed=False)
    N, C_in, H, W = x.shape
    kh, kw = w.shape[2], w.shape[3]
    stride, pad, dilation, (H_out, W_out) = _geometry(x.shape, kh, kw, stride, pad, dilation)
    K = C_in // G * kh * kw  # length of one column of one group
    L = H_out * W_out  # number of output positions
    # BEGIN SOLUTION conv2d_forward
    x_cols = im2col(x, kh, kw, stride, pad, dilation)  # (N, C_in*kh*kw, L)
    w_mat = w.reshape(G, C_out // G, K)
    # (G, C_out/G, K) @ (N, G, K, L) -> (N, G, C_out/G, L): already out's layout
    out = (w_mat @ x_cols.reshape(N, G, K, L)).reshape(N, C_out, H_out, W_out)
    if b is not None:
        out += b.reshape(1, C_out, 1, 1)
    # END SOLUTION
    return out, Conv2dCache(x_cols, w, b is not None, x.shape, stride, pad, dilation, G)


def _fold_data_grad(dout, w, x_shape, stride, pad, dilation, G):
    """col2im(W^T dY) for the images of ``dout``: the maths of ``conv_data_grad``."""
    N, C_in, H, W = x_shape
    C_out, _, kh, kw = w.shape
    K = C_in // G * kh * kw
    L = dout.shape[2] * dout.shape[3]
    # BEGIN SOLUTION conv2d_backward
    w_T = w.reshape(G, C_out // G, K).swapaxes(1, 2)  # (G, K, C_out/G), a view
    dx_cols = w_T @ dout.reshape(N, G, C_out // G, L)  # dX = W^T dY: (N, G, K, L)
    dx = col2im(dx_cols.reshape(N, C_in * kh * kw, L), x_shape, kh, kw, stride, pad, dilation)
    # END SOLUTION
    return dx


def conv_data_grad(dout, w, x_shape, stride=1, pad=0, dilation=1, groups=1):
    """dL/dx of conv2d given dL/d(out): ``col2im(w^T @ dout)``, the adjoint A^T applied to dout.

    The same map is the forward of ``conv_transpose2d`` (with x in dout's place):
    both call this one function. The images go a few at a time, so that the
    columns W^T dY are still in the CPU cache when col2im folds them.

    :param dout: (N, C_out, H_out, W_out), the gradient of conv2d's output
    :param w: conv2d's weight, (C_out, C_in/groups, kh, kw)
    :param x_shape: (N, C_in, H, W) of conv2d's input: the shape returned
    :return: dx of shape ``x_shape``
    """
    xp = xp_of(dout, w)
    G = _check_groups(groups)
    dx = xp.empty(tuple(x_shape), dtype=dout.dtype)
    one_image = (w[0].size * G) * dout.shape[2] * dout.shape[3] * dout.itemsize  # its dx_cols
    step = max(1, _CHUNK_BYTES // (one_image or 1))
    for n in range(0, x_shape[0], step):
        part = dout[n : n + step]
        dx[n : n + part.shape[0]] = _fold_data_grad(
            part, w, (part.shape[0], *x_shape[1:]), stride, pad, dilation, G
        )
    return dx


def conv2d_backward(dout, cache, needs_input_grad=(True, True, True)):
    """Gradients of conv2d: dx = col2im(w^T dout), dw = sum_n dout x_cols^T, db = sum dout.

    :param dout: upstream gradient, (N, C_out, H_out, W_out)
    :param cache: the ``Conv2dCache`` of ``conv2d_forward``
    :param needs_input_grad: (x, w, b) flags; a gradient nobody needs is not computed
        (the first layer's dx, whose input is the image, costs a col2im for nothing)
    :return: ``(dx, dw, db)``; None for a gradient not needed, and db None without bias
    """
    x_cols, w, has_bias, x_shape, stride, pad, dilation, G = cache
    need_x, need_w, need_b = needs_input_grad
    N, C_in, H, W = x_shape
    C_out, _, kh, kw = w.shape
    check_ndim(dout, 4, "dout", "(N, C_out, H_out, W_out)")
    L = x_cols.shape[2]
    if dout.shape[:2] != (N, C_out) or dout.shape[2] * dout.shape[3] != L:
        raise ValueError(f"dout must have the shape of conv2d's output, got {dout.shape}")
    K = C_in // G * kh * kw
    dx = conv_data_grad(dout, w, x_shape, stride, pad, dilation, G) if need_x else None
    dw = db = None
    if need_w:
        # BEGIN SOLUTION conv2d_backward
        # dW = sum_n dY[n] X[n]^T: the transposed view costs no copy, matmul reads it as is
        dout_mat = dout.reshape(N, G, C_out // G, L)
        dw = (dout_mat @ x_cols.reshape(N, G, K, L).swapaxes(2, 3)).sum(axis=0).reshape(w.shape)
        # END SOLUTION
    if has_bias and need_b:
        # BEGIN SOLUTION conv2d_backward
        db = dout.sum(axis=(0, 2, 3))
        # END SOLUTION
    return dx, dw, db


def conv2d_naive(x, w, b=None, stride=1, pad=0, dilation=1, groups=1):
    """conv2d by its definition: seven nested loops, one multiply-add per iteration."""
    G, C_out = _check_conv_inputs(x, w, b, groups, transposed=False)
    xp = xp_of(x, w, b)
    N, C_in, H, W = x.shape
    _, C_g, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw), (H_out, W_out) = _geometry(x.shape, kh, kw, stride, pad, dilation)
    out = xp.zeros((N, C_out, H_out, W_out), dtype=x.dtype)
    out_per_group = C_out // G
    for n in range(N):
        for co in range(C_out):
            g = co // out_per_group  # the group this output channel belongs to
            for ho in range(H_out):
                for wo in range(W_out):
                    total = 0.0 if b is None else b[co]
                    for c in range(C_g):
                        for i in range(kh):
                            for j in range(kw):
                                y = ho * sh + i * dh - ph  # position in the unpadded input
                                z = wo * sw + j * dw - pw
                                if 0 <= y < H and 0 <= z < W:
                                    total = total + w[co, c, i, j] * x[n, g * C_g + c, y, z]
                    out[n, co, ho, wo] = total
    return out


# ----- conv_transpose2d -------------------------------------------------------------


def _transpose_geometry(x_shape, kh, kw, stride, pad, output_padding, dilation):
    """(H_out, W_out) of the transposed conv, and the zero rows/cols x needs (see docstring)."""
    sh, sw = pair(stride, "stride", minimum=1)
    ph, pw = pair(pad, "padding")
    dh, dw = pair(dilation, "dilation", minimum=1)
    oph, opw = pair(output_padding, "output_padding")
    for op, s, d, axis in ((oph, sh, dh, "height"), (opw, sw, dw, "width")):
        if op >= s and op >= d:
            raise ValueError(
                f"output_padding must be smaller than stride or dilation; along the {axis} "
                f"it is {op} with stride {s} and dilation {d}"
            )
    _, _, H, W = x_shape
    H_out = (H - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    W_out = (W - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    if H_out <= 0 or W_out <= 0:
        raise ValueError(
            f"padding {(ph, pw)} is too large for the input {H}x{W} and kernel {kh}x{kw}: "
            f"the output would be {H_out}x{W_out}"
        )
    return (sh, sw), (ph, pw), (dh, dw), (H_out, W_out), (oph // sh, opw // sw)


class ConvTranspose2dCache(NamedTuple):
    """What conv_transpose2d_forward keeps for conv_transpose2d_backward."""

    x: object  # the input, padded with the zero rows/cols of a large output_padding
    w: object
    has_bias: bool
    x_shape: tuple  # the unpadded input's shape
    out_hw: tuple
    stride: tuple
    pad: tuple
    dilation: tuple
    groups: int


def conv_transpose2d_forward(x, w, b=None, stride=1, pad=0, output_padding=0, dilation=1, groups=1):
    """out = conv2d's adjoint applied to x, plus b: w^T @ x, then col2im.

    :param x: input, (N, C_in, H, W), float32 or float64
    :param w: weight, (C_in, C_out/groups, kh, kw), the dtype of x
    :param b: bias, (C_out,), or None
    :param stride: int or (sh, sw), >= 1; the upsampling factor
    :param pad: int or (ph, pw): rows/cols cropped from each border of the output
    :param output_padding: int or pair, extra rows/cols at the bottom/right of the
        output; each must be < stride or < dilation
    :param dilation: int or (dh, dw), >= 1
    :param groups: number of channel groups G; divides C_in
    :return: ``(out, cache)``, out of shape (N, C_out, H_out, W_out) with
        H_out = (H-1)*s - 2p + d(k-1) + output_padding + 1
    """
    G, C_out = _check_conv_inputs(x, w, b, groups, transposed=True)
    xp = xp_of(x, w, b)
    N, C_in, H, W = x.shape
    kh, kw = w.shape[2], w.shape[3]
    stride, pad, dilation, (H_out, W_out), (extra_h, extra_w) = _transpose_geometry(
        x.shape, kh, kw, stride, pad, output_padding, dilation
    )
    if extra_h or extra_w:  # only when output_padding >= stride (allowed by a dilation)
        x = xp.pad(x, ((0, 0), (0, 0), (0, extra_h), (0, extra_w)))
    # BEGIN SOLUTION conv_transpose2d_forward
    # conv2d's data gradient, with x in the role of dout: out = A^T x
    out = conv_data_grad(x, w, (N, C_out, H_out, W_out), stride, pad, dilation, G)
    if b is not None:
        out += b.reshape(1, C_out, 1, 1)
    # END SOLUTION
    cache = ConvTranspose2dCache(
        x, w, b is not None, (N, C_in, H, W), (H_out, W_out), stride, pad, dilation, G
    )
    return out, cache


def conv_transpose2d_backward(dout, cache, needs_input_grad=(True, True, True)):
    """Gradients of conv_transpose2d: dx = conv2d(dout, w), dw = sum_n x im2col(dout)^T.

    :param dout: upstream gradient, (N, C_out, H_out, W_out)
    :param cache: the ``ConvTranspose2dCache`` of ``conv_transpose2d_forward``
    :param needs_input_grad: (x, w, b) flags; a gradient nobody needs is not computed
    :return: ``(dx, dw, db)``; None for a gradient not needed, and db None without bias
    """
    x, w, has_bias, x_shape, (H_out, W_out), stride, pad, dilation, G = cache
    need_x, need_w, need_b = needs_input_grad
    N, C_in, H, W = x_shape
    _, C_out_g, kh, kw = w.shape
    C_out = C_out_g * G
    check_ndim(dout, 4, "dout", "(N, C_out, H_out, W_out)")
    if dout.shape != (N, C_out, H_out, W_out):
        raise ValueError(
            f"dout must have conv_transpose2d's output shape {(N, C_out, H_out, W_out)}, "
            f"got {dout.shape}"
        )
    K = C_out_g * kh * kw
    L = x.shape[2] * x.shape[3]  # x as padded in the forward, if it was
    dx = dw = db = None
    if need_x or need_w:
        # BEGIN SOLUTION conv_transpose2d_backward
        dout_cols = im2col(dout, kh, kw, stride, pad, dilation).reshape(N, G, K, L)  # dC
        # END SOLUTION
    if need_x:
        # BEGIN SOLUTION conv_transpose2d_backward
        # dX = W dC: an ordinary conv2d of dout with the same weight
        dx = (w.reshape(G, C_in // G, K) @ dout_cols).reshape(x.shape)[:, :, :H, :W]
        # END SOLUTION
    if need_w:
        # BEGIN SOLUTION conv_transpose2d_backward
        # dW = sum_n X[n] dC[n]^T, laid out (C_in, C_out/G, kh, kw) like w
        x_mat = x.reshape(N, G, C_in // G, L)
        dw = (x_mat @ dout_cols.swapaxes(2, 3)).sum(axis=0).reshape(w.shape)
        # END SOLUTION
    if has_bias and need_b:
        # BEGIN SOLUTION conv_transpose2d_backward
        db = dout.sum(axis=(0, 2, 3))
        # END SOLUTION
    return dx, dw, db


def conv_transpose2d_naive(x, w, b=None, stride=1, pad=0, output_padding=0, dilation=1, groups=1):
    """conv_transpose2d by its definition: every input pixel paints w, scaled, into the output."""
    G, C_out = _check_conv_inputs(x, w, b, groups, transposed=True)
    xp = xp_of(x, w, b)
    N, C_in, H, W = x.shape
    _, C_out_g, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw), (H_out, W_out), _ = _transpose_geometry(
        x.shape, kh, kw, stride, pad, output_padding, dilation
    )
    out = xp.zeros((N, C_out, H_out, W_out), dtype=x.dtype)
    in_per_group = C_in // G
    for n in range(N):
        for ci in range(C_in):
            g = ci // in_per_group  # the group this input channel belongs to
            for h in range(H):
                for v in range(W):
                    value = x[n, ci, h, v]
                    for co in range(C_out_g):
                        for i in range(kh):
                            for j in range(kw):
                                y = h * sh + i * dh - ph  # where tap (i, j) lands
                                z = v * sw + j * dw - pw
                                if 0 <= y < H_out and 0 <= z < W_out:
                                    out[n, g * C_out_g + co, y, z] += value * w[ci, co, i, j]
    if b is not None:
        out += b.reshape(1, C_out, 1, 1)
    return out
