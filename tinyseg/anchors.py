"""Anchors and their training targets: the anchor grid, box coding, matching, sampling.

A detector with anchors (RetinaNet, Faster / Mask R-CNN) places reference boxes on
its feature map, and learns, for each, whether an object is there and how to move
the box onto it. This module holds the four pieces of that outside the network:
where the anchors are (``cell_anchors``, ``anchor_grid``), how a box is written as
a correction of an anchor (``BoxCoder``), which ground truth each anchor learns
from (``Matcher``) and which anchors enter the loss (``BalancedPositiveNegativeSampler``).
They follow torchvision's conventions so that numbers line up with it, and work on
numpy or cupy arrays on the device of their inputs; the geometry they use (IoU,
formats) is ``tinyseg/boxes.py``'s, with its notation: b = (x1, y1, x2, y2) xyxy,
w = x2 - x1 (no "+1"), p a reference (anchor or proposal) box and g its ground truth.

Anchors (Faster R-CNN; torchvision AnchorGenerator)
---------------------------------------------------
An anchor is a reference box the RPN scores and refines. For each size s (the
square root of the area) and aspect ratio r = h / w:

    h = s * sqrt(r),   w = s / sqrt(r)          (so w * h = s^2)
    cell anchor = round([-w, -h, w, h] / 2)     centred at (0, 0)

ordered ratio-major: for each ratio, every size. (``round`` is round-half-to-
even, like torch.round.) The A = len(ratios) * len(sizes) cell anchors are then
copied to every location (i, j) of an H x W feature map with stride (sy, sx):

    anchor[(i*W + j)*A + a] = cell[a] + (j*sx, i*sy, j*sx, i*sy)

row-major over locations, and for each location all A cell anchors, matching
the (H, W, A) layout of the RPN's outputs. Note the shift is j*sx, the
top-left corner of cell j, not its centre: that is torchvision's convention.

Box coding (R-CNN; torchvision BoxCoder)
----------------------------------------
A detector does not predict box corners. It predicts a small correction
("deltas") of a reference box p (an anchor or a proposal) towards its
ground truth g, in units of p's own size, so the targets are scale-free:

    encode:  dx = wx * (gx - px) / pw         dy = wy * (gy - py) / ph
             dw = ww * log(gw / pw)           dh = wh * log(gh / ph)

using centres (px, py) = (x1 + pw/2, y1 + ph/2) and sizes pw = x2 - x1,
ph = y2 - y1. The weights (wx, wy, ww, wh) rescale the targets so the losses
of the four numbers are of similar size: (1, 1, 1, 1) for the RPN, (10, 10, 5,
5) for the box head. Decoding inverts it:

    decode:  gx = dx/wx * pw + px             gy = dy/wy * ph + py
             gw = exp(min(dw/ww, clip)) * pw  gh = exp(min(dh/wh, clip)) * ph
             box = (gx - gw/2, gy - gh/2, gx + gw/2, gy + gh/2)

The clamp clip = log(1000/16) ~ 4.135 stops exp() from overflowing on a wild
early prediction: no box grows more than 1000/16 = 62.5 times its reference.
Encoding does not clamp (targets come from real boxes). The log makes scaling
symmetric: doubling and halving are +log 2 and -log 2.

Matcher (which ground truth does each prediction learn from?)
-------------------------------------------------------------
Given the (G, P) quality matrix Q = box_iou(gt_boxes, predictions), each
prediction j takes its best ground truth, m_j = argmax_i Q[i, j] (first
maximum on ties), with quality q_j = max_i Q[i, j]. Then

    q_j >= high              -> m_j            foreground (matched)
    low <= q_j < high        -> -2             BETWEEN_THRESHOLDS: ignored
    q_j < low                -> -1             BELOW_LOW_THRESHOLD: background

RPN: high 0.7, low 0.3. RoI heads: high = low = 0.5 (no ignored band).

With ``allow_low_quality_matches`` (the RPN), a ground truth that no anchor
reaches at ``high`` would get no positive at all. So for every ground truth i
with best quality Q_i = max_j Q[i, j], each prediction j with Q[i, j] = Q_i
(ties included) is restored to its match m_j, whatever its band. As in
torchvision, it gets m_j (its own best ground truth), which is i unless j is
tied between two ground truths. With no ground truth at all (G = 0), every
prediction is background, -1.

Sampler (balancing positives and negatives)
-------------------------------------------
An image has a handful of positive anchors and tens of thousands of negative
ones. Training on all of them drowns the positives, so each image contributes
a fixed-size minibatch: B samples, at most a fraction f positive:

    n_pos = min(#positives, floor(B * f))
    n_neg = min(#negatives, B - n_pos)

drawn uniformly without replacement. RPN: B = 256, f = 0.5; RoI heads: B =
512, f = 0.25. Labels follow torchvision: >= 1 positive, 0 negative, -1
ignored. tinyseg draws one uniform key per element from an explicit
``numpy.random.Generator`` (so a seed reproduces the sample on every backend),
and takes the n_pos positives (n_neg negatives) with the smallest keys: a
uniformly random subset, found with one sort, no loop and no device sync.

Where the sampler's random numbers come from
--------------------------------------------
The sampler never reaches for a global stream by itself: it draws from the
Generator it is given. ``step_generator()`` makes one for a training step from a
single draw of numpy's global stream, which the training loop reseeds from
(seed, epoch) at the start of every epoch (``engine.seed_everything``). So the
samples of step t of epoch e depend only on (seed, e, t): an interrupted run,
resumed at an epoch boundary, draws exactly what the uninterrupted run drew.
The keys are drawn on the host and moved to the labels' device once, explicitly,
so that a seed gives the same sample on every backend.
"""

