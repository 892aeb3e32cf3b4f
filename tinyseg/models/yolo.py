"""YOLO v1 (Redmon, Divvala, Girshick and Farhadi, 2016): detection as one regression.

The idea
--------
Lay an S x S grid over the image. The cell that holds the centre of an object is
"responsible" for it. Every cell predicts B boxes, each with a confidence, and ONE set of C
class probabilities; the whole detector is a single network whose output is a tensor

    P  of shape  (S, S, 5B + C)   per image,  per cell:  [box_1, ..., box_B, p_1, ..., p_C]
    box_b = (x, y, sqrt w, sqrt h, conf)

* (x, y): the box centre as an offset inside its cell, in [0, 1];
* (sqrt w, sqrt h): square roots of the box width and height as fractions of the image;
* conf: Pr(object) * IoU(box, truth), how sure the cell is that this box frames an object;
* p_c: Pr(class c | object), shared by the B boxes of the cell.

For an image of H x W pixels a cell is H/S high and W/S wide. Cell (i, j) (row i, column j)
turns box b back into pixels by

    cx = (j + x) * W/S,   cy = (i + y) * H/S,   w = (sqrt w)^2 * W,   h = (sqrt h)^2 * H
    box = (cx - w/2, cy - h/2, cx + w/2, cy + h/2)                         (``cells_to_boxes``)

The target tensor (``build_targets``)
-------------------------------------
A ground-truth box g with centre (gx, gy) falls in cell i = floor(gy S / H), j = floor(gx S / W).
That cell gets the object: the target tensor T (S, S, 4 + C) holds there

    T[i, j] = (gx S/W - j,  gy S/H - i,  sqrt(gw / W),  sqrt(gh / H),  one_hot(label))

and the object mask 1^obj_ij = 1; every other cell is all zeros with mask 0. A cell can hold
only one object: when two centres fall in the same cell the LARGER box (by area) wins, and of
two equal areas the one listed later; the other object gets no target at all (YOLO v1 cannot
detect two objects whose centres share a cell, a known weakness of the design). Boxes are
clipped to the image first, so every centre lies in some cell.

The responsible predictor and the loss (``assign_predictors``, ``yolo_loss``)
------------------------------------------------------------------------------
In a cell holding object g the B boxes compete: the one with the highest IoU with g (computed
on the decoded pixel boxes with ``tinyseg.boxes.box_iou``; the first one on ties, e.g. when
all IoUs are 0) is responsible for g, 1^obj_ijb = 1. Every other box, in that cell or in an
empty cell, has 1^noobj_ijb = 1. The loss is the sum of squared errors of the paper,

    L = l_coord * sum_ijb 1^obj_ijb [(x - x^)^2 + (y - y^)^2]                       loss_xy
      + l_coord * sum_ijb 1^obj_ijb [(sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2]    loss_wh
      +           sum_ijb 1^obj_ijb (conf - IoU_ijb)^2                               loss_obj
      + l_noobj * sum_ijb 1^noobj_ijb conf^2                                         loss_noobj
      +           sum_ij  1^obj_ij  sum_c (p_c - p^_c)^2                             loss_class

with l_coord = 5 and l_noobj = 0.5, hatted letters the targets, and the sums divided by the
batch size N (each term is "per image"). Why these choices:

* l_noobj = 0.5 and l_coord = 5: of the S*S*B confidences almost all are "no object"; left
  unweighted their pull towards 0 would swamp the few boxes that matter.
* sqrt w, sqrt h: an error of 4 pixels is a disaster for a 10-pixel box and nothing for a
  100-pixel one. With square roots the same pixel error costs more on a small box, since
  d sqrt(w) = dw / (2 sqrt w). Predicting sqrt w directly also means the network never takes
  the square root of a negative number.
* The confidence target is the IoU of the responsible box with the truth, recomputed from the
  current prediction at every step and DETACHED: it is a moving target, not a path for
  gradients (``assign_predictors`` works on raw arrays).
* The class term counts once per cell that holds an object, not once per box.

Squashing the outputs: a deliberate change from the paper
----------------------------------------------------------
The paper regresses the raw outputs of a linear layer. Here the head's outputs are squashed to
the ranges they live in: sigmoid for x, y, sqrt w, sqrt h and conf (all in [0, 1]) and a softmax
over the C class scores (probabilities that sum to 1). From the very first step every predicted
box then sits inside its own cell with a positive size, and confidences and probabilities are
valid numbers, so decoding needs no clamping and early training is calmer; the cost is that
targets at exactly 0 or 1 are reached only in the limit. The loss itself is unchanged: the
squared errors above are taken on the squashed values.

Decoding (``decode``)
---------------------
Each of the S*S*B boxes gets a class-specific score for every class c,

    score_ijbc = conf_ijb * p_ijc = Pr(object) * IoU * Pr(class c | object),

scores <= ``score_thresh`` are dropped, boxes are clipped to the image, non-maximum
suppression runs within each class (``tinyseg.boxes.batched_nms``, IoU > ``nms_thresh``
suppresses), and the ``detections_per_img`` best survive. Class index c is reported as label
c + 1, because label 0 is the background.

Shapes
------
Default model (``widths=(16, 32, 64, 128)``, ``depths=(1, 2, 2, 2)``, S = 8, B = 2,
``num_classes=4`` so C = 3) on a 128x128 RGB input, batch N. "cbr" is conv3x3 (pad 1, no bias)
-> BatchNorm -> ReLU, "s2" a stride of 2::

    input                                    (N,   3, 128, 128)
    stage 0: cbr 3->16 s2                    (N,  16,  64,  64)
    stage 1: cbr 16->32 s2, cbr 32->32       (N,  32,  32,  32)
    stage 2: cbr 32->64 s2, cbr 64->64       (N,  64,  16,  16)
    stage 3: cbr 64->128 s2, cbr 128->128    (N, 128,   8,   8)   stride 16
    avg-pool to S x S                        (N, 128,   8,   8)   kernel (H/16)/S: here 1, a no-op
    head: conv1x1 128 -> 5B+C = 13           (N,  13,   8,   8)
    permute to channels last                 (N,   8,   8,  13)   the S x S x (5B + C) tensor

About 44 million multiply-adds per image and 293 000 parameters. Stage i has ``depths[i]``
cbr layers of ``widths[i]`` channels, the first of them with stride 2, so the backbone stride is
``2**len(widths)``; its map is average-pooled down to S x S, which is why the input height and
width must be multiples of ``stride * S`` (128 for the default; a 256x256 input pools 16x16 to
8x8). With ``head="fc"`` the 1x1 conv is replaced by the paper's fully connected head, which
lets every cell see the whole image::

    flatten                                  (N, 128 * S * S) = (N, 8192)
    linear 8192 -> fc_hidden, LeakyReLU 0.1  (N, 256)
    linear 256 -> S*S*(5B+C), reshape        (N,   8,   8,  13)

The paper's network is far bigger (24 convolutional layers, 448x448 input, S = 7, B = 2,
C = 20, leaky ReLU); this one is sized for the 128x128 synthetic scenes and a CPU.

The backbone, the arguments every detector takes, the check of images and targets and the form
of the detections are shared with the other detectors (``models/detection.py``:
``BackboneDetector``, ``check_detection_targets``, ``as_detections``).
"""

