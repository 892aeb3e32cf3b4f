"""Metrics: segmentation from one confusion matrix; detection AP and mAP.

Segmentation
------------
Every segmentation score in tinyseg is read off a single K x K table, the
confusion matrix ``C``. Row ``i`` is the true class, column ``j`` the predicted
class, and ``C[i, j]`` counts the pixels of class ``i`` that the model called
``j``. Pixels whose true label is not in ``0 .. K-1`` (the ignore label 255,
the border of VOC objects) are left out. For class ``c``::

    TP_c = C[c, c]                  (true positives: class c, called c)
    FP_c = sum_i C[i, c] - TP_c     (false positives: called c, but another class)
    FN_c = sum_j C[c, j] - TP_c     (false negatives: class c, called something else)

    IoU_c  = TP_c / (TP_c + FP_c + FN_c)       |P and G| / |P or G|
    Dice_c = 2 TP_c / (2 TP_c + FP_c + FN_c)   2 |P and G| / (|P| + |G|)
           = 2 IoU_c / (1 + IoU_c)

    pixel accuracy = sum_c TP_c / sum C        (the trace over the total)

A class with ``TP + FP + FN = 0`` (no pixel of it in the ground truth and
none predicted) has an undefined IoU, 0/0. Such a class is *absent*: it is
left out of the means. ``mIoU`` and mean Dice average over the present
classes only, and ``per_class_iou`` reports an absent class as ``None``
(JSON ``null``), never as 0 or 1.

Accumulate the matrix over the whole validation set first and compute the
scores once at the end (``SegmentationMeter``). Averaging per-image IoUs gives
a different, noisier number; the dataset-level matrix is the VOC convention.

The counting runs on the device of the inputs (``bincount`` exists in NumPy and
CuPy). The K x K result is then copied to the host once, explicitly, with
``backend.to_numpy``: it is tiny, and the scores are plain Python floats.

Detection: average precision
----------------------------
A detector returns, for each image, D scored detections (boxes, or masks) with class labels.
Scoring them takes three steps: decide which detections are right (matching), turn the
ranked list into a precision-recall curve, and summarise the curve by the area under it.

Matching. Take one image and one class. Sort its D detections by score, highest first (a
stable sort: equal scores keep their input order), and let ``IoU[d, g]`` be the overlap of
detection d with ground truth g: ``box_iou`` for boxes, ``|P and G| / |P or G|`` in pixels
for masks (``mask_iou``). At an IoU threshold t the detections take turns in score order;
detection d takes the still-free ground truth with the largest IoU >= t and is a true
positive (TP); if there is none it is a false positive (FP). A ground truth is matched at
most once, so a second box on the same object is a FP: a detector must not fire twice, and
must not miss (an unmatched ground truth lowers recall).

Precision and recall. Rank all detections of a class, over the whole dataset, by score.
Among the first k of them::

    TP(k), FP(k)                                 true and false positives
    precision(k) = TP(k) / (TP(k) + FP(k))       how much of what was said is right
    recall(k)    = TP(k) / n_gt                  how much of what is there was found

Walking k up lowers the score cut-off: recall never drops, precision zig-zags.

The envelope. Replace precision by the best precision reachable at that recall or beyond::

    p_env(r) = max { precision(k) : recall(k) >= r }        (0 past the last recall)

computed as a running maximum from the right (``precision_envelope``). It is monotone:
nobody would pick a cut-off that is worse in both precision and recall than another.
Average precision (AP) is the area under ``p_env``, measured three ways::

    VOC 2010+ (all points)  AP = sum_k (recall(k) - recall(k-1)) * p_env(recall(k))
    VOC 2007 (11 points)    AP = 1/11  * sum_{r = 0, 0.1, ..., 1}  p_env(r)
    COCO (101 points)       AP = 1/101 * sum_{r = 0, 0.01, ..., 1} p_env(r)

and mAP is the mean of AP over the classes.

VOC (``voc_eval``, ``voc_ap``). One threshold, IoU >= 0.5. A detection looks only at its
best-IoU ground truth (first on ties): if that one is already taken the detection is a FP,
even when another ground truth would still be free. Ground truths marked "difficult" (or
"iscrowd") are ignored: they do not count in n_gt, and a detection whose best match is one
of them is dropped from the list (neither TP nor FP).

COCO (``coco_evaluate``, ``mean_average_precision``), the rules of pycocotools'
``COCOeval``, which these functions reproduce exactly:

- Ten IoU thresholds t = 0.50, 0.55, ..., 0.95; "map" averages AP over thresholds and
  classes, "map_50" and "map_75" take one threshold.
- At most 100 detections per image and class (the highest scored) take part; "mar_1",
  "mar_10", "mar_100" are the final recall with only the top 1, 10 or 100 of each image
  and class, averaged over thresholds and classes.
- Ignored ground truths: crowd regions (``iscrowd``) and, for "map_small" (area < 32^2),
  "map_medium" (32^2 to 96^2) and "map_large" (> 96^2), ground truths whose area is out of
  the range (the ends count as inside). Area is the target's "area" when given, else the
  box area (bbox) or the pixel count (segm). A detection prefers a regular ground truth to
  an ignored one (among equal IoUs, the later ground truth wins); a detection matched to an
  ignored one counts as neither TP nor FP, and so does an unmatched detection whose own area
  is out of the range. Ignored ground truths are not counted in n_gt.
- A crowd region may absorb any number of detections, and its overlap is the share of the
  detection inside it, ``|d and g| / |d|`` (the crowd's own extent is meaningless).
- Precision is read off the envelope at the 101 recall points r: the first ranked position
  with recall(k) >= r ("searchsorted left"), and 0 where r is beyond the last recall.
- A class with no regular ground truth (in the area range) has no AP or recall: -1 in the
  ``precision`` and ``recall`` arrays, left out of every mean. A mean over nothing is -1
  (pycocotools' convention, kept so the numbers are JSON-able and comparable): an empty
  validation set scores -1, never 0 or NaN.

The detection metrics run on the host: their inputs are converted once with
``backend.to_numpy`` (a copy from the GPU for CuPy arrays), because the matching is a short
sequential loop over ranked detections, not array arithmetic worth a device.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import backend
from .autograd import Tensor
from .boxes import _safe_divide, box_area, box_iou

__all__ = [
    "COCOEvaluation",
    "SegmentationMeter",
    "coco_evaluate",
    "confusion_matrix",
    "detection_box_iou",
    "dice_per_class",
    "iou_per_class",
    "mask_iou",
    "mean_average_precision",
    "mean_dice",
    "mean_iou",
    "pixel_accuracy",
    "precision_envelope",
    "save_coco_json",
    "segmentation_scores",
    "to_coco_ground_truth",
    "to_coco_results",
    "voc_ap",
    "voc_eval",
]


def _raw(a):
    return a.data if isinstance(a, Tensor) else a


def confusion_matrix(pred, target, num_classes: int, ignore_index: int = 255):
    """Count (true class, predicted class) pairs over every pixel.

    :param pred: integer predicted labels, any shape (e.g. (N, H, W)); numpy or
        cupy array or Tensor. Must lie in ``0 .. num_classes-1``.
    :param target: integer true labels of the same shape. Pixels equal to
        ``ignore_index``, or outside ``0 .. num_classes-1``, are not counted.
    :param num_classes: K.
    :param ignore_index: the label of pixels to leave out (255 in VOC).
    :returns: int64 numpy array (K, K), rows = true class, columns = predicted.
    :raises ValueError: shapes differ, K < 1, or a predicted label is out of range.
    """
    pred, target = _raw(pred), _raw(target)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"num_classes must be an int, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(
            f"pred and target must have the same shape, got pred {tuple(pred.shape)} "
            f"and target {tuple(target.shape)}"
        )
    for name, a in (("pred", pred), ("target", target)):
        if a.dtype.kind not in "iub":
            raise TypeError(f"{name} must hold integer labels, got dtype {a.dtype}")
    xp = backend.xp_of(pred, target)
    pred = pred.reshape(-1).astype(xp.int64)
    target = target.reshape(-1).astype(xp.int64)
    valid = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        valid &= target != ignore_index
    pred, target = pred[valid], target[valid]
    if pred.size:
        low, high = int(pred.min()), int(pred.max())
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"pred holds label {low if low < 0 else high}, outside 0..{num_classes - 1} "
                f"(num_classes={num_classes})"
            )
    counts = xp.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return backend.to_numpy(counts).reshape(num_classes, num_classes).astype(np.int64)


def _check_matrix(cm):
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square (K, K) confusion matrix, got shape {cm.shape}")
    return cm.astype(np.float64)


def _tp_fp_fn(cm):
    cm = _check_matrix(cm)
    tp = np.diag(cm)
    return tp, cm.sum(axis=0) - tp, cm.sum(axis=1) - tp


def iou_per_class(cm):
    """IoU of each class, ``TP / (TP + FP + FN)``; NaN for an absent class (0/0).

    :param cm: (K, K) confusion matrix (rows true, columns predicted).
    :returns: float64 numpy array (K,).
    """
    tp, fp, fn = _tp_fp_fn(cm)
    union = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def dice_per_class(cm):
    """Dice (F1) of each class, ``2TP / (2TP + FP + FN)``; NaN for an absent class."""
    tp, fp, fn = _tp_fp_fn(cm)
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)


def _mean_present(values) -> float:
    present = ~np.isnan(values)
    return float(values[present].mean()) if present.any() else float("nan")


def mean_iou(cm) -> float:
    """mIoU: the mean IoU over the classes present (union > 0); NaN if none is."""
    return _mean_present(iou_per_class(cm))


def mean_dice(cm) -> float:
    """Mean Dice over the present classes; NaN if none is."""
    return _mean_present(dice_per_class(cm))


def pixel_accuracy(cm) -> float:
    """The fraction of counted pixels labelled correctly, ``trace(C) / sum(C)``."""
    cm = _check_matrix(cm)
    total = cm.sum()
    return float(np.trace(cm) / total) if total > 0 else float("nan")


def segmentation_scores(cm) -> dict:
    """The scores of a confusion matrix as a JSON-able dict.

    :returns: ``{"miou", "pixel_accuracy", "dice", "per_class_iou"}``;
        ``per_class_iou`` is a list of K floats, ``None`` for absent classes.
    """
    ious = iou_per_class(cm)
    return {
        "miou": mean_iou(cm),
        "pixel_accuracy": pixel_accuracy(cm),
        "dice": mean_dice(cm),
        "per_class_iou": [None if np.isnan(v) else float(v) for v in ious],
    }


class SegmentationMeter:
    """Accumulates a confusion matrix over batches; ``compute()`` gives the scores.

    Example::

        meter = SegmentationMeter(num_classes=4)
        for batch in loader:
            meter.update(model(x), batch["mask"])   # logits (N, K, H, W) or labels (N, H, W)
        scores = meter.compute()                   # {"miou": ..., ...}

    :param num_classes: K.
    :param ignore_index: label of pixels to leave out (255).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        """Start again from an all-zero matrix."""
        self.cm = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred, target) -> None:
        """Add a batch: ``pred`` labels (N, H, W) or logits (N, K, H, W); ``target`` (N, H, W).

        Scores are turned into labels by an argmax over axis 1 on their own device.
        """
        pred, target = _raw(pred), _raw(target)
        if pred.ndim == target.ndim + 1:
            if pred.shape[1] != self.num_classes:
                raise ValueError(
                    f"pred has {pred.shape[1]} score channels (axis 1) but the meter "
                    f"counts num_classes={self.num_classes}"
                )
            pred = pred.argmax(axis=1)
        self.cm += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def compute(self) -> dict:
        """``{"miou", "pixel_accuracy", "dice", "per_class_iou"}`` of everything seen so far."""
        return segmentation_scores(self.cm)


