"""Boxes: formats, IoU, non-maximum suppression, anchors, box coding, matching, sampling.

Everything a two-stage detector (Faster / Mask R-CNN) does with rectangles,
outside the network itself, lives here. None of it is differentiable: these
functions work on raw numpy or cupy arrays, on the device of their inputs, and
follow torchvision's conventions so that numbers line up with it.

Notation (lecture style)
------------------------
b = (x1, y1, x2, y2)   a box in pixel coordinates, "xyxy": top-left corner
                       (x1, y1), bottom-right corner (x2, y2)
w = x2 - x1            width, and h = y2 - y1 height. There is NO "+1": a box
                       from 0 to 10 is 10 pixels wide (old Caffe code used
                       x2 - x1 + 1; torchvision and tinyseg do not)
(cx, cy)               centre, cx = x1 + w/2, cy = y1 + h/2
|b| = w * h            area
A (N, 4), B (M, 4)     two sets of boxes; pairwise results are (N, M)
p, g                   a proposal (anchor) box and its ground-truth box

Box formats
-----------
Three ways to write the same rectangle (``box_convert``):

    "xyxy"    (x1, y1, x2, y2)   corners: what IoU, NMS and tinyseg use
    "xywh"    (x1, y1, w, h)     top-left corner and size: COCO annotations
    "cxcywh"  (cx, cy, w, h)     centre and size: YOLO, DETR, box coding

    xywh   -> xyxy:  x2 = x1 + w,        y2 = y1 + h
    cxcywh -> xyxy:  x1 = cx - w/2,      x2 = cx + w/2   (and likewise for y)

IoU: intersection over union
----------------------------
The intersection of two boxes is again a box, from the larger top-left corner
to the smaller bottom-right corner; when they do not overlap that "box" has a
negative side, and the overlap is zero:

    iw = max(0, min(a.x2, b.x2) - max(a.x1, b.x1))
    ih = max(0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = iw * ih
    union = |a| + |b| - inter                (inclusion-exclusion)
    IoU(a, b) = inter / union                in [0, 1]

Example: a = (0, 0, 2, 2) and b = (1, 1, 3, 3) overlap in one unit square, so
inter = 1, union = 4 + 4 - 1 = 7, IoU = 1/7.

``box_iou(A, B)`` computes all N*M pairs at once by broadcasting A[:, None]
against B[None, :]. A zero-area box has union 0 with another zero-area box:
tinyseg defines that IoU as 0 rather than 0/0 = NaN, so a degenerate box never
matches anything and never poisons a comparison. (torchvision returns NaN
there; it compares as "not greater" in NMS, so NMS results agree.) This one
function, through ``_iou_and_union``, is the only IoU in tinyseg: GIoU, NMS
and the matcher all call it.

GIoU: generalized IoU (Rezatofighi et al. 2019)
-----------------------------------------------
IoU is 0 for every pair of disjoint boxes, near or far, so it gives no signal
about how far apart they are. GIoU subtracts the share of the smallest
enclosing box C that the union leaves empty:

    C = (min(a.x1, b.x1), min(a.y1, b.y1), max(a.x2, b.x2), max(a.y2, b.y2))
    GIoU(a, b) = IoU(a, b) - (|C| - union) / |C|          in (-1, 1]

Identical boxes give 1; far-apart boxes tend to -1. Example: a = (0, 0, 1, 1)
and b = (2, 0, 3, 1) are disjoint: IoU 0, union 2, |C| = 3, GIoU = -1/3.

Non-maximum suppression (greedy NMS)
------------------------------------
A detector fires many overlapping boxes on one object. NMS keeps the best and
drops its near-duplicates:

    1. sort the boxes by score, highest first (a STABLE sort: equal scores keep
       their input order, as torchvision does);
    2. take the best remaining box and keep it;
    3. drop every remaining box whose IoU with it is > threshold (strictly
       greater: a pair at exactly the threshold both survive);
    4. repeat from 2 until no box remains.

The kept indices come back in decreasing score order (int64). ``nms_naive`` is
these steps written as two plain loops over all pairs. ``nms`` computes the
N x N "overlaps by more than the threshold" matrix once, in one vectorised
IoU, and then runs the same greedy loop, where each step reads the winner's
row and removes all its overlapping survivors together: the loop turns once
per KEPT box, and each turn is one row lookup. (The matrix costs N^2 memory;
the detectors here call NMS on at most a few thousand candidates. An earlier
version computed the winner's IoU row inside the loop, O(N) memory, and was
2.5x slower on the RPN's 300 proposals.) The loop is inherently sequential:
whether box k survives depends on which earlier boxes were kept. So on a GPU
the matrix is computed there and copied to the host once, and the loop runs
on the host: on the device, each turn's ``alive.size`` test would be a sync.

Batched NMS. Detectors run NMS separately for each class: a dog box should not
suppress an overlapping person box. torchvision does this with a trick: shift
each class's boxes by class_index * (max coordinate + 1), so boxes of different
classes can never overlap, then run one NMS. tinyseg uses the same single
greedy pass with an exact version of the trick: a box is suppressed only if it
overlaps the winner AND has the winner's class. This gives the same result as
the offset (the same kept set, in the same score order) without adding large
offsets to float32 coordinates, and it also works when coordinates are
negative.

One NMS per batch. A detector decodes the candidates of all N images of a batch
together, so ``nms_by_image`` takes them as one flat list with the image index
of each, and folds the image into the key as well: a box suppresses only boxes
of its own image and class. The greedy sweep for each image stops as soon as
it has kept ``top_n`` boxes (the detections per image, or the RPN's
post-NMS top-n): the boxes after that could never be returned. The overlap
matrices of all images cross to the host in one copy, so the whole batch costs
two syncs (the per-image candidate counts, then the overlaps), not two per
image.

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
"""