from __future__ import annotations

from .. import backend
from .. import functional as F
from ..autograd import Tensor
from ..boxes import box_convert, box_iou, clip_boxes_to_image, nms_by_image
from ..nn import Conv2d, Flatten, LeakyReLU, Linear, Sequential
from ..validate import check_fraction, check_int, pair
from .blocks import check_model_input
from .detection import BackboneDetector, as_detections
from .segnet import check_divisible

__all__ = [
    "YOLOv1",
    "assign_predictors",
    "build_targets",
    "cells_to_boxes",
    "decode",
    "yolo_loss",
]

HEADS = ("conv", "fc")


# ----- arguments -------------------------------------------------------------------------------


def _positive_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _num_boxes(output, num_classes: int, what: str) -> int:
    """B from the last axis 5B + C of a head output, with C = num_classes - 1."""
    if output.ndim != 4 or output.shape[1] != output.shape[2]:
        raise ValueError(f"{what} must have shape (N, S, S, 5B + C), got {tuple(output.shape)}")
    depth = output.shape[-1] - (num_classes - 1)
    if depth < 5 or depth % 5:
        raise ValueError(
            f"{what} must have 5B + C = 5B + {num_classes - 1} channels on its last axis "
            f"(num_classes={num_classes} counts the background), got {output.shape[-1]}"
        )
    return depth // 5


# ----- the grid: targets, decoding, matching ---------------------------------------------------