# ===== Detection ==========================================================================

#: COCO's ten IoU thresholds .50:.05:.95 (``linspace``, as pycocotools: ``arange`` drifts).
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
#: COCO's 101 recall points 0:.01:1 at which precision is read off the envelope.
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
#: How many detections per image and class count, for "mar_1", "mar_10" and "mar_100"/AP.
COCO_MAX_DETECTIONS = (1, 10, 100)
#: Area ranges in pixels^2, both ends inside; 1e5^2 stands for "no upper limit".
COCO_AREA_RANGES = {
    "all": (0.0, 1e5**2),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}
#: The value of an AP or recall that has nothing to average (pycocotools' -1).
NOT_EVALUABLE = -1.0

_PRED_KEYS = ("boxes", "scores", "labels")
_TARGET_KEYS = ("boxes", "labels")
_IOU_TYPES = ("bbox", "segm")


# ----- input checks: one dict per image, converted to host numpy once -----------------------


def _host(value):
    """A numpy array of ``value`` (numpy, cupy, Tensor or list): the one explicit device move."""
    return backend.to_numpy(_raw(value))


def _field(image: dict, key: str, where: str, n: int | None, kinds: str, width=None):
    """``image[key]`` as numpy, shape (n,) or (n, width) (n None: any); [] means no rows."""
    a = _host(image[key])
    shape = (0,) if width is None else (0, width)
    if a.size == 0 and n in (None, 0):
        a = a.reshape(shape)  # [] or np.zeros(0) stand for "none"
    rows = "N" if n is None else n
    expected = f"({rows},)" if width is None else f"({rows}, {width})"
    if a.ndim != len(shape) or (width is not None and a.shape[1] != width) or (
        n is not None and len(a) != n
    ):
        raise ValueError(f'{where}["{key}"] must have shape {expected}, got {a.shape}')
    if a.size and a.dtype.kind not in kinds:
        what = {"iu": "integers", "iuf": "real numbers", "biu": "bools or 0/1 integers"}[kinds]
        raise TypeError(f'{where}["{key}"] must hold {what}, got dtype {a.dtype}')
    if a.size and kinds == "iuf" and not np.isfinite(a).all():
        raise ValueError(f'{where}["{key}"] holds a non-finite value')
    if a.size and kinds == "biu" and not np.isin(a, (0, 1)).all():
        raise ValueError(f'{where}["{key}"] must hold bools or 0/1 integers')
    return a


