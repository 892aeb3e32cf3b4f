"""Resizing a feature map: nearest neighbour, and bilinear as two matrix products.

Notation as in ``pool.py``: x (N, C, H, W), every op works on each (n, c) plane
alone; dout is the upstream gradient, the shape of the output.

Nearest-neighbour resize
------------------------
Output pixel (ho, wo) copies the input pixel (src(ho), src(wo)) with PyTorch's
rule, evaluated as PyTorch does in float32:

    scale = float32(in) / float32(out),   src(d) = min(floor(float32(d) * scale), in - 1)

This is not the exact integer floor(d * in / out): float32 rounding can push
d * scale just below an integer (2 -> 82: d = 41 gives 0.99999994, so src = 0
where the exact rule says 1). tinyseg matches PyTorch, rounding and all (the
tests pin it on float32 maps; on float64 maps PyTorch's CPU kernel switches to
partly double arithmetic for large outputs, so there it is not one rule). Several output
pixels may copy one input pixel (upsampling), so the backward adds: dx receives
the sum of dout over every output pixel that copied it (``scatter_add``).

Bilinear resize as two matrices
-------------------------------
Bilinear interpolation is separable: first interpolate along the rows, then
along the columns. Along one axis, output position d reads the source
coordinate

    align_corners=False:  src(d) = max((d + 0.5) * in/out - 0.5, 0)
    align_corners=True:   src(d) = d * (in - 1)/(out - 1)     (0 when out = 1)

With i0 = floor(src), i1 = min(i0 + 1, in - 1), lambda = src - i0, the value
is (1 - lambda) * v[i0] + lambda * v[i1] (beyond the last pixel both taps are
the last pixel: the edge is repeated). Write these weights as a matrix A of
shape (out, in) with row d holding 1 - lambda at column i0 and lambda at
column i1; every row sums to 1. Then, for each (n, c) plane X (H x W),

    Y = A_h X A_w^T            A_h: (H_out, H),  A_w: (W_out, W)

Backward. Y is linear in X, so with dL/dY = D:

    dL = <D, dY> = <D, A_h dX A_w^T> = tr(D^T A_h dX A_w^T)
       = tr(A_w^T D^T A_h dX) = <A_h^T D A_w, dX>     (cyclic trace)

so  dX = A_h^T D A_w. The backward of a resize is the transposed resize: two
matrix products, exact, and vectorised over the whole batch by broadcasting.

Shapes
------
upsample_nearest2d / bilinear_resize2d:  (N, C, H, W) -> (N, C, size[0], size[1])
interpolation_matrix:                    (out,) source coordinates -> (out, n_in)
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ..backend import scatter_add, xp_of
from ..validate import check_bool, pair
from .pool import check_pool_input, plane_scatter_add

# ----- nearest-neighbour resize ----------------------------------------------------


def nearest_source(n_in: int, n_out: int, xp):
    """src(d) for d < n_out, PyTorch's float32 rule: min(floor(d * (in/out)), in - 1), int64."""
    scale = xp.float32(n_in) / xp.float32(n_out)
    src = xp.floor(xp.arange(n_out, dtype=xp.float32) * scale).astype(xp.int64)
    return xp.minimum(src, n_in - 1)


class NearestCache(NamedTuple):
    src_h: object  # (H_out,) the source row of each output row
    src_w: object
    x_shape: tuple


def upsample_nearest2d_forward(x, size):
    """Nearest-neighbour resize to ``size``: out[ho, wo] = x[src(ho), src(wo)] (PyTorch's rule).

    :param x: input (N, C, H, W), floating point.
    :param size: int or (H_out, W_out).
    :returns: ``(out, cache)``, out (N, C, H_out, W_out).
    """
    check_pool_input(x)
    H_out, W_out = pair(size, "size", minimum=1)
    xp = xp_of(x)
    H, W = x.shape[2:]
    src_h, src_w = nearest_source(H, H_out, xp), nearest_source(W, W_out, xp)
    out = x[:, :, src_h[:, None], src_w[None, :]]
    return out, NearestCache(src_h, src_w, x.shape)


def upsample_nearest2d_backward(dout, cache):
    """dx[h, w] = sum of dout over the output pixels that copied (h, w).

    :param dout: (N, C, H_out, W_out).
    :param cache: from ``upsample_nearest2d_forward``.
    :returns: dx (N, C, H, W).
    """
    src_h, src_w, x_shape = cache
    W = x_shape[3]
    source = (src_h[:, None] * W + src_w[None, :]).reshape(1, 1, -1)  # flat source of each output
    return plane_scatter_add(x_shape, source, dout.reshape(*x_shape[:2], -1))


def upsample_nearest2d_naive(x, size):
    """Nearest-neighbour resize by a loop over the output pixels."""
    check_pool_input(x)
    H_out, W_out = pair(size, "size", minimum=1)
    xp = xp_of(x)
    N, C, H, W = x.shape
    out = xp.zeros((N, C, H_out, W_out), dtype=x.dtype)
    scale_h = xp.float32(H) / xp.float32(H_out)
    scale_w = xp.float32(W) / xp.float32(W_out)
    for ho in range(H_out):
        y = min(int(math.floor(xp.float32(ho) * scale_h)), H - 1)  # float32, as PyTorch
        for wo in range(W_out):
            z = min(int(math.floor(xp.float32(wo) * scale_w)), W - 1)
            out[:, :, ho, wo] = x[:, :, y, z]
    return out