from __future__ import annotations

import math
import numbers

import numpy

from . import backend
from .boxes import check_array, check_box_values, check_boxes, pair_of
from .validate import check_bool, check_finite, check_fraction, check_int

__all__ = [
    "BELOW_LOW_THRESHOLD",
    "BETWEEN_THRESHOLDS",
    "BalancedPositiveNegativeSampler",
    "BoxCoder",
    "DEFAULT_BBOX_XFORM_CLIP",
    "Matcher",
    "anchor_grid",
    "cell_anchors",
    "step_generator",
]

BELOW_LOW_THRESHOLD = -1
BETWEEN_THRESHOLDS = -2
# exp(dw) is capped at 1000/16: no decoded box grows more than 62.5 x its reference.
DEFAULT_BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def _positive_numbers(values, name: str) -> tuple:
    values = tuple(values) if isinstance(values, (tuple, list)) else (values,)
    if not values:
        raise ValueError(f"{name} must hold positive numbers, got none")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0:
            raise ValueError(f"{name} must hold positive numbers, got {values!r}")
    return values


# ----- anchors ----------------------------------------------------------------------------


def _float_dtype(dtype):
    dtype = numpy.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating-point type, got {dtype}")
    return dtype


def cell_anchors(sizes=(128, 256, 512), aspect_ratios=(0.5, 1.0, 2.0), *, device=None,
                 dtype="float32"):
    """The A = len(aspect_ratios) * len(sizes) anchors of one cell, centred at (0, 0).

    For ratio r = h/w and size s: ``h = s*sqrt(r)``, ``w = s/sqrt(r)``, anchor
    ``round([-w, -h, w, h] / 2)``; ordered ratio-major (for each ratio, every size).

    :param sizes: anchor sizes (square roots of the areas), positive numbers.
    :param aspect_ratios: h/w ratios, positive numbers.
    :param device: "cpu" or "gpu"; default: ``backend.get_default_device()``.
    :param dtype: floating-point dtype of the result (torchvision computes in float32).
    :returns: (A, 4) xyxy array.
    """
    sizes = _positive_numbers(sizes, "sizes")
    aspect_ratios = _positive_numbers(aspect_ratios, "aspect_ratios")
    dtype = _float_dtype(dtype)
    xp = backend.module_for(device or backend.get_default_device())
    scales = xp.asarray(sizes, dtype=dtype)
    h_ratios = xp.sqrt(xp.asarray(aspect_ratios, dtype=dtype))
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)  # ratio-major, then size
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    return (xp.stack([-ws, -hs, ws, hs], axis=1) / 2).round()


