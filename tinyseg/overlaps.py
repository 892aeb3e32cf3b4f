"""Overlaps for evaluation: boxes against crowd regions, and masks against masks.

COCO scores a detection by its overlap with each ground truth, but two cases are not
``box_iou``:

* **Crowd regions.** A crowd (``iscrowd = 1``) is a group of objects labelled as one
  region. Its own extent means nothing, so a detection d is measured by the share of d
  inside the crowd g, ``|d and g| / |d|``, not by IoU.
* **Masks.** Two masks overlap in pixels: ``|m1 and m2| / |m1 or m2|``. Flattened to
  rows of 0/1, all N x M intersections are one matrix product ``M1 @ M2^T``, and the
  union is ``|m1| + |m2| - |m1 and m2|``; against a crowd, the denominator is ``|m1|``.

The metrics (``tinyseg.metrics.coco``) call these; they work on numpy or cupy arrays,
on the device of their inputs, like the rest of ``tinyseg.boxes``.
"""

from __future__ import annotations

from . import backend
from .boxes import box_area, box_iou, safe_divide

__all__ = ["detection_box_iou", "mask_area", "mask_iou"]


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
    return safe_divide(inside, box_area(boxes)[:, None], xp)


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


def mask_area(masks):
    """Pixel count of each (N, H, W) binary mask, as float64 (N,), on the masks' device."""
    if getattr(masks, "ndim", None) != 3:
        raise ValueError(f"masks must be an (N, H, W) array of masks, "
                         f"got shape {getattr(masks, 'shape', None)}")
    return _flat_masks(masks)[1]


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
    return safe_divide(inter, union, xp)
