"""RoI pooling and RoIAlign: a fixed-size feature map for every box.

A two-stage detector (Faster / Mask R-CNN) proposes K boxes of every size and
shape, and its heads need one fixed-size input per box: a 7x7 map for the box
classifier, 14x14 for the mask head. RoIPool (Fast R-CNN) and RoIAlign
(Mask R-CNN) cut that map out of the backbone's features. Both follow
torchvision exactly.

Notation (lecture style)
------------------------
x        features, shape (N, C, H, W), at stride 1/scale of the image
         (``spatial_scale`` = 1/16 for a stride-16 backbone)
rois     (K, 5) rows [b, x1, y1, x2, y2]: box k lives on image b_k, corners in
         image pixels (xyxy, no +1); a list of N (L_i, 4) arrays means the
         boxes of image i (``boxes_to_rois``)
PH, PW   the output size; out has shape (K, C, PH, PW)
dout     the upstream gradient, shape of out
Each (k, c) output plane is computed from the plane x[b_k, c] alone.

RoIPool: quantise, then max
---------------------------
RoIPool rounds the box to the feature grid, half away from zero,

    start_w = round(x1 * scale),  end_w = round(x2 * scale)
    roi_w   = max(end_w - start_w + 1, 1)          (an inclusive pixel count)
    bin_w   = roi_w / PW

and bin pw takes the columns floor(pw * bin_w) + start_w up to (exclusive)
ceil((pw + 1) * bin_w) + start_w, clipped to [0, W]; rows likewise. Each
output is the maximum over its bin's rectangle (0 for an empty bin), and ties
go to the first maximum in row-major order.

The quantisation is the problem. Take a stride-16 backbone and a box from
x1 = 37.3 to x2 = 90.0 image pixels. On the feature grid that is 2.33 to 5.63;
RoIPool rounds to cells 2 .. 6 inclusive, whose edges are the image pixels 32
and 112. The left edge moved 5.3 pixels, the right one 22; the floor/ceil of
the bins moves their edges again. For the class of a large box a few pixels do
not matter; for a 28x28 mask, where one output cell is a few image pixels
wide, they do: the mask is learnt shifted against the object.

Backward of RoIPool. The max is locally a copy of its argmax, so each dout
goes to the one pixel that won its bin, and nothing to an empty bin:

    dx[b_k, c].flat[arg[k, c, ph, pw]] += dout[k, c, ph, pw]

Several bins (of one RoI, where bins overlap, or of different RoIs) can share
an argmax, so the writes add up (``scatter_add``).

RoIAlign: no rounding, bilinear samples
---------------------------------------
RoIAlign keeps the real-valued box. Along the rows (columns are the same with
x, W, PW):

    offset   = 0.5 if aligned else 0
    start    = y1 * scale - offset,   roi_h = y2 * scale - offset - start
    roi_h    = max(roi_h, 1)                   (only when aligned=False)
    bin_h    = roi_h / PH
    g_h      = sampling_ratio if sampling_ratio > 0 else ceil(roi_h / PH)
    y(p, i)  = start + p * bin_h + (i + 0.5) * bin_h / g_h,    i = 0 .. g_h-1

so every bin holds a g_h x g_w grid of sample points, evenly spaced at the
centres of g_h x g_w sub-cells (the adaptive g keeps them about one pixel
apart). The output is the plain mean of the samples,

    out[k, c, p, q] = 1/max(g_h g_w, 1) * sum_{i, j} bilinear(x[b_k, c], y(p, i), x(q, j))

Bilinear sampling at a point (y, x) of a plane with rows 0..H-1 (pixel h has
its value *at* y = h): a sample with y < -1, y > H, x < -1 or x > W is outside
the map and adds 0 (it still counts in the mean); otherwise clamp negative
coordinates to 0, take y0 = floor(y), y1 = y0 + 1 and ly = y - y0 (if
y0 >= H-1, both neighbours are row H-1 and ly = 0), likewise x0, x1, lx, and

    bilinear = (1-ly)(1-lx) x[y0, x0] + (1-ly) lx x[y0, x1]
             + ly (1-lx) x[y1, x0]    + ly lx x[y1, x1]

The aligned half-pixel offset. Box coordinates say that pixel h covers the
interval [h, h+1), so its centre is at h + 0.5; bilinear sampling puts the
value of pixel h at y = h. A box from 0 to 1 covers exactly pixel 0, but
without the offset its one sample lands at y = 0.5, half way to pixel 1.
``aligned=True`` subtracts 0.5 after scaling so box coordinates and pixel
centres agree (Detectron2 uses it; torchvision keeps aligned=False as its
default for old models). Without the offset no box is thinner than one
pixel: its size is clamped to 1. With it, a zero-size box is allowed (its
adaptive grid has 0 samples, and its output is 0).

RoIAlign is two small matrix products per RoI
---------------------------------------------
The bilinear weight of a sample is a product of a row weight and a column
weight, ``(1-ly)(1-lx)`` etc., and the "outside" rule is a product too: the
sample counts only if its row is in range *and* its column is. Collect the row
weights of bin p's samples in a matrix,

    Ay[k][p, h] = (1/g_h) sum_i  w_row(y(p, i), h)              Ay[k]: (PH, H)

where w_row(y, h) is 1-ly for h = y0, ly for h = y1, 0 elsewhere (and 0 for
all h when y is out of range); likewise Ax[k]: (PW, W). The mean over the
g_h g_w samples factors into (1/g_h)(1/g_w), and the double sum splits:

    out[k, c] = Ay[k] @ x[b_k, c] @ Ax[k]^T                     (PH, H)(H, W)(W, PW)

the same form as a bilinear resize (``pool.py``; both build their matrices with
``resize.interpolation_matrix``), with one pair of matrices
per RoI. If a grid is empty (g <= 0, only possible with aligned=True and a
box of size <= 0) the row of that matrix is zero and the output is 0, as the
max(g_h g_w, 1) rule says. The code builds Ay for all K RoIs at once: the
sample coordinates (K, PH, G) with G the largest grid and a mask for the
samples i >= g_k, then their two taps and weights go into Ay with one
``scatter_add``. A huge box would make G huge (a box of 1e9 pixels: 5e8 samples
per bin), but only the samples inside [-1, H] add anything, and they lie d =
bin_h / g_h apart (d >= 1/2 for the adaptive grid), so each bin keeps a window
of at most (H + 1) / d + 3 consecutive samples, starting at its first sample
that can be in range: the same samples, the same sums, a cost bounded by the
feature size. The forward is then, per image b with K_b RoIs, one matrix
product over the rows of all its RoIs, (K_b*PH, H) @ (H, C*W), and one batch
of K_b products (PH*C, W) @ (W, PW) over the columns: no loop over bins or
samples.

Backward. out is linear in x, and with D = dout[k, c],

    <D, Ay X Ax^T> = tr(D^T Ay X Ax^T) = <Ay^T D Ax, X>          (cyclic trace)

so each RoI sends Ay[k]^T @ dout[k, c] @ Ax[k] to its image, and the RoIs of
one image add up:

    dx[b, c] = sum_{k: b_k = b} Ay[k]^T @ dout[k, c] @ Ax[k]

which is exactly "grad * w / count to the four neighbours of every sample".
The sum over k sits inside one matrix product, (H, K_b*PH) @ (K_b*PH, C*W).
The boxes get no gradient (as in torchvision).

RoIPool vectorised
------------------
A bin's maximum is separable too: first the maximum over the bin's columns in
every row (with its first argmax column), then the maximum of those row
maxima over the bin's rows (with the first argmax row). The first row that
reaches the maximum, and the first column in that row, is the first maximum
in row-major order. Columns outside the bin are masked with -inf. The masked
copies are (K, C, H, PW, W), so the RoIs go in chunks.

Shapes
------
boxes_to_rois:  (K, 5) or a list of N (L_i, 4) -> (K, 5), K = sum L_i
roi_align / roi_pool:  x (N, C, H, W), rois (K, 5) -> out (K, C, PH, PW)
backward:  dout (K, C, PH, PW) -> dx (N, C, H, W)
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

from ..backend import scatter_add, to_numpy, xp_of
from ..validate import check_float, check_ndim, first_bad_index, pair
from .resize import interpolation_matrix

# The largest sample grid per bin: float indices below it are exact integers.
_MAX_GRID = float(2 ** 50)
# Elements of one masked RoIPool chunk: a few tens of MB, whatever K is.
_POOL_CHUNK_ELEMENTS = 1 << 22

# ----- argument checks -------------------------------------------------------------


def _check_x(x):
    check_ndim(x, 4, "x", "(N, C, H, W)")
    check_float(x, "x")


def _check_scale(spatial_scale) -> float:
    if isinstance(spatial_scale, bool) or not isinstance(spatial_scale, numbers.Real):
        raise TypeError(f"spatial_scale must be a positive number, got {spatial_scale!r}")
    if not (math.isfinite(spatial_scale) and spatial_scale > 0):
        raise ValueError(f"spatial_scale must be a positive number, got {spatial_scale!r}")
    return float(spatial_scale)


def _check_sampling_ratio(sampling_ratio) -> int:
    if isinstance(sampling_ratio, bool) or not hasattr(sampling_ratio, "__index__"):
        raise TypeError(
            f"sampling_ratio must be an int (<= 0 means adaptive), got {sampling_ratio!r}"
        )
    return int(sampling_ratio)


def _check_aligned(aligned):
    if not isinstance(aligned, bool):
        raise TypeError(f"aligned must be True or False, got {aligned!r}")


def _float_dtype(xp, arrays, xp_like):
    """The boxes' dtype if it is floating, else xp_like's floating dtype, else float64."""
    if arrays:
        dtype = xp.result_type(*arrays)
        if dtype.kind == "f":
            return dtype
    like = getattr(xp_like, "dtype", None)
    return like if getattr(like, "kind", None) == "f" else xp.float64


def boxes_to_rois(boxes, xp_like=None):
    """The (K, 5) form [batch_index, x1, y1, x2, y2] of a list of per-image boxes.

    :param boxes: a (K, 5) array (returned as it is, after a shape check), or a
        list/tuple of N arrays of shape (L_i, 4), the xyxy boxes of image i.
    :param xp_like: an array (e.g. the feature map) on whose backend the result
        is built; its floating dtype is used when the boxes are not floating.
        The boxes must live on the same device.
    :returns: (K, 5) array, K = sum L_i, the batch index as a float in the
        boxes' dtype; rows in image order.
    """
    if not isinstance(boxes, (list, tuple)):
        if getattr(boxes, "ndim", None) != 2 or boxes.shape[1] != 5:
            shape = getattr(boxes, "shape", type(boxes).__name__)
            raise ValueError(
                "boxes must be a (K, 5) array of [batch_index, x1, y1, x2, y2] rows or a "
                f"list of (L, 4) arrays, one per image; got shape {shape}"
            )
        if boxes.dtype.kind not in "fiu":
            raise TypeError(f"boxes must hold real numbers, got dtype {boxes.dtype}")
        xp_of(xp_like, boxes)  # raises when the devices differ
        return boxes
    xp = xp_of(xp_like, *boxes)
    arrays = []
    for i, b in enumerate(boxes):
        b = xp.asarray(b)
        if b.size == 0:
            b = b.reshape(0, 4)  # an image without boxes may come as []
        if b.ndim != 2 or b.shape[1] != 4 or b.dtype.kind not in "fiu":
            raise ValueError(
                f"boxes[{i}] must be an (L, 4) array of [x1, y1, x2, y2] rows, "
                f"got shape {b.shape} and dtype {b.dtype}"
            )
        arrays.append(b)
    dtype = _float_dtype(xp, arrays, xp_like)
    rows = [
        xp.concatenate([xp.full((b.shape[0], 1), i, dtype=dtype), b.astype(dtype)], axis=1)
        for i, b in enumerate(arrays)
    ]
    return xp.concatenate(rows, axis=0) if rows else xp.zeros((0, 5), dtype=dtype)


def _rois_for(x, rois):
    """(rois in x's dtype, int64 batch index per RoI), checked against x's batch size N."""
    N = x.shape[0]
    if isinstance(rois, (list, tuple)) and len(rois) != N:
        raise ValueError(
            f"boxes as a list needs one (L, 4) array per image: x holds {N} images, "
            f"got a list of {len(rois)}"
        )
    rois = boxes_to_rois(rois, x)
    xp = xp_of(x, rois)
    rois = rois.astype(x.dtype, copy=False)
    b = rois[:, 0]
    if rois.shape[0] == 0:
        return rois, b.astype(xp.int64)
    # One small device-to-host read for both checks: a bad index would read another
    # image's features, and a NaN corner would silently give zeros.
    nonfinite = ~xp.isfinite(rois[:, 1:]).all(axis=1)
    bad_batch = (b != xp.floor(b)) | (b < 0) | (b >= N)
    if int(bad_batch.any().astype(xp.int64) + 2 * nonfinite.any().astype(xp.int64)):
        host = to_numpy(rois)  # the error path only
        bad = first_bad_index(to_numpy(bad_batch))
        if bad is not None:
            raise ValueError(
                f"boxes: the batch index (column 0 of the (K, 5) rois) must be a whole "
                f"number in [0, {N}) for x with {N} images, got {host[bad[0], 0]!r} in row "
                f"{bad[0]}"
            )
        k = first_bad_index(to_numpy(nonfinite))[0]
        raise ValueError(f"boxes must be finite, got {host[k, 1:].tolist()} in row {k} "
                         f"(the (K, 5) rois row [b, x1, y1, x2, y2] {host[k].tolist()})")
    return rois, b.astype(xp.int64)


def _image_groups(batch, N):
    """[(n, indices of the RoIs on image n)] for the images that have RoIs.

    One stable sort by image puts each image's RoIs in one block, in input order; the
    block sizes cross to the host in one copy (one sync per call, not one per image).
    """
    xp = xp_of(batch)
    order = xp.argsort(batch, kind="stable")
    counts = scatter_add(xp.zeros(N, dtype=xp.int64), batch, xp.ones(batch.shape[0], xp.int64))
    groups, start = [], 0
    for n, count in enumerate(to_numpy(counts).tolist()):  # a loop over images, not RoIs
        if count:
            groups.append((n, order[start:start + count]))
        start += count
    return groups


# ----- RoIAlign --------------------------------------------------------------------


def _roi_grid(size, n_bins, sampling_ratio):
    """Samples per bin along one axis, per RoI: sampling_ratio, or ceil(size / n_bins)."""
    xp = xp_of(size)
    if sampling_ratio > 0:
        return xp.full(size.shape, sampling_ratio, dtype=xp.int64)
    # capped where an int64 (and a float index) is still exact: boxes up to ~1e15 pixels
    return xp.minimum(xp.ceil(size / n_bins), _MAX_GRID).astype(xp.int64)


def _align_axis_matrix(start, size, grid, n_bins, n_in):
    """A (K, n_bins, n_in): A[k, p, h] = (1/g_k) * sum of sample i's bilinear weight on pixel h.

    ``start``, ``size`` (K,) the RoI along this axis on the feature grid, ``grid``
    (K,) int samples per bin (<= 0: none). One axis of the separable form
    out[k] = Ay[k] @ x @ Ax[k]^T; see the module docstring.

    Only the samples inside [-1, n_in] add anything, and they are evenly spaced d apart,
    so each bin needs a window of at most (n_in + 1) / |d| + 3 consecutive samples: its
    first index comes from the bin's start, and every sample is computed by the same
    formula as before. The result is exact, and a box of 1e9 pixels costs what a box of
    the image's size costs (the adaptive grid has d >= 1/2, so the window is ~2 n_in).
    """
    xp = xp_of(start)
    K, dtype = start.shape[0], start.dtype
    if K == 0:
        return xp.zeros((0, n_bins, n_in), dtype=dtype)
    bin_size = (size / n_bins)[:, None, None]
    g = xp.maximum(grid, 1).astype(dtype)[:, None, None]
    p = xp.arange(n_bins, dtype=dtype)[None, :, None]
    step = (bin_size / g).astype(xp.float64)  # spacing of the samples (< 0: a reversed box)
    moving = step != 0
    span = xp.where(moving, (n_in + 1) / xp.where(moving, xp.abs(step), 1), _MAX_GRID)
    window = xp.minimum(xp.ceil(span) + 3, _MAX_GRID)
    # the sample-axis length, enough for every RoI's min(g_k, window_k): one host read
    length = int(xp.minimum(grid[:, None, None], window).max())
    if length <= 0:
        return xp.zeros((K, n_bins, n_in), dtype=dtype)
    # the first sample index of each bin that can be in range, one early for rounding
    bin_start = (start[:, None, None] + p * bin_size).astype(xp.float64)
    # (i + 0.5) d >= -1 - start for d > 0, <= n_in - start for d < 0: the smaller quotient
    safe_step = xp.where(moving, step, 1)
    lowest = xp.minimum((-1 - bin_start) / safe_step, (n_in - bin_start) / safe_step)
    first = xp.where(moving, xp.clip(xp.floor(lowest - 0.5) - 1, 0, _MAX_GRID), 0)
    # a RoI whose whole grid fits in its window keeps it, from sample 0
    first = xp.where(grid[:, None, None] <= window, 0, first).astype(xp.int64)
    index = first + xp.arange(length, dtype=xp.int64)[None, None, :]  # (K, n_bins, L)
    i = index.astype(dtype)
    # (K, n_bins, L) sample coordinates, in torchvision's order of operations
    coord = start[:, None, None] + p * bin_size + (i + 0.5) * bin_size / g
    counts = (index < grid[:, None, None]) & (coord >= -1) & (coord <= n_in)  # else adds 0
    coord = xp.clip(coord, 0, n_in)  # negative -> 0; the upper clip only keeps ints small
    share = counts / g  # each counted sample is 1/g of the bin's mean on this axis
    return interpolation_matrix(coord, n_in, share)


def _roi_geometry(rois, scale, aligned):
    """start_y, start_x, roi_h, roi_w (each (K,)) on the feature grid, torchvision's rule."""
    xp = xp_of(rois)
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, j] * scale - offset for j in range(1, 5))
    roi_h, roi_w = y2 - y1, x2 - x1
    if not aligned:  # the legacy rule: no RoI thinner than one feature pixel
        roi_h, roi_w = xp.maximum(roi_h, 1), xp.maximum(roi_w, 1)
    return y1, x1, roi_h, roi_w