from __future__ import annotations

import math
import numbers

import numpy

from . import backend
from .validate import check_fraction, check_int

__all__ = [
    "BELOW_LOW_THRESHOLD",
    "BETWEEN_THRESHOLDS",
    "BOX_FORMATS",
    "BalancedPositiveNegativeSampler",
    "BoxCoder",
    "DEFAULT_BBOX_XFORM_CLIP",
    "Matcher",
    "anchor_grid",
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "cell_anchors",
    "clip_boxes_to_image",
    "generalized_box_iou",
    "nms",
    "nms_by_image",
    "nms_naive",
    "remove_small_boxes",
]

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
BELOW_LOW_THRESHOLD = -1
BETWEEN_THRESHOLDS = -2
# exp(dw) is capped at 1000/16: no decoded box grows more than 62.5 x its reference.
DEFAULT_BBOX_XFORM_CLIP = math.log(1000.0 / 16)


# ----- argument checks ---------------------------------------------------------------


def _check_array(a, name: str, layout: str):
    if not (hasattr(a, "ndim") and hasattr(a, "dtype") and hasattr(a, "shape")):
        raise TypeError(f"{name} must be a numpy or cupy array of shape {layout}, "
                        f"got {type(a).__name__}")


def _check_boxes(boxes, name: str = "boxes"):
    """Require an (N, 4) array of real numbers; return it as floating point."""
    _check_array(boxes, name, "(N, 4)")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {tuple(boxes.shape)}")
    if boxes.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {boxes.dtype}")
    if boxes.dtype.kind != "f":  # integer pixel boxes: areas and ratios need floats
        boxes = boxes.astype(backend.xp_of(boxes).float64)
    return boxes


def _check_vector(v, name: str, n: int, kinds: str, what: str):
    _check_array(v, name, f"({n},)")
    if v.ndim != 1 or v.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), one per box, got {tuple(v.shape)}")
    if v.dtype.kind not in kinds:
        raise TypeError(f"{name} must hold {what}, got dtype {v.dtype}")




def _check_format(fmt, name: str) -> str:
    if fmt not in BOX_FORMATS:
        raise ValueError(f"{name} must be one of {BOX_FORMATS}, got {fmt!r}")
    return fmt


