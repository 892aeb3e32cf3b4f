"""Segmentation scores, all read off one confusion matrix.

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
"""

from __future__ import annotations

import numpy as np

from .. import backend
from .inputs import unwrap

__all__ = [
    "SegmentationMeter",
    "confusion_matrix",
    "dice_per_class",
    "iou_per_class",
    "mean_dice",
    "mean_iou",
    "pixel_accuracy",
    "segmentation_scores",
]


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
    pred, target = unwrap(pred), unwrap(target)
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
        pred, target = unwrap(pred), unwrap(target)
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
