"""Boxes: formats, IoU, non-maximum suppression, clipping.

The geometry of rectangles that every detector needs, outside the network
itself. (What a detector does with anchors, their grid, the box coder, the
matcher and the sampler, builds on this and lives in ``tinyseg/anchors.py``.)
None of it is differentiable: these
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

Bad values. A NaN compares False with everything: its IoU is 0, NMS never
suppresses it, a NaN score sorts last. So ``box_iou`` and every NMS refuse
non-finite boxes or scores and inverted boxes (x2 < x1 or y2 < y1), naming the
argument and the first bad index. NMS's flags ride on its one overlaps copy;
``box_iou`` copies its boxes once (``check_values=False`` skips it). A
zero-size box is valid: its IoU with everything is 0.
"""

from __future__ import annotations

import numbers

import numpy

from . import backend
from .validate import (
    check_box_values,
    check_finite,
    check_fraction,
    check_int,
    pair_of,
)

__all__ = [
    "BOX_FORMATS",
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "check_array",
    "check_box_values",
    "check_boxes",
    "clip_boxes_to_image",
    "generalized_box_iou",
    "nms",
    "nms_by_image",
    "nms_naive",
    "pair_of",
    "remove_small_boxes",
    "safe_divide",
]

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


# ----- argument checks ---------------------------------------------------------------


def check_array(a, name: str, layout: str):
    """Require a numpy or cupy array (TypeError otherwise); ``layout`` goes in the message."""
    if not (hasattr(a, "ndim") and hasattr(a, "dtype") and hasattr(a, "shape")):
        raise TypeError(f"{name} must be a numpy or cupy array of shape {layout}, "
                        f"got {type(a).__name__}")


def check_boxes(boxes, name: str = "boxes"):
    """Require an (N, 4) array of real numbers; return it as floating point."""
    check_array(boxes, name, "(N, 4)")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {tuple(boxes.shape)}")
    if boxes.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {boxes.dtype}")
    if boxes.dtype.kind != "f":  # integer pixel boxes: areas and ratios need floats
        boxes = boxes.astype(backend.xp_of(boxes).float64)
    return boxes


def _check_vector(v, name: str, n: int, kinds: str, what: str):
    check_array(v, name, f"({n},)")
    if v.ndim != 1 or v.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), one per box, got {tuple(v.shape)}")
    if v.dtype.kind not in kinds:
        raise TypeError(f"{name} must hold {what}, got dtype {v.dtype}")


def _check_format(fmt, name: str) -> str:
    if fmt not in BOX_FORMATS:
        raise ValueError(f"{name} must be one of {BOX_FORMATS}, got {fmt!r}")
    return fmt


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
    boxes = check_boxes(boxes)
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
    boxes = check_boxes(boxes)
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


def box_iou(boxes1, boxes2, *, check_values: bool = True):
    """Pairwise intersection over union of two sets of xyxy boxes.

    :param boxes1: (N, 4) array of finite boxes with x1 <= x2 and y1 <= y2
        (ValueError naming the first bad row otherwise).
    :param boxes2: (M, 4) array on the same device, likewise.
    :param check_values: False skips the finite/ordered check, which on a GPU is one
        copy to the host (a sync) per call; the detectors' matchers pass False, since
        their anchors, clipped proposals and host-checked targets are valid by construction.
    :returns: (N, M) array, ``iou[i, j] = IoU(boxes1[i], boxes2[j])``; 0 where the
        union is 0 (a zero-area box has IoU 0 with everything).
    """
    boxes1 = check_boxes(boxes1, "boxes1")
    boxes2 = check_boxes(boxes2, "boxes2")
    if check_values:
        check_box_values(boxes1, "boxes1")
        check_box_values(boxes2, "boxes2")
    return _iou_and_union(boxes1, boxes2)[0]