def _pair_of(value, name: str, minimum: float, kind=numbers.Real) -> tuple:
    """A number or a pair (y, x) of numbers >= minimum."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2:
        raise ValueError(f"{name} must be a number or a pair (height, width), got {value!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, kind):
            raise TypeError(f"{name} must be a number or a pair (height, width), got {value!r}")
        if v < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return values


def _positive_numbers(values, name: str) -> tuple:
    values = tuple(values) if isinstance(values, (tuple, list)) else (values,)
    if not values:
        raise ValueError(f"{name} must hold positive numbers, got none")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0:
            raise ValueError(f"{name} must hold positive numbers, got {values!r}")
    return values


def safe_divide(num, den, xp):
    """``num / den`` where ``den > 0``, else 0, on the arrays' device (``xp``: numpy or cupy).

    The convention for degenerate (zero-area) boxes and empty masks, and for 0/0 precisions.
    """
    positive = den > 0
    return xp.where(positive, num / xp.where(positive, den, 1), 0)


# ----- formats and areas ---------------------------------------------------------------


def box_convert(boxes, in_fmt: str, out_fmt: str):
    """Rewrite boxes from one format to another ("xyxy", "xywh", "cxcywh").

    :param boxes: (N, 4) array in ``in_fmt``. Integer boxes come back as float64.
    :param in_fmt: the format of ``boxes``.
    :param out_fmt: the format wanted.
    :returns: a new (N, 4) array in ``out_fmt`` (a copy even when the formats agree).
    """
    boxes = _check_boxes(boxes)
    _check_format(in_fmt, "in_fmt")
    _check_format(out_fmt, "out_fmt")
    xp = backend.xp_of(boxes)
    if in_fmt == out_fmt:
        return boxes.copy()
    # every conversion goes through xyxy: two formulas per format instead of six
    a, b, c, d = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    if in_fmt == "xywh":
        a, b, c, d = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        a, b, c, d = a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d
    if out_fmt == "xywh":
        a, b, c, d = a, b, c - a, d - b
    elif out_fmt == "cxcywh":
        a, b, c, d = (a + c) / 2, (b + d) / 2, c - a, d - b
    return xp.stack([a, b, c, d], axis=1)


def box_area(boxes):
    """Areas ``(x2 - x1) * (y2 - y1)`` of (N, 4) xyxy boxes, shape (N,).

    No clamping, as in torchvision: boxes are expected to have x1 <= x2 and y1 <= y2.
    """
    boxes = _check_boxes(boxes)
    return _area(boxes)


def _area(boxes):
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


# ----- IoU and GIoU ---------------------------------------------------------------------


def _iou_and_union(a, b):
    """THE box IoU of tinyseg: pairwise (N, M) IoU and union of checked xyxy arrays."""
    xp = backend.xp_of(a, b)
    top_left = xp.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    bottom_right = xp.minimum(a[:, None, 2:], b[None, :, 2:])
    size = xp.maximum(bottom_right - top_left, 0)  # a negative side means no overlap
    inter = size[..., 0] * size[..., 1]
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    return safe_divide(inter, union, xp), union


def box_iou(boxes1, boxes2):
    """Pairwise intersection over union of two sets of xyxy boxes.

    :param boxes1: (N, 4) array.
    :param boxes2: (M, 4) array on the same device.
    :returns: (N, M) array, ``iou[i, j] = IoU(boxes1[i], boxes2[j])``; 0 where the
        union is 0 (two zero-area boxes).
    """
    boxes1 = _check_boxes(boxes1, "boxes1")
    boxes2 = _check_boxes(boxes2, "boxes2")
    return _iou_and_union(boxes1, boxes2)[0]


def generalized_box_iou(boxes1, boxes2):
    """Pairwise generalized IoU, ``IoU - (|C| - union) / |C|`` with C the enclosing box.

    :param boxes1: (N, 4) xyxy array.
    :param boxes2: (M, 4) xyxy array.
    :returns: (N, M) array with values in (-1, 1]; where |C| is 0 (two equal
        zero-area boxes) the penalty term is taken as 0.
    """
    boxes1 = _check_boxes(boxes1, "boxes1")
    boxes2 = _check_boxes(boxes2, "boxes2")
    xp = backend.xp_of(boxes1, boxes2)
    iou, union = _iou_and_union(boxes1, boxes2)
    top_left = xp.minimum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = xp.maximum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    size = xp.maximum(bottom_right - top_left, 0)
    enclosing = size[..., 0] * size[..., 1]
    return iou - safe_divide(enclosing - union, enclosing, xp)


# ----- non-maximum suppression -----------------------------------------------------------


def _check_nms_inputs(boxes, scores, iou_threshold):
    boxes = _check_boxes(boxes)
    _check_vector(scores, "scores", boxes.shape[0], "iuf", "real numbers")
    check_fraction(iou_threshold, "iou_threshold")
    backend.xp_of(boxes, scores)  # raises if they live on different devices
    if scores.dtype.kind != "f":  # so that -scores cannot wrap around
        scores = scores.astype(backend.xp_of(scores).float64)
    return boxes, scores


def _score_order(scores, xp):
    """Indices by decreasing score; ties keep input order (stable sort, as torchvision)."""
    return xp.argsort(-scores, kind="stable")


def _greedy_nms(boxes, scores, iou_threshold, classes=None, images=None, num_images=1,
                top_n=None):
    """Greedy NMS of every image at once; a box suppresses only boxes of its image and class.

    Returns one int64 index array per image, by decreasing score, at most ``top_n`` long.
    """
    xp = backend.xp_of(boxes, scores)
    order = _score_order(scores, xp)
    if images is None:
        counts = numpy.array([boxes.shape[0]])
    else:
        # image-major, then by score: each image's boxes are one contiguous block of `order`
        order = order[xp.argsort(images[order], kind="stable")]
        # boxes per image, by atomic adds (a bincount would sync twice); bin num_images
        # collects indices out of range, so that they are reported, not written out of bounds
        bins = xp.where((images >= 0) & (images < num_images), images, num_images)
        counts = backend.scatter_add(xp.zeros(num_images + 1, dtype=xp.int64), bins,
                                     xp.ones(bins.shape[0], dtype=xp.int64))
        counts = backend.to_numpy(counts)  # one copy
        if counts[-1]:
            raise ValueError(f"images must hold image indices in 0..{num_images - 1} "
                             f"(num_images={num_images})")
        counts = counts[:-1]
    boxes = boxes[order]
    if classes is not None:
        classes = classes[order]
    ends = numpy.cumsum(counts)
    starts = ends - counts
    # Every pairwise overlap inside each image block, in score order: (P_i, P_i) per image,
    # flattened end to end so that the host receives them in one copy.
    blocks = []
    for start, end in zip(starts.tolist(), ends.tolist()):
        block = _iou_and_union(boxes[start:end], boxes[start:end])[0] > iou_threshold
        if classes is not None:
            block &= classes[start:end, None] == classes[None, start:end]
        blocks.append(block.reshape(-1))
    overlaps = backend.to_numpy(xp.concatenate(blocks) if len(blocks) > 1 else blocks[0])
    # The sweep is sequential (each kept box decides which boxes are still alive), so it runs
    # on the host: the overlaps cross once, instead of one device sync per kept box.
    kept, offset = [], 0
    for start, count in zip(starts.tolist(), counts.tolist()):
        block = overlaps[offset:offset + count * count].reshape(count, count)
        offset += count * count
        keep = []
        alive = numpy.arange(count)  # positions, in score order, neither kept nor suppressed
        # The one Python loop over boxes: it turns once per KEPT box, and stops at top_n.
        while alive.size > 0 and (top_n is None or len(keep) < top_n):
            best, rest = alive[0], alive[1:]  # alive stays sorted, so alive[0] is the best
            keep.append(start + best)
            alive = rest[~block[best, rest]]
        kept.append(keep)
    # kept holds positions in `order`, best first: one move back, then one slice per image
    sizes = numpy.cumsum([0] + [len(k) for k in kept])
    positions = numpy.concatenate([numpy.asarray(k, dtype=numpy.int64) for k in kept])
    chosen = order[backend.to_device(positions, backend.device_of(order))]
    chosen = chosen.astype(xp.int64, copy=False)
    return [chosen[a:b] for a, b in zip(sizes[:-1].tolist(), sizes[1:].tolist())]


def nms(boxes, scores, iou_threshold: float):
    """Greedy non-maximum suppression (torchvision.ops.nms).

    :param boxes: (N, 4) xyxy array.
    :param scores: (N,) array of scores, same device.
    :param iou_threshold: in [0, 1]; a box is dropped when its IoU with a kept,
        higher-scoring box is strictly greater than this.
    :returns: int64 array of the kept indices into ``boxes``, by decreasing
        score (equal scores: lower index first).
    """
    boxes, scores = _check_nms_inputs(boxes, scores, iou_threshold)
    return _greedy_nms(boxes, scores, float(iou_threshold))[0]


def nms_naive(boxes, scores, iou_threshold: float):
    """Greedy NMS straight from its definition: two plain loops. A reference for tests."""
    boxes, scores = _check_nms_inputs(boxes, scores, iou_threshold)
    xp = backend.xp_of(boxes, scores)
    order = _score_order(scores, xp)
    iou = _iou_and_union(boxes[order], boxes[order])[0]  # (N, N), rows and columns by score
    n = boxes.shape[0]
    suppressed = [False] * n
    keep = xp.zeros(n, dtype=bool)
    for i in range(n):
        if suppressed[i]:
            continue
        keep[i] = True
        for j in range(i + 1, n):
            if iou[i, j] > iou_threshold:
                suppressed[j] = True
    return order[xp.nonzero(keep)[0]].astype(xp.int64, copy=False)


def batched_nms(boxes, scores, idxs, iou_threshold: float):
    """NMS within each class: boxes of different ``idxs`` never suppress each other.

    :param boxes: (N, 4) xyxy array.
    :param scores: (N,) scores.
    :param idxs: (N,) integer class (or image) index of each box.
    :param iou_threshold: in [0, 1], as for ``nms``.
    :returns: int64 kept indices by decreasing score, the same as running ``nms``
        per class and merging the results by score.
    """
    boxes, scores = _check_nms_inputs(boxes, scores, iou_threshold)
    _check_vector(idxs, "idxs", boxes.shape[0], "iu", "integers (class indices)")
    backend.xp_of(boxes, idxs)
    return _greedy_nms(boxes, scores, float(iou_threshold), classes=idxs)[0]


def nms_by_image(boxes, scores, idxs, images, num_images: int, iou_threshold: float,
                 top_n: int | None = None) -> list:
    """One NMS for a whole batch: per image, per class, the best ``top_n`` kept boxes.

    The candidates of all images come in one flat list, with the image of each in
    ``images``. A box suppresses only boxes of the same image and the same class: the
    image index is folded into the class key, as ``batched_nms`` folds in the class.
    The result equals ``batched_nms`` run on each image's candidates and cut to
    ``top_n``, and costs two device syncs for the whole batch.

    :param boxes: (N, 4) xyxy candidates of all images.
    :param scores: (N,) their scores.
    :param idxs: (N,) integer classes, or None for class-agnostic NMS (the RPN).
    :param images: (N,) integer image index of each candidate, in ``0..num_images-1``.
    :param num_images: the batch size (images without candidates get empty results).
    :param iou_threshold: in [0, 1], as for ``nms``.
    :param top_n: keep at most this many boxes per image (the sweep stops there);
        None keeps all.
    :returns: ``num_images`` int64 arrays of indices into the flat inputs, each by
        decreasing score.
    """
    boxes, scores = _check_nms_inputs(boxes, scores, iou_threshold)
    n = boxes.shape[0]
    if idxs is not None:
        _check_vector(idxs, "idxs", n, "iu", "integers (class indices)")
        backend.xp_of(boxes, idxs)
    _check_vector(images, "images", n, "iu", "integers (image indices)")
    backend.xp_of(boxes, images)
    num_images = check_int(num_images, "num_images", 1)
    if top_n is not None:
        top_n = check_int(top_n, "top_n", 1)
    return _greedy_nms(boxes, scores, float(iou_threshold), classes=idxs, images=images,
                       num_images=num_images, top_n=top_n)


def clip_boxes_to_image(boxes, size):
    """Clamp xyxy boxes to an image of ``size = (height, width)``: x to [0, W], y to [0, H]."""
    boxes = _check_boxes(boxes)
    height, width = _pair_of(size, "size", 0)
    xp = backend.xp_of(boxes)
    x = xp.clip(boxes[:, 0::2], 0, width)
    y = xp.clip(boxes[:, 1::2], 0, height)
    return xp.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)


def remove_small_boxes(boxes, min_size: float):
    """Indices (int64) of the boxes whose width and height are both >= ``min_size``."""
    boxes = _check_boxes(boxes)
    if isinstance(min_size, bool) or not isinstance(min_size, numbers.Real) or min_size < 0:
        raise ValueError(f"min_size must be a number >= 0, got {min_size!r}")
    xp = backend.xp_of(boxes)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    keep = (widths >= min_size) & (heights >= min_size)
    return xp.nonzero(keep)[0].astype(xp.int64, copy=False)


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
    height, width = _pair_of(feature_size, "feature_size", 1, numbers.Integral)
    stride_y, stride_x = _pair_of(stride, "stride", 0)
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
    """

    def __init__(self, weights=(1.0, 1.0, 1.0, 1.0),
                 bbox_xform_clip: float = DEFAULT_BBOX_XFORM_CLIP):
        weights = tuple(weights) if isinstance(weights, (tuple, list)) else (weights,)
        if len(weights) != 4:
            raise ValueError(f"weights must be 4 numbers (wx, wy, ww, wh), got {weights!r}")
        self.weights = tuple(float(w) for w in _positive_numbers(weights, "weights"))
        if isinstance(bbox_xform_clip, bool) or not isinstance(bbox_xform_clip, numbers.Real):
            raise TypeError(f"bbox_xform_clip must be a number, got {bbox_xform_clip!r}")
        self.bbox_xform_clip = float(bbox_xform_clip)

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
        gt_boxes = _check_boxes(gt_boxes, "gt_boxes")
        proposals = _check_boxes(proposals, "proposals")
        if gt_boxes.shape[0] != proposals.shape[0]:
            raise ValueError(
                f"gt_boxes and proposals must have the same number of boxes, got "
                f"{gt_boxes.shape[0]} and {proposals.shape[0]}"
            )
        xp = backend.xp_of(gt_boxes, proposals)
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
        _check_array(deltas, "deltas", "(N, 4*K)")
        if deltas.ndim != 2 or deltas.shape[1] % 4 != 0 or deltas.dtype.kind != "f":
            raise ValueError(
                f"deltas must be a float array of shape (N, 4*K), got {tuple(deltas.shape)} "
                f"{deltas.dtype}"
            )
        boxes = _check_boxes(boxes)
        if deltas.shape[0] != boxes.shape[0]:
            raise ValueError(
                f"deltas must have one row per box: boxes has {boxes.shape[0]}, "
                f"deltas has {deltas.shape[0]}"
            )
        xp = backend.xp_of(deltas, boxes)
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
        _check_array(q, "match_quality_matrix", "(G, P)")
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
        _check_array(labels, "labels", "(N,)")
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