def _check_masks(image: dict, where: str, n: int):
    masks = _host(image["masks"])
    if n == 0 and masks.size == 0 and masks.ndim != 3:
        masks = masks.reshape(0, 0, 0)  # no instances, image size unknown
    if masks.ndim != 3 or len(masks) != n:
        raise ValueError(f'{where}["masks"] must have shape ({n}, H, W), got {masks.shape}')
    if masks.dtype != bool:
        if masks.size and (masks.dtype.kind not in "iu" or not np.isin(masks, (0, 1)).all()):
            raise TypeError(f'{where}["masks"] must be bool (or 0/1 integers), got dtype '
                            f"{masks.dtype}; threshold soft masks first (e.g. > 0.5)")
        masks = masks.astype(bool)
    return masks


def _check_image(image, where: str, is_pred: bool, masks_required: bool) -> dict:
    """Validate one image's dict; return its arrays as float64 / int64 / bool numpy arrays.

    Preds need "boxes", "scores", "labels"; targets "boxes", "labels" and may add "iscrowd",
    "difficult" and "area". "masks" is required when ``masks_required`` (segm).
    """
    required = _PRED_KEYS if is_pred else _TARGET_KEYS
    if not isinstance(image, dict):
        raise TypeError(f"{where} must be a dict with keys {list(required)}, "
                        f"got {type(image).__name__}")
    missing = [k for k in required + (("masks",) if masks_required else ()) if k not in image]
    if missing:
        hint = ' (dataset samples call them "instance_masks")' if "masks" in missing else ""
        raise ValueError(f"{where} is missing the key(s) {missing}{hint}")
    boxes = _field(image, "boxes", where, None, "iuf", width=4).astype(np.float64)
    if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        raise ValueError(f'{where}["boxes"] must be xyxy with x1 <= x2 and y1 <= y2')
    n = len(boxes)
    out = {"boxes": boxes, "labels": _field(image, "labels", where, n, "iu").astype(np.int64)}
    if is_pred:
        out["scores"] = _field(image, "scores", where, n, "iuf").astype(np.float64)
    else:
        for flag in ("iscrowd", "difficult"):
            present = image.get(flag) is not None
            out[flag] = _field(image, flag, where, n, "biu").astype(bool) if present else (
                np.zeros(n, dtype=bool))
        present = image.get("area") is not None
        out["area"] = _field(image, "area", where, n, "iuf").astype(np.float64) if present else None
    out["masks"] = _check_masks(image, where, n) if image.get("masks") is not None else None
    return out