def _sample_image(image, Ay, Ax):
    """out[k, c] = Ay[k] @ image[c] @ Ax[k]^T for the K_b RoIs of one image.

    image (C, H, W), Ay (K_b, PH, H), Ax (K_b, PW, W) -> (K_b, C, PH, PW).
    """
    xp = xp_of(image)
    C, H, W = image.shape
    Kb, PH, _ = Ay.shape
    # rows of every RoI at once: one matmul (K_b*PH, H) @ (H, C*W). The small Ay goes in
    # column-major: OpenBLAS is up to 5x slower on this thin product with two row-major
    # operands (float64, C*W a power of two).
    Ay_cols = xp.asfortranarray(Ay.reshape(Kb * PH, H))
    rows = Ay_cols @ image.transpose(1, 0, 2).reshape(H, C * W)
    # then K_b products (PH*C, W) @ (W, PW), one per RoI
    out = rows.reshape(Kb, PH * C, W) @ Ax.transpose(0, 2, 1)
    return out.reshape(Kb, PH, C, -1).transpose(0, 2, 1, 3)


def _unsample_image(dout, Ay, Ax):
    """sum_k Ay[k]^T @ dout[k, c] @ Ax[k]: dout (K_b, C, PH, PW) -> (C, H, W)."""
    Kb, C, PH, PW = dout.shape
    H, W = Ay.shape[2], Ax.shape[2]
    cols = dout.transpose(0, 2, 1, 3).reshape(Kb, PH * C, PW) @ Ax  # (K_b, PH*C, W)
    # the sum over k sits inside one matmul: (H, K_b*PH) @ (K_b*PH, C*W)
    dx = Ay.reshape(Kb * PH, H).T @ cols.reshape(Kb * PH, C * W)
    return dx.reshape(H, C, W).transpose(1, 0, 2)


