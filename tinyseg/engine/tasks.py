"""Tasks: what segmentation and detection do differently inside the one training loop.

The loop (``Trainer``) knows nothing about label maps or boxes. Each step where
the two kinds of model differ is a method of a *task object*, found from the
model's ``task`` attribute by ``task_for(model)``:

===================  =====================================  ========================================
Task method          segmentation (default)                 detection (``task = "detection"``)
===================  =====================================  ========================================
``training_loss``    ``loss_fn(model(images), mask)``       ``sum(model(images, targets).values())``
``evaluate``         confusion matrix -> mIoU, Dice, loss   detections -> COCO mAP (``bbox_map``)
``history_entries``  miou, pixel_accuracy, dice, val_loss   bbox_map, _50, _75 (+ segm_map, ...)
``history_fields``   ``HISTORY_FIELDS``                     ``DETECTION_HISTORY_FIELDS`` + terms
``summary``          val_loss, mIoU, pixel accuracy         box mAP, mAP@50, mAP@75 (+ mask mAP)
``metrics``          miou, pixel_accuracy, dice, per class  every ``bbox_`` (and ``segm_``) key
``headline``         mIoU, pixel accuracy, dice             bbox mAP, mAP@50, mAP@75
``predict``          label maps (N, H', W')                 N dicts: boxes, scores, labels
``picture_targets``  the true label maps                    the samples' true boxes (and masks)
``check_data``       (nothing to check)                     the data must have boxes
===================  =====================================  ========================================

A detection model computes its own loss: only it knows how its outputs meet the
boxes (a YOLO grid cell, a matched anchor, a sampled RoI). Its targets stay on
the host, as a list of ``{"boxes", "labels"}`` per image; the model moves what
it needs. An eval-mode detector returns boxes, not losses, so a detection run
has no validation loss.

A new kind of model (say, keypoints) needs a class with these methods and an
entry in ``TASKS``; the loop itself does not change. Any object with the same
methods can also be handed to ``Trainer(..., task=...)`` directly.

The loss of a segmentation model lives here too: ``SegmentationLoss`` is
cross-entropy plus an optional soft Dice term, a *recipe* of two functional
losses with the recipe's ``ignore_index`` and ``dice_weight`` baked in. It is
not an operator (``functional`` holds those: ``cross_entropy``, ``dice_loss``)
nor a layer with parameters (``nn``); it is the segmentation task's choice of
loss, so it sits beside that task.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .evaluate import (
    batch_targets,
    evaluate_detection,
    evaluate_segmentation,
    forward_and_crop,
    num_classes_of,
    predict,
    predict_detections,
)

HISTORY_FIELDS = (
    "epoch", "train_loss", "val_loss", "miou", "pixel_accuracy", "dice", "lr", "seconds",
)
# Detection runs have no validation loss (an eval-mode detector returns boxes, not losses); the
# loss terms (``train_loss_box``, ...) follow these columns.
DETECTION_HISTORY_FIELDS = (
    "epoch", "train_loss", "bbox_map", "bbox_map_50", "bbox_map_75", "lr", "seconds",
)
# A detector that also predicts instance masks (Mask R-CNN) adds its mask mAPs after the box ones.
MASK_HISTORY_FIELDS = ("segm_map", "segm_map_50", "segm_map_75")

__all__ = [
    "DETECTION_HISTORY_FIELDS",
    "DetectionTask",
    "HISTORY_FIELDS",
    "MASK_HISTORY_FIELDS",
    "SegmentationLoss",
    "SegmentationTask",
    "TASKS",
    "headline",
    "task_for",
    "task_scores",
]


class SegmentationLoss:
    """``cross_entropy(logits, target, ignore_index)`` + ``dice_weight * dice_loss(softmax)``.

    :param ignore_index: label of pixels left out (255).
    :param dice_weight: weight of the soft Dice term (0 turns it off).
    """

    def __init__(self, ignore_index: int = 255, dice_weight: float = 0.0):
        self.ignore_index = ignore_index
        self.dice_weight = float(dice_weight)

    def __call__(self, logits, target):
        loss = F.cross_entropy(logits, target, ignore_index=self.ignore_index)
        if self.dice_weight:
            probs = F.softmax(logits, dim=1)
            loss = loss + self.dice_weight * F.dice_loss(
                probs, target, ignore_index=self.ignore_index
            )
        return loss

    def __repr__(self):
        return f"SegmentationLoss(ignore_index={self.ignore_index}, dice_weight={self.dice_weight})"


# ----- segmentation ------------------------------------------------------------------
class SegmentationTask:
    """Per-pixel classification: a loss on logits, scores from a confusion matrix.

    :param loss_fn: ``loss_fn(logits, target) -> scalar Tensor`` (needed to train; without it
        ``evaluate`` gives no ``"loss"``).
    :param num_classes: K for the metrics.
    :param ignore_index: label of pixels left out of the scores.
    """

    name = "segmentation"

    def __init__(self, loss_fn=None, num_classes: int | None = None, ignore_index: int = 255):
        self.loss_fn, self.num_classes, self.ignore_index = loss_fn, num_classes, ignore_index

    @classmethod
    def for_model(cls, model, recipe=None, *, loss_fn=None, num_classes=None, ignore_index=None,
                  training: bool = False):
        """The task for ``model``; ``recipe`` supplies the loss and ``ignore_index`` not given.

        :raises ValueError: ``training`` and no loss (neither ``loss_fn`` nor a recipe).
        """
        if ignore_index is None:
            ignore_index = recipe.ignore_index if recipe is not None else 255
        if loss_fn is None and recipe is not None:
            loss_fn = SegmentationLoss(recipe.ignore_index, recipe.dice_weight)
        if loss_fn is None and training:
            raise ValueError("loss_fn is needed for a segmentation model (e.g. SegmentationLoss())")
        return cls(loss_fn, num_classes_of(model, num_classes), ignore_index)

    def check_data(self, dataset, model_name, data) -> None:
        """Every dataset of tinyseg has label maps: nothing to check."""

    def training_loss(self, model, batch):
        """``(loss Tensor, {})``: the loss of the logits against the (centre-cropped) mask."""
        output, target = forward_and_crop(model, batch)
        return self.loss_fn(output, target), {}

    def evaluate(self, model, loader, device: str = "cpu", progress: bool = False) -> dict:
        """``evaluate_segmentation``: mIoU, pixel accuracy, Dice, per-class IoU and the loss."""
        return evaluate_segmentation(model, loader, self.num_classes, device, self.loss_fn,
                                     self.ignore_index, progress=progress)

    def history_entries(self, scores: dict) -> dict:
        """The entries of one ``history.csv`` row taken from ``evaluate``'s scores."""
        row = {k: scores[k] for k in HISTORY_FIELDS if k in scores}
        row["val_loss"] = scores["loss"]
        return row

    def history_fields(self, history: list[dict]) -> list[str]:
        """The columns of ``history.csv``."""
        return list(HISTORY_FIELDS)

    def summary(self, row: dict) -> str:
        """The validation part of the line logged after an epoch."""
        if "miou" not in row:
            return ""
        return (f"  val_loss {row['val_loss']:.4f}  mIoU {row['miou']:.4f}"
                f"  pixel_acc {row['pixel_accuracy']:.4f}")

    def metrics(self, scores: dict) -> dict:
        """The quality entries of ``metrics.json``."""
        return {"miou": scores["miou"], "pixel_accuracy": scores["pixel_accuracy"],
                "dice": scores["dice"], "per_class_iou": scores["per_class_iou"],
                "val_loss": scores.get("loss")}

    def headline(self, scores: dict) -> str:
        """One line of the main figures (the log and the picture's title)."""
        return (f"mIoU {scores['miou']:.4f}  pixel accuracy {scores['pixel_accuracy']:.4f}  "
                f"dice {scores['dice']:.4f}")

    def predict(self, model, images, device: str = "cpu"):
        """Label maps (N, H', W') int64 of host ``images`` (N, 3, H, W)."""
        return predict(model, images, device=device)

    def picture_targets(self, samples: list[dict]):
        """What the picture draws as the truth: the label maps (N, H, W)."""
        return np.stack([s["mask"] for s in samples])