# ===== Overlaps for evaluation: crowd regions and masks ===================================
# (moved here from tinyseg.metrics, which scores detections with them)
#
# COCO measures a detection against a crowd region (a group labelled as one) by the share of
# the detection inside it, |d and g| / |d|, not by IoU: the crowd's own extent means nothing.
# Masks overlap in pixels: flattened to rows of 0/1, all intersections are one matrix product.

__all__ += ["detection_box_iou", "mask_area", "mask_iou", "safe_divide"]


def _crowd_flags(iscrowd, m: int, xp):
    """``iscrowd`` as a (M,) bool array on the device of the overlaps."""
    crowd = xp.asarray(iscrowd).astype(bool).reshape(-1)
    if crowd.shape != (m,):
        raise ValueError(f"iscrowd must have shape ({m},), one flag per ground truth, "
                         f"got {tuple(crowd.shape)}")
    return crowd


def _fraction_inside(boxes, regions):
    """(N, M): the share of each box's area inside each region, ``|b and r| / |b|``.

    Clipping a box into a region gives exactly their intersection (a zero-width box when
    they do not overlap), so this is two ``box_area`` calls and a division.
    """
    xp = backend.xp_of(boxes, regions)
    low = regions[None, :, [0, 1, 0, 1]]  # (1, M, 4): each corner coordinate's lower bound
    high = regions[None, :, [2, 3, 2, 3]]
    clipped = xp.clip(boxes[:, None, :], low, high)  # (N, M, 4)
    inside = box_area(clipped.reshape(-1, 4)).reshape(len(boxes), len(regions))
    return safe_divide(inside, box_area(boxes)[:, None], xp)