def _check_images(items, name: str, iou_type: str | None) -> list:
    if not isinstance(items, (list, tuple)):
        raise TypeError(f"{name} must be a list with one dict per image, "
                        f"got {type(items).__name__}")
    if iou_type is not None and iou_type not in _IOU_TYPES:
        raise ValueError(f"iou_type must be one of {_IOU_TYPES}, got {iou_type!r}")
    return [_check_image(x, f"{name}[{i}]", name == "preds", iou_type == "segm")
            for i, x in enumerate(items)]


def _check_detection_inputs(preds, targets, iou_type: str = "bbox"):
    """Check ``preds`` and ``targets`` (lists of per-image dicts); return numpy versions."""
    preds = _check_images(preds, "preds", iou_type)
    targets = _check_images(targets, "targets", iou_type)
    if len(preds) != len(targets):
        raise ValueError(f"preds and targets must have one dict per image each, got "
                         f"{len(preds)} preds and {len(targets)} targets")
    if iou_type == "segm":
        for i, (p, t) in enumerate(zip(preds, targets)):
            if len(p["masks"]) and len(t["masks"]) and p["masks"].shape[1:] != t["masks"].shape[1:]:
                raise ValueError(f'preds[{i}]["masks"] are {p["masks"].shape[1:]} but '
                                 f'targets[{i}]["masks"] are {t["masks"].shape[1:]}; they must '
                                 "share the image size (H, W)")
    return preds, targets


# ----- overlaps: boxes (with crowd regions) and masks -------------------------------------


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
    return _safe_divide(inside, box_area(boxes)[:, None], xp)


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
    return _safe_divide(inter, union, xp)


# ----- the precision envelope and VOC AP ----------------------------------------------------


def precision_envelope(precision):
    """The monotone envelope ``p_env[k] = max(precision[k:])``: a running max from the right.

    :param precision: (n,) precisions of a ranked list (or (..., n): along the last axis).
    :returns: an array of the same shape, non-increasing along the last axis.
    """
    precision = np.asarray(precision, dtype=np.float64)
    return np.maximum.accumulate(precision[..., ::-1], axis=-1)[..., ::-1]


def _envelope_at(recall, envelope, points):
    """``p_env(r)`` at each recall point r: the envelope at the first rank whose recall is >= r
    (``searchsorted`` left), and 0 where no rank reaches r."""
    if recall.size == 0:
        return np.zeros(len(points))
    first = np.searchsorted(recall, points, side="left")
    return np.where(first < recall.size, envelope[np.minimum(first, recall.size - 1)], 0.0)


def _check_curve(recall, precision):
    recall = np.asarray(_host(recall), dtype=np.float64)
    precision = np.asarray(_host(precision), dtype=np.float64)
    if recall.ndim != 1 or precision.shape != recall.shape:
        raise ValueError(f"recall and precision must be 1-D arrays of the same length (n,), got "
                         f"{recall.shape} and {precision.shape}")
    for name, v in (("recall", recall), ("precision", precision)):
        if not (np.isfinite(v).all() and (v >= 0).all() and (v <= 1).all()):
            raise ValueError(f"{name} must hold numbers in [0, 1]")
    if (np.diff(recall) < 0).any():
        raise ValueError("recall must be non-decreasing (the curve of a ranked list)")
    return recall, precision


def voc_ap(recall, precision, use_07_metric: bool = False) -> float:
    """Average precision of one class: the area under the precision envelope (VOC).

    :param recall: (n,) recall after each ranked detection, non-decreasing.
    :param precision: (n,) precision after each ranked detection.
    :param use_07_metric: True for VOC2007's 11-point mean, ``1/11 sum_r p_env(r)`` over
        r = 0, 0.1, ..., 1; False (default) for VOC2010's exact area
        ``sum_k (recall[k] - recall[k-1]) * p_env[k]`` (with recall[-1] = 0).
    :returns: AP in [0, 1]; 0 for an empty list.

    The 11 points are computed as k/10 exactly, so a recall of exactly 0.3 reaches r = 0.3
    (the classic ``np.arange(0, 1.1, 0.1)`` makes that point 0.30000000000000004).
    """
    recall, precision = _check_curve(recall, precision)
    if recall.size == 0:
        return 0.0
    envelope = precision_envelope(precision)
    if use_07_metric:
        return float(_envelope_at(recall, envelope, np.arange(11) / 10).mean())
    steps = np.diff(recall, prepend=0.0)  # recall gained at each rank
    return float((steps * envelope).sum())


