"""Metrics: segmentation from one confusion matrix; detection AP and mAP.

Three textbooks, one module each; read them in this order:

- ``metrics.segmentation``: the confusion matrix and what is read off it (IoU, mIoU, Dice,
  pixel accuracy), accumulated over a whole validation set (``SegmentationMeter``).
- ``metrics.voc``: average precision. Matching detections to ground truth, the ranked
  precision-recall curve, its monotone envelope, and AP as the area under it (VOC's rules:
  ``voc_eval``, ``voc_ap``).
- ``metrics.coco``: COCO's mAP (pycocotools' ``COCOeval``, reproduced exactly): ten IoU
  thresholds, 101 recall points, maxDets and the closed area ranges.

``metrics.inputs`` checks the per-image detection dicts every evaluator starts from. The
overlaps live beside the boxes (``tinyseg.boxes.box_iou``; ``tinyseg.overlaps``:
``detection_box_iou``, ``mask_iou``), and the export to COCO JSON for pycocotools with the data
(``tinyseg.data.coco_json``).

Every name is importable from here, as before the split: ``from tinyseg.metrics import
mean_average_precision``.
"""

from __future__ import annotations

from ..overlaps import detection_box_iou, mask_iou
from .coco import (
    COCO_AREA_RANGES,
    COCO_IOU_THRESHOLDS,
    COCO_MAX_DETECTIONS,
    COCO_RECALL_THRESHOLDS,
    COCOEvaluation,
    coco_evaluate,
    mean_average_precision,
)
from .segmentation import (
    SegmentationMeter,
    confusion_matrix,
    dice_per_class,
    iou_per_class,
    mean_dice,
    mean_iou,
    pixel_accuracy,
    segmentation_scores,
)
from .voc import NOT_EVALUABLE, check_curve, precision_envelope, voc_ap, voc_eval

__all__ = [
    "COCOEvaluation",
    "COCO_AREA_RANGES",
    "COCO_IOU_THRESHOLDS",
    "COCO_MAX_DETECTIONS",
    "COCO_RECALL_THRESHOLDS",
    "NOT_EVALUABLE",
    "SegmentationMeter",
    "check_curve",
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

# The COCO JSON export moved to the data layer, which sits above the metrics: load it only
# when one of its names is asked for here, so that importing the metrics never imports data.
_FROM_DATA = {"save_coco_json", "to_coco_ground_truth", "to_coco_results"}


def __getattr__(name):
    if name in _FROM_DATA:
        from ..data import coco_json

        return getattr(coco_json, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
