"""The inputs of the detection metrics: one dict per image, checked and moved to the host once.

A detector's output and its ground truth travel as lists with one dict per image::

    preds[i]   = {"boxes" (N, 4) xyxy, "scores" (N,), "labels" (N,), "masks"? (N, H, W) bool}
    targets[i] = {"boxes" (M, 4) xyxy, "labels" (M,), "masks"? (M, H, W) bool,
                  "iscrowd"? (M,), "difficult"? (M,), "area"? (M,)}

Every evaluator (``metrics.voc``, ``metrics.coco``) and the COCO JSON export
(``tinyseg.data.coco_json``) starts with :func:`check_detection_images`: it names the image
and key of any bad value, and returns plain host numpy arrays (float64 boxes and scores,
int64 labels, bool flags and masks; absent optional keys become zeros or None). The copy
from the GPU happens here, once, with ``backend.to_numpy``: the evaluation is a short
sequential loop over ranked detections, not array arithmetic worth a device.
"""

from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Tensor
from ..validate import check_finite

__all__ = ["check_detection_images", "check_detection_inputs", "to_host", "unwrap"]

_PRED_KEYS = ("boxes", "scores", "labels")
_TARGET_KEYS = ("boxes", "labels")
IOU_TYPES = ("bbox", "segm")


def unwrap(a):
    """The array inside a Tensor; any other value unchanged."""
    return a.data if isinstance(a, Tensor) else a


def to_host(value):
    """A numpy array of ``value`` (numpy, cupy, Tensor or list): the one explicit device move."""
    return backend.to_numpy(unwrap(value))


def _field(image: dict, key: str, where: str, n: int | None, kinds: str, width=None):
    """``image[key]`` as numpy, shape (n,) or (n, width) (n None: any); [] means no rows."""
    a = to_host(image[key])
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
    if kinds == "iuf":
        check_finite(a, f'{where}["{key}"]')  # names the first bad index
    if a.size and kinds == "biu" and not np.isin(a, (0, 1)).all():
        raise ValueError(f'{where}["{key}"] must hold bools or 0/1 integers')
    return a


def _check_masks(image: dict, where: str, n: int):
    masks = to_host(image["masks"])
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


def check_detection_images(items, name: str, iou_type: str | None) -> list:
    """Check a list of per-image dicts; return them as host numpy dicts (see the module).

    :param items: the list (or tuple), one dict per image.
    :param name: "preds" (needs "scores") or "targets"; it also prefixes every message.
    :param iou_type: "segm" requires "masks"; "bbox" or None does not.
    :returns: a list of dicts with every key present ("masks", "area": None when absent).
    """
    if not isinstance(items, (list, tuple)):
        raise TypeError(f"{name} must be a list with one dict per image, "
                        f"got {type(items).__name__}")
    if iou_type is not None and iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    return [_check_image(x, f"{name}[{i}]", name == "preds", iou_type == "segm")
            for i, x in enumerate(items)]


def check_detection_inputs(preds, targets, iou_type: str = "bbox"):
    """Check ``preds`` and ``targets`` (lists of per-image dicts); return numpy versions."""
    preds = check_detection_images(preds, "preds", iou_type)
    targets = check_detection_images(targets, "targets", iou_type)
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