def cells_to_boxes(params, image_size):
    """Turn per-cell box parameters into xyxy pixel boxes.

    :param params: (N, S, S, B, 4) array of (x, y, sqrt w, sqrt h): centre offsets inside cell
        (i, j) and square roots of the size as fractions of the image.
    :param image_size: (H, W) of the input image in pixels.
    :returns: (N, S, S, B, 4) array of (x1, y1, x2, y2) in pixels:
        ``cx = (j + x) W/S``, ``cy = (i + y) H/S``, ``w = (sqrt w)^2 W``, ``h = (sqrt h)^2 H``.
    """
    if params.ndim != 5 or params.shape[-1] != 4 or params.shape[1] != params.shape[2]:
        raise ValueError(f"params must have shape (N, S, S, B, 4), got {tuple(params.shape)}")
    H, W = pair(image_size, "image_size", minimum=1)
    S = params.shape[1]
    xp = backend.xp_of(params)
    index = xp.arange(S, dtype=params.dtype)
    cx = (index[None, None, :, None] + params[..., 0]) * (W / S)  # column j on axis 2
    cy = (index[None, :, None, None] + params[..., 1]) * (H / S)  # row i on axis 1
    w = params[..., 2] ** 2 * W
    h = params[..., 3] ** 2 * H
    return xp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def build_targets(boxes, labels, image_size, grid_size: int, num_classes: int,
                  dtype="float32"):
    """The S x S target tensor and object mask of a batch of ground truths.

    :param boxes: list of N arrays (M_i, 4), xyxy pixel boxes, all on one device.
    :param labels: list of N int arrays (M_i,), labels in 1..num_classes-1.
    :param image_size: (H, W) of the images.
    :param grid_size: S.
    :param num_classes: classes counting the background; C = num_classes - 1.
    :param dtype: floating dtype of the target.
    :returns: ``(target, object_mask)``: target (N, S, S, 4 + C) holding (x, y, sqrt w, sqrt h,
        one-hot class) in each cell that holds an object centre and zeros elsewhere, and the
        bool mask (N, S, S) of those cells. Two centres in one cell: the larger box wins (on
        equal areas the later one). All N images at once, with no loop over boxes.
    """
    if not isinstance(boxes, (list, tuple)) or not isinstance(labels, (list, tuple)) \
            or len(boxes) != len(labels) or not boxes:
        raise ValueError("boxes and labels must be two non-empty lists of equal length (one "
                         "array per image)")
    H, W = pair(image_size, "image_size", minimum=1)
    S = check_int(grid_size, "grid_size", 1)
    C = check_int(num_classes, "num_classes", 1) - 1
    N = len(boxes)
    xp = backend.xp_of(*boxes, *labels)
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        if b.ndim != 2 or b.shape[1] != 4 or lab.shape != (b.shape[0],):
            raise ValueError(f"boxes[{i}] must be (M, 4) and labels[{i}] (M,), got "
                             f"{tuple(b.shape)} and {tuple(lab.shape)}")
    # one row per object of the batch, and the image it belongs to
    gt = clip_boxes_to_image(xp.concatenate([b.reshape(-1, 4) for b in boxes]).astype(dtype),
                             (H, W))
    label = xp.concatenate([lab.reshape(-1) for lab in labels]).astype(xp.int64)
    image = xp.concatenate([xp.full(b.shape[0], n, dtype=xp.int64) for n, b in enumerate(boxes)])
    if label.size and bool(((label < 1) | (label > C)).any()):
        raise ValueError(f"labels must be in 1..{C} (num_classes={num_classes}), got "
                         f"{backend.to_numpy(label)}")
    cxcywh = box_convert(gt, "xyxy", "cxcywh")
    gx, gy = cxcywh[:, 0] * (S / W), cxcywh[:, 1] * (S / H)  # centres in cell units
    col = xp.clip(xp.floor(gx), 0, S - 1).astype(xp.int64)
    row = xp.clip(xp.floor(gy), 0, S - 1).astype(xp.int64)
    cell = (image * S + row) * S + col  # flat index into (N, S, S)
    encoded = xp.stack([gx - col, gy - row, xp.sqrt(cxcywh[:, 2] / W),
                        xp.sqrt(cxcywh[:, 3] / H)], axis=1)
    # One object per cell. Sort by area, then (stably) by cell: within each cell the objects
    # now run from smallest to largest, and the last one of each run wins. Writing only the
    # winners keeps the result deterministic (with repeated indices CuPy picks any writer).
    order = xp.argsort(cxcywh[:, 2] * cxcywh[:, 3], kind="stable")
    order = order[xp.argsort(cell[order], kind="stable")]
    last = xp.ones(order.shape[0], dtype=bool)
    last[:-1] = cell[order][1:] != cell[order][:-1]
    win = order[last]
    target = xp.zeros((N * S * S, 4 + C), dtype=dtype)
    target[cell[win], :4] = encoded[win]
    target[cell[win], 3 + label[win]] = 1  # class c (label c + 1) sits in column 4 + c
    object_mask = xp.zeros(N * S * S, dtype=bool)
    object_mask[cell[win]] = True
    return target.reshape(N, S, S, 4 + C), object_mask.reshape(N, S, S)


