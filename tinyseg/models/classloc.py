"""Classification + localisation: the single-object detector, one class and one box per image.

The idea
--------
Before detectors that find many objects, the lecture's first step: if an image holds ONE
object, finding it is two heads on one classification network. A conv net turns the image
into a feature vector f (global average pooling), and

    class head:  s = W_cls f + b_cls          (C,)   logits; softmax gives Pr(class c)
    box head:    t = sigmoid(W_box f + b_box) (4,)   (cx, cy, w, h) as fractions of the image

so the box is plain regression of four numbers in [0, 1]. In pixels, for an H x W image,

    box = ((cx - w/2) W, (cy - h/2) H, (cx + w/2) W, (cy + h/2) H),   clipped to the image.

The loss adds the two tasks:

    loss_class = cross_entropy(s, c*)                          (c* = label - 1)
    loss_box   = sum over the 4 numbers of smooth_l1(t - t*, beta = 1/9)

each averaged over the images that hold an object (an image without objects adds nothing).
The box target t* is the normalised (cx, cy, w, h) of the image's LARGEST object (of equal
areas, the first listed): the model is meant for one object per image
(``ShapesDataset(..., max_objects=1)``); on busier images it learns to find the biggest.

At test time each image gets exactly one detection: the box t, the label argmax_c s_c + 1 (0
is the background) and the score max_c softmax(s)_c, the class probability. There is nothing
to suppress, so ``nms_thresh`` is accepted (the detection contract) but unused.

Why it cannot grow into a detector: the output has a fixed size (one box), while images hold
a variable number of objects. YOLO (``models/yolo.py``) answers with a grid of such
predictors; R-CNN with proposals. Note too that global average pooling throws away where
features are; the box head can still place the box because zero padding at the borders lets
the convolutions encode position, but not as precisely as a grid of cells.

Shapes
------
Default model (``widths=(16, 32, 64, 128)``, ``depths=(1, 2, 2, 2)``, ``num_classes=4`` so
C = 3) on a 128x128 RGB input, batch N; "cbr" is conv3x3 -> BatchNorm -> ReLU, "s2" stride 2::

    input                                    (N,   3, 128, 128)
    stage 0: cbr 3->16 s2                    (N,  16,  64,  64)
    stage 1: cbr 16->32 s2, cbr 32->32       (N,  32,  32,  32)
    stage 2: cbr 32->64 s2, cbr 64->64       (N,  64,  16,  16)
    stage 3: cbr 64->128 s2, cbr 128->128    (N, 128,   8,   8)   stride 16
    global average pool, flatten             (N, 128)             f
    class head: linear 128 -> C              (N,   3)             logits s
    box head: linear 128 -> 4, sigmoid       (N,   4)             (cx, cy, w, h) in [0, 1]

Backbone, arguments and input checks are those of every detector
(``detection.BackboneDetector``). Input height and width must be multiples of the stride
``2**len(widths)``.
"""

from __future__ import annotations

from .. import backend
from .. import functional as F
from ..autograd import Tensor
from ..boxes import box_convert, clip_boxes_to_image
from ..nn import Linear
from ..validate import pair
from .blocks import check_model_input
from .detection import SMOOTH_L1_BETA, BackboneDetector, as_detections
from .segnet import check_divisible

__all__ = ["ClassLocNet", "single_object_targets"]


def single_object_targets(boxes, labels, image_size, dtype="float32"):
    """One (box, class) target per image: its largest object (the first of equal areas).

    :param boxes: list of N arrays (M_i, 4), xyxy pixel boxes, on one device.
    :param labels: list of N int arrays (M_i,), labels in 1..C.
    :param image_size: (H, W) of the images.
    :param dtype: floating dtype of the box target.
    :returns: ``(box_target, class_target)``: (N, 4) normalised (cx, cy, w, h) of the chosen
        box, clipped to the image (zeros for an image without objects), and (N,) int64 class
        indices ``label - 1``, -100 (cross_entropy's ignore_index) for an image without objects.
    """
    if not isinstance(boxes, (list, tuple)) or not isinstance(labels, (list, tuple)) \
            or len(boxes) != len(labels) or not boxes:
        raise ValueError("boxes and labels must be two non-empty lists of equal length (one "
                         "array per image)")
    H, W = pair(image_size, "image_size", minimum=1)
    xp = backend.xp_of(*boxes, *labels)
    N = len(boxes)
    box_target = xp.zeros((N, 4), dtype=dtype)
    class_target = xp.full(N, -100, dtype=xp.int64)
    for n, (b, lab) in enumerate(zip(boxes, labels)):  # a loop over images, not boxes
        if b.shape[0] == 0:
            continue
        b = box_convert(clip_boxes_to_image(b.astype(dtype), (H, W)), "xyxy", "cxcywh")
        k = xp.argmax(b[:, 2] * b[:, 3])  # the largest area; the first one on ties
        box_target[n] = b[k] / xp.asarray([W, H, W, H], dtype=dtype)
        class_target[n] = lab[k] - 1
    return box_target, class_target


