"""COCO JSON for evaluation: targets and detections in the layout pycocotools reads.

:func:`to_coco_ground_truth` turns a list of per-image target dicts (the input of
``tinyseg.metrics``, see ``metrics.inputs``) into a COCO dataset dict, and
:func:`to_coco_results` turns the detections into a COCO results list; :func:`save_coco_json`
writes either. The conversions, per object::

    box    xyxy (x1, y1, x2, y2)  ->  "bbox" [x, y, w, h] = [x1, y1, x2 - x1, y2 - y1]
    mask   (H, W) bool           ->  "segmentation" compressed RLE (``tinyseg.data.rle``)
    area   the target's "area", else the mask's pixel count, else the box area

Images get the ids 1, 2, ..., N unless told otherwise (as ``export_coco`` numbers them), and
annotations 1, 2, ... in order. With these two, pycocotools' ``COCOeval`` scores the same data
as ``tinyseg.metrics.mean_average_precision`` (a test checks all nine numbers agree).

This is the data layer's side of evaluation: it reads the checked arrays of
``metrics.inputs`` and writes files. The metrics never import it (``tinyseg.metrics`` only
re-exports these three names, on first use, so that old imports keep working).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..boxes import box_area
from ..metrics.inputs import check_detection_images, to_host
from .rle import rle_encode

__all__ = ["save_coco_json", "to_coco_ground_truth", "to_coco_results"]


def _image_ids(image_ids, n: int) -> list:
    if image_ids is None:
        return list(range(1, n + 1))  # 1-based, like export_coco
    ids = [int(i) for i in to_host(image_ids).reshape(-1)]
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
    preds = check_detection_images(preds, "preds", iou_type)
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
    targets = check_detection_images(targets, "targets", None)
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