def _check_align_args(x, output_size, spatial_scale, sampling_ratio, aligned):
    _check_x(x)
    size = pair(output_size, "output_size", minimum=1)
    scale = _check_scale(spatial_scale)
    sampling_ratio = _check_sampling_ratio(sampling_ratio)
    _check_aligned(aligned)
    return size, scale, sampling_ratio


class RoIAlignCache(NamedTuple):
    Ay: object  # (K, PH, H): each RoI's row interpolation matrix
    Ax: object  # (K, PW, W): its column interpolation matrix
    groups: list  # (n, ks): image n and the indices of its RoIs
    x_shape: tuple


def roi_align_forward(x, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """RoIAlign (torchvision): the mean of bilinear samples per bin, as Ay[k] @ x[b_k] @ Ax[k]^T.

    :param x: features (N, C, H, W), floating point.
    :param rois: (K, 5) [batch_index, x1, y1, x2, y2] in image pixels, or a list
        of N (L_i, 4) boxes (the ``boxes`` of ``F.roi_align``).
    :param output_size: int or (PH, PW), each >= 1.
    :param spatial_scale: feature pixels per image pixel (1/stride), > 0.
    :param sampling_ratio: samples per bin along each axis; <= 0 means adaptive,
        ceil(roi_size / output_size) per RoI.
    :param aligned: True shifts the box by half a pixel so that its
        coordinates refer to pixel centres (and lets it be thinner than a pixel).
    :returns: ``(out, cache)``, out (K, C, PH, PW) in x's dtype.

    Non-finite box corners or a bad batch index are a ValueError naming the row. An
    inverted box (x2 < x1 or y2 < y1) is not an error, as in torchvision: with
    ``aligned=False`` its size is clamped to 1 feature pixel from (x1, y1); with
    ``aligned=True`` its adaptive grid is empty and its output is 0.
    """
    (PH, PW), scale, sampling_ratio = _check_align_args(
        x, output_size, spatial_scale, sampling_ratio, aligned
    )
    rois, batch = _rois_for(x, rois)
    xp = xp_of(x)
    N, C, H, W = x.shape
    # BEGIN SOLUTION roi_align_forward
    start_y, start_x, roi_h, roi_w = _roi_geometry(rois, scale, aligned)
    Ay = _align_axis_matrix(start_y, roi_h, _roi_grid(roi_h, PH, sampling_ratio), PH, H)
    Ax = _align_axis_matrix(start_x, roi_w, _roi_grid(roi_w, PW, sampling_ratio), PW, W)
    groups = _image_groups(batch, N)
    out = xp.zeros((rois.shape[0], C, PH, PW), dtype=x.dtype)
    for n, ks in groups:
        out[ks] = _sample_image(x[n], Ay[ks], Ax[ks])
    # END SOLUTION
    return out, RoIAlignCache(Ay, Ax, groups, x.shape)


def roi_align_backward(dout, cache):
    """dx[b] = sum over the RoIs k of image b of Ay[k]^T @ dout[k, c] @ Ax[k].

    :param dout: (K, C, PH, PW).
    :param cache: the ``RoIAlignCache`` of ``roi_align_forward``.
    :returns: dx (N, C, H, W); the boxes get no gradient.
    """
    Ay, Ax, groups, x_shape = cache
    xp = xp_of(dout)
    # BEGIN SOLUTION roi_align_backward
    dx = xp.zeros(x_shape, dtype=dout.dtype)
    for n, ks in groups:
        dx[n] = _unsample_image(dout[ks], Ay[ks], Ax[ks])
    # END SOLUTION
    return dx


def _bilinear_taps(y, x, H, W):
    """[(row, col, weight)] of the four neighbours of a sample; [] outside the map."""
    if y < -1.0 or y > H or x < -1.0 or x > W:
        return []  # adds 0, but still counts in the mean
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= H - 1:
        y0 = y1 = H - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= W - 1:
        x0 = x1 = W - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    hy, hx = 1.0 - ly, 1.0 - lx
    return [(y0, x0, hy * hx), (y0, x1, hy * lx), (y1, x0, ly * hx), (y1, x1, ly * lx)]


def _align_bins_naive(roi, output_size, scale, sampling_ratio, aligned, H, W):
    """For each bin of one RoI: (ph, pw, taps of all its samples, count), by loops."""
    PH, PW = output_size
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (v * scale - offset for v in roi[1:])
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:
        roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
    bin_h, bin_w = roi_h / PH, roi_w / PW
    grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / PH)
    grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / PW)
    count = max(grid_h * grid_w, 1)
    for ph in range(PH):
        for pw in range(PW):
            taps = []
            for iy in range(grid_h):
                y = y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                for ix in range(grid_w):
                    x = x1 + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                    taps += _bilinear_taps(y, x, H, W)
            yield ph, pw, taps, count