# ----- detection ---------------------------------------------------------------------
class DetectionTask:
    """Boxes (and instance masks): the model computes its own loss terms; scores are COCO mAP."""

    name = "detection"

    @classmethod
    def for_model(cls, model, recipe=None, *, loss_fn=None, num_classes=None, ignore_index=None,
                  training: bool = False):
        """A ``DetectionTask``; a detector brings its own loss, so the options are unused."""
        return cls()

    def check_data(self, dataset, model_name, data) -> None:
        """A detector needs boxes.

        :raises ValueError: ``dataset`` (or the dataset it caches) says ``has_boxes = False``.
        """
        if not getattr(getattr(dataset, "dataset", dataset), "has_boxes", True):
            raise ValueError(f"{model_name} is a detector and needs boxes: --data must be "
                             f"'shapes' or a COCO-style folder (annotations/), not the VOC "
                             f"segmentation folder {data}")

    def training_loss(self, model, batch):
        """``(sum of the terms, {name: 0-d device array})``: the model scores itself."""
        terms = model(batch["image"], batch_targets(batch))
        loss = sum(terms.values())
        return loss, {name: value.data for name, value in terms.items()}

    def evaluate(self, model, loader, device: str = "cpu", progress: bool = False) -> dict:
        """``evaluate_detection``: the ``bbox_`` (and ``segm_``) COCO summary."""
        return evaluate_detection(model, loader, device, progress)

    def history_entries(self, scores: dict) -> dict:
        """The entries of one ``history.csv`` row taken from ``evaluate``'s scores."""
        shown = DETECTION_HISTORY_FIELDS + MASK_HISTORY_FIELDS
        return {k: scores[k] for k in shown if k in scores}

    def history_fields(self, history: list[dict]) -> list[str]:
        """``DETECTION_HISTORY_FIELDS``, the mask mAPs if scored, then the loss terms."""
        fields = list(DETECTION_HISTORY_FIELDS)
        if any("segm_map" in row for row in history):
            fields[fields.index("lr"):fields.index("lr")] = MASK_HISTORY_FIELDS
        for row in history:
            fields += [k for k in row if k.startswith("train_loss_") and k not in fields]
        return fields

    def summary(self, row: dict) -> str:
        """The validation part of the line logged after an epoch."""
        text = ""
        if "bbox_map" in row:
            text += (f"  bbox mAP {row['bbox_map']:.4f}  mAP@50 {row['bbox_map_50']:.4f}"
                     f"  mAP@75 {row['bbox_map_75']:.4f}")
        if "segm_map" in row:
            text += f"  segm mAP {row['segm_map']:.4f}  mAP@50 {row['segm_map_50']:.4f}"
        return text

    def metrics(self, scores: dict) -> dict:
        """The quality entries of ``metrics.json``: every score."""
        return dict(scores)

    def headline(self, scores: dict) -> str:
        """One line of the main figures (the log and the picture's title)."""
        line = (f"bbox mAP {scores['bbox_map']:.3f}  mAP@50 {scores['bbox_map_50']:.3f}  "
                f"mAP@75 {scores['bbox_map_75']:.3f}")
        if "segm_map" in scores:
            line += f"  segm mAP {scores['segm_map']:.3f}  mAP@50 {scores['segm_map_50']:.3f}"
        return line

    def predict(self, model, images, device: str = "cpu") -> list[dict]:
        """N dicts of host arrays ``{"boxes", "scores", "labels"}`` (+ ``"masks"``)."""
        return predict_detections(model, images, device=device)

    def picture_targets(self, samples: list[dict]) -> list[dict]:
        """What the picture draws as the truth: the samples (their boxes, labels, masks)."""
        return samples