def voc_eval(preds, targets, iou_threshold: float = 0.5, use_07_metric: bool = False) -> dict:
    """PASCAL VOC detection AP per class and its mean, on boxes.

    For each class every detection, ranked by score over the whole dataset, looks at its
    best-IoU ground truth of that class in its image (the first on ties). It is a TP if the IoU
    is >= ``iou_threshold`` and that ground truth is still free (which takes it), a FP if it is
    taken or the IoU is too low. A best match that is "difficult" or "iscrowd" drops the
    detection from the list. Because a detection never moves on to its second-best ground
    truth, the rule needs no loop: of all detections claiming a ground truth, the highest
    ranked is the TP and the others are FPs.

    :param preds: list of per-image dicts ``{"boxes" (N, 4) xyxy, "scores" (N,), "labels" (N,)}``.
    :param targets: list of dicts ``{"boxes" (M, 4), "labels" (M,), "difficult"? (M,),
        "iscrowd"? (M,)}``.
    :param iou_threshold: the IoU a match needs (VOC: 0.5).
    :param use_07_metric: VOC2007's 11-point AP instead of the all-point area.
    :returns: ``{"map": float, "ap": {label: float}, "recall": {label: (n,) array},
        "precision": {label: (n,) array}}`` over the classes with at least one ground truth that
        is not ignored; "map" is -1 when there is none. The curves plot with
        ``tinyseg.viz.plot_pr_curve``.
    """
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float)) or not (
        0.0 < float(iou_threshold) <= 1.0
    ):
        raise ValueError(f"iou_threshold must be a number in (0, 1], got {iou_threshold!r}")
    preds, targets = _check_detection_inputs(preds, targets, "bbox")
    ignored = [t["iscrowd"] | t["difficult"] for t in targets]
    labels = np.concatenate([t["labels"][~ig] for t, ig in zip(targets, ignored)] + [[]])
    result = {"map": NOT_EVALUABLE, "ap": {}, "recall": {}, "precision": {}}
    for c in np.unique(labels).astype(np.int64).tolist():
        scores, claim, skip, first_gt = [], [], [], 0
        for p, t, ig in zip(preds, targets, ignored):
            d, g = p["labels"] == c, t["labels"] == c
            scores.append(p["scores"][d])
            if g.any():
                iou = box_iou(p["boxes"][d], t["boxes"][g])  # (D, G)
                best = iou.argmax(axis=1)  # the first on ties
                hit = iou.max(axis=1) >= iou_threshold
                claim.append(np.where(hit, first_gt + best, -1))  # a dataset-wide gt number
                skip.append(hit & ig[g][best])
            else:  # nothing to find in this image: every detection is a false positive
                claim.append(np.full(int(d.sum()), -1))
                skip.append(np.zeros(int(d.sum()), dtype=bool))
            first_gt += int(g.sum())
        order = np.argsort(-np.concatenate(scores), kind="stable")
        claim = np.concatenate(claim)[order]
        claim = claim[~np.concatenate(skip)[order]]  # matches to ignored gts leave the list
        # TP: the first (highest ranked) detection to claim each ground truth
        tp = np.zeros(len(claim), dtype=bool)
        claimed, first = np.unique(claim, return_index=True)
        tp[first[claimed >= 0]] = True
        tp_sum = np.cumsum(tp)
        n_gt = sum(int((t["labels"][~ig] == c).sum()) for t, ig in zip(targets, ignored))
        recall = tp_sum / n_gt
        precision = tp_sum / np.arange(1, len(tp) + 1)
        result["ap"][c] = voc_ap(recall, precision, use_07_metric)
        result["recall"][c], result["precision"][c] = recall, precision
    if result["ap"]:
        result["map"] = float(np.mean(list(result["ap"].values())))
    return result


# ----- COCO evaluation ----------------------------------------------------------------------


def _coco_match(iou, gt_ignored, iscrowd, thresholds):
    """Greedy COCO matching of one image and one class, for all area ranges and thresholds.

    :param iou: (D, G) overlaps, detections in descending score order.
    :param gt_ignored: (A, G) bools: ground truth g is ignored in area range a.
    :param iscrowd: (G,) bools: crowd regions, which may be matched again and again.
    :param thresholds: (T,) IoU thresholds.
    :returns: (A, T, D) int64, the ground truth each detection matched, -1 for none.

    Each detection, in turn, takes among the free ground truths with IoU >= t the one that
    comes first by (regular before ignored, larger IoU, later index): pycocotools' scan.
    That order is one integer priority per pair, ``rank of the IoU in its row (ties broken
    by index) + G * regular``, so a single argmax picks the match. The loop runs over
    detections (each one's choice depends on what earlier ones took) and handles all A x T
    settings at once: they share the overlaps but not the bookkeeping.
    """
    n_area, n_gt = gt_ignored.shape
    match = np.full((n_area, len(thresholds), len(iou)), -1, dtype=np.int64)
    if n_gt == 0:
        return match
    above = iou[:, None, :] >= thresholds[:, None]  # (D, T, G): overlap enough at t
    rank = np.argsort(np.argsort(iou, axis=1, kind="stable"), axis=1)  # (D, G), 0 = smallest
    priority = rank[:, None, :] + n_gt * ~gt_ignored  # (D, A, G), all distinct in a row
    free = np.ones((n_area, len(thresholds), n_gt), dtype=bool)
    gt_index = np.arange(n_gt)
    for d in np.flatnonzero(above[:, 0].any(axis=1)):  # the others match nothing anywhere
        candidates = above[d] & free  # (A, T, G)
        best = np.argmax(np.where(candidates, priority[d][:, None, :], -1), axis=-1)  # (A, T)
        match[..., d] = np.where(candidates.any(axis=-1), best, -1)
        free &= gt_index != match[..., d, None]  # the matched ground truth is taken...
        free |= iscrowd  # ...unless it is a crowd region
    return match