def _squash(output, num_boxes: int):
    """Sigmoid box numbers (N, S, S, B, 5) and softmax class probabilities (N, S, S, C)."""
    N, S = output.shape[0], output.shape[1]
    boxes = F.sigmoid(output[..., : 5 * num_boxes]).reshape(N, S, S, num_boxes, 5)
    probs = F.softmax(output[..., 5 * num_boxes:], dim=-1)
    return boxes, probs


def assign_predictors(output, target, object_mask, image_size):
    """Which of the B boxes of each object cell is responsible, and its IoU (the conf target).

    :param output: raw head output (N, S, S, 5B + C), array or Tensor (its values are used,
        never its gradient: the IoU target is detached).
    :param target: (N, S, S, 4 + C) from ``build_targets``.
    :param object_mask: (N, S, S) bool from ``build_targets``.
    :param image_size: (H, W) of the images.
    :returns: ``(responsible, iou)``, both (N, S, S, B): a bool mask with exactly one True per
        object cell (the box with the highest IoU with the cell's object, the first on ties)
        and the IoU of every box with its cell's object (0 in empty cells).
    """
    output = output.data if isinstance(output, Tensor) else output
    xp = backend.xp_of(output, target)
    N, S = output.shape[:2]
    B = _num_boxes(output, target.shape[-1] - 3, "output")
    boxes = _squash(output, B)[0].data
    predicted = cells_to_boxes(boxes[..., :4], image_size).reshape(N * S * S, B, 4)
    truth = cells_to_boxes(target[..., None, :4], image_size).reshape(N * S * S, 4)
    cells = xp.nonzero(object_mask.reshape(-1))[0]  # the K cells that hold an object
    K = cells.shape[0]
    # IoU of every predicted box of an object cell with every object: (K*B, K). Only the block
    # diagonal (each box with ITS cell's object) is wanted; K is small, so the rest is cheap.
    pairwise = box_iou(predicted[cells].reshape(K * B, 4), truth[cells],
                       check_values=False).reshape(K, B, K)
    k = xp.arange(K)
    iou_k = pairwise[k, :, k]  # (K, B)
    responsible = xp.zeros((N * S * S, B), dtype=bool)
    responsible[cells, xp.argmax(iou_k, axis=1)] = True
    iou = xp.zeros((N * S * S, B), dtype=output.dtype)
    iou[cells] = iou_k
    return responsible.reshape(N, S, S, B), iou.reshape(N, S, S, B)