#: the task classes by the name a model's ``task`` attribute holds
TASKS = {"segmentation": SegmentationTask, "detection": DetectionTask}


def task_for(model, recipe=None, *, loss_fn=None, num_classes=None, ignore_index=None,
             training: bool = False):
    """The task object of ``model``, chosen by its ``task`` attribute ("segmentation" when absent).

    :param recipe: a ``tinyseg.recipes.Recipe``: the segmentation loss and ``ignore_index`` come
        from it unless given.
    :param loss_fn: a segmentation task's loss (default: ``SegmentationLoss`` of the recipe).
    :param num_classes: K for the metrics (default: ``model.num_classes``).
    :param ignore_index: label of pixels left out (default: the recipe's, else 255).
    :param training: the task will train (a segmentation task then needs a loss).
    :raises ValueError: an unknown ``model.task``, or no loss to train with.
    """
    name = getattr(model, "task", "segmentation")
    if name not in TASKS:
        raise ValueError(f"model.task must be one of {sorted(TASKS)}, got {name!r}")
    return TASKS[name].for_model(model, recipe, loss_fn=loss_fn, num_classes=num_classes,
                                 ignore_index=ignore_index, training=training)


def task_scores(scores: dict, detection: bool) -> dict:
    """The quality entries of ``metrics.json`` from ``evaluate``'s scores (``Task.metrics``)."""
    return (DetectionTask() if detection else SegmentationTask()).metrics(scores)


def headline(scores: dict) -> str:
    """One line of the main figures, for scores of either task (told apart by their keys)."""
    return (DetectionTask() if "bbox_map" in scores else SegmentationTask()).headline(scores)
