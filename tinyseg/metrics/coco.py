"""COCO mean average precision: pycocotools' ``COCOeval`` (evaluate + accumulate), from scratch.

The matching, the precision-recall curve of a ranked list and its envelope are the ones of
``metrics.voc`` (read its docstring first). COCO (``coco_evaluate``,
``mean_average_precision``) changes the rules, and these functions reproduce pycocotools'
exactly:

- Ten IoU thresholds t = 0.50, 0.55, ..., 0.95; "map" averages AP over thresholds and
  classes, "map_50" and "map_75" take one threshold.
- At most 100 detections per image and class (the highest scored) take part; "mar_1",
  "mar_10", "mar_100" are the final recall with only the top 1, 10 or 100 of each image
  and class, averaged over thresholds and classes.
- Ignored ground truths: crowd regions (``iscrowd``) and, for the area scores, ground truths
  whose area lies outside the range. The ranges are closed intervals (``COCO_AREA_RANGES``)::

      small  = [0, 32^2]      medium = [32^2, 96^2]      large = [96^2, 1e5^2]

  and an object is outside when ``area < low or area > high`` (pycocotools' test), so both
  ends are inside: an object of area exactly 32^2 = 1024 counts in "map_small" AND in
  "map_medium", one of exactly 96^2 in "map_medium" and "map_large". Area is the target's
  "area" when given, else the box area (bbox) or the pixel count (segm). A detection
  prefers a regular ground truth to an ignored one (among equal IoUs, the later ground truth
  wins); a detection matched to an ignored one counts as neither TP nor FP, and so does an
  unmatched detection whose own area is out of the range (the same closed test). Ignored
  ground truths are not counted in n_gt.
- A crowd region may absorb any number of detections, and its overlap is the share of the
  detection inside it, ``|d and g| / |d|`` (the crowd's own extent is meaningless).
- Precision is read off the envelope at the 101 recall points r: the first ranked position
  with recall(k) >= r ("searchsorted left"), and 0 where r is beyond the last recall.
- A class with no regular ground truth (in the area range) has no AP or recall: -1 in the
  ``precision`` and ``recall`` arrays, left out of every mean. A mean over nothing is -1
  (pycocotools' convention, kept so the numbers are JSON-able and comparable): an empty
  validation set scores -1, never 0 or NaN.

Like VOC this runs on the host: the inputs are converted once with ``backend.to_numpy``
(``metrics.inputs``), because the matching is a short sequential loop over ranked
detections, not array arithmetic worth a device.
"""

from __future__ import annotations

import numpy as np

from ..boxes import box_area, safe_divide
from ..overlaps import detection_box_iou, mask_area, mask_iou
from .inputs import check_detection_inputs
from .voc import NOT_EVALUABLE, envelope_at, precision_envelope

__all__ = [
    "COCOEvaluation",
    "COCO_AREA_RANGES",
    "COCO_IOU_THRESHOLDS",
    "COCO_MAX_DETECTIONS",
    "COCO_RECALL_THRESHOLDS",
    "coco_evaluate",
    "mean_average_precision",
]

#: COCO's ten IoU thresholds .50:.05:.95 (``linspace``, as pycocotools: ``arange`` drifts).
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
#: COCO's 101 recall points 0:.01:1 at which precision is read off the envelope.
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
#: How many detections per image and class count, for "mar_1", "mar_10" and "mar_100"/AP.
COCO_MAX_DETECTIONS = (1, 10, 100)
#: Area ranges in pixels^2, closed: both ends inside, so an area of exactly 32^2 is small AND
#: medium (pycocotools ignores an object when ``area < low or area > high``); 1e5^2 stands
#: for "no upper limit".
COCO_AREA_RANGES = {
    "all": (0.0, 1e5**2),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}


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
        det_area, gt_area = mask_area(pred["masks"]), mask_area(target["masks"])
        overlaps = np.zeros((len(det_area), len(gt_area)))
        if overlaps.size:  # (0, H, W) masks may not know the image size
            overlaps = mask_iou(pred["masks"], target["masks"], target["iscrowd"])
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
            env = precision_envelope(safe_divide(tp, tp + fp, np))
            recall[:, a, m] = rec[:, -1] if len(ranked) else 0.0
            for t in range(n_thr):
                precision[t, :, a, m] = envelope_at(rec[t], env[t], COCO_RECALL_THRESHOLDS)
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
    preds, targets = check_detection_inputs(preds, targets, iou_type)
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