def detection_box_iou(dets, gts, iscrowd=None):
    """COCO's box overlaps: ``box_iou``, except ``|d and g| / |d|`` against crowd regions.

    A crowd region (a group of people, labelled as one) has no meaningful extent of its own,
    so what counts is how much of the detection lies inside it. Runs on the boxes' device.

    :param dets: (D, 4) xyxy detection boxes.
    :param gts: (G, 4) xyxy ground-truth boxes.
    :param iscrowd: (G,) bools, True for a crowd region (default: none).
    :returns: (D, G) float array.
    """
    iou = box_iou(dets, gts)
    if iscrowd is not None:
        crowd = _crowd_flags(iscrowd, iou.shape[1], backend.xp_of(iou))
        if crowd.any():
            iou[:, crowd] = _fraction_inside(dets, gts[crowd])
    return iou


def mask_iou(masks1, masks2, iscrowd=None):
    """Pairwise IoU of two sets of binary masks, ``|A and B| / |A or B|`` in pixels.

    All pairs at once: with the masks flattened to rows of 0/1, the intersections are one
    matrix product ``A @ B.T``, the areas are row sums, and union = area_a + area_b - inter.
    Counts are exact in float32 up to 2^24 pixels per mask. Runs on the masks' device.

    :param masks1: (N, H, W) bool (e.g. detections).
    :param masks2: (M, H, W) bool (e.g. ground truths), same H and W.
    :param iscrowd: optional (M,) bools: for a crowd mask the overlap is ``|A and B| / |A|``,
        the share of mask A inside the crowd region (pycocotools' rule).
    :returns: (N, M) float array; 0 where the union is empty.
    """
    for name, m in (("masks1", masks1), ("masks2", masks2)):
        if getattr(m, "ndim", None) != 3:
            raise ValueError(f"{name} must be an (N, H, W) array of masks, "
                             f"got shape {getattr(m, 'shape', None)}")
    if masks1.shape[1:] != masks2.shape[1:]:
        raise ValueError(f"masks1 and masks2 must share (H, W), got {masks1.shape[1:]} and "
                         f"{masks2.shape[1:]}")
    (a, area_a), (b, area_b) = _flat_masks(masks1), _flat_masks(masks2)
    return _mask_overlaps(a @ b.T, area_a, area_b, iscrowd)


def mask_area(masks):
    """Pixel count of each (N, H, W) binary mask, as float64 (N,), on the masks' device."""
    if getattr(masks, "ndim", None) != 3:
        raise ValueError(f"masks must be an (N, H, W) array of masks, "
                         f"got shape {getattr(masks, 'shape', None)}")
    return _flat_masks(masks)[1]


def _flat_masks(masks):
    """(N, H, W) masks -> rows of 0/1 float32 (N, H*W) and the areas (N,) as float64."""
    xp = backend.xp_of(masks)
    n, h, w = masks.shape
    flat = masks.reshape(n, h * w).astype(xp.float32)
    return flat, (flat @ xp.ones(flat.shape[1], dtype=xp.float32)).astype(xp.float64)


def _mask_overlaps(inter, area_a, area_b, iscrowd=None):
    """IoU from pixel counts: inter / (area_a + area_b - inter), or inter / area_a for crowds."""
    xp = backend.xp_of(inter)
    inter = inter.astype(xp.float64)
    union = area_a[:, None] + area_b[None, :] - inter
    if iscrowd is not None:
        union = xp.where(_crowd_flags(iscrowd, union.shape[1], xp)[None, :], area_a[:, None], union)
    return safe_divide(inter, union, xp)