def roi_align_naive(x, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """RoIAlign by loops over RoIs, bins and samples, with torchvision's rules written out."""
    size, scale, sampling_ratio = _check_align_args(
        x, output_size, spatial_scale, sampling_ratio, aligned
    )
    rois, batch = _rois_for(x, rois)
    xp = xp_of(x)
    N, C, H, W = x.shape
    out = xp.zeros((rois.shape[0], C) + size, dtype=x.dtype)
    for k, roi in enumerate(rois.tolist()):
        b = int(roi[0])
        for ph, pw, taps, count in _align_bins_naive(roi, size, scale, sampling_ratio, aligned,
                                                     H, W):
            for row, col, weight in taps:
                out[k, :, ph, pw] += weight * x[b, :, row, col] / count
    return out


def roi_align_backward_naive(dout, x_shape, rois, output_size, spatial_scale=1.0,
                             sampling_ratio=-1, aligned=False):
    """dx by loops: every sample sends dout * weight / count to its four neighbours.

    :param dout: (K, C, PH, PW).
    :param x_shape: (N, C, H, W) of the features.
    :param rois: as in ``roi_align_forward``; the other arguments too.
    :returns: dx (N, C, H, W).
    """
    xp = xp_of(dout)
    dx = xp.zeros(x_shape, dtype=dout.dtype)
    size, scale, sampling_ratio = _check_align_args(
        dx, output_size, spatial_scale, sampling_ratio, aligned
    )
    rois, batch = _rois_for(dx, rois)
    H, W = x_shape[2:]
    for k, roi in enumerate(rois.tolist()):
        b = int(roi[0])
        for ph, pw, taps, count in _align_bins_naive(roi, size, scale, sampling_ratio, aligned,
                                                     H, W):
            for row, col, weight in taps:
                dx[b, :, row, col] += dout[k, :, ph, pw] * weight / count
    return dx


# ----- RoIPool ---------------------------------------------------------------------


def _round_half_away(v):
    """C's round(): halves go away from zero (numpy's round goes to the even neighbour)."""
    xp = xp_of(v)
    return xp.where(v >= 0, xp.floor(v + 0.5), -xp.floor(0.5 - v))


def _pool_axis_bins(lo_coord, hi_coord, n_bins, n_in):
    """(start, end) int64 (K, n_bins): bin p covers [start, end) on this axis, clipped to [0, n_in].

    ``lo_coord``, ``hi_coord`` (K,) the box edges already multiplied by spatial_scale.
    """
    xp = xp_of(lo_coord)
    first = _round_half_away(lo_coord)
    size = xp.maximum(_round_half_away(hi_coord) - first + 1, 1)  # inclusive count
    bin_size = (size / n_bins)[:, None]
    p = xp.arange(n_bins, dtype=lo_coord.dtype)[None, :]
    start = xp.floor(p * bin_size) + first[:, None]
    end = xp.ceil((p + 1) * bin_size) + first[:, None]
    return xp.clip(start, 0, n_in).astype(xp.int64), xp.clip(end, 0, n_in).astype(xp.int64)


def _pool_chunk(image, rows_in, cols_in):
    """Max and first row-major argmax over each bin of the K_c RoIs of one image.

    image (C, H, W); rows_in (K_c, PH, H) and cols_in (K_c, PW, W) are the bins'
    masks. Returns (best, arg): (K_c, C, PH, PW), arg flat h*W + w (meaningless
    for empty bins).
    """
    xp = xp_of(image)
    W = image.shape[2]
    neg_inf = xp.asarray(-xp.inf, dtype=image.dtype)
    # max over the bin's columns in every row: (K_c, C, H, PW, W) -> (K_c, C, H, PW)
    masked = xp.where(cols_in[:, None, None, :, :], image[None, :, :, None, :], neg_inf)
    best_col = masked.argmax(axis=4)  # first maximum of the row
    row_max = xp.take_along_axis(masked, best_col[..., None], axis=4)[..., 0]
    # max of those over the bin's rows: (K_c, C, PH, H, PW) -> (K_c, C, PH, PW)
    masked = xp.where(rows_in[:, None, :, :, None], row_max[:, :, None, :, :], neg_inf)
    best_row = masked.argmax(axis=3)  # the first row that reaches the maximum
    best = xp.take_along_axis(masked, best_row[:, :, :, None, :], axis=3)[:, :, :, 0, :]
    col = xp.take_along_axis(best_col, best_row, axis=2)  # that row's first max column
    return best, best_row * W + col


def _check_pool_args(x, output_size, spatial_scale):
    _check_x(x)
    return pair(output_size, "output_size", minimum=1), _check_scale(spatial_scale)


class RoIPoolCache(NamedTuple):
    argmax: object  # int (K, C, PH, PW): flat h*W + w of each bin's max, -1 for an empty bin
    batch: object  # int (K,): the image of each RoI
    x_shape: tuple


def roi_pool_forward(x, rois, output_size, spatial_scale=1.0):
    """RoIPool (torchvision): round the box to the grid, then max over each bin.

    :param x: features (N, C, H, W), floating point (finite values).
    :param rois: (K, 5) [batch_index, x1, y1, x2, y2] in image pixels, or a list
        of N (L_i, 4) boxes.
    :param output_size: int or (PH, PW), each >= 1.
    :param spatial_scale: feature pixels per image pixel (1/stride), > 0.
    :returns: ``(out, cache)``, out (K, C, PH, PW); the cache holds the argmax,
        flat ``h*W + w`` in the RoI's image plane, -1 for an empty bin.
    """
    (PH, PW), scale = _check_pool_args(x, output_size, spatial_scale)
    rois, batch = _rois_for(x, rois)
    xp = xp_of(x)
    N, C, H, W = x.shape
    K = rois.shape[0]
    # BEGIN SOLUTION roi_pool_forward
    start_h, end_h = _pool_axis_bins(rois[:, 2] * scale, rois[:, 4] * scale, PH, H)
    start_w, end_w = _pool_axis_bins(rois[:, 1] * scale, rois[:, 3] * scale, PW, W)
    rows_in = (xp.arange(H) >= start_h[:, :, None]) & (xp.arange(H) < end_h[:, :, None])
    cols_in = (xp.arange(W) >= start_w[:, :, None]) & (xp.arange(W) < end_w[:, :, None])
    empty = (end_h <= start_h)[:, :, None] | (end_w <= start_w)[:, None, :]  # (K, PH, PW)
    out = xp.zeros((K, C, PH, PW), dtype=x.dtype)
    argmax = xp.zeros((K, C, PH, PW), dtype=xp.int64)
    chunk = max(1, _POOL_CHUNK_ELEMENTS // (C * H * PW * (W + PH)))
    for n, ks in _image_groups(batch, N):
        for first in range(0, ks.shape[0], chunk):
            kc = ks[first:first + chunk]
            out[kc], argmax[kc] = _pool_chunk(x[n], rows_in[kc], cols_in[kc])
    out = xp.where(empty[:, None], 0, out).astype(x.dtype, copy=False)
    argmax = xp.where(empty[:, None], -1, argmax)
    # END SOLUTION
    return out, RoIPoolCache(argmax, batch, x.shape)


def roi_pool_backward(dout, cache):
    """dx: each dout goes to its bin's argmax (nothing from empty bins); shared argmaxes add.

    :param dout: (K, C, PH, PW).
    :param cache: the ``RoIPoolCache`` of ``roi_pool_forward``.
    :returns: dx (N, C, H, W).
    """
    argmax, batch, x_shape = cache
    xp = xp_of(dout)
    N, C, H, W = x_shape
    # BEGIN SOLUTION roi_pool_backward
    plane_start = (batch[:, None] * C + xp.arange(C)[None, :]) * (H * W)  # (K, C)
    index = plane_start[:, :, None, None] + xp.maximum(argmax, 0)
    dx = xp.zeros(x_shape, dtype=dout.dtype)
    scatter_add(dx, index, xp.where(argmax >= 0, dout, 0))
    # END SOLUTION
    return dx


def _round_half_away_scalar(v: float) -> int:
    return math.floor(v + 0.5) if v >= 0 else -math.floor(0.5 - v)


def roi_pool_naive(x, rois, output_size, spatial_scale=1.0):
    """RoIPool by loops over RoIs, bins, channels and pixels; returns (out, argmax).

    argmax is flat ``h*W + w`` in the RoI's image plane, -1 for an empty bin.
    """
    (PH, PW), scale = _check_pool_args(x, output_size, spatial_scale)
    rois, batch = _rois_for(x, rois)
    xp = xp_of(x)
    N, C, H, W = x.shape
    K = rois.shape[0]
    out = xp.zeros((K, C, PH, PW), dtype=x.dtype)
    argmax = xp.full((K, C, PH, PW), -1, dtype=xp.int64)
    for k, roi in enumerate(rois.tolist()):
        b = int(roi[0])
        x1, y1, x2, y2 = (_round_half_away_scalar(v * scale) for v in roi[1:])
        bin_h, bin_w = max(y2 - y1 + 1, 1) / PH, max(x2 - x1 + 1, 1) / PW
        for ph in range(PH):
            h0 = min(max(math.floor(ph * bin_h) + y1, 0), H)
            h1 = min(max(math.ceil((ph + 1) * bin_h) + y1, 0), H)
            for pw in range(PW):
                w0 = min(max(math.floor(pw * bin_w) + x1, 0), W)
                w1 = min(max(math.ceil((pw + 1) * bin_w) + x1, 0), W)
                if h1 <= h0 or w1 <= w0:
                    continue  # empty bin: 0, argmax -1
                for c in range(C):
                    best, where = -math.inf, -1
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            value = x[b, c, h, w].item()
                            if value > best:  # strict: the first maximum wins ties
                                best, where = value, h * W + w
                    out[k, c, ph, pw] = best
                    argmax[k, c, ph, pw] = where
    return out, argmax