def _evaluate_image(pred: dict, target: dict, iou_type: str, areas, max_dets: int) -> list:
    """Match one image's detections, class by class, for every area range and threshold.

    :returns: one tuple per class present in the image, ``(label, scores (D,), rank (D,),
        matched (A, T, D), ignored (A, T, D), n_regular_gt (A,))`` with detections in
        descending score order and at most ``max_dets`` of them.
    """
    low, high = areas[:, :1], areas[:, 1:]  # (A, 1) each
    # overlaps of every detection with every ground truth, once; each class takes its block
    if iou_type == "bbox":
        det_area, gt_area = box_area(pred["boxes"]), box_area(target["boxes"])
        overlaps = detection_box_iou(pred["boxes"], target["boxes"], target["iscrowd"])
    else:
        (dets, det_area), (gts, gt_area) = _flat_masks(pred["masks"]), _flat_masks(target["masks"])
        overlaps = np.zeros((len(dets), len(gts)))
        if overlaps.size:
            overlaps = _mask_overlaps(dets @ gts.T, det_area, gt_area, target["iscrowd"])
    if target["area"] is not None:
        gt_area = target["area"]
    out = []
    for c in np.union1d(pred["labels"], target["labels"]).tolist():
        d = np.flatnonzero(pred["labels"] == c)
        d = d[np.argsort(-pred["scores"][d], kind="stable")][:max_dets]
        g = np.flatnonzero(target["labels"] == c)
        crowd = target["iscrowd"][g]
        iou = overlaps[np.ix_(d, g)]
        gt_ignored = crowd | (gt_area[g] < low) | (gt_area[g] > high)  # (A, G)
        match = _coco_match(iou, gt_ignored, crowd, COCO_IOU_THRESHOLDS)
        matched = match >= 0
        # a match to an ignored gt, or no match and a detection outside the area range
        # (index -1, "no match", picks the appended False column)
        padded = np.concatenate([gt_ignored, np.zeros((len(areas), 1), dtype=bool)], axis=1)
        via_ignored = np.take_along_axis(padded[:, None, :], match, axis=-1)
        outside = (det_area[d] < low) | (det_area[d] > high)  # (A, D)
        ignored = np.where(matched, via_ignored, outside[:, None, :])
        out.append((c, pred["scores"][d], np.arange(len(d)), matched, ignored,
                    (~gt_ignored).sum(axis=1)))
    return out


def _accumulate(scores, rank, matched, ignored, n_regular, max_dets):
    """Precision at the 101 recall points, and final recall, for one class.

    :param scores: (n,) scores of the class's detections over all images, image by image.
    :param rank: (n,) each detection's rank within its image (0 = best).
    :param matched: (A, T, n) bools; ``ignored``: (A, T, n) bools.
    :param n_regular: (A,) regular (not ignored) ground truths of the class.
    :returns: precision (T, R, A, M) and recall (T, A, M), -1 where n_regular is 0.
    """
    n_area, n_thr = matched.shape[:2]
    precision = np.full((n_thr, len(COCO_RECALL_THRESHOLDS), n_area, len(max_dets)), -1.0)
    recall = np.full((n_thr, n_area, len(max_dets)), -1.0)
    order = np.argsort(-scores, kind="stable")  # ties: earlier image, then better rank, first
    for m, max_det in enumerate(max_dets):
        ranked = order[rank[order] < max_det]
        for a in np.flatnonzero(n_regular > 0):
            counted = ~ignored[a][:, ranked]  # (T, n')
            tp = np.cumsum(matched[a][:, ranked] & counted, axis=1)
            fp = np.cumsum(~matched[a][:, ranked] & counted, axis=1)
            rec = tp / n_regular[a]
            env = precision_envelope(_safe_divide(tp, tp + fp, np))
            recall[:, a, m] = rec[:, -1] if len(ranked) else 0.0
            for t in range(n_thr):
                precision[t, :, a, m] = _envelope_at(rec[t], env[t], COCO_RECALL_THRESHOLDS)
    return precision, recall


def _mean_valid(values) -> float:
    """Mean over the entries that are not -1; -1 if there are none (pycocotools)."""
    values = values[values > -1]
    return float(values.mean()) if values.size else NOT_EVALUABLE


class COCOEvaluation:
    """The result of :func:`coco_evaluate`: pycocotools' arrays and the summary numbers.

    :ivar precision: (T, R, K, A, M) float array: precision at IoU threshold t, recall point r,
        class k, area range a and max-detections m; -1 where class k has no regular ground
        truth in range a.
    :ivar recall: (T, K, A, M): final recall, -1 likewise.
    :ivar categories: (K,) int64, the class labels along axis K (the labels of the targets).
    :ivar iou_thresholds: (T,) ``COCO_IOU_THRESHOLDS``; ``recall_thresholds`` (R,) the 101
        points; ``area_ranges`` the names along A ("all", "small", "medium", "large");
        ``max_dets`` the values along M (1, 10, 100).
    """

    def __init__(self, precision, recall, categories, iou_type: str):
        self.precision, self.recall = precision, recall
        self.categories = np.asarray(categories, dtype=np.int64)
        self.iou_type = iou_type
        self.iou_thresholds = COCO_IOU_THRESHOLDS.copy()
        self.recall_thresholds = COCO_RECALL_THRESHOLDS.copy()
        self.area_ranges = tuple(COCO_AREA_RANGES)
        self.max_dets = COCO_MAX_DETECTIONS

    def __repr__(self) -> str:
        numbers = ", ".join(f"{k}={v:.4f}" for k, v in self.summary().items())
        return f"COCOEvaluation({self.iou_type}, {len(self.categories)} classes: {numbers})"

    def _index(self, iou_threshold=None, area: str = "all", max_dets: int = 100):
        if area not in self.area_ranges:
            raise ValueError(f"area must be one of {self.area_ranges}, got {area!r}")
        if max_dets not in self.max_dets:
            raise ValueError(f"max_dets must be one of {self.max_dets}, got {max_dets!r}")
        t = slice(None)
        if iou_threshold is not None:
            hits = np.flatnonzero(np.isclose(self.iou_thresholds, iou_threshold))
            if not hits.size:
                raise ValueError(f"iou_threshold must be one of {self.iou_thresholds.round(2)} "
                                 f"or None (all), got {iou_threshold!r}")
            t = int(hits[0])
        return t, self.area_ranges.index(area), self.max_dets.index(max_dets)

    def summary(self) -> dict:
        """The nine numbers of ``mean_average_precision`` (pycocotools' ``stats[0:9]``)."""
        scores = {}
        for key, iou, area in (("map", None, "all"), ("map_50", 0.5, "all"),
                               ("map_75", 0.75, "all"), ("map_small", None, "small"),
                               ("map_medium", None, "medium"), ("map_large", None, "large")):
            t, a, m = self._index(iou, area)
            scores[key] = _mean_valid(self.precision[t, :, :, a, m])
        for max_det in self.max_dets:
            _, a, m = self._index(None, "all", max_det)
            scores[f"mar_{max_det}"] = _mean_valid(self.recall[:, :, a, m])
        return scores

    def per_class_ap(self, iou_threshold=None, area: str = "all", max_dets: int = 100) -> dict:
        """``{label: AP}`` of each class (averaged over the thresholds when ``iou_threshold``
        is None); -1 for a class with nothing to average."""
        t, a, m = self._index(iou_threshold, area, max_dets)
        return {int(c): _mean_valid(self.precision[t, :, k, a, m])
                for k, c in enumerate(self.categories)}

    def pr_curve(self, label: int, iou_threshold: float = 0.5, area: str = "all",
                 max_dets: int = 100):
        """``(recall_points (R,), precision (R,))`` of one class: its interpolated PR curve,
        ready for ``tinyseg.viz.plot_pr_curve``. -1 entries mean the class has no curve."""
        t, a, m = self._index(iou_threshold, area, max_dets)
        k = np.flatnonzero(self.categories == label)
        if not k.size:
            raise ValueError(f"label {label!r} has no ground truth; classes: "
                             f"{self.categories.tolist()}")
        return self.recall_thresholds, self.precision[t, :, int(k[0]), a, m]