class ClassLocNet(BackboneDetector):
    """Classification + localisation: a conv net, global pooling, a class head and a box head.

    :param num_classes: classes counting the background; the class head has C = num_classes - 1
        outputs (labels 1..C).
    :param in_channels: channels of the input image.
    :param widths: channels of each backbone stage (each halves the size).
    :param depths: conv-BN-ReLU layers in each stage.
    :param score_thresh: an image's one detection is dropped when its score is not above this.
    :param nms_thresh: unused (one box per image), kept for the detection contract.
    :param detections_per_img: at most this many detections per image (one is all it makes).

    ``model(images, targets)`` in training mode returns {"loss_class", "loss_box"}; in eval mode
    ``model(images)`` returns one dict per image with one detection ("boxes", "scores",
    "labels"). ``predict`` returns the raw heads.
    """

    def __init__(self, num_classes: int = 4, in_channels: int = 3, widths=(16, 32, 64, 128),
                 depths=(1, 2, 2, 2), score_thresh: float = 0.0, nms_thresh: float = 0.5,
                 detections_per_img: int = 1):
        super().__init__(num_classes, in_channels, widths, depths, score_thresh, nms_thresh,
                         detections_per_img)
        self.class_head = Linear(self.widths[-1], self.num_classes - 1)
        self.box_head = Linear(self.widths[-1], 4)

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """(1, 1): the heads see one pooled vector per image.

        :raises ValueError: when h or w is not a multiple of ``stride``.
        """
        check_divisible(self, h, w, self.stride, f"{len(self.widths)} stride-2 stages")
        return 1, 1

    def predict(self, images):
        """The two heads: class logits (N, C) and the box (N, 4) as sigmoid (cx, cy, w, h).

        :param images: (N, in_channels, H, W).
        :returns: ``(logits, box)``, two Tensors.
        """
        x = check_model_input(self, images)
        f = F.global_avg_pool2d(self.backbone(x)).flatten(1)  # (N, widths[-1])
        return self.class_head(f), F.sigmoid(self.box_head(f))

    def decode(self, logits, box, image_size) -> list[dict]:
        """One detection per image from the heads' outputs (arrays or Tensors).

        :returns: dicts with "boxes" (1, 4) float32 xyxy pixels clipped to the image, "scores"
            (1,) float32, the class probability, "labels" (1,) int64; empty (0 rows) when the
            score is not above ``score_thresh``.
        """
        logits = logits.data if isinstance(logits, Tensor) else logits
        box = box.data if isinstance(box, Tensor) else box
        H, W = pair(image_size, "image_size", minimum=1)
        xp = backend.xp_of(logits, box)
        probs = F.softmax(logits, dim=1).data
        scale = xp.asarray([W, H, W, H], dtype=box.dtype)
        pixels = clip_boxes_to_image(box_convert(box * scale, "cxcywh", "xyxy"), (H, W))
        classes = xp.argmax(probs, axis=1)
        scores = xp.max(probs, axis=1)
        keep = scores > self.score_thresh
        detections = []
        for n in range(logits.shape[0]):
            row = slice(n, n + 1)  # image n's one row, left with none when it is dropped
            k = keep[row]
            detections.append(as_detections(pixels[row][k], scores[row][k], classes[row][k]))
        return detections

    def forward(self, images, targets=None):
        """Training: {"loss_class", "loss_box"} (``targets`` required). Eval: one detection each."""
        x, image_size, boxes, labels = self.check_inputs(images, targets)
        logits, box = self.predict(x)
        if not self.training:
            return self.decode(logits, box, image_size)
        box_target, class_target = single_object_targets(boxes, labels, image_size, box.dtype)
        xp = backend.xp_of(box.data)
        has_object = (class_target >= 0).astype(box.dtype)
        per_image = 1 / xp.maximum(has_object.sum(), 1)  # 1 / (images with an object)
        loss_class = F.cross_entropy(logits, class_target, reduction="sum") * per_image
        loss_box = F.smooth_l1_loss(box, box_target, reduction="none", beta=SMOOTH_L1_BETA)
        loss_box = (loss_box * has_object[:, None]).sum() * per_image
        return {"loss_class": loss_class, "loss_box": loss_box}

    def extra_repr(self):
        return f"num_classes={self.num_classes}, widths={self.widths}, depths={self.depths}"
