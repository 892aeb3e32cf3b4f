"""RetinaNet (Lin, Goyal, Girshick, He and Dollar, 2017): a one-stage anchor detector trained with
the focal loss.

Dense anchors and the imbalance
-------------------------------
A one-stage detector classifies every anchor of a dense grid directly: no proposal stage, no
sampling. On a 128x128 image at stride 8 with A = 4 anchors per cell that is K = 16*16*4 = 1024
anchors, and a scene with 1-4 objects gives about 10 positives per object, so about 95% of
the anchors are negatives, nearly all of them *easy* (plain background). Summed with plain
binary cross-entropy, their many losses can outweigh the few positives' (from a random start,
p = 0.5 everywhere, by about 27 to 1), and even once each is small they keep pulling. The
focal loss scales each term by how wrong it still is:

    p = sigmoid(x),  t in {0, 1}
    p_t     = p if t = 1 else 1 - p                 the probability of the right answer
    alpha_t = alpha if t = 1 else 1 - alpha         a fixed class weight (alpha = 0.25)
    FL      = -alpha_t (1 - p_t)^gamma log(p_t)     (gamma = 2; gamma = 0 is weighted BCE)

An easy negative at p = 0.01 keeps (1 - p_t)^2 = 1e-4 of its cross-entropy; a hard one at
p = 0.9 keeps 0.81. The math, including the gradient, lives in ``tinyseg/ops/loss.py``
(``sigmoid_focal_loss``); ``docs/models/retinanet.md`` tells the whole story.

Prior-bias initialisation. The last classification conv starts with weights ~ N(0, 0.01^2)
and bias b = -log((1 - pi) / pi), pi = 0.01, so every anchor first predicts p = sigmoid(b) =
pi for every class: "background" with high confidence. Otherwise the first steps would see
all K*C anchors at p = 0.5, a huge loss from the negatives that destabilises training. Both
losses (``cls_loss="focal"`` or ``"bce"``) use this initialisation, so comparing them compares
only the loss.

Target assignment (``assign_targets``)
---------------------------------------
For one image with G ground-truth boxes g (G, 4), labels (G,) and the K anchors a (K, 4):

    Q = box_iou(g, a)                     (G, K)
    m = Matcher(0.5, 0.4, allow_low_quality_matches=True)(Q)     (K,)
    m_k >= 0         foreground: class target one-hot(label[m_k]), box target
                     BoxCoder((1, 1, 1, 1)).encode(g[m_k], a_k)
    m_k = -1         background (best IoU < 0.4): class target all zeros
    m_k = -2         ignored (0.4 <= IoU < 0.5): in neither loss

and each ground truth also keeps the anchors tied for its best IoU (a low-quality match), so
a small or oddly placed object still gets a positive. All K anchors are matched at once: the
only loop is over the images of the batch.

Losses, over the batch, both divided by the number of positive anchors P (at least 1):

    loss_cls = sum over non-ignored anchors k and classes c of FL(x_kc, t_kc) / P
               (or BCE-with-logits(x_kc, t_kc) / P with cls_loss="bce")
    loss_box = sum over positive anchors k of smooth_l1(d_k - d*_k, beta=1/9) / P

Normalising by P rather than by the number of anchors is what the focal loss needs: the
~1000 easy negatives contribute almost nothing, so the loss is "per object", not "per anchor".

Architecture
------------
One feature level, stride 8. The scenes' objects are ~20-70 px (median 41) on 128x128 images,
less than two octaves, so a single 16x16 map with four anchor sizes (20, 28, 40, 56; square)
covers them: 99.7% of the boxes have an anchor at IoU >= 0.5 (the rest get low-quality
matches). An FPN would add levels for a scale range this data does not have, and the time of
an extra head per level. Shapes for the defaults on a 128x128 RGB input, batch N, 3 object
classes (num_classes = 4 with background), A = 4 anchors per cell, C = 3. "cbr" is
conv3x3 (no bias) -> BatchNorm -> ReLU::

    input                                       (N,   3, 128, 128)
    backbone  cbr 3->16 stride 2                (N,  16,  64,  64)   stride 2 (the stem)
              cbr 16->32 stride 2, cbr 32->32   (N,  32,  32,  32)   stride 4
              cbr 32->64 stride 2, cbr 64->64   (N,  64,  16,  16)   stride 8
    class subnet  cbr 64->64, x2                (N,  64,  16,  16)
                  conv3x3 64->A*C               (N,  12,  16,  16)   logits, bias -log(99)
    box subnet    cbr 64->64, x2                (N,  64,  16,  16)
                  conv3x3 64->A*4               (N,  16,  16,  16)   deltas (dx, dy, dw, dh)
    reshape both: (N, A*k, H, W) -> (N, H, W, A, k) -> (N, H*W*A, k)

The last reshape puts the outputs in the order of ``tinyseg.anchors.anchor_grid``: anchor
``(i*W + j)*A + a`` sits at cell (i, j). The backbone's 3x3 stride-2 convs with padding 1 put
the centre of cell (i, j)'s receptive field at pixel (8i, 8j), which is where ``anchor_grid``
centres its anchors. The backbone is ``make_backbone`` with ``depths = (1, 2, ..., 2)`` (a
one-conv stem, then a stride-2 and a stride-1 conv per stage): RetinaNet has no ``depths``
argument, they follow from ``widths``. Backbone, the arguments every detector takes and the
check of images and targets come from ``models/detection.py`` (``BackboneDetector``,
``check_detection_targets``).

Inference (``postprocess``), per image: p = sigmoid(logits) for all K*C (anchor, class)
pairs; keep p > ``score_thresh`` (0.05); keep the ``topk_candidates`` (1000) best; decode
their anchors' deltas; clip to the image; NMS at ``nms_thresh`` (0.5) within each class; keep
``detections_per_img`` (100). Class index c is label c + 1 (label 0 is the background)
(``detection.as_detections``). The whole batch goes through one sort and one
``boxes.nms_by_image``, so the device syncs do not grow with the batch.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

from .. import backend
from .. import functional as F
from ..anchors import BELOW_LOW_THRESHOLD, BoxCoder, Matcher
from ..autograd import Tensor
from ..boxes import box_iou, clip_boxes_to_image, nms_by_image
from ..nn import Conv2d, Sequential, init
from ..validate import check_fraction, check_int, check_int_tuple
from .blocks import check_model_input, conv_bn_relu
from .detection import (
    SMOOTH_L1_BETA,
    AnchorDetector,
    as_detections,
    check_detection_targets,
)

__all__ = ["AnchorTargets", "CLS_LOSSES", "RetinaNet"]

CLS_LOSSES = ("focal", "bce")


class AnchorTargets(NamedTuple):
    """What one image's anchors learn from (``RetinaNet.assign_targets``), K anchors, C classes.

    :ivar labels: (K,) int64: the object label (1..C) of a foreground anchor, 0 for
        background, -1 for an ignored anchor (IoU between the thresholds).
    :ivar cls_targets: (K, C) one-hot class targets in the anchors' dtype; all zeros for
        background and ignored anchors.
    :ivar box_targets: (K, 4) encoded deltas (dx, dy, dw, dh) of the matched ground truth;
        zeros where the anchor is not foreground.
    """

    labels: Any
    cls_targets: Any
    box_targets: Any

    @property
    def positive(self):
        """(K,) bool: foreground anchors (in both losses)."""
        return self.labels > 0

    @property
    def ignored(self):
        """(K,) bool: anchors between the IoU thresholds (in neither loss)."""
        return self.labels < 0


class RetinaNet(AnchorDetector):
    """A one-stage anchor detector: a small stride-8 backbone, a class and a box subnet.

    :param num_classes: classes counting the background (4 for the shapes scenes); the class
        subnet predicts C = num_classes - 1 sigmoid scores per anchor.
    :param in_channels: channels of the input image.
    :param widths: backbone channels per stage: a stride-2 stem conv at ``widths[0]``, then
        for each later width a stride-2 conv and a stride-1 conv (``make_backbone`` with
        depths (1, 2, ..., 2)); the stride is ``2**len(widths)``.
    :param head_channels: channels of the convs in both subnets.
    :param head_convs: 3x3 conv-BN-ReLU layers in each subnet before its last conv.
    :param anchor_sizes: anchor sizes in pixels (square roots of the areas).
    :param aspect_ratios: anchor height/width ratios; A = len(sizes) * len(ratios) per cell.
    :param cls_loss: ``"focal"`` (sigmoid focal loss) or ``"bce"`` (plain BCE-with-logits),
        both summed and divided by the number of positive anchors.
    :param focal_alpha: the focal loss's alpha (weight of the positives; < 0 turns it off).
    :param focal_gamma: the focal loss's gamma >= 0.
    :param prior_prob: pi, the initial foreground probability of every anchor and class.
    :param fg_iou_thresh: anchors with IoU >= this with a ground truth are foreground.
    :param bg_iou_thresh: anchors with best IoU < this are background; in between: ignored.
    :param score_thresh: inference keeps (anchor, class) scores strictly above this.
    :param nms_thresh: IoU threshold of the per-class NMS at inference.
    :param detections_per_img: at most this many detections per image.
    :param topk_candidates: at most this many (anchor, class) pairs per image go to NMS.

    In training mode ``model(images, targets)`` returns ``{"loss_cls", "loss_box"}``; in eval
    mode ``model(images)`` returns one dict per image, {"boxes", "scores", "labels"}.
    """

    def __init__(self, num_classes: int = 4, in_channels: int = 3, widths=(16, 32, 64),
                 head_channels: int = 64, head_convs: int = 2,
                 anchor_sizes=(20, 28, 40, 56), aspect_ratios=(1.0,),
                 cls_loss: str = "focal", focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                 prior_prob: float = 0.01, fg_iou_thresh: float = 0.5,
                 bg_iou_thresh: float = 0.4, score_thresh: float = 0.05,
                 nms_thresh: float = 0.5, detections_per_img: int = 100,
                 topk_candidates: int = 1000):
        widths = check_int_tuple(widths, "widths")
        depths = (1,) + (2,) * (len(widths) - 1)  # the stem is one conv, later stages two
        super().__init__(num_classes, in_channels, widths, depths, anchor_sizes, aspect_ratios,
                         score_thresh, nms_thresh, detections_per_img)
        self.head_channels = check_int(head_channels, "head_channels", 1)
        self.head_convs = check_int(head_convs, "head_convs", 0)
        if cls_loss not in CLS_LOSSES:
            raise ValueError(f"cls_loss must be one of {CLS_LOSSES}, got {cls_loss!r}")
        self.cls_loss = cls_loss
        if isinstance(focal_alpha, bool) or not isinstance(focal_alpha, numbers.Real) \
                or focal_alpha > 1:
            raise ValueError(f"focal_alpha must be a number <= 1 (< 0: no weighting), "
                             f"got {focal_alpha!r}")
        self.focal_alpha = float(focal_alpha)
        if isinstance(focal_gamma, bool) or not isinstance(focal_gamma, numbers.Real) \
                or not focal_gamma >= 0:
            raise ValueError(f"focal_gamma must be a number >= 0, got {focal_gamma!r}")
        self.focal_gamma = float(focal_gamma)
        self.prior_prob = check_fraction(prior_prob, "prior_prob")
        if not 0 < self.prior_prob < 1:
            raise ValueError(f"prior_prob must be strictly between 0 and 1, got {prior_prob!r}")
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0), check_values=False)
        self.topk_candidates = check_int(topk_candidates, "topk_candidates", 1)

        c_in = self.widths[-1]
        num_object_classes = self.num_classes - 1
        self.cls_subnet = self._subnet(c_in)
        self.cls_score = Conv2d(self._subnet_out(c_in), self.num_anchors * num_object_classes,
                                3, padding=1)
        self.box_subnet = self._subnet(c_in)
        self.box_pred = Conv2d(self._subnet_out(c_in), self.num_anchors * 4, 3, padding=1)
        for conv in (self.cls_score, self.box_pred):  # small outputs at the start (the paper)
            init.normal_(conv.weight, std=0.01)
        init.constant_(self.cls_score.bias, -math.log((1 - self.prior_prob) / self.prior_prob))

    def _subnet(self, c_in: int) -> Sequential:
        layers = [conv_bn_relu(c_in if i == 0 else self.head_channels, self.head_channels)
                  for i in range(self.head_convs)]
        return Sequential(*layers)

    def _subnet_out(self, c_in: int) -> int:
        return self.head_channels if self.head_convs else c_in

    # ----- description ----------------------------------------------------------------------
    def config(self) -> dict:
        """The constructor arguments (JSON-able): ``RetinaNet(**model.config())`` rebuilds it."""
        shared = super().config()
        del shared["depths"]  # not an argument: they follow from widths
        return {
            **shared,
            "head_channels": self.head_channels,
            "head_convs": self.head_convs,
            "cls_loss": self.cls_loss,
            "focal_alpha": self.focal_alpha,
            "focal_gamma": self.focal_gamma,
            "prior_prob": self.prior_prob,
            "fg_iou_thresh": self.matcher.high_threshold,
            "bg_iou_thresh": self.matcher.low_threshold,
            "topk_candidates": self.topk_candidates,
        }

    # ----- the network ------------------------------------------------------------------------
    def head_outputs(self, images):
        """Run backbone and subnets.

        :param images: (N, in_channels, H, W) Tensor or array.
        :returns: ``(cls_logits, box_deltas)``, Tensors (N, K, C) and (N, K, 4) with
            K = (H / stride) * (W / stride) * A, anchors in ``anchors(H, W)`` order.
        """
        x = check_model_input(self, images)
        features = self.backbone(x)
        cls_logits = self.cls_score(self.cls_subnet(features))
        box_deltas = self.box_pred(self.box_subnet(features))
        return (self.per_anchor(cls_logits, self.num_classes - 1),
                self.per_anchor(box_deltas, 4))

    def forward(self, images, targets=None):
        """Losses (training mode) or detections (eval mode); see the class docstring.

        :param images: (N, in_channels, H, W) float Tensor; H and W multiples of the stride.
        :param targets: training only: a list of N dicts {"boxes" (M, 4) xyxy,
            "labels" (M,) int in 1..num_classes-1}, host arrays.
        """
        x, image_size, boxes, labels = self.check_inputs(images, targets)
        cls_logits, box_deltas = self.head_outputs(x)
        anchors = self.anchors(*image_size, device=backend.device_of(x.data), dtype=x.dtype)
        if self.training:
            return self.anchor_loss(cls_logits, box_deltas, anchors, boxes, labels)
        return self.postprocess(cls_logits, box_deltas, anchors, image_size)

    # ----- training ---------------------------------------------------------------------------
    def assign_targets(self, anchors, gt_boxes, gt_labels) -> AnchorTargets:
        """Match one image's anchors to its ground truths (see the module docstring).

        :param anchors: (K, 4) xyxy float array.
        :param gt_boxes: (G, 4) xyxy array on the anchors' device, positive widths and
            heights; G may be 0.
        :param gt_labels: (G,) int array of labels in 1..num_classes-1.
        :returns: :class:`AnchorTargets` (labels, cls_targets, box_targets), in the anchors'
            dtype and on their device.
        """
        xp = backend.xp_of(anchors, gt_boxes, gt_labels)
        num_anchors = anchors.shape[0]
        num_object_classes = self.num_classes - 1
        gt_boxes = gt_boxes.astype(anchors.dtype, copy=False)
        matches = self.matcher(box_iou(gt_boxes, anchors, check_values=False))  # (K,): gt, -1 or -2
        positive = matches >= 0
        if gt_boxes.shape[0] == 0:  # nothing to gather from: every anchor is background
            labels = xp.zeros(num_anchors, dtype=xp.int64)
            box_targets = xp.zeros((num_anchors, 4), dtype=anchors.dtype)
        else:
            matched = xp.maximum(matches, 0)  # a valid row for every anchor; masked below
            labels = xp.where(positive, gt_labels.astype(xp.int64)[matched],
                              xp.where(matches == BELOW_LOW_THRESHOLD, 0, -1))
            deltas = self.box_coder.encode(gt_boxes[matched], anchors)
            box_targets = xp.where(positive[:, None], deltas, 0).astype(anchors.dtype)
        classes = xp.arange(1, num_object_classes + 1)
        cls_targets = (labels[:, None] == classes[None, :]).astype(anchors.dtype)
        return AnchorTargets(labels.astype(xp.int64, copy=False), cls_targets, box_targets)

    def compute_loss(self, cls_logits, box_deltas, anchors, targets) -> dict:
        """``anchor_loss`` for a batch of target dicts, checked with ``check_detection_targets``.

        :param targets: N dicts {"boxes" (M, 4), "labels" (M,)} (host or device arrays).
        """
        boxes, labels = check_detection_targets(targets, cls_logits.shape[0], self.num_classes,
                                                backend.device_of(anchors))
        return self.anchor_loss(cls_logits, box_deltas, anchors, boxes, labels)

    def anchor_loss(self, cls_logits, box_deltas, anchors, boxes, labels) -> dict:
        """The two loss terms of a batch, each divided by its number of positive anchors.

        :param cls_logits: (N, K, C) Tensor of class logits.
        :param box_deltas: (N, K, 4) Tensor of box deltas.
        :param anchors: (K, 4) anchors, on the device and in the dtype of the outputs.
        :param boxes: N arrays (M_i, 4) of checked xyxy boxes on the anchors' device
            (``check_detection_targets``).
        :param labels: N int arrays (M_i,) of labels in 1..num_classes-1.
        :returns: {"loss_cls": scalar Tensor, "loss_box": scalar Tensor}.
        """
        cls_logits = cls_logits if isinstance(cls_logits, Tensor) else Tensor(cls_logits)
        box_deltas = box_deltas if isinstance(box_deltas, Tensor) else Tensor(box_deltas)
        n, k, c = cls_logits.shape
        if c != self.num_classes - 1 or box_deltas.shape != (n, k, 4) or anchors.shape != (k, 4):
            raise ValueError(
                f"cls_logits (N, K, {self.num_classes - 1}), box_deltas (N, K, 4) and anchors "
                f"(K, 4) must agree, got {cls_logits.shape}, {box_deltas.shape} and "
                f"{tuple(anchors.shape)}"
            )
        if len(boxes) != n or len(labels) != n:
            raise ValueError(f"boxes and labels must be lists of {n} arrays (one per image), "
                             f"got {len(boxes)} and {len(labels)}")
        xp = backend.xp_of(cls_logits.data)
        per_image = [self.assign_targets(anchors, b, lab) for b, lab in zip(boxes, labels)]
        anchor_labels = xp.stack([t.labels for t in per_image])  # (N, K)
        cls_targets = xp.stack([t.cls_targets for t in per_image])  # (N, K, C)
        box_targets = xp.stack([t.box_targets for t in per_image])  # (N, K, 4)
        dtype = cls_logits.dtype
        valid = (anchor_labels >= 0).astype(dtype)[..., None]  # ignored anchors drop out
        positive = (anchor_labels > 0).astype(dtype)[..., None]
        # P over the whole batch, at least 1; stays on the device (no sync)
        num_pos = xp.maximum(positive.sum(), 1).astype(dtype)
        if self.cls_loss == "focal":
            cls_terms = F.sigmoid_focal_loss(cls_logits, cls_targets, alpha=self.focal_alpha,
                                             gamma=self.focal_gamma, reduction="none")
        else:
            cls_terms = F.binary_cross_entropy_with_logits(cls_logits, cls_targets,
                                                           reduction="none")
        box_terms = F.smooth_l1_loss(box_deltas, box_targets, reduction="none",
                                     beta=SMOOTH_L1_BETA)
        return {
            "loss_cls": (cls_terms * valid).sum() / num_pos,
            "loss_box": (box_terms * positive).sum() / num_pos,
        }

    # ----- inference --------------------------------------------------------------------------
    def postprocess(self, cls_logits, box_deltas, anchors, image_size) -> list[dict]:
        """Detections from head outputs: threshold, top-k, decode, clip, per-class NMS.

        :param cls_logits: (N, K, C) logits (Tensor or array).
        :param box_deltas: (N, K, 4) deltas (Tensor or array).
        :param anchors: (K, 4) anchors on the same device.
        :param image_size: (H, W) of the input images, for clipping.
        :returns: N dicts {"boxes" (D, 4) float32, "scores" (D,) float32, "labels" (D,) int64},
            raw arrays on the outputs' device, by decreasing score, D <= detections_per_img.
        """
        logits = cls_logits.data if isinstance(cls_logits, Tensor) else cls_logits
        deltas = box_deltas.data if isinstance(box_deltas, Tensor) else box_deltas
        xp = backend.xp_of(logits, deltas, anchors)
        N, _, num_object_classes = logits.shape
        probs = F.sigmoid(logits).data.reshape(N, -1)  # (N, K*C): pair p = k*C + c
        # Per image, the topk best pairs, then those above the threshold: the same pairs, in
        # the same order, as thresholding first, and one sort for the whole batch.
        best = xp.argsort(-probs, axis=1, kind="stable")[:, : self.topk_candidates]
        best_scores = xp.take_along_axis(probs, best, axis=1)
        image, rank = xp.nonzero(best_scores > self.score_thresh)  # image by image
        candidates = best[image, rank]
        anchor_idx = candidates // num_object_classes
        classes = candidates % num_object_classes
        boxes = self.box_coder.decode(deltas[image, anchor_idx], anchors[anchor_idx])
        boxes = clip_boxes_to_image(boxes, image_size)
        scores = best_scores[image, rank]
        kept = nms_by_image(boxes, scores, classes, image, N, self.nms_thresh,
                            top_n=self.detections_per_img)
        return [as_detections(boxes[keep], scores[keep], classes[keep]) for keep in kept]

    def extra_repr(self):
        return (f"num_classes={self.num_classes}, widths={self.widths}, "
                f"anchor_sizes={self.anchor_sizes}, aspect_ratios={self.aspect_ratios}, "
                f"cls_loss={self.cls_loss!r}")