# ----- bilinear resize -------------------------------------------------------------


def interpolation_matrix(coord, n_in: int, share=None):
    """Linear-interpolation rows: A (..., n_in) with A[r] = sum_s share[r, s] * tent(coord[r, s]).

    ``coord`` (..., S) holds S source coordinates per row r (each >= 0; pixel h
    has its value at h), ``share`` (..., S) each sample's weight (default 1).
    A sample at c puts 1 - lambda on floor(c) and lambda = c - floor(c) on
    floor(c) + 1; at or past the last pixel, all its weight on pixel n_in - 1.
    Bilinear resize (one sample per row), RoIAlign (the mean of a bin's
    samples) and pasting masks all read ``Y = A_h X A_w^T`` (module docstring).
    """
    xp = xp_of(coord)
    low = xp.floor(coord)
    at_edge = low >= n_in - 1  # past the last pixel: both taps are pixel n_in - 1
    low = xp.where(at_edge, n_in - 1, low)
    frac = xp.where(at_edge, 0, coord - low)  # weight of the higher tap
    low = low.astype(xp.int64)
    high = xp.where(at_edge, low, low + 1)
    share = xp.ones_like(coord) if share is None else share
    rows = coord.shape[:-1]
    A = xp.zeros(rows + (n_in,), dtype=coord.dtype)
    row_start = (xp.arange(A.size // n_in, dtype=xp.int64) * n_in).reshape(rows + (1,))
    scatter_add(A, row_start + low, (1 - frac) * share)
    scatter_add(A, row_start + high, frac * share)
    return A


class BilinearCache(NamedTuple):
    A_h: object  # (H_out, H): the row interpolation matrix
    A_w: object  # (W_out, W): the column interpolation matrix


def bilinear_resize2d_forward(x, size, align_corners=False):
    """Bilinear resize as Y = A_h X A_w^T on every plane (see the module docstring).

    :param x: input (N, C, H, W), floating point.
    :param size: int or (H_out, W_out).
    :param align_corners: False: pixel centres, src = (d + 0.5) in/out - 0.5
        clamped at 0; True: corner pixels align, src = d (in - 1)/(out - 1).
    :returns: ``(out, cache)``, out (N, C, H_out, W_out); the cache holds A_h, A_w.
    """
    check_pool_input(x)
    H_out, W_out = pair(size, "size", minimum=1)
    check_bool(align_corners, "align_corners")
    xp = xp_of(x)
    H, W = x.shape[2:]
    # BEGIN SOLUTION bilinear_resize2d_forward
    matrices = []
    for n_in, n_out in ((H, H_out), (W, W_out)):
        dst = xp.arange(n_out, dtype=x.dtype)
        if align_corners:
            src = dst * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
        else:
            src = xp.maximum((dst + 0.5) * (n_in / n_out) - 0.5, 0.0)
        matrices.append(interpolation_matrix(src[:, None], n_in))  # one sample per row
    A_h, A_w = matrices
    out = A_h @ x @ A_w.T
    # END SOLUTION
    return out, BilinearCache(A_h, A_w)


def bilinear_resize2d_backward(dout, cache):
    """dx = A_h^T dout A_w, the transposed resize.

    :param dout: (N, C, H_out, W_out).
    :param cache: the ``BilinearCache`` (A_h, A_w) of ``bilinear_resize2d_forward``.
    :returns: dx (N, C, H, W).
    """
    A_h, A_w = cache
    # BEGIN SOLUTION bilinear_resize2d_backward
    dx = A_h.T @ dout @ A_w
    # END SOLUTION
    return dx


def _source_taps(d, n_in, n_out, align_corners):
    """(i0, i1, lambda) of output position d along one axis, in plain Python numbers."""
    if align_corners:
        src = d * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    else:
        src = max((d + 0.5) * n_in / n_out - 0.5, 0.0)
    i0 = int(src)  # src >= 0, so int() is floor()
    lam = src - i0
    i0 = min(i0, n_in - 1)
    return i0, min(i0 + 1, n_in - 1), lam


def bilinear_resize2d_naive(x, size, align_corners=False):
    """Bilinear resize by a loop over output pixels, four weighted taps each."""
    check_pool_input(x)
    H_out, W_out = pair(size, "size", minimum=1)
    check_bool(align_corners, "align_corners")
    xp = xp_of(x)
    N, C, H, W = x.shape
    out = xp.zeros((N, C, H_out, W_out), dtype=x.dtype)
    for ho in range(H_out):
        y0, y1, ly = _source_taps(ho, H, H_out, align_corners)
        for wo in range(W_out):
            z0, z1, lz = _source_taps(wo, W, W_out, align_corners)
            out[:, :, ho, wo] = (
                (1 - ly) * (1 - lz) * x[:, :, y0, z0]
                + (1 - ly) * lz * x[:, :, y0, z1]
                + ly * (1 - lz) * x[:, :, y1, z0]
                + ly * lz * x[:, :, y1, z1]
            )
    return out
