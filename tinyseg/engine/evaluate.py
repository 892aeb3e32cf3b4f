"""Scoring and predicting: a model in eval mode, under ``no_grad``, batch by batch.

Two kinds of model, two kinds of answer::

    segmentation   model(images) -> logits (N, K, H', W')
                   predict:  argmax over K           -> label maps (N, H', W') int64
                   evaluate: confusion matrix (K, K) -> mIoU, pixel accuracy, Dice

    detection      model(images) -> N dicts {"boxes" (D, 4), "scores" (D,), "labels" (D,)}
                   predict:  the dicts, copied to the host
                   evaluate: every image's dicts vs its true boxes -> COCO mAP

Every function here puts the model into eval mode (BatchNorm uses its running
statistics, dropout is off) inside ``with evaluating(model):``, which also turns
the autograd graph off and restores the mode the model was in.

Where the data lives. A loader yields host (numpy) batches; ``batch_to_device``
copies the images (as a Tensor) and the label maps to the device, once per
batch and in plain sight. Predictions come back to the host (``to_numpy``) before
anyone scores or draws them, so the metrics and the pictures never see a device
array.

Models whose output is smaller than their input (U-Net with valid padding) are
scored on the centre of the target: ``center_crop`` cuts the label map to the
logits' size, the same centre the network sees.
"""

from __future__ import annotations

import contextlib

import numpy as np
from tqdm.auto import tqdm

from .. import backend
from ..autograd import no_grad, tensor
from ..metrics import SegmentationMeter, mean_average_precision
from ..models.blocks import center_crop

__all__ = [
    "batch_targets",
    "batch_to_device",
    "center_crop",
    "detections_to_host",
    "evaluate",
    "evaluate_detection",
    "evaluate_segmentation",
    "evaluating",
    "forward_and_crop",
    "image_batches",
    "is_detection",
    "num_classes_of",
    "predict",
    "predict_detections",
]


# ----- small pieces ------------------------------------------------------------------
def batch_to_device(batch: dict, device: str) -> dict:
    """Copy a loader batch's ``"image"`` (as a Tensor) and ``"mask"`` to ``device``.

    The other entries (ids, boxes lists) stay as they are, on the host.
    """
    out = dict(batch)
    out["image"] = tensor(backend.to_device(batch["image"], device))
    if "mask" in batch:
        out["mask"] = backend.to_device(batch["mask"], device)
    return out


def batch_targets(batch: dict) -> list[dict]:
    """The detection targets of a loader batch: one ``{"boxes", "labels"}`` dict per image,
    plus ``"masks"`` (M, H, W) bool when the batch has ``"instance_masks"``.

    They stay host arrays; the model copies them to the images' device itself.
    """
    targets = [{"boxes": np.asarray(b, dtype=np.float32).reshape(-1, 4),
                "labels": np.asarray(lab, dtype=np.int64).reshape(-1)}
               for b, lab in zip(batch["boxes"], batch["labels"])]
    if batch.get("instance_masks") is not None:
        for target, masks in zip(targets, batch["instance_masks"]):
            target["masks"] = np.asarray(masks, dtype=bool)
    return targets


def forward_and_crop(model, batch):
    """Logits for the batch's images and the mask cropped to their size."""
    logits = model(batch["image"])
    target = center_crop(batch["mask"], logits.shape[-2:])
    return logits, target


def num_classes_of(model, num_classes=None) -> int:
    """``num_classes`` when given, else ``model.num_classes``.

    :raises ValueError: neither is there.
    """
    if num_classes is not None:
        return num_classes
    found = getattr(model, "num_classes", None)
    if found is None:
        raise ValueError("num_classes is needed: the model has no .num_classes attribute")
    return found


def is_detection(model) -> bool:
    """True for a detection model (``task = "detection"``): it takes targets, returns boxes."""
    return getattr(model, "task", "segmentation") == "detection"


@contextlib.contextmanager
def evaluating(model):
    """``with evaluating(model):`` eval mode and no gradients inside; the mode is restored after."""
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with no_grad():
            yield model
    finally:
        model.train(was_training)


def image_batches(images, device: str, batch_size: int):
    """Tensors of ``batch_size`` images at a time from a host array, copied to ``device``."""
    images = np.asarray(images, dtype=np.float32)
    for start in range(0, len(images), batch_size):
        yield tensor(backend.to_device(images[start : start + batch_size], device))


def detections_to_host(detections) -> list[dict]:
    """A detector's output (a list of dicts of device arrays) as dicts of numpy arrays."""
    return [{k: backend.to_numpy(v) for k, v in d.items()} for d in detections]