def generalized_box_iou(boxes1, boxes2, *, check_values: bool = True):
    """Pairwise generalized IoU, ``IoU - (|C| - union) / |C|`` with C the enclosing box.

    :param boxes1: (N, 4) xyxy array.
    :param boxes2: (M, 4) xyxy array.
    :param check_values: as for ``box_iou``.
    :returns: (N, M) array with values in (-1, 1]; where |C| is 0 (two equal
        zero-area boxes) the penalty term is taken as 0.
    """
    boxes1 = check_boxes(boxes1, "boxes1")
    boxes2 = check_boxes(boxes2, "boxes2")
    if check_values:
        check_box_values(boxes1, "boxes1")
        check_box_values(boxes2, "boxes2")
    xp = backend.xp_of(boxes1, boxes2)
    iou, union = _iou_and_union(boxes1, boxes2)
    top_left = xp.minimum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = xp.maximum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    size = xp.maximum(bottom_right - top_left, 0)
    enclosing = size[..., 0] * size[..., 1]
    return iou - safe_divide(enclosing - union, enclosing, xp)


# ----- non-maximum suppression -----------------------------------------------------------


def _check_nms_inputs(boxes, scores, iou_threshold):
    boxes = check_boxes(boxes)
    _check_vector(scores, "scores", boxes.shape[0], "iuf", "real numbers")
    check_fraction(iou_threshold, "iou_threshold")
    backend.xp_of(boxes, scores)  # raises if they live on different devices
    if scores.dtype.kind != "f":  # so that -scores cannot wrap around
        scores = scores.astype(backend.xp_of(scores).float64)
    return boxes, scores


def _check_nms_values(boxes, scores):
    """Finite scores, then finite, well-ordered boxes: a ValueError naming the first bad one."""
    check_finite(backend.to_numpy(scores), "scores")
    check_box_values(boxes)


def _score_order(scores, xp):
    """Indices by decreasing score; ties keep input order (stable sort, as torchvision)."""
    return xp.argsort(-scores, kind="stable")


def _greedy_nms(boxes, scores, iou_threshold, classes=None, images=None, num_images=1,
                top_n=None):
    """Greedy NMS of every image at once; a box suppresses only boxes of its image and class.

    Returns one int64 index array per image, by decreasing score, at most ``top_n`` long.
    """
    xp = backend.xp_of(boxes, scores)
    # One flag per box (a NaN/inf score or corner, or an inverted box): it crosses to the host
    # with the overlaps, in their one copy, instead of a sync of its own.
    bad = ~xp.isfinite(scores) | ~xp.isfinite(boxes).all(axis=1)
    bad |= (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    checked = boxes, scores
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
    overlaps = backend.to_numpy(xp.concatenate([bad, *blocks]))
    if overlaps[:bad.shape[0]].any():  # only now, on the error path, copy the values
        _check_nms_values(*checked)
    overlaps = overlaps[bad.shape[0]:]
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

    :param boxes: (N, 4) xyxy array, finite, x1 <= x2 and y1 <= y2.
    :param scores: (N,) array of finite scores, same device. A NaN score or box, or
        an inverted box, is a ValueError naming the first bad index; the check rides
        on the one copy of the overlaps to the host.
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
    _check_nms_values(boxes, scores)
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
    boxes = check_boxes(boxes)
    height, width = pair_of(size, "size", 0)
    xp = backend.xp_of(boxes)
    x = xp.clip(boxes[:, 0::2], 0, width)
    y = xp.clip(boxes[:, 1::2], 0, height)
    return xp.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)


def remove_small_boxes(boxes, min_size: float):
    """Indices (int64) of the boxes whose width and height are both >= ``min_size``."""
    boxes = check_boxes(boxes)
    if isinstance(min_size, bool) or not isinstance(min_size, numbers.Real) or min_size < 0:
        raise ValueError(f"min_size must be a number >= 0, got {min_size!r}")
    xp = backend.xp_of(boxes)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    keep = (widths >= min_size) & (heights >= min_size)
    return xp.nonzero(keep)[0].astype(xp.int64, copy=False)