def anchor_grid(feature_size, stride, sizes=(128, 256, 512), aspect_ratios=(0.5, 1.0, 2.0), *,
                device=None, dtype="float32"):
    """All anchors of one feature map: the cell anchors shifted to every location.

    ``anchors[(i*W + j)*A + a] = cell[a] + (j*sx, i*sy, j*sx, i*sy)``: row-major over
    the H x W locations, and for each location all A cell anchors, the layout of
    an RPN output (N, A*k, H, W) permuted to (N, H, W, A, k).

    :param feature_size: H or (H, W) of the feature map.
    :param stride: s or (sy, sx): image pixels per feature-map cell (torchvision
        uses ``image_size // feature_size``).
    :param sizes: anchor sizes, as for ``cell_anchors``.
    :param aspect_ratios: h/w ratios, as for ``cell_anchors``.
    :param device: "cpu" or "gpu"; default: ``backend.get_default_device()``.
    :param dtype: floating-point dtype of the result.
    :returns: (H*W*A, 4) xyxy array.
    """
    height, width = pair_of(feature_size, "feature_size", 1, numbers.Integral)
    stride_y, stride_x = pair_of(stride, "stride", 0)
    if not (stride_y > 0 and stride_x > 0):
        raise ValueError(f"stride must be positive, got {stride!r}")
    cell = cell_anchors(sizes, aspect_ratios, device=device, dtype=dtype)
    xp = backend.xp_of(cell)
    shift_x = xp.arange(int(width), dtype=cell.dtype) * stride_x  # (W,)
    shift_y = xp.arange(int(height), dtype=cell.dtype) * stride_y  # (H,)
    sx = xp.broadcast_to(shift_x[None, :], (height, width)).reshape(-1)  # (H*W,), row-major
    sy = xp.broadcast_to(shift_y[:, None], (height, width)).reshape(-1)
    shifts = xp.stack([sx, sy, sx, sy], axis=1)  # (H*W, 4)
    return (shifts[:, None, :] + cell[None, :, :]).reshape(-1, 4)


# ----- box coding ------------------------------------------------------------------------


