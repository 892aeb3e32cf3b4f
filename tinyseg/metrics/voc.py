"""Average precision: matching, the precision-recall curve, its envelope, and VOC's AP.

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

``metrics.coco`` builds on the same curve and envelope with COCO's rules. Both run on the
host: their inputs are converted once with ``backend.to_numpy`` (``metrics.inputs``), because
the matching is a short sequential loop over ranked detections, not array arithmetic worth a
device.
"""

from __future__ import annotations

import numpy as np

from ..boxes import box_iou
from .inputs import check_detection_inputs, to_host

__all__ = ["check_curve", "envelope_at", "precision_envelope", "voc_ap", "voc_eval"]

#: The value of an AP or recall that has nothing to average (pycocotools' -1).
NOT_EVALUABLE = -1.0


def precision_envelope(precision):
    """The monotone envelope ``p_env[k] = max(precision[k:])``: a running max from the right.

    :param precision: (n,) precisions of a ranked list (or (..., n): along the last axis).
    :returns: an array of the same shape, non-increasing along the last axis.
    """
    precision = np.asarray(precision, dtype=np.float64)
    return np.maximum.accumulate(precision[..., ::-1], axis=-1)[..., ::-1]


def envelope_at(recall, envelope, points):
    """``p_env(r)`` at each recall point r: the envelope at the first rank whose recall is >= r
    (``searchsorted`` left), and 0 where no rank reaches r."""
    if recall.size == 0:
        return np.zeros(len(points))
    first = np.searchsorted(recall, points, side="left")
    return np.where(first < recall.size, envelope[np.minimum(first, recall.size - 1)], 0.0)


def check_curve(recall, precision):
    """Check a ranked list's precision-recall curve; return both as float64 host arrays.

    :param recall: (n,) recall after each ranked detection: in [0, 1], non-decreasing.
    :param precision: (n,) precision after each ranked detection, in [0, 1].
    :raises ValueError: shapes differ or are not 1-D, a value is outside [0, 1] or not
        finite, or recall decreases.
    """
    recall = np.asarray(to_host(recall), dtype=np.float64)
    precision = np.asarray(to_host(precision), dtype=np.float64)
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
    recall, precision = check_curve(recall, precision)
    if recall.size == 0:
        return 0.0
    envelope = precision_envelope(precision)
    if use_07_metric:
        return float(envelope_at(recall, envelope, np.arange(11) / 10).mean())
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
    preds, targets = check_detection_inputs(preds, targets, "bbox")
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