def coco_evaluate(preds, targets, iou_type: str = "bbox") -> COCOEvaluation:
    """COCO evaluation (pycocotools ``COCOeval``: evaluate + accumulate) from scratch.

    The classes are the labels that occur in ``targets``; detections of other labels are
    left out (they would have no AP). The steps, with the rules of the module docstring:

    1. each image and class: the top-100 detections by score, their (D, G) overlaps, and the
       greedy match at every IoU threshold and area range (``_coco_match``);
    2. each class: all its detections over the dataset ranked by score (ties: image order,
       then rank in the image); cumulative TP and FP give recall and precision; the envelope
       is read at the 101 recall points (``_accumulate``), for the top 1, 10 and 100
       detections of each image.

    :param preds: list of per-image dicts ``{"boxes" (N, 4) xyxy, "scores" (N,), "labels" (N,),
        "masks" (N, H, W) bool for segm}``; numpy or cupy arrays (copied to the host).
    :param targets: list of dicts ``{"boxes" (M, 4), "labels" (M,), "masks"? (M, H, W),
        "iscrowd"? (M,), "area"? (M,)}``.
    :param iou_type: "bbox" (box overlaps) or "segm" (mask overlaps).
    :returns: a :class:`COCOEvaluation`; ``.summary()`` gives the dict of
        :func:`mean_average_precision`.
    """
    preds, targets = _check_detection_inputs(preds, targets, iou_type)
    categories = np.unique(np.concatenate([t["labels"] for t in targets] + [np.zeros(0, int)]))
    areas = np.array(list(COCO_AREA_RANGES.values()))
    max_dets = COCO_MAX_DETECTIONS
    # gather, per class, the matched detections of every image, in image order
    per_class = {int(c): [] for c in categories}
    for pred, target in zip(preds, targets):
        for piece in _evaluate_image(pred, target, iou_type, areas, max_dets[-1]):
            if piece[0] in per_class:
                per_class[piece[0]].append(piece[1:])
    n_thr, n_rec, n_area = len(COCO_IOU_THRESHOLDS), len(COCO_RECALL_THRESHOLDS), len(areas)
    precision = np.full((n_thr, n_rec, len(categories), n_area, len(max_dets)), -1.0)
    recall = np.full((n_thr, len(categories), n_area, len(max_dets)), -1.0)
    for k, pieces in enumerate(per_class.values()):
        scores, rank, matched, ignored, n_regular = zip(*pieces)
        precision[:, :, k], recall[:, k] = _accumulate(
            np.concatenate(scores), np.concatenate(rank), np.concatenate(matched, axis=-1),
            np.concatenate(ignored, axis=-1), np.sum(n_regular, axis=0), max_dets)
    return COCOEvaluation(precision, recall, categories, iou_type)


def mean_average_precision(preds, targets, iou_type: str = "bbox") -> dict:
    """COCO-style mAP: the nine numbers of pycocotools' ``COCOeval.stats[0:9]``, exactly.

    :param preds: list with one dict per image, ``{"boxes" (N, 4) xyxy, "scores" (N,),
        "labels" (N,), "masks" (N, H, W) bool for segm}``.
    :param targets: list of dicts ``{"boxes" (M, 4), "labels" (M,), "masks"? , "iscrowd"?,
        "area"?}``, one per image, in the same order.
    :param iou_type: "bbox" or "segm".
    :returns: ``{"map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_1",
        "mar_10", "mar_100"}`` as floats; a number with nothing to average (no ground truth,
        or none in that area range) is -1, as in pycocotools. For the per-class and
        per-threshold arrays use :func:`coco_evaluate`.
    """
    return coco_evaluate(preds, targets, iou_type).summary()


# ----- COCO JSON: results and ground truth for pycocotools ---------------------------------


def _image_ids(image_ids, n: int) -> list:
    if image_ids is None:
        return list(range(1, n + 1))  # 1-based, like export_coco
    ids = [int(i) for i in _host(image_ids).reshape(-1)]
    if len(ids) != n or len(set(ids)) != n:
        raise ValueError(f"image_ids must hold {n} distinct integers, one per image, got {ids}")
    return ids