def yolo_loss(output, target, object_mask, image_size, lambda_coord: float = 5.0,
              lambda_noobj: float = 0.5, assignment=None) -> dict:
    """The YOLO v1 sum-squared loss, split into its five terms (see the module docstring).

    :param output: raw head output Tensor (N, S, S, 5B + C), before the sigmoid and softmax.
    :param target: (N, S, S, 4 + C) array from ``build_targets``.
    :param object_mask: (N, S, S) bool array from ``build_targets``.
    :param image_size: (H, W) of the images.
    :param lambda_coord: weight of the box terms (5 in the paper).
    :param lambda_noobj: weight of the confidences of boxes responsible for nothing (0.5).
    :param assignment: ``(responsible, iou)`` from ``assign_predictors``; None computes it from
        ``output``. Passing it fixes the (piecewise constant) choice of predictor and the
        detached IoU target, e.g. for a numerical gradient check.
    :returns: dict of scalar Tensors "loss_xy", "loss_wh", "loss_obj", "loss_noobj",
        "loss_class", each summed over the batch and divided by N.
    """
    output = output if isinstance(output, Tensor) else Tensor(output)
    xp = backend.xp_of(output, target)
    N, S = output.shape[:2]
    B = _num_boxes(output, target.shape[-1] - 3, "output")
    expected = (N, S, S, 4 + output.shape[-1] - 5 * B)
    if target.shape != expected or object_mask.shape != expected[:3]:
        raise ValueError(f"target must have shape (N, S, S, 4 + C) = {expected} and object_mask "
                         f"{expected[:3]}, got {target.shape} and {object_mask.shape}")
    if assignment is None:
        assignment = assign_predictors(output, target, object_mask, image_size)
    responsible, iou = assignment
    dtype = output.dtype
    obj = responsible.astype(dtype)  # 1^obj_ijb
    boxes, probs = _squash(output, B)

    # every box of a cell is compared with the cell's target box; only the responsible ones count
    truth = xp.ascontiguousarray(xp.broadcast_to(target[..., None, :4], (N, S, S, B, 4)))
    squared = F.mse_loss(boxes[..., :4], truth, reduction="none")  # (N, S, S, B, 4)
    loss_xy = (squared[..., :2] * obj[..., None]).sum() * (lambda_coord / N)
    loss_wh = (squared[..., 2:] * obj[..., None]).sum() * (lambda_coord / N)

    # confidence target: the (detached) IoU for a responsible box, 0 for all the others
    squared = F.mse_loss(boxes[..., 4], iou * obj, reduction="none")  # (N, S, S, B)
    loss_obj = (squared * obj).sum() * (1.0 / N)
    loss_noobj = (squared * (1 - obj)).sum() * (lambda_noobj / N)

    squared = F.mse_loss(probs, target[..., 4:].astype(dtype), reduction="none")  # (N, S, S, C)
    loss_class = (squared * object_mask[..., None].astype(dtype)).sum() * (1.0 / N)
    return {"loss_xy": loss_xy, "loss_wh": loss_wh, "loss_obj": loss_obj,
            "loss_noobj": loss_noobj, "loss_class": loss_class}


def decode(output, image_size, num_classes: int, score_thresh: float = 0.05,
           nms_thresh: float = 0.5, detections_per_img: int = 100) -> list[dict]:
    """Detections from a raw head output: class scores, threshold, per-class NMS, top k.

    :param output: raw head output (N, S, S, 5B + C), array or Tensor.
    :param image_size: (H, W) of the input images; boxes come back in their pixels.
    :param num_classes: classes counting the background (C = num_classes - 1).
    :param score_thresh: keep class scores conf * p_c strictly above this.
    :param nms_thresh: per-class NMS IoU threshold (one ``nms_by_image`` for the batch).
    :param detections_per_img: at most this many detections per image.
    :returns: one dict per image: "boxes" (D, 4) float32 xyxy clipped to the image, "scores"
        (D,) float32 by decreasing score, "labels" (D,) int64 in 1..num_classes-1; arrays on the
        device of ``output``.
    """
    output = output.data if isinstance(output, Tensor) else output
    B = _num_boxes(output, num_classes, "output")
    H, W = pair(image_size, "image_size", minimum=1)
    score_thresh = check_fraction(score_thresh, "score_thresh")
    nms_thresh = check_fraction(nms_thresh, "nms_thresh")
    detections_per_img = check_int(detections_per_img, "detections_per_img", 1)
    xp = backend.xp_of(output)
    N, S = output.shape[:2]
    C = num_classes - 1
    boxes, probs = (t.data for t in _squash(output, B))
    pixel_boxes = cells_to_boxes(boxes[..., :4], (H, W)).reshape(N, S * S * B, 4)
    # class-specific score of every (box, class) pair: conf_ijb * p_ijc, shape (N, S*S*B, C)
    scores = (boxes[..., 4:5] * probs[:, :, :, None, :]).reshape(N, S * S * B, C)
    # every image's candidates at once, image by image; NMS stays within an image and class
    image, box_index, cls = xp.nonzero(scores > score_thresh)
    candidates = clip_boxes_to_image(pixel_boxes[image, box_index], (H, W))
    candidate_scores = scores[image, box_index, cls]
    kept = nms_by_image(candidates, candidate_scores, cls, image, N, nms_thresh,
                        top_n=detections_per_img)
    return [as_detections(candidates[keep], candidate_scores[keep], cls[keep]) for keep in kept]


# ----- the network -----------------------------------------------------------------------------