# ----- segmentation ------------------------------------------------------------------
def evaluate_segmentation(model, loader, num_classes: int | None = None, device: str = "cpu",
                          loss_fn=None, ignore_index: int = 255, progress: bool = False) -> dict:
    """mIoU, pixel accuracy and Dice of a segmentation model on every batch of ``loader``.

    One ``SegmentationMeter`` adds up a (K, K) confusion matrix over the batches; the scores
    come from it at the end, so they are those of the whole split, not a mean of batches.
    The arguments are those of :func:`evaluate`.
    """
    num_classes = num_classes_of(model, num_classes)
    meter = SegmentationMeter(num_classes, ignore_index)
    losses = []
    with evaluating(model):
        for batch in tqdm(loader, desc="eval", leave=False, disable=not progress):
            batch = batch_to_device(batch, device)
            logits, target = forward_and_crop(model, batch)
            if loss_fn is not None:
                losses.append(loss_fn(logits, target).item())
            meter.update(logits, target)
    scores = meter.compute()
    if loss_fn is not None:
        scores["loss"] = float(np.mean(losses)) if losses else float("nan")
    return scores


def evaluate(model, loader, num_classes: int | None = None, device: str = "cpu",
             loss_fn=None, ignore_index: int = 255, progress: bool = False) -> dict:
    """Score ``model`` on every batch of ``loader``, in eval mode and without gradients.

    :param model: a segmentation model (logits (N, K, H', W')).
    :param loader: yields batch dicts with ``"image"`` (N, 3, H, W) and ``"mask"`` (N, H, W).
    :param num_classes: K (default: ``model.num_classes``).
    :param device: where the batches are copied to ("cpu" or "gpu").
    :param loss_fn: when given, the mean loss over the batches is returned as ``"loss"``.
    :param ignore_index: label of pixels left out of the scores.
    :returns: ``{"miou", "pixel_accuracy", "dice", "per_class_iou"}`` (+ ``"loss"``).
        The model is put back into the mode it was in. A detection model is scored by
        :func:`evaluate_detection` instead (its keys are ``bbox_map``, ...): a convenience
        for notebooks; the training loop asks its ``Task`` object instead.
    """
    if is_detection(model):
        return evaluate_detection(model, loader, device, progress)
    return evaluate_segmentation(model, loader, num_classes, device, loss_fn, ignore_index,
                                 progress)


def predict(model, images, device: str = "cpu", batch_size: int = 8):
    """Predicted label maps of ``images`` (N, 3, H, W) float32 host array -> int64 (N, H', W').

    Runs in eval mode under ``no_grad``; the result comes back to the host.
    """
    images = np.asarray(images, dtype=np.float32)
    out = []
    with evaluating(model):
        for x in image_batches(images, device, batch_size):
            out.append(backend.to_numpy(model(x).data.argmax(axis=1)).astype(np.int64))
    return np.concatenate(out) if out else np.zeros((0,) + images.shape[2:], dtype=np.int64)


# ----- detection ---------------------------------------------------------------------
def evaluate_detection(model, loader, device: str = "cpu", progress: bool = False) -> dict:
    """COCO-style box mAP (and mask mAP) of a detection model on every batch of ``loader``.

    Runs the model in eval mode under ``no_grad``; the detections come back to the host and
    ``tinyseg.metrics.mean_average_precision`` scores them against the batches' boxes. A model
    whose detections carry ``"masks"`` (Mask R-CNN) is also scored on the instance masks.

    :returns: ``{"bbox_map", "bbox_map_50", "bbox_map_75", "bbox_map_small", ...}``: each key of
        ``mean_average_precision`` with the prefix ``bbox_`` (the names of ``metrics.json``),
        and the same keys with the prefix ``segm_`` for a model that predicts masks.
    """
    preds, targets = [], []
    with evaluating(model):
        for batch in tqdm(loader, desc="eval", leave=False, disable=not progress):
            targets += batch_targets(batch)
            batch = batch_to_device(batch, device)
            preds += detections_to_host(model(batch["image"]))
    scores = mean_average_precision(preds, targets, iou_type="bbox")
    out = {f"bbox_{key}": float(value) for key, value in scores.items()}
    if preds and all("masks" in p for p in preds):
        scores = mean_average_precision(preds, targets, iou_type="segm")
        out.update({f"segm_{key}": float(value) for key, value in scores.items()})
    return out


def predict_detections(model, images, device: str = "cpu", batch_size: int = 8) -> list[dict]:
    """Detections of ``images`` (N, 3, H, W) float32 host array: N dicts of host arrays
    ``{"boxes", "scores", "labels"}``, in eval mode under ``no_grad``."""
    out = []
    with evaluating(model):
        for x in image_batches(images, device, batch_size):
            out += detections_to_host(model(x))
    return out