class BoxCoder:
    """Encode boxes as deltas from reference boxes, and decode them back (torchvision's).

    :param weights: (wx, wy, ww, wh), positive: (1, 1, 1, 1) for the RPN,
        (10, 10, 5, 5) for the box head.
    :param bbox_xform_clip: the clamp on dw/ww and dh/wh in ``decode``,
        ``log(1000/16)`` by default.
    :param check_values: True (the default) refuses, with a ValueError naming the
        argument and the first bad row, non-finite inputs, inverted boxes, and in
        ``encode`` boxes without area (their log-size is -inf). The check copies the
        inputs to the host, a sync on a GPU, so the detectors build their coders with
        False: their anchors, clipped proposals and host-checked targets are valid by
        construction, and a diverged network stops the run at its non-finite loss.
    """

    def __init__(self, weights=(1.0, 1.0, 1.0, 1.0),
                 bbox_xform_clip: float = DEFAULT_BBOX_XFORM_CLIP, check_values: bool = True):
        weights = tuple(weights) if isinstance(weights, (tuple, list)) else (weights,)
        if len(weights) != 4:
            raise ValueError(f"weights must be 4 numbers (wx, wy, ww, wh), got {weights!r}")
        self.weights = tuple(float(w) for w in _positive_numbers(weights, "weights"))
        if isinstance(bbox_xform_clip, bool) or not isinstance(bbox_xform_clip, numbers.Real):
            raise TypeError(f"bbox_xform_clip must be a number, got {bbox_xform_clip!r}")
        self.bbox_xform_clip = float(bbox_xform_clip)
        self.check_values = check_bool(check_values, "check_values")

    def __repr__(self):
        return f"BoxCoder(weights={self.weights}, bbox_xform_clip={self.bbox_xform_clip:.4f})"

    def encode(self, gt_boxes, proposals):
        """Deltas that move each proposal onto its ground-truth box.

        The argument order is torchvision's ``encode_single(reference_boxes, proposals)``,
        where the "reference boxes" are the matched ground truths.

        :param gt_boxes: (N, 4) xyxy ground-truth box matched to each proposal.
        :param proposals: (N, 4) xyxy anchors or proposals, with positive widths and heights.
        :returns: (N, 4) deltas (dx, dy, dw, dh).
        """
        gt_boxes = check_boxes(gt_boxes, "gt_boxes")
        proposals = check_boxes(proposals, "proposals")
        if gt_boxes.shape[0] != proposals.shape[0]:
            raise ValueError(
                f"gt_boxes and proposals must have the same number of boxes, got "
                f"{gt_boxes.shape[0]} and {proposals.shape[0]}"
            )
        xp = backend.xp_of(gt_boxes, proposals)
        if self.check_values:
            _check_boxes_with_area(gt_boxes, "gt_boxes")
            _check_boxes_with_area(proposals, "proposals")
        wx, wy, ww, wh = self.weights
        pw, ph, px, py = _widths_and_centres(proposals)
        gw, gh, gx, gy = _widths_and_centres(gt_boxes)
        dx = wx * (gx - px) / pw
        dy = wy * (gy - py) / ph
        dw = ww * xp.log(gw / pw)
        dh = wh * xp.log(gh / ph)
        return xp.stack([dx, dy, dw, dh], axis=1)

    def decode(self, deltas, boxes):
        """Apply deltas to reference boxes; the inverse of ``encode`` (with dw, dh clamped).

        :param deltas: (N, 4*K) array: K sets of (dx, dy, dw, dh) per box, e.g. one
            per class for the box head (K = 1 for the RPN).
        :param boxes: (N, 4) xyxy reference boxes (anchors or proposals).
        :returns: (N, 4*K) xyxy boxes in the dtype of ``deltas``.
        """
        check_array(deltas, "deltas", "(N, 4*K)")
        if deltas.ndim != 2 or deltas.shape[1] % 4 != 0 or deltas.dtype.kind != "f":
            raise ValueError(
                f"deltas must be a float array of shape (N, 4*K), got {tuple(deltas.shape)} "
                f"{deltas.dtype}"
            )
        boxes = check_boxes(boxes)
        if deltas.shape[0] != boxes.shape[0]:
            raise ValueError(
                f"deltas must have one row per box: boxes has {boxes.shape[0]}, "
                f"deltas has {deltas.shape[0]}"
            )
        xp = backend.xp_of(deltas, boxes)
        if self.check_values:
            check_finite(backend.to_numpy(deltas), "deltas")
            check_box_values(boxes)
        boxes = boxes.astype(deltas.dtype, copy=False)
        wx, wy, ww, wh = self.weights
        pw, ph, px, py = (v[:, None] for v in _widths_and_centres(boxes))  # (N, 1): all K
        dx = deltas[:, 0::4] / wx
        dy = deltas[:, 1::4] / wy
        dw = xp.minimum(deltas[:, 2::4] / ww, self.bbox_xform_clip)  # exp() must not overflow
        dh = xp.minimum(deltas[:, 3::4] / wh, self.bbox_xform_clip)
        cx = dx * pw + px
        cy = dy * ph + py
        half_w = 0.5 * (xp.exp(dw) * pw)
        half_h = 0.5 * (xp.exp(dh) * ph)
        out = xp.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=2)  # (N, K, 4)
        return out.reshape(deltas.shape)