class YOLOv1(BackboneDetector):
    """YOLO v1: a conv backbone and a head that predicts the S x S x (5B + C) tensor.

    :param num_classes: classes counting the background (4 for the shapes scenes); the head
        predicts C = num_classes - 1 class probabilities per cell.
    :param in_channels: channels of the input image.
    :param grid_size: S, the cells along each side of the image.
    :param boxes_per_cell: B.
    :param widths: channels of each backbone stage (each halves the size).
    :param depths: conv-BN-ReLU layers in each stage.
    :param head: "conv" (a 1x1 convolution per cell) or "fc" (the paper's fully connected head).
    :param fc_hidden: width of the hidden layer of the "fc" head.
    :param lambda_coord: weight of the box terms of the loss.
    :param lambda_noobj: weight of the no-object confidence term.
    :param score_thresh: decoding keeps class scores above this.
    :param nms_thresh: IoU threshold of the per-class NMS.
    :param detections_per_img: at most this many detections per image.

    ``model(images, targets)`` in training mode returns the loss terms of ``yolo_loss``; in
    eval mode ``model(images)`` returns one dict per image ("boxes", "scores", "labels").
    ``raw_output`` and ``decode`` are the two halves of inference, for inspection.
    """

    def __init__(self, num_classes: int = 4, in_channels: int = 3, grid_size: int = 8,
                 boxes_per_cell: int = 2, widths=(16, 32, 64, 128), depths=(1, 2, 2, 2),
                 head: str = "conv", fc_hidden: int = 256, lambda_coord: float = 5.0,
                 lambda_noobj: float = 0.5, score_thresh: float = 0.05, nms_thresh: float = 0.5,
                 detections_per_img: int = 100):
        super().__init__(num_classes, in_channels, widths, depths, score_thresh, nms_thresh,
                         detections_per_img)
        self.grid_size = check_int(grid_size, "grid_size", 1)
        self.boxes_per_cell = check_int(boxes_per_cell, "boxes_per_cell", 1)
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self.head_type = head
        self.fc_hidden = check_int(fc_hidden, "fc_hidden", 1)
        self.lambda_coord = _positive_float(lambda_coord, "lambda_coord")
        self.lambda_noobj = _positive_float(lambda_noobj, "lambda_noobj")

        S, depth = self.grid_size, 5 * self.boxes_per_cell + self.num_classes - 1
        if head == "conv":
            self.head = Conv2d(self.widths[-1], depth, 1)
        else:
            self.head = Sequential(
                Flatten(), Linear(self.widths[-1] * S * S, self.fc_hidden), LeakyReLU(0.1),
                Linear(self.fc_hidden, S * S * depth),
            )

    def config(self) -> dict:
        """The constructor arguments (JSON-able): ``YOLOv1(**model.config())`` rebuilds it."""
        return {
            **super().config(), "grid_size": self.grid_size,
            "boxes_per_cell": self.boxes_per_cell, "head": self.head_type,
            "fc_hidden": self.fc_hidden, "lambda_coord": self.lambda_coord,
            "lambda_noobj": self.lambda_noobj,
        }

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """The grid (S, S) for an (h, w) input.

        :raises ValueError: when h or w is not a multiple of ``stride * grid_size``.
        """
        check_divisible(self, h, w, self.stride * self.grid_size,
                        f"backbone stride {self.stride} x grid size {self.grid_size}")
        return self.grid_size, self.grid_size

    def raw_output(self, images):
        """The head's raw S x S x (5B + C) tensor, before any sigmoid or softmax.

        :param images: (N, in_channels, H, W).
        :returns: Tensor (N, S, S, 5B + C).
        """
        x = check_model_input(self, images)
        x = self.backbone(x)
        S = self.grid_size
        pool = (x.shape[2] // S, x.shape[3] // S)
        if pool != (1, 1):
            x = F.avg_pool2d(x, pool)
        if self.head_type == "fc":
            return self.head(x).reshape(x.shape[0], S, S, -1)
        return self.head(x).permute(0, 2, 3, 1)

    def decode(self, output, image_size) -> list[dict]:
        """``decode`` with this model's thresholds: detections from ``raw_output``'s tensor."""
        return decode(output, image_size, self.num_classes, self.score_thresh, self.nms_thresh,
                      self.detections_per_img)

    def forward(self, images, targets=None):
        """Training: dict of loss terms (``targets`` required). Eval: detections per image."""
        x, image_size, boxes, labels = self.check_inputs(images, targets)
        output = self.raw_output(x)
        if not self.training:
            return self.decode(output, image_size)
        target, object_mask = build_targets(boxes, labels, image_size, self.grid_size,
                                            self.num_classes, dtype=output.dtype)
        return yolo_loss(output, target, object_mask, image_size, self.lambda_coord,
                         self.lambda_noobj)

    def extra_repr(self):
        return (f"num_classes={self.num_classes}, grid_size={self.grid_size}, "
                f"boxes_per_cell={self.boxes_per_cell}, head={self.head_type!r}")