def _xywh(box) -> list:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def to_coco_results(preds, image_ids=None, iou_type: str | None = None) -> list:
    """Detections as a COCO results list (what ``COCO.loadRes`` reads).

    :param preds: list of per-image dicts ``{"boxes" (N, 4) xyxy, "scores", "labels",
        "masks"? (N, H, W) bool}``.
    :param image_ids: one COCO image id per image (default 1, 2, ..., N: ``to_coco_ground_truth``'s
        default too).
    :param iou_type: None: "bbox" ``[x, y, w, h]``, plus "segmentation" (compressed RLE) when
        masks are given; "bbox": boxes only; "segm": masks only. Use "segm" for a mask
        evaluation: with a "bbox" present, ``loadRes`` takes the BOX area as the detection's
        area, while :func:`mean_average_precision` (and torchvision's evaluator, which also
        writes masks only) use the mask's pixel count.
    :returns: a list of ``{"image_id", "category_id", "score", "bbox"?, "segmentation"?}``, one
        per detection. (pycocotools' ``loadRes`` fails on an empty list.)
    """
    from .data.rle import rle_encode  # data sits above metrics; only the export needs it

    preds = _check_images(preds, "preds", iou_type)
    results = []
    for image_id, p in zip(_image_ids(image_ids, len(preds)), preds):
        for j in range(len(p["boxes"])):
            entry = {"image_id": image_id, "category_id": int(p["labels"][j]),
                     "score": float(p["scores"][j])}
            if iou_type in (None, "bbox"):
                entry["bbox"] = _xywh(p["boxes"][j])
            if iou_type == "segm" or (iou_type is None and p["masks"] is not None):
                entry["segmentation"] = rle_encode(p["masks"][j])
            results.append(entry)
    return results


def _image_size(target: dict, image_sizes, i: int):
    size = None if image_sizes is None else tuple(int(v) for v in image_sizes[i])
    if size is not None and len(size) != 2:
        raise ValueError(f"image_sizes[{i}] must be (height, width), got {image_sizes[i]!r}")
    masks = target["masks"]
    if masks is not None and masks.shape[1] * masks.shape[2] > 0:  # (0, H, W) still tells
        if size is not None and size != masks.shape[1:]:
            raise ValueError(f"image_sizes[{i}] is {size} but targets[{i}]['masks'] are "
                             f"{masks.shape[1:]}")
        size = masks.shape[1:]
    return size


def to_coco_ground_truth(targets, image_ids=None, categories=None, image_sizes=None) -> dict:
    """Ground truth as a COCO dataset dict ``{"images", "annotations", "categories"}``.

    Each target box becomes an annotation ``{"id" (1, 2, ...), "image_id", "category_id",
    "bbox" [x, y, w, h], "area", "iscrowd", "segmentation"?}``. ``area`` is the target's
    "area" when given, else the mask's pixel count when masks are given (COCO's convention,
    also for box evaluation), else the box area. Masks go in as compressed RLE.

    :param targets: list of per-image dicts ``{"boxes", "labels", "masks"?, "iscrowd"?,
        "area"?}``.
    :param image_ids: one id per image (default 1, 2, ..., N).
    :param categories: the category ids, as a list of ints or a ``{id: name}`` dict; default:
        the labels found in ``targets``. Every target label must be one of them.
    :param image_sizes: optional (height, width) per image; taken from the masks otherwise.
    :returns: the dict; ``pycocotools.coco.COCO`` reads it (``coco.dataset = d;
        coco.createIndex()``) or :func:`save_coco_json` writes it.
    """
    from .data.rle import rle_encode

    targets = _check_images(targets, "targets", None)
    if image_sizes is not None and len(image_sizes) != len(targets):
        raise ValueError(f"image_sizes must hold one (height, width) per image "
                         f"({len(targets)}), got {len(image_sizes)}")
    labels = sorted({int(c) for t in targets for c in t["labels"]})
    if categories is None:
        categories = labels
    names = categories if isinstance(categories, dict) else {int(c): str(c) for c in categories}
    unknown = sorted(set(labels) - set(names))
    if unknown:
        raise ValueError(f"categories must include every target label; missing {unknown}")
    images, annotations = [], []
    for i, (image_id, t) in enumerate(zip(_image_ids(image_ids, len(targets)), targets)):
        image = {"id": image_id}
        size = _image_size(t, image_sizes, i)
        if size is not None:
            image["height"], image["width"] = int(size[0]), int(size[1])
        images.append(image)
        if t["area"] is not None:
            areas = t["area"]
        elif t["masks"] is not None:
            areas = t["masks"].sum(axis=(1, 2))
        else:
            areas = box_area(t["boxes"])
        for j in range(len(t["boxes"])):
            ann = {"id": len(annotations) + 1, "image_id": image_id,
                   "category_id": int(t["labels"][j]), "bbox": _xywh(t["boxes"][j]),
                   "area": float(areas[j]), "iscrowd": int(t["iscrowd"][j])}
            if t["masks"] is not None:
                ann["segmentation"] = rle_encode(t["masks"][j])
            annotations.append(ann)
    return {"images": images, "annotations": annotations,
            "categories": [{"id": int(c), "name": str(names[c])} for c in sorted(names)]}


def save_coco_json(obj, path) -> Path:
    """Write a COCO results list or dataset dict as JSON (numpy numbers become plain ones).

    :returns: the path as a Path.
    """
    def plain(value):
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
        raise TypeError(f"obj holds a {type(value).__name__}, which JSON cannot store")

    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, default=plain)
    return path