def _check_boxes_with_area(boxes, name):
    """Finite xyxy boxes with x2 > x1 and y2 > y1: encode divides by w and takes log(w)."""
    check_box_values(boxes, name)
    values = backend.to_numpy(boxes)
    flat = numpy.flatnonzero((values[:, 2] <= values[:, 0]) | (values[:, 3] <= values[:, 1]))
    if flat.size:
        i = int(flat[0])
        raise ValueError(f"{name} must have x2 > x1 and y2 > y1 (a width and height to "
                         f"encode against), got {values[i].tolist()} at index {i}")


def _widths_and_centres(boxes):
    """(w, h, cx, cy) of xyxy boxes: w = x2 - x1 (no +1), cx = x1 + w/2."""
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return widths, heights, boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights


# ----- matching and sampling -----------------------------------------------------------------


class Matcher:
    """Assign each prediction a ground-truth index, or -1 (background) / -2 (ignored).

    :param high_threshold: quality >= this is a match (0.7 RPN, 0.5 RoI heads).
    :param low_threshold: quality < this is background (-1); in between is -2
        (0.3 RPN, 0.5 RoI heads). Both in [0, 1], low <= high.
    :param allow_low_quality_matches: also match, for each ground truth, the
        predictions tied for its highest quality (the RPN's rule).
    """

    BELOW_LOW_THRESHOLD = BELOW_LOW_THRESHOLD
    BETWEEN_THRESHOLDS = BETWEEN_THRESHOLDS

    def __init__(self, high_threshold: float, low_threshold: float,
                 allow_low_quality_matches: bool = False):
        self.high_threshold = check_fraction(high_threshold, "high_threshold")
        self.low_threshold = check_fraction(low_threshold, "low_threshold")
        if self.low_threshold > self.high_threshold:
            raise ValueError(
                f"low_threshold must be <= high_threshold, got low_threshold={low_threshold!r} "
                f"and high_threshold={high_threshold!r}"
            )
        self.allow_low_quality_matches = bool(allow_low_quality_matches)

    def __repr__(self):
        return (f"Matcher(high_threshold={self.high_threshold}, "
                f"low_threshold={self.low_threshold}, "
                f"allow_low_quality_matches={self.allow_low_quality_matches})")

    def __call__(self, match_quality_matrix):
        """Match predictions to ground truths.

        :param match_quality_matrix: (G, P) array, e.g. ``box_iou(gt_boxes, anchors)``:
            one row per ground truth, one column per prediction. G may be 0.
        :returns: (P,) int64: the matched ground-truth row, or -1 below
            ``low_threshold``, or -2 between the thresholds.
        """
        q = match_quality_matrix
        check_array(q, "match_quality_matrix", "(G, P)")
        if q.ndim != 2:
            raise ValueError(
                f"match_quality_matrix must have shape (G, P) (ground truths, predictions), "
                f"got {tuple(q.shape)}"
            )
        if q.dtype.kind not in "iuf":
            raise TypeError(f"match_quality_matrix must hold real numbers, got dtype {q.dtype}")
        xp = backend.xp_of(q)
        num_gt, num_pred = q.shape
        if num_gt == 0:  # an image without objects: every prediction is background
            return xp.full(num_pred, BELOW_LOW_THRESHOLD, dtype=xp.int64)
        if num_pred == 0:
            return xp.zeros(0, dtype=xp.int64)
        best_quality = q.max(axis=0)  # (P,) best ground truth of each prediction
        best_gt = q.argmax(axis=0).astype(xp.int64)  # first maximum on ties, like torch
        matches = xp.where(
            best_quality < self.low_threshold,
            BELOW_LOW_THRESHOLD,
            xp.where(best_quality < self.high_threshold, BETWEEN_THRESHOLDS, best_gt),
        ).astype(xp.int64)
        if self.allow_low_quality_matches:
            # every ground truth keeps its best predictions, ties included
            best_for_some_gt = (q == q.max(axis=1, keepdims=True)).any(axis=0)  # (P,)
            matches = xp.where(best_for_some_gt, best_gt, matches)
        return matches


