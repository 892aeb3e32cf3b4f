"""What every detection model shares: the contract, its targets check, the backbone, a base class.

The detection contract (torchvision's)
--------------------------------------
A detector is called as ``model(images, targets=None)`` with

    images   (N, C_in, H, W) floating point
    targets  a list of N dicts, training only:
             "boxes"  (M_i, 4)  xyxy pixels, x2 > x1 and y2 > y1   (M_i may be 0)
             "labels" (M_i,)    ints in 1..K-1                      (K = num_classes; 0 is the
                                                                     background)

In training mode it returns a dict of scalar loss Tensors; in eval mode one dict per image,

    "boxes" (D, 4) float32 xyxy,  "scores" (D,) float32 (decreasing),  "labels" (D,) int64

with arrays on the images' device. A model predicts class indices c = 0..K-2 over the K-1
object classes and reports label c + 1.

The pieces
----------
* ``check_detection_targets``: THE validation of a batch of targets, so YOLO, ClassLocNet and
  RetinaNet reject bad input with the same messages, each naming the entry, e.g.
  ``targets[1]['labels']``. It moves the targets to the images' device (the one explicit move).
* ``as_detections``: one image's chosen boxes in the contract's eval-mode form.
* ``SMOOTH_L1_BETA``: the beta (1/9) of the smooth-L1 box losses.
* ``make_backbone``: L stages of conv-BN-ReLU; stage i holds ``depths[i]`` layers of
  ``widths[i]`` channels, the first of them with stride 2, so

      (N, C_in, H, W)  ->  (N, widths[-1], H / 2^L, W / 2^L),   stride 2^L.

  YOLO and ClassLocNet choose ``depths``; RetinaNet uses (1, 2, ..., 2): a one-conv stem, then
  a stride-2 and a stride-1 conv per stage.
* ``BackboneDetector``: the base class of every detector. It checks the arguments every
  detector takes (num_classes, in_channels, widths, depths, score_thresh, nms_thresh,
  detections_per_img), builds ``self.backbone``, and gives ``stride``, ``config`` and
  ``check_inputs`` (images, then targets in training mode) to every subclass.
* ``AnchorDetector``: a ``BackboneDetector`` with A anchors at every cell of its last feature
  map (RetinaNet, Faster/Mask R-CNN): ``anchors(h, w)`` in ``anchors.anchor_grid``'s order, and
  ``per_anchor`` to put a head's (N, A*k, H, W) output in that same order, (N, H*W*A, k).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy

from .. import backend
from ..anchors import anchor_grid, cell_anchors
from ..nn import Module, Sequential
from ..validate import check_fraction, check_int, check_int_tuple
from .blocks import check_model_input, conv_bn_relu
from .segnet import check_divisible

__all__ = [
    "SMOOTH_L1_BETA", "AnchorDetector", "BackboneDetector", "as_detections",
    "check_detection_targets", "make_backbone",
]

#: smooth L1's beta for every box regression of a detection head: 1/9 (see docs/conventions.md,
#: section "Smooth L1")
SMOOTH_L1_BETA = 1.0 / 9


def check_detection_targets(targets, num_images: int, num_classes: int, device: str):
    """Validate a batch of detection targets and move them to ``device``.

    :param targets: a list of ``num_images`` dicts with "boxes" (M, 4) xyxy pixel boxes with a
        positive width and height and "labels" (M,) ints in 1..num_classes-1 (host arrays or
        anything array-like; M may be 0).
    :param num_images: N, the batch size of the images.
    :param num_classes: classes counting the background.
    :param device: "cpu" or "gpu", the images' device.
    :returns: ``(boxes, labels)``: two lists of N arrays on ``device`` (boxes floating point,
        labels int64).
    :raises ValueError: a missing or malformed target; the message names ``targets[i]``.
    """
    if targets is None:
        raise ValueError(
            "targets is required in training mode: a list of N dicts with 'boxes' (M, 4) "
            "and 'labels' (M,); call model.eval() to get detections instead"
        )
    if not isinstance(targets, (list, tuple)) or len(targets) != num_images:
        got = f"{len(targets)} entries" if isinstance(targets, (list, tuple)) else \
            type(targets).__name__
        raise ValueError(f"targets must be a list of {num_images} dicts, one per image, got {got}")
    boxes, labels = [], []
    for i, t in enumerate(targets):
        if not isinstance(t, Mapping) or "boxes" not in t or "labels" not in t:
            raise ValueError(
                f"targets[{i}] must be a dict with 'boxes' and 'labels', got {t!r:.80}"
            )
        # Checked on the host, where targets come from, before the one move to the device:
        # each check below would otherwise be a device sync per image and step.
        b = backend.to_numpy(t["boxes"])
        lab = backend.to_numpy(t["labels"])
        if b.size == 0 and lab.size == 0:  # an image without objects, e.g. written as []
            b, lab = b.reshape(0, 4), lab.reshape(0)
        if b.ndim != 2 or b.shape[1] != 4 or b.dtype.kind not in "iuf":
            raise ValueError(
                f"targets[{i}]['boxes'] must be a real (M, 4) array of xyxy boxes, got shape "
                f"{tuple(b.shape)} and dtype {b.dtype}"
            )
        if lab.shape != (b.shape[0],) or (lab.size and lab.dtype.kind not in "iu"):
            raise ValueError(
                f"targets[{i}]['labels'] must be an int array of shape ({b.shape[0]},), one "
                f"per box, got shape {tuple(lab.shape)} and dtype {lab.dtype}"
            )
        if lab.size and bool(((lab < 1) | (lab >= num_classes)).any()):
            raise ValueError(
                f"targets[{i}]['labels'] must be in 1..{num_classes - 1} (num_classes="
                f"{num_classes} counts the background, label 0), got {lab}"
            )
        if b.size and not bool(numpy.isfinite(b).all()):
            raise ValueError(f"targets[{i}]['boxes'] must be finite, got {b}")
        # a box without area matches no anchor or cell and has no log-size to regress
        if b.size and not bool(((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).all()):
            raise ValueError(f"targets[{i}]['boxes'] must have x2 > x1 and y2 > y1, got "
                             f"{b}")
        boxes.append(backend.to_device(b if b.dtype.kind == "f" else b.astype(numpy.float64),
                                       device))
        labels.append(backend.to_device(lab.astype(numpy.int64), device))
    return boxes, labels


def as_detections(boxes, scores, classes) -> dict:
    """One image's detections in the contract's form.

    :param boxes: (D, 4) xyxy pixel boxes, already chosen (thresholded, NMS, top k).
    :param scores: (D,) their scores.
    :param classes: (D,) int class indices 0..K-2; reported as labels ``classes + 1``.
    :returns: {"boxes" (D, 4) float32, "scores" (D,) float32, "labels" (D,) int64}, on the
        device of the inputs.
    """
    xp = backend.xp_of(boxes, scores, classes)
    return {"boxes": boxes.astype(xp.float32), "scores": scores.astype(xp.float32),
            "labels": (classes + 1).astype(xp.int64)}


def make_backbone(in_channels: int, widths, depths) -> Sequential:
    """Stage i: ``depths[i]`` conv-BN-ReLU layers of ``widths[i]`` channels, the first stride 2.

    The total stride is ``2**len(widths)``. The layers form one flat Sequential (the state-dict
    keys are ``backbone.<layer>.<0 conv | 1 bn>.*``).
    """
    layers, c_in = [], in_channels
    for width, depth in zip(widths, depths):
        layers.append(conv_bn_relu(c_in, width, stride=2))
        layers.extend(conv_bn_relu(width, width) for _ in range(depth - 1))
        c_in = width
    return Sequential(*layers)


class BackboneDetector(Module):
    """The base of YOLOv1, ClassLocNet and RetinaNet: the contract's arguments and the backbone.

    :param num_classes: classes counting the background (>= 2); labels run 1..num_classes-1.
    :param in_channels: channels of the input image.
    :param widths: channels of each backbone stage (``make_backbone``; each halves the size).
    :param depths: conv-BN-ReLU layers in each stage.
    :param score_thresh: decoding keeps scores above this.
    :param nms_thresh: IoU threshold of the per-class NMS.
    :param detections_per_img: at most this many detections per image.

    A subclass adds its head, ``output_size(h, w)`` (which also checks the input size) and
    ``forward``, which starts with ``check_inputs``.
    """

    task = "detection"

    def __init__(self, num_classes: int, in_channels: int, widths, depths, score_thresh: float,
                 nms_thresh: float, detections_per_img: int):
        super().__init__()
        self.num_classes = check_int(num_classes, "num_classes", 1)
        if self.num_classes < 2:
            raise ValueError(f"num_classes counts the background and must be >= 2, got "
                             f"{num_classes}")
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.widths = check_int_tuple(widths, "widths")
        self.depths = check_int_tuple(depths, "depths")
        if len(self.widths) != len(self.depths):
            raise ValueError(f"widths and depths must have one entry per stage, got "
                             f"{len(self.widths)} widths and {len(self.depths)} depths")
        self.score_thresh = check_fraction(score_thresh, "score_thresh")
        self.nms_thresh = check_fraction(nms_thresh, "nms_thresh")
        self.detections_per_img = check_int(detections_per_img, "detections_per_img", 1)
        self.backbone = make_backbone(self.in_channels, self.widths, self.depths)

    @property
    def stride(self) -> int:
        """How much the backbone shrinks the input: ``2**len(widths)``."""
        return 2 ** len(self.widths)

    def config(self) -> dict:
        """The constructor arguments (JSON-able): ``type(model)(**model.config())`` rebuilds it."""
        return {
            "num_classes": self.num_classes, "in_channels": self.in_channels,
            "widths": list(self.widths), "depths": list(self.depths),
            "score_thresh": self.score_thresh, "nms_thresh": self.nms_thresh,
            "detections_per_img": self.detections_per_img,
        }

    def check_inputs(self, images, targets):
        """Check the images and, in training mode, the targets (moved to the images' device).

        :returns: ``(x, image_size, boxes, labels)``: the images as a Tensor, their (H, W), and
            two lists of N arrays (None, None in eval mode).
        """
        x = check_model_input(self, images)
        image_size = (int(x.shape[2]), int(x.shape[3]))
        if not self.training:
            return x, image_size, None, None
        boxes, labels = check_detection_targets(targets, x.shape[0], self.num_classes,
                                                backend.device_of(x.data))
        return x, image_size, boxes, labels


class AnchorDetector(BackboneDetector):
    """A ``BackboneDetector`` with A = sizes x ratios anchors at every cell of its feature map.

    :param anchor_sizes: anchor sizes in pixels (square roots of the areas).
    :param aspect_ratios: anchor height/width ratios.

    (The other arguments are ``BackboneDetector``'s.) The feature map is the backbone's output,
    at ``stride``; cell (i, j) holds anchors ``(i*W + j)*A + a``.
    """

    def __init__(self, num_classes: int, in_channels: int, widths, depths, anchor_sizes,
                 aspect_ratios, score_thresh: float, nms_thresh: float, detections_per_img: int):
        super().__init__(num_classes, in_channels, widths, depths, score_thresh, nms_thresh,
                         detections_per_img)
        # cell_anchors checks the sizes and ratios and tells A
        self.num_anchors = int(cell_anchors(anchor_sizes, aspect_ratios, device="cpu").shape[0])
        self.anchor_sizes = tuple(float(s) for s in anchor_sizes)
        self.aspect_ratios = tuple(float(r) for r in aspect_ratios)

    def config(self) -> dict:
        return {**super().config(), "anchor_sizes": list(self.anchor_sizes),
                "aspect_ratios": list(self.aspect_ratios)}

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """(H', W') of the feature map for an (h, w) image: (h / stride, w / stride).

        :raises ValueError: when h or w is not a multiple of the stride.
        """
        h, w = check_divisible(self, h, w, self.stride,
                               f"{len(self.widths)} stride-2 convolutions")
        return h // self.stride, w // self.stride

    def anchors(self, h: int, w: int, device: str | None = None, dtype="float32"):
        """All K = H' * W' * A anchors of an (h, w) image, in the order of ``per_anchor``.

        The grid depends only on the image size, so it is built once per (h, w, device,
        dtype) and kept: a training step then makes no host-to-device copy for anchors.
        Treat the returned array as read-only.

        :param h: image height (a multiple of the stride).
        :param w: image width.
        :param device: "cpu" or "gpu"; default: ``backend.get_default_device()``.
        :param dtype: floating-point dtype.
        :returns: (K, 4) xyxy array.
        """
        device = device or backend.get_default_device()
        key = (h, w, device, numpy.dtype(dtype).str)
        cache = self.__dict__.setdefault("_anchor_cache", {})
        if key not in cache:
            cache[key] = self.build_anchors(h, w, device, dtype)
        return cache[key]

    def build_anchors(self, h: int, w: int, device: str, dtype):
        """The anchor grid ``anchors`` caches: one ``anchor_grid`` at ``stride``."""
        return anchor_grid(self.output_size(h, w), self.stride, self.anchor_sizes,
                           self.aspect_ratios, device=device, dtype=dtype)

    def per_anchor(self, output, k: int):
        """A head's (N, A*k, H', W') output as (N, H'*W'*A, k), rows in ``anchors`` order.

        Channel a*k + m of cell (i, j) becomes row (i*W' + j)*A + a, column m.
        """
        n, _, h, w = output.shape
        # (N, A*k, H, W) -> (N, H, W, A*k) -> (N, H*W*A, k)
        return output.permute(0, 2, 3, 1).reshape(n, h * w * self.num_anchors, k)