def _as_generator(rng):
    if isinstance(rng, numpy.random.Generator):
        return rng
    if rng is None or (isinstance(rng, numbers.Integral) and not isinstance(rng, bool)):
        return numpy.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, got {rng!r}")


class BalancedPositiveNegativeSampler:
    """Pick a fixed-size, class-balanced minibatch of anchors or RoIs per image.

    :param batch_size_per_image: B, the number of samples per image (256 RPN, 512 RoI heads).
    :param positive_fraction: f in [0, 1]: at most ``floor(B * f)`` positives
        (0.5 RPN, 0.25 RoI heads); negatives fill the rest.
    :param rng: a ``numpy.random.Generator`` or an int seed: the sampler's own
        random stream, so a seed makes the samples reproducible.
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float, rng=None):
        self.batch_size_per_image = check_int(batch_size_per_image, "batch_size_per_image", 1)
        self.positive_fraction = check_fraction(positive_fraction, "positive_fraction")
        self.rng = _as_generator(rng)

    def __repr__(self):
        return (f"BalancedPositiveNegativeSampler(batch_size_per_image="
                f"{self.batch_size_per_image}, positive_fraction={self.positive_fraction})")

    def __call__(self, labels, rng=None):
        """Sample positives and negatives.

        :param labels: (N,) integer array: >= 1 positive (a class label), 0
            negative (background), -1 ignored. A list of such arrays (one per
            image) gives lists of results.
        :param rng: optional ``numpy.random.Generator`` or seed for this call;
            by default the sampler's own stream.
        :returns: (pos_mask, neg_mask), two (N,) bool arrays on the device of
            ``labels``; ``xp.nonzero(mask)[0]`` gives indices.
        """
        rng = self.rng if rng is None else _as_generator(rng)
        if isinstance(labels, (list, tuple)):
            pairs = [self(per_image, rng) for per_image in labels]
            return [p for p, _ in pairs], [n for _, n in pairs]
        check_array(labels, "labels", "(N,)")
        if labels.ndim != 1:
            raise ValueError(f"labels must have shape (N,), got {tuple(labels.shape)}")
        if labels.dtype.kind not in "iu":
            raise TypeError(f"labels must be integers (>=1 positive, 0 negative, -1 ignored), "
                            f"got dtype {labels.dtype}")
        xp = backend.xp_of(labels)
        # One uniform key per element, drawn on the host from the explicit Generator
        # and moved once, explicitly: the same seed gives the same sample on both backends.
        keys = backend.to_device(rng.random(labels.shape[0]), backend.device_of(labels))
        positive = labels >= 1
        negative = labels == 0
        max_positives = int(self.batch_size_per_image * self.positive_fraction)
        num_pos = xp.minimum(positive.sum(), max_positives)  # stays on the device: no sync
        num_neg = xp.minimum(negative.sum(), self.batch_size_per_image - num_pos)
        return (_smallest_keys(positive, keys, num_pos, xp),
                _smallest_keys(negative, keys, num_neg, xp))


def _smallest_keys(candidates, keys, count, xp):
    """Mask of the ``count`` candidates with the smallest keys: a uniform random subset."""
    # Non-candidates get key 2 (> every uniform key in [0, 1)), so they sort last.
    order = xp.argsort(xp.where(candidates, keys, 2.0), kind="stable")
    rank = xp.argsort(order, kind="stable")  # the inverse permutation: each element's place
    return candidates & (rank < count)


def step_generator() -> numpy.random.Generator:
    """A fresh Generator for one training step, seeded by one draw from numpy's global stream.

    The training loop reseeds that stream from (seed, epoch) every epoch, so the k-th call of
    an epoch gives the same Generator in every run with that seed (module docstring). The
    draw is on the host: nothing here touches a device.
    """
    return numpy.random.default_rng(int(numpy.random.randint(0, 2**32, dtype=numpy.int64)))
